//! The realtime hub of one node: who is connected, and what each connection is sent.
//!
//! Every tick is serialised once into a shared frame that all subscribers' connections filter
//! by symbol; per-user events (trades, balances, notices) go only to that user's connections,
//! and every trade event also to admins. A connection whose queue is full is told to close:
//! a slow client never slows the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chrono::Utc;
use fairtick_core::UserId;
use fairtick_core::wallet::WalletState;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::events::{Event, EventBus, Notice};
use super::market::Markets;
use super::market::feed::Tick;
use super::trades::Trades;
use crate::store::{Store, TradeRecord};

/// Shared frames (ticks, announcements) buffered per connection before it counts as slow.
pub const SHARED_CAPACITY: usize = 512;
/// How often live bids are refreshed.
const BID_INTERVAL: Duration = Duration::from_secs(1);

/// A serialised tick, shared by every connection subscribed to its market.
#[derive(Clone, Debug)]
pub struct PriceFrame {
    pub symbol: Arc<str>,
    pub seq: i64,
    pub text: Utf8Bytes,
}

/// How the hub reaches one connection: its queue of frames, and a way to close it with a reason
/// that works even when the queue is full.
#[derive(Clone, Debug)]
pub struct Outlet {
    pub frames: mpsc::Sender<Utf8Bytes>,
    pub close: Arc<watch::Sender<Option<&'static str>>>,
}

impl Outlet {
    /// Queues a frame; a full queue means the client is not keeping up, so it is closed.
    fn offer(&self, frame: &Utf8Bytes) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.frames.try_send(frame.clone()) {
            self.close.send_replace(Some("slow consumer"));
        }
    }
}

struct Connection {
    id: u64,
    admin: bool,
    outlet: Outlet,
}

/// Each market's tick channel, by symbol.
type PriceChannels = HashMap<Arc<str>, broadcast::Sender<Arc<PriceFrame>>>;

#[derive(Default)]
struct Registry {
    by_user: HashMap<UserId, Vec<Connection>>,
}

/// The node's hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    registry: Arc<Mutex<Registry>>,
    /// One channel per market, so a tick wakes only the connections subscribed to its market.
    prices: Arc<std::sync::RwLock<PriceChannels>>,
    notices: broadcast::Sender<Utf8Bytes>,
    next_id: Arc<AtomicU64>,
    open_connections: Arc<AtomicUsize>,
}

/// `{type, data}`, the envelope of every message both ways.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: T,
}

pub fn frame<T: Serialize>(kind: &str, data: T) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::to_string(&Envelope { kind, data }).expect("messages serialise"))
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
    Arc::new(PriceFrame { symbol: tick.symbol.clone(), seq: tick.seq, text: frame("price_update", data) })
}

pub fn balance_frame(state: &WalletState) -> Utf8Bytes {
    frame("balance_update", crate::http::dto::BalanceDto::from(state))
}

pub fn trade_frame(kind: &str, trade: &TradeRecord, bid: Option<fairtick_core::Money>) -> Utf8Bytes {
    let mut dto = crate::http::trades::TradeDto::from(trade);
    dto.bid = bid.map(|b| b.to_string());
    frame(kind, serde_json::json!({ "trade": dto }))
}

/// A registered connection; dropping it unregisters.
pub struct Registration {
    hub: Hub,
    user: UserId,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = self.hub.registry.lock();
        if let Some(list) = registry.by_user.get_mut(&self.user) {
            list.retain(|c| c.id != self.id);
            if list.is_empty() {
                registry.by_user.remove(&self.user);
            }
        }
    }
}

/// Counts a connection while it lives.
pub struct Presence(Arc<AtomicUsize>);

impl Drop for Presence {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        let (notices, _) = broadcast::channel(64);
        Hub {
            registry: Arc::default(),
            prices: Arc::default(),
            notices,
            next_id: Arc::new(AtomicU64::new(1)),
            open_connections: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The ticks of `symbol` from now on (the caller checked that the market exists).
    pub fn prices(&self, symbol: &str) -> broadcast::Receiver<Arc<PriceFrame>> {
        if let Some(sender) = self.prices.read().unwrap_or_else(|e| e.into_inner()).get(symbol) {
            return sender.subscribe();
        }
        let mut senders = self.prices.write().unwrap_or_else(|e| e.into_inner());
        senders.entry(Arc::from(symbol)).or_insert_with(|| broadcast::channel(SHARED_CAPACITY).0).subscribe()
    }

    fn send_price(&self, frame: Arc<PriceFrame>) {
        if let Some(sender) = self.prices.read().unwrap_or_else(|e| e.into_inner()).get(&*frame.symbol) {
            // No subscriber yet is not an error: nobody is watching this market.
            let _ = sender.send(frame);
        }
    }

    pub fn notices(&self) -> broadcast::Receiver<Utf8Bytes> {
        self.notices.subscribe()
    }

    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }

    pub fn present(&self) -> Presence {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        Presence(self.open_connections.clone())
    }

    /// Routes `user`'s events (and, for admins, everyone's trades) to `tx`.
    pub fn register(&self, user: UserId, admin: bool, outlet: Outlet) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.registry.lock().by_user.entry(user).or_default().push(Connection { id, admin, outlet });
        Registration { hub: self.clone(), user, id }
    }

    /// Sends to one user's connections; a full queue closes that connection instead.
    fn to_user(&self, user: UserId, message: &Utf8Bytes) {
        let registry = self.registry.lock();
        for connection in registry.by_user.get(&user).into_iter().flatten() {
            connection.outlet.offer(message);
        }
    }

    fn to_admins(&self, message: &Utf8Bytes) {
        let registry = self.registry.lock();
        for connection in registry.by_user.values().flatten().filter(|c| c.admin) {
            connection.outlet.offer(message);
        }
    }

    fn close_user(&self, user: UserId, reason: &'static str) {
        let registry = self.registry.lock();
        for connection in registry.by_user.get(&user).into_iter().flatten() {
            connection.outlet.close.send_replace(Some(reason));
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
                        Ok(tick) => hub.send_price(price_frame(&tick)),
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = stop.cancelled() => return,
                }
            }
        }));
        let (hub, mut received, stop, events_store) =
            (self.clone(), events.subscribe(), cancel.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = received.recv() => event,
                    () = stop.cancelled() => return,
                };
                match event {
                    Ok(event) => hub.deliver(&events_store, event).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        hub.deliver(&events_store, Event::Resync).await
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }));
        let (hub, stop) = (self.clone(), cancel);
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(BID_INTERVAL);
            loop {
                tokio::select! {
                    _ = every.tick() => hub.refresh_bids(&trades).await,
                    () = stop.cancelled() => return,
                }
            }
        }));
        tasks
    }

    async fn deliver(&self, store: &Store, event: Event) {
        match event {
            Event::Trade(trade) => {
                self.to_user(trade.user_id, &trade_frame("trade_update", &trade, None));
                self.to_admins(&trade_frame("admin_trade_update", &trade, None));
                if let Some(notice) = result_notice(&trade) {
                    self.to_user(trade.user_id, &frame("notification", notice));
                }
                self.send_balance(store, trade.user_id).await;
            }
            Event::Balance(user) => self.send_balance(store, user).await,
            Event::Notice(notice) => {
                let _ = self.notices.send(frame("notification", notice));
            }
            Event::UserNotice(user, notice) => self.to_user(user, &frame("notification", notice)),
            Event::Suspended(user) => self.close_user(user, "account suspended"),
            Event::SettingsChanged => {}
            Event::Resync => {
                for user in self.connected_users() {
                    self.send_balance(store, user).await;
                }
            }
        }
    }

    async fn send_balance(&self, store: &Store, user: UserId) {
        if !self.registry.lock().by_user.contains_key(&user) {
            return;
        }
        match store.wallet_state(user, Utc::now()).await {
            Ok(state) => self.to_user(user, &balance_frame(&state)),
            Err(error) => tracing::warn!(%error, "reading a balance to push"),
        }
    }

    /// Pushes the live bid of every connected user's open trades, at most once a second.
    async fn refresh_bids(&self, trades: &Trades) {
        let users = self.connected_users().into_iter().collect();
        match trades.live_bids(&users).await {
            Ok(bids) => {
                for (trade, bid) in bids {
                    self.to_user(trade.user_id, &trade_frame("trade_update", &trade, Some(bid)));
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
    Some(Notice { level: level.to_owned(), title: title.to_owned(), message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_closes_the_connection_instead_of_dropping_frames_silently() {
        let (frames, _queue) = mpsc::channel(1);
        let (close, closing) = watch::channel(None);
        let outlet = Outlet { frames, close: Arc::new(close) };
        outlet.offer(&Utf8Bytes::from_static("first"));
        assert_eq!(*closing.borrow(), None);
        outlet.offer(&Utf8Bytes::from_static("second"));
        assert_eq!(*closing.borrow(), Some("slow consumer"));
    }

    #[test]
    fn a_suspension_closes_every_connection_of_the_user_even_with_a_full_queue() {
        let hub = Hub::new();
        let (frames, _queue) = mpsc::channel(1);
        frames.try_send(Utf8Bytes::from_static("fills the queue")).unwrap();
        let (close, closing) = watch::channel(None);
        let _registration = hub.register(UserId(7), false, Outlet { frames, close: Arc::new(close) });
        hub.close_user(UserId(7), "account suspended");
        assert_eq!(*closing.borrow(), Some("account suspended"));
    }
}
