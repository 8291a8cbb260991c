//! The realtime hub of one node: who is connected, and what each connection is sent.
//!
//! Every tick is encoded once into a wire frame written to the sockets of its market's
//! subscribers; per-user events (trades, balances, notices) go only to that user's
//! connections, and every trade event also to admins. A connection that cannot take what it
//! is sent is closed: a slow client never slows the others.

pub mod outlet;
pub mod prices;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use fairtick_core::UserId;
use fairtick_core::wallet::WalletState;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use self::outlet::text_frame;
pub use self::outlet::{Outlet, WireFrame};
use self::prices::{PriceSubscribers, Subscription};

use super::accounts::signed_off;
use super::events::{Event, EventBus, Notice, SignOff};
use super::market::Markets;
use super::market::feed::Tick;
use super::trades::Trades;
use crate::store::{Store, TradeRecord};

/// How often live bids are refreshed.
const BID_INTERVAL: Duration = Duration::from_secs(1);
/// A user's events held for one connection while its state is read at sign-in.
const MAX_HELD_EVENTS: usize = 1_000;

/// A tick on the wire, shared by every connection subscribed to its market.
#[derive(Clone, Debug)]
pub struct PriceFrame {
    pub symbol: Arc<str>,
    pub seq: i64,
    pub wire: WireFrame,
}

struct Connection {
    id: u64,
    outlet: Arc<Outlet>,
    /// The token it signed in with (its id), checked again after missed events.
    session: Arc<str>,
    /// Events kept back while the state sent at sign-in is read, `None` after.
    held: Option<Vec<WireFrame>>,
}

/// What a connection held at sign-in does with a message.
#[derive(Clone, Copy)]
enum WhileHeld {
    Keep,
    /// For live bids: a newer one follows within a second.
    Drop,
}

impl Connection {
    /// Sends `message`, or, while the connection is held, keeps or drops it.
    fn deliver(&mut self, message: &WireFrame, while_held: WhileHeld) {
        match (&mut self.held, while_held) {
            (None, _) => self.outlet.send(message),
            (Some(_), WhileHeld::Drop) => {}
            (Some(held), WhileHeld::Keep) if held.len() < MAX_HELD_EVENTS => held.push(message.clone()),
            (Some(_), WhileHeld::Keep) => self.outlet.close("slow consumer"),
        }
    }
}

/// Signed-in connections, by user, and the admins' again by connection, so that routing an
/// event costs nothing when nobody it concerns is connected (its frame is not even made).
#[derive(Default)]
struct Registry {
    by_user: HashMap<UserId, Vec<Connection>>,
    /// By connection, with whether the admin has two-factor sign-in on: where the terms
    /// require it, only those who have it get everyone's trades, as only they may use the
    /// admin API.
    admins: HashMap<u64, (Arc<Outlet>, bool)>,
    /// Sign-offs (logout, suspension, new role) seen on this node, counted, and each user's
    /// latest with its reason: a socket whose token was checked before one is not registered
    /// after it.
    sign_offs: u64,
    last_sign_off: HashMap<UserId, (u64, &'static str)>,
    /// Sign-ins whose token was checked before events were last missed (a sign-off may have
    /// been among them) are refused: their mark is below this.
    floor: u64,
}

/// Why a socket is closed, or its sign-in refused, when events may have been missed.
const MISSED_EVENTS: &str = "events may have been missed: sign in again";
/// Users whose latest sign-off is remembered; past it, all are forgotten and sign-ins checked
/// before are refused, as after missed events.
const REMEMBERED_SIGN_OFFS: usize = 10_000;

/// How many sign-offs the node had seen when a token was checked (see [`Hub::register`]).
#[derive(Clone, Copy, Debug)]
pub struct SignOffMark(u64);

/// A socket signing in, as the check of its token found it.
pub struct SignIn {
    pub user: UserId,
    /// The id of the token checked.
    pub session: Arc<str>,
    pub admin: bool,
    /// Whether the admin has two-factor sign-in on.
    pub two_factor: bool,
    pub outlet: Arc<Outlet>,
    /// Taken before the token was checked.
    pub checked: SignOffMark,
}

impl Registry {
    fn remove(&mut self, user: UserId, id: u64) {
        self.admins.remove(&id);
        if let Some(list) = self.by_user.get_mut(&user) {
            list.retain(|c| c.id != id);
            if list.is_empty() {
                self.by_user.remove(&user);
            }
        }
    }
}

/// The node's hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    registry: Arc<Mutex<Registry>>,
    prices: Arc<PriceSubscribers>,
    /// Every open connection, signed in or not, for announcements.
    everyone: Arc<Mutex<HashMap<u64, Arc<Outlet>>>>,
    next_id: Arc<AtomicU64>,
}

/// `{type, data}`, the envelope of every message both ways.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: T,
}

/// A message to the client, serialised and framed for the wire.
pub fn frame<T: Serialize>(kind: &str, data: T) -> WireFrame {
    text_frame(&serde_json::to_string(&Envelope { kind, data }).expect("messages serialise"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PriceUpdate<'a> {
    symbol: &'a str,
    seq: i64,
    ts: String,
    price: String,
    epoch_id: i64,
}

pub fn price_frame(tick: &Tick) -> Arc<PriceFrame> {
    let data = PriceUpdate {
        symbol: &tick.symbol,
        seq: tick.seq,
        ts: crate::http::dto::timestamp(crate::store::time_from_ms(tick.ts)),
        price: tick.price.to_string(),
        epoch_id: tick.epoch_id,
    };
    Arc::new(PriceFrame { symbol: tick.symbol.clone(), seq: tick.seq, wire: frame("price_update", data) })
}

pub fn balance_frame(state: &WalletState) -> WireFrame {
    frame("balance_update", crate::http::dto::BalanceDto::from(state))
}

#[derive(Serialize)]
struct TradeUpdate {
    trade: crate::http::trades::TradeDto,
}

pub fn trade_frame(kind: &str, trade: &TradeRecord, bid: Option<fairtick_core::Money>) -> WireFrame {
    let mut dto = crate::http::trades::TradeDto::from(trade);
    dto.bid = bid.map(|b| b.to_string());
    frame(kind, TradeUpdate { trade: dto })
}

/// A registered connection; dropping it unregisters.
pub struct Registration {
    hub: Hub,
    user: UserId,
    id: u64,
}

impl Registration {
    /// Sends the events held since it was made, once the state read after that was sent, and
    /// the user's events from then on as they come. An event of a change the state already
    /// shows may follow it, but every later one follows that: what arrives last is the newest.
    pub fn release(&self) {
        let mut registry = self.hub.registry.lock();
        let Some(connections) = registry.by_user.get_mut(&self.user) else { return };
        for connection in connections.iter_mut().filter(|c| c.id == self.id) {
            for message in connection.held.take().unwrap_or_default() {
                connection.outlet.send(&message);
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.registry.lock().remove(self.user, self.id);
    }
}

/// An open connection, counted and sent announcements while it lives.
pub struct Presence {
    hub: Hub,
    id: u64,
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.hub.everyone.lock().remove(&self.id);
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            registry: Arc::default(),
            prices: Arc::default(),
            everyone: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Sends the ticks of `symbol` to `outlet` from now on (the caller checked that the
    /// market exists); with `catching_up_after`, held back until the ticks after that seq are
    /// replayed (see [`prices::Subscriber::release`]).
    pub fn watch(&self, symbol: &str, outlet: Arc<Outlet>, catching_up_after: Option<i64>) -> Subscription {
        self.prices.subscribe(symbol, outlet, catching_up_after)
    }

    pub fn open_connections(&self) -> usize {
        self.everyone.lock().len()
    }

    pub fn present(&self, outlet: Arc<Outlet>) -> Presence {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.everyone.lock().insert(id, outlet);
        Presence { hub: self.clone(), id }
    }

    /// Every open connection, copied out so that nothing is written under the lock.
    fn everyone(&self) -> Vec<Arc<Outlet>> {
        self.everyone.lock().values().cloned().collect()
    }

    fn to_everyone(&self, message: &WireFrame) {
        for outlet in self.everyone() {
            outlet.send(message);
        }
    }

    /// The mark to take before checking a token, for [`Hub::register`].
    pub fn sign_off_mark(&self) -> SignOffMark {
        SignOffMark(self.registry.lock().sign_offs)
    }

    /// Sends `greeting` to the socket, then the user's events (and, for admins, everyone's
    /// trades) as they come; the user's own are held until [`Registration::release`], so that
    /// the state read after this comes first. It takes the place of `replacing` (the same
    /// socket signing in again) at once: no event falls between the two, and none comes twice.
    /// Refused, with the reason, if the user was signed off since the token was checked: the
    /// sign-off found no socket of theirs to close.
    pub fn register(
        &self,
        sign_in: SignIn,
        greeting: &WireFrame,
        replacing: Option<Registration>,
    ) -> Result<Registration, &'static str> {
        let SignIn { user, session, admin, two_factor, outlet, checked } = sign_in;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let registered = {
            let mut registry = self.registry.lock();
            if let Some(old) = &replacing {
                registry.remove(old.user, old.id);
            }
            match registry.last_sign_off.get(&user) {
                _ if checked.0 < registry.floor => Err(MISSED_EVENTS),
                Some(&(at, reason)) if at > checked.0 => Err(reason),
                _ => {
                    if admin {
                        registry.admins.insert(id, (outlet.clone(), two_factor));
                    }
                    outlet.send(greeting);
                    let held = Some(Vec::new());
                    let connection = Connection { id, outlet, session, held };
                    registry.by_user.entry(user).or_default().push(connection);
                    Ok(Registration { hub: self.clone(), user, id })
                }
            }
        };
        // Outside the lock, which its drop takes; it finds nothing left to remove.
        drop(replacing);
        registered
    }

    fn is_connected(&self, user: UserId) -> bool {
        self.registry.lock().by_user.contains_key(&user)
    }

    /// Sends to one user's connections the frame `message` makes, made only if there are any.
    fn to_user(&self, user: UserId, message: impl FnOnce() -> WireFrame) {
        self.route(user, WhileHeld::Keep, message);
    }

    /// Sends a live bid to one user's connections, none kept for those held at sign-in.
    fn bid_to_user(&self, user: UserId, message: impl FnOnce() -> WireFrame) {
        self.route(user, WhileHeld::Drop, message);
    }

    fn route(&self, user: UserId, while_held: WhileHeld, message: impl FnOnce() -> WireFrame) {
        let mut registry = self.registry.lock();
        let Some(connections) = registry.by_user.get_mut(&user) else { return };
        let message = message();
        for connection in connections {
            connection.deliver(&message, while_held);
        }
    }

    /// Sends to every admin connection the frame `message` makes, made only if there is one.
    /// The terms in force are read at each event, so a change of `requireAdminTotp` applies to
    /// the next one. Not held at sign-in (everyone's trades would fill the queue), only after
    /// the greeting, which `register` sends under the same lock.
    fn to_admins(&self, two_factor_required: bool, message: impl FnOnce() -> WireFrame) {
        let registry = self.registry.lock();
        if registry.admins.is_empty() {
            return;
        }
        let message = message();
        for (outlet, two_factor) in registry.admins.values() {
            if *two_factor || !two_factor_required {
                outlet.send(&message);
            }
        }
    }

    fn close_everyone(&self, reason: &'static str) {
        for outlet in self.everyone() {
            outlet.close(reason);
        }
    }

    /// After events were missed, among which a sign-off may have been: every admin socket (it
    /// gets everyone's trades) is closed, to sign in again with its token checked afresh, and
    /// sign-ins checked before now are refused.
    fn close_admins_after_missed_events(&self) {
        let mut registry = self.registry.lock();
        registry.sign_offs += 1;
        registry.floor = registry.sign_offs;
        for (outlet, _) in registry.admins.values() {
            outlet.close(MISSED_EVENTS);
        }
    }

    /// After events were missed, among which a sign-off may have been: the sockets are closed
    /// whose token the store no longer takes, as the sign-off would have closed them. Read
    /// beside the event task (a read per token signed in), which goes on meanwhile.
    fn close_signed_off_sockets(&self, store: &Store) {
        // What this node remembered of sessions may be what was missed.
        store.forget_all_sessions();
        let sessions: HashSet<(UserId, Arc<str>)> = {
            let registry = self.registry.lock();
            let by_user = registry.by_user.iter();
            by_user.flat_map(|(&user, list)| list.iter().map(move |c| (user, c.session.clone()))).collect()
        };
        let (hub, store) = (self.clone(), store.clone());
        tokio::spawn(async move {
            for (user, session) in sessions {
                match store.session_user(user, &session).await {
                    Ok(found) => match signed_off(found.as_ref()) {
                        Some(SignOff::Suspended) => hub.close_user(user, SignOff::Suspended.reason()),
                        // Only the sockets of this token: the user's others may have signed in
                        // with a token still good, even since the check began.
                        Some(why) => hub.close_session(user, &session, why.reason()),
                        None => {}
                    },
                    Err(error) => tracing::warn!(%error, "checking a socket's session again"),
                }
            }
        });
    }

    fn close_session(&self, user: UserId, session: &str, reason: &'static str) {
        let registry = self.registry.lock();
        for connection in registry.by_user.get(&user).into_iter().flatten().filter(|c| &*c.session == session)
        {
            connection.outlet.close(reason);
        }
    }

    fn close_user(&self, user: UserId, reason: &'static str) {
        let mut registry = self.registry.lock();
        registry.sign_offs += 1;
        let at = registry.sign_offs;
        if registry.last_sign_off.len() >= REMEMBERED_SIGN_OFFS {
            registry.last_sign_off.clear();
            registry.floor = at;
        }
        registry.last_sign_off.insert(user, (at, reason));
        for connection in registry.by_user.get(&user).into_iter().flatten() {
            connection.outlet.close(reason);
        }
    }

    fn connected_users(&self) -> Vec<UserId> {
        self.registry.lock().by_user.keys().copied().collect()
    }

    /// Runs the node's fan-out until `cancel`: ticks, events and live bids.
    pub fn spawn(
        &self,
        store: Store,
        markets: &Markets,
        trades: Trades,
        events: &EventBus,
        cancel: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let (hub, mut ticks, stop) = (self.clone(), markets.subscribe(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    received = ticks.recv() => match received {
                        Ok(tick) => hub.prices.publish(price_frame(&tick)).await,
                        // Clients see the gap in seq and fill it over the API (as the web app
                        // does); here it is counted, since it means the fan-out fell behind.
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            metrics::counter!("ws_ticks_skipped_total").increment(missed);
                            tracing::warn!(missed, "the price fan-out fell behind: ticks skipped");
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = stop.cancelled() => {
                        // Upgraded connections are not the HTTP server's to wait for: they end
                        // here, each told why.
                        hub.close_everyone("server shutting down");
                        return;
                    }
                }
            }
        }));
        // Events and live bids in one task, so that what a user is sent keeps the order of the
        // commits: a bid read before a trade ended is sent before the ending, never after it.
        let (hub, mut received, stop) = (self.clone(), events.subscribe(), cancel);
        tasks.push(tokio::spawn(async move {
            let mut bids = tokio::time::interval(BID_INTERVAL);
            // After a slow round, the next waits its full second rather than following at once.
            bids.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let event = tokio::select! {
                    event = received.recv() => event,
                    _ = bids.tick() => {
                        hub.refresh_bids(&trades).await;
                        continue;
                    }
                    () = stop.cancelled() => return,
                };
                match event {
                    Ok(event) => hub.deliver(&store, &trades, event).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        hub.deliver(&store, &trades, Event::Resync).await
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }));
        tasks
    }

    async fn deliver(&self, store: &Store, trades: &Trades, event: Event) {
        match event {
            Event::Trade(trade) => {
                let two_factor_required = trades.terms().require_admin_totp;
                self.to_admins(two_factor_required, || trade_frame("admin_trade_update", &trade, None));
                if !self.is_connected(trade.user_id) {
                    return;
                }
                self.to_user(trade.user_id, || trade_frame("trade_update", &trade, None));
                if let Some(notice) = result_notice(&trade) {
                    self.to_user(trade.user_id, || frame("notification", notice));
                }
                self.send_balance(store, trade.user_id).await;
            }
            Event::Balance(user) => self.send_balance(store, user).await,
            Event::Notice(notice) => self.to_everyone(&frame("notification", notice)),
            Event::UserNotice(user, notice) => self.to_user(user, || frame("notification", notice)),
            Event::SignedOff(user, why) => self.close_user(user, why.reason()),
            Event::SettingsChanged => {}
            Event::Resync => {
                self.close_admins_after_missed_events();
                self.close_signed_off_sockets(store);
                // Events may have been missed: each user is told so, then sent their state
                // again, the balance and every open trade. A trade a client still shows as open
                // but that is not among them has ended; the API tells how.
                let users = self.connected_users();
                for &user in &users {
                    self.to_user(user, || {
                        frame("resync", json!({ "reason": "events may have been missed" }))
                    });
                    self.send_balance(store, user).await;
                }
                match trades.open_with_bids(&users.into_iter().collect()).await {
                    Ok(open) => {
                        for (trade, bid) in open {
                            self.to_user(trade.user_id, || trade_frame("trade_update", &trade, bid));
                        }
                    }
                    Err(error) => tracing::warn!(%error, "reading the open trades to resend"),
                }
            }
        }
    }

    async fn send_balance(&self, store: &Store, user: UserId) {
        if !self.is_connected(user) {
            return;
        }
        match store.wallet_state(user, Utc::now()).await {
            Ok(state) => self.to_user(user, || balance_frame(&state)),
            Err(error) => tracing::warn!(%error, "reading a balance to push"),
        }
    }

    /// Pushes the live bid of every connected user's open trades, at most once a second.
    async fn refresh_bids(&self, trades: &Trades) {
        let users = self.connected_users().into_iter().collect();
        match trades.live_bids(&users).await {
            Ok(bids) => {
                for (trade, bid) in bids {
                    self.bid_to_user(trade.user_id, || trade_frame("trade_update", &trade, Some(bid)));
                }
            }
            Err(error) => tracing::warn!(%error, "computing live bids"),
        }
    }
}

/// The notification a user gets when one of their trades ends.
fn result_notice(trade: &TradeRecord) -> Option<Notice> {
    use fairtick_core::trade::{TradeResult, TradeStatus};
    let stake = trade.stake;
    let payout = trade.payout?;
    let (level, title) = match (trade.status, trade.result) {
        (TradeStatus::Settled, Some(TradeResult::Win)) => ("success", "Trade won"),
        (TradeStatus::Settled, Some(TradeResult::Lose)) => ("info", "Trade lost"),
        (TradeStatus::Settled, Some(TradeResult::Tie)) => ("info", "Trade tied: stake refunded"),
        (TradeStatus::Sold, _) => ("info", "Trade sold"),
        (TradeStatus::Void, _) => ("warning", "Trade void: stake refunded"),
        _ => return None,
    };
    let message = format!(
        "{} {} {}s, stake {stake}: {payout} back (virtual VUSD)",
        trade.symbol,
        trade.direction,
        trade.duration_ms / 1_000
    );
    Some(Notice { level: level.to_owned(), title: title.to_owned(), message, trade_id: Some(trade.id) })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn outlet() -> (Arc<Outlet>, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        (Outlet::new(listener.accept().await.unwrap().0), client)
    }

    fn signing_in(user: i64, admin: bool, outlet: &Arc<Outlet>, checked: SignOffMark) -> SignIn {
        let session = Arc::from("token id");
        SignIn { user: UserId(user), session, admin, two_factor: true, outlet: outlet.clone(), checked }
    }

    /// Signs `user` in on `outlet`, greeted with `greeting`.
    fn sign_in(
        hub: &Hub,
        user: i64,
        admin: bool,
        outlet: &Arc<Outlet>,
        greeting: &WireFrame,
    ) -> Registration {
        hub.register(signing_in(user, admin, outlet, hub.sign_off_mark()), greeting, None).unwrap()
    }

    async fn read(client: &mut tokio::net::TcpStream, frames: &[WireFrame]) {
        use tokio::io::AsyncReadExt;
        let expected = frames.concat();
        let mut received = vec![0; expected.len()];
        client.read_exact(&mut received).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&received), String::from_utf8_lossy(&expected));
    }

    #[tokio::test]
    async fn a_suspension_closes_every_connection_of_the_user_and_no_other() {
        let hub = Hub::new();
        let ((first, _a), (second, _b), (other, _c)) = (outlet().await, outlet().await, outlet().await);
        // One of them has bytes waiting behind a socket that is not read: closing still works.
        let big = text_frame(&"x".repeat(64 * 1024));
        while first.stalled_since().is_none() {
            first.send(&big);
        }
        let hello = frame("authenticated", json!({}));
        let _registrations = [
            sign_in(&hub, 7, false, &first, &hello),
            sign_in(&hub, 7, false, &second, &hello),
            sign_in(&hub, 8, false, &other, &hello),
        ];
        hub.close_user(UserId(7), "account suspended");
        assert_eq!(first.closing(), Some("account suspended"));
        assert_eq!(second.closing(), Some("account suspended"));
        assert_eq!(other.closing(), None);
    }

    #[tokio::test]
    async fn a_token_checked_before_a_sign_off_is_not_registered_after_it() {
        let hub = Hub::new();
        let (outlet, _client) = outlet().await;
        let hello = frame("authenticated", json!({}));
        let earlier = sign_in(&hub, 7, true, &outlet, &hello);
        let checked = hub.sign_off_mark();
        // The role changes between the check of a new token and the socket's registration.
        hub.close_user(UserId(7), "role changed: sign in again");
        let refused = hub.register(signing_in(7, true, &outlet, checked), &hello, Some(earlier));
        assert_eq!(refused.err(), Some("role changed: sign in again"));
        let registry = hub.registry.lock();
        assert!(registry.admins.is_empty() && registry.by_user.is_empty(), "the replaced one is gone too");
        drop(registry);
        // Others are not affected, and a token checked after it is.
        assert!(hub.register(signing_in(8, false, &outlet, checked), &hello, None).is_ok());
        let _signed_in_again = sign_in(&hub, 7, false, &outlet, &hello);
    }

    #[tokio::test]
    async fn missed_events_close_the_admin_sockets_and_refuse_sign_ins_checked_before() {
        let hub = Hub::new();
        let ((admin, _a), (user, _u)) = (outlet().await, outlet().await);
        let hello = frame("authenticated", json!({}));
        let _registrations = [sign_in(&hub, 1, true, &admin, &hello), sign_in(&hub, 2, false, &user, &hello)];
        let checked = hub.sign_off_mark();
        hub.close_admins_after_missed_events();
        assert_eq!(admin.closing(), Some(MISSED_EVENTS));
        assert_eq!(user.closing(), None, "a user gets only their own events, sent again");
        let refused = hub.register(signing_in(3, false, &user, checked), &hello, None);
        assert_eq!(refused.err(), Some(MISSED_EVENTS));
        assert!(hub.register(signing_in(3, false, &user, hub.sign_off_mark()), &hello, None).is_ok());
    }

    #[tokio::test]
    async fn forgotten_sign_offs_still_refuse_the_sign_ins_checked_before_them() {
        let hub = Hub::new();
        let (outlet, _client) = outlet().await;
        let hello = frame("authenticated", json!({}));
        let checked = hub.sign_off_mark();
        for user in 0..=REMEMBERED_SIGN_OFFS as i64 {
            hub.close_user(UserId(user), "signed out: sign in again");
        }
        assert_eq!(hub.registry.lock().last_sign_off.len(), 1, "the others are forgotten");
        let refused = hub.register(signing_in(1, false, &outlet, checked), &hello, None);
        assert_eq!(refused.err(), Some(MISSED_EVENTS));
        assert!(hub.register(signing_in(1, false, &outlet, hub.sign_off_mark()), &hello, None).is_ok());
    }

    #[tokio::test]
    async fn a_users_events_wait_for_the_state_read_at_sign_in_then_follow_in_order() {
        let hub = Hub::new();
        let (outlet, mut client) = outlet().await;
        let hello = frame("authenticated", json!({}));
        let registration = sign_in(&hub, 7, false, &outlet, &hello);
        // A trade ended while the state was being read, which shows it active.
        let ended = frame("trade_update", json!({"status": "settled"}));
        hub.to_user(UserId(7), || ended.clone());
        let state = frame("trade_update", json!({"status": "active"}));
        outlet.send(&state);
        registration.release();
        let later = frame("balance_update", json!({"balance": "1.00"}));
        hub.to_user(UserId(7), || later.clone());
        read(&mut client, &[hello, state, ended, later]).await;
    }

    #[tokio::test]
    async fn signing_in_again_holds_the_events_at_once_and_sends_each_once() {
        use tokio::io::AsyncReadExt;
        let hub = Hub::new();
        let (outlet, mut client) = outlet().await;
        let (hello, again) =
            (frame("authenticated", json!({"n": 0})), frame("authenticated", json!({"n": 1})));
        let first = sign_in(&hub, 7, true, &outlet, &hello);
        first.release();
        let before = frame("trade_update", json!({"n": 1}));
        hub.to_user(UserId(7), || before.clone());
        let second =
            hub.register(signing_in(7, true, &outlet, hub.sign_off_mark()), &again, Some(first)).unwrap();
        let during = frame("trade_update", json!({"n": 2}));
        hub.to_user(UserId(7), || during.clone());
        // Everyone's trades are not held (they would fill the queue), only sent after the greeting.
        let anyones = frame("admin_trade_update", json!({"n": 3}));
        hub.to_admins(true, || anyones.clone());
        // Live bids are not kept: a newer one follows within a second.
        hub.bid_to_user(UserId(7), || frame("trade_update", json!({"bid": "1.00"})));
        let state = frame("balance_update", json!({"balance": "1.00"}));
        outlet.send(&state);
        second.release();
        read(&mut client, &[hello, before, again, anyones, state, during]).await;
        let mut more = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(100), client.read(&mut more)).await;
        assert!(read.is_err(), "nothing comes twice");
    }

    #[tokio::test]
    async fn announcements_reach_every_open_connection_until_it_ends() {
        use tokio::io::AsyncReadExt;
        let hub = Hub::new();
        let ((first, mut a), (second, mut b)) = (outlet().await, outlet().await);
        let presence = hub.present(first.clone());
        let _second = hub.present(second);
        assert_eq!(hub.open_connections(), 2);
        drop(presence);
        assert_eq!(hub.open_connections(), 1);
        let notice = frame("notification", serde_json::json!({"title": "hello"}));
        hub.to_everyone(&notice);
        let mut received = vec![0; notice.len()];
        b.read_exact(&mut received).await.unwrap();
        assert_eq!(received, notice);
        let mut nothing = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(100), a.read(&mut nothing)).await;
        assert!(read.is_err(), "a connection that ended gets no announcement");
    }
}
