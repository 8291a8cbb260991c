//! `GET /ws`: the one WebSocket. Messages are JSON `{type, data}` both ways.
//!
//! Each connection is one task: it reads the client's messages (checked and rate-limited),
//! answers them, sends heartbeats, flushes what its socket could not take at once and closes
//! slow or silent peers with a reason. Ticks and events do not pass through it: the hub writes
//! them straight to the connection's [`Outlet`]. Buffers are small on purpose: an idle
//! connection costs a few kilobytes.

mod upgrade;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use chrono::Utc;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use self::upgrade::WebSocketRequest;
use super::AppState;
use super::error::ApiError;
use super::extract::{ClientIp, presented_token};
use crate::services::market::feed::Tick;
use crate::services::realtime::outlet::{SocketIo, close_frame, ping_frame};
use crate::services::realtime::prices::Subscription;
use crate::services::realtime::{
    Outlet, Registration, SignIn, SignOffMark, WireFrame, balance_frame, frame, price_frame, trade_frame,
};
use crate::services::tokens::Claims;
use crate::store::UserRecord;

/// Bytes read from the socket at once.
pub const BUFFER_BYTES: usize = 4 * 1024;
/// Largest client message.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Markets one connection may watch.
pub const MAX_SUBSCRIPTIONS: usize = 20;
/// Client messages allowed per second (burst) before they are refused.
const MESSAGES_PER_SECOND: u32 = 20;
/// Refused messages within [`STRIKE_WINDOW`] after which the connection is closed.
const MAX_STRIKES: u32 = 50;
/// Signing in again on one connection, at most this often: each sign-in reads the user's state.
const AUTH_INTERVAL: Duration = Duration::from_secs(5);
/// Refusals count for this long: a client that errs now and then over hours is not cut off.
const STRIKE_WINDOW: Duration = Duration::from_secs(60);
/// Ticks replayed at most for one `fromSeq` catch-up.
pub const MAX_REPLAY: u32 = 1_000;
/// Replayed ticks written out before the next are queued (about 13 KB).
const REPLAY_PART: usize = 100;
const HEARTBEAT: Duration = Duration::from_secs(15);
/// A peer silent for this long (no message, no pong) is dead.
const SILENCE: Duration = Duration::from_secs(45);
/// Bytes waiting this long without the socket taking any mean the peer is not reading: a
/// healthy client's kernel takes a frame at once.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the close frame may take to leave before the socket is dropped anyway.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The token offered at upgrade: `?token=`, `Authorization` or the session cookie.
pub struct OfferedToken(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for OfferedToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let from_query = parts
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")))
            .map(str::to_owned);
        Ok(OfferedToken(from_query.or_else(|| presented_token(parts).map(str::to_owned))))
    }
}

/// Upgrade to the realtime feed. Anonymous clients may watch prices; a token (query, header,
/// cookie or an `auth` message) adds the user's trades, balances and notifications.
#[utoipa::path(get, path = "/ws", tag = "realtime",
    params(("token" = Option<String>, Query, description = "A login token (or use the cookie, or an `auth` message)")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket handshake", body = super::error::ErrorBody),
        (status = 401, description = "The token offered is not valid", body = super::error::ErrorBody),
        (status = 429, description = "This address has as many connections open as it may", body = super::error::ErrorBody),
    ))]
pub async fn upgrade(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    OfferedToken(token): OfferedToken,
    request: WebSocketRequest,
) -> Result<Response, ApiError> {
    let Some(slot) = state.sockets_per_ip.admit(ip) else {
        let cap = state.sockets_per_ip.cap();
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            format!("at most {cap} connections may be open from one address"),
        ));
    };
    let signed_in = match token.as_deref() {
        Some(token) => {
            // Taken before the check: a sign-off after it refuses the registration.
            let checked = state.hub.sign_off_mark();
            Some((state.accounts.signed_in(token).await?, checked))
        }
        None => None,
    };
    Ok(request.accept(move |socket, early| async move {
        let _slot = slot;
        connection(socket, early, state, signed_in).await
    }))
}

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SubscribeData {
    symbols: Vec<String>,
    #[serde(default)]
    from_seq: HashMap<String, i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthData {
    token: String,
}

fn error_frame(code: &str, message: impl Into<String>) -> WireFrame {
    frame("error", json!({ "code": code, "message": message.into() }))
}

async fn connection(
    socket: TcpStream,
    early: Vec<u8>,
    state: AppState,
    signed_in: Option<((Claims, UserRecord), SignOffMark)>,
) {
    // Each frame is written as one segment the moment it is ready: a feed, not a bulk stream.
    let _ = socket.set_nodelay(true);
    let outlet = Outlet::new(socket);
    let _presence = state.hub.present(outlet.clone());
    let config = WebSocketConfig::default()
        .read_buffer_size(BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let mut socket =
        WebSocketStream::from_partially_read(SocketIo(outlet.clone()), early, Role::Server, Some(config))
            .await;
    let mut session = Session::new(state, outlet.clone());
    if let Some(((claims, user), checked)) = signed_in {
        session.authenticate(&claims, &user, checked).await;
    }
    let mut heartbeat = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
    let mut last_seen = Instant::now();
    let reason: &'static str = loop {
        if let Some(reason) = outlet.closing() {
            break reason;
        }
        let stalled_since = outlet.stalled_since();
        tokio::select! {
            message = socket.next() => {
                last_seen = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(reason) = Box::pin(session.on_text(text.as_str())).await {
                            break reason;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        if let Some(reason) = session.refuse(error_frame("unsupported", "send JSON text messages")) {
                            break reason;
                        }
                    }
                    // Pings are answered by tungstenite itself; a pong only shows the peer lives.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Err(WsError::Capacity(_))) => {
                        outlet.send(&error_frame(
                            "message_too_large",
                            format!("messages are at most {MAX_MESSAGE_BYTES} bytes"),
                        ));
                        break "message too large";
                    }
                    Some(Err(WsError::Protocol(_) | WsError::Utf8(_))) => break "protocol error",
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break "client went away",
                }
            }
            () = outlet.woken() => {}
            // A socket signed in with a token ends with it.
            () = tokio::time::sleep_until(session.expires.unwrap_or_else(Instant::now)), if session.expires.is_some() => {
                break "session expired";
            }
            writable = outlet.writable(), if stalled_since.is_some() => {
                if writable.is_err() || outlet.flush().is_err() {
                    break "write failed";
                }
            }
            () = tokio::time::sleep_until(stalled_since.unwrap_or_else(Instant::now) + WRITE_TIMEOUT),
                if stalled_since.is_some() => break "slow consumer",
            _ = heartbeat.tick() => {
                if last_seen.elapsed() > SILENCE {
                    break "heartbeat timeout";
                }
                outlet.send(&ping_frame());
            }
        }
    };
    drop(session);
    let code = match reason {
        "slow consumer" => CloseCode::Again,
        "client went away" => CloseCode::Normal,
        "server shutting down" => CloseCode::Away,
        "message too large" => CloseCode::Size,
        "protocol error" => CloseCode::Protocol,
        _ => CloseCode::Policy,
    };
    outlet.send_last(&close_frame(code, reason));
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Ok(false) = outlet.flush() {
            if outlet.writable().await.is_err() {
                return;
            }
        }
    })
    .await;
}

/// What one connection has asked for: its markets, its user, and how many messages it sent.
struct Session {
    state: AppState,
    outlet: Arc<Outlet>,
    /// Market → subscription; dropping one stops its ticks.
    subscriptions: HashMap<String, Subscription>,
    registration: Option<Registration>,
    /// When the token the connection signed in with expires.
    expires: Option<Instant>,
    allowance: u32,
    window: Instant,
    /// When an `auth` message was last taken.
    last_auth: Option<Instant>,
    strikes: u32,
    strikes_since: Instant,
}

impl Session {
    fn new(state: AppState, outlet: Arc<Outlet>) -> Session {
        Session {
            state,
            outlet,
            subscriptions: HashMap::new(),
            registration: None,
            expires: None,
            allowance: MESSAGES_PER_SECOND,
            window: Instant::now(),
            last_auth: None,
            strikes: 0,
            strikes_since: Instant::now(),
        }
    }

    /// Handles one text message; `Some(reason)` when the connection must close.
    async fn on_text(&mut self, text: &str) -> Option<&'static str> {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.allowance = MESSAGES_PER_SECOND;
        }
        if self.allowance == 0 {
            return self.refuse(error_frame(
                "rate_limited",
                format!("at most {MESSAGES_PER_SECOND} messages per second"),
            ));
        }
        self.allowance -= 1;
        match self.handle(text).await {
            Ok(()) => None,
            Err(error) => self.refuse(error),
        }
    }

    /// Sends a refusal; `Some(reason)` once the client has been refused too often.
    fn refuse(&mut self, error: WireFrame) -> Option<&'static str> {
        self.outlet.send(&error);
        if self.strikes_since.elapsed() >= STRIKE_WINDOW {
            self.strikes_since = Instant::now();
            self.strikes = 0;
        }
        self.strikes += 1;
        (self.strikes >= MAX_STRIKES).then_some("too many invalid messages")
    }

    async fn handle(&mut self, text: &str) -> Result<(), WireFrame> {
        let Ok(message) = serde_json::from_str::<ClientMessage>(text) else {
            return Err(error_frame(
                "malformed_message",
                "messages are JSON objects {\"type\": …, \"data\": …}",
            ));
        };
        match message.kind.as_str() {
            "ping" => self.outlet.send(&frame("pong", json!({}))),
            "subscribe" | "unsubscribe" => {
                let data: SubscribeData = serde_json::from_value(message.data)
                    .map_err(|e| error_frame("invalid_data", format!("{}: {e}", message.kind)))?;
                if let Some(unknown) = data.symbols.iter().find(|s| self.state.markets.market(s).is_err()) {
                    return Err(error_frame("unknown_symbol", format!("{unknown:?} is not a market")));
                }
                if message.kind == "unsubscribe" {
                    for symbol in &data.symbols {
                        self.subscriptions.remove(symbol);
                    }
                    self.outlet.send(&frame("unsubscribed", json!({ "symbols": data.symbols })));
                } else {
                    self.subscribe(data).await?;
                }
            }
            "auth" => {
                let data: AuthData = serde_json::from_value(message.data)
                    .map_err(|e| error_frame("invalid_data", format!("auth: {e}")))?;
                if self.last_auth.is_some_and(|at| at.elapsed() < AUTH_INTERVAL) {
                    let every = AUTH_INTERVAL.as_secs();
                    return Err(error_frame("rate_limited", format!("sign in at most once every {every} s")));
                }
                self.last_auth = Some(Instant::now());
                let checked = self.state.hub.sign_off_mark();
                let (claims, user) = self
                    .state
                    .accounts
                    .signed_in(&data.token)
                    .await
                    .map_err(|e| error_frame("unauthenticated", e.to_string()))?;
                self.authenticate(&claims, &user, checked).await;
            }
            other => return Err(error_frame("unknown_type", format!("unknown message type {other:?}"))),
        }
        Ok(())
    }

    async fn subscribe(&mut self, data: SubscribeData) -> Result<(), WireFrame> {
        let SubscribeData { symbols, from_seq } = data;
        if let Some(symbol) = from_seq.keys().find(|s| !symbols.contains(s)) {
            return Err(error_frame(
                "invalid_data",
                format!("fromSeq names {symbol:?}, which is not subscribed"),
            ));
        }
        let fresh = symbols.iter().filter(|s| !self.subscriptions.contains_key(*s)).count();
        if self.subscriptions.len() + fresh > MAX_SUBSCRIPTIONS {
            return Err(error_frame(
                "too_many_subscriptions",
                format!("at most {MAX_SUBSCRIPTIONS} markets per connection"),
            ));
        }
        for (symbol, &after) in &from_seq {
            self.latest_seq(symbol, after).await?;
        }
        for symbol in &symbols {
            let after = from_seq.get(symbol).copied();
            match self.subscriptions.entry(symbol.clone()) {
                // Held from before the read: a tick produced after it waits for the catch-up,
                // one produced before it is in the read.
                Entry::Occupied(watching) => {
                    if let Some(after) = after {
                        watching.get().subscriber().hold(after);
                    }
                }
                // Held from its first tick on, so that no live tick can pass the catch-up.
                Entry::Vacant(fresh) => {
                    fresh.insert(self.state.hub.watch(symbol, self.outlet.clone(), after));
                }
            }
        }
        for (symbol, &after) in &from_seq {
            self.replay(symbol, after).await;
        }
        self.outlet.send(&frame("subscribed", json!({ "symbols": symbols })));
        Ok(())
    }

    /// The seq of `symbol`'s latest tick, checking that `after` (a `fromSeq`) is one of its.
    async fn latest_seq(&self, symbol: &str, after: i64) -> Result<i64, WireFrame> {
        let latest = self
            .state
            .store
            .last_tick(symbol)
            .await
            .map_err(|e| error_frame("replay_failed", e.to_string()))?
            .map_or(0, |tick| tick.seq);
        if after < 0 {
            return Err(error_frame("invalid_data", format!("fromSeq {after} for {symbol:?} is negative")));
        }
        if after > latest {
            // Seqs from another history (a database started over): the client must start over.
            return Err(error_frame(
                "seq_ahead",
                format!("fromSeq {after} for {symbol:?} is past its latest tick, {latest}"),
            ));
        }
        Ok(latest)
    }

    /// Sends the ticks of `symbol` after `after`, at most the newest [`MAX_REPLAY`] of them
    /// (a `replay_truncated` message says where they start when more were missed), then goes
    /// live. Sent a part at a time, each written out before the next: a long catch-up is not
    /// a slow consumer.
    async fn replay(&mut self, symbol: &str, after: i64) {
        // The latest read again, now that live ticks are held: one stored since `subscribe`
        // checked `after` is in the catch-up (when it is cut, not only among the held ones,
        // with a gap before them).
        let Some(sent) = self.subscriptions.get(symbol).map(|s| s.subscriber().sent_up_to()) else { return };
        let ticks = match self.latest_seq(symbol, after).await {
            // Only what was not sent already is read: a subscription asked again for the same
            // catch-up (as often as messages are allowed) reads nothing more.
            Ok(latest) if latest <= sent => Ok(Vec::new()),
            Ok(latest) => {
                let from = sent.max(latest - i64::from(MAX_REPLAY));
                if from > sent {
                    let data = json!({ "symbol": symbol, "fromSeq": after, "firstSeq": from + 1 });
                    self.outlet.send(&frame("replay_truncated", data));
                }
                let read = self.state.markets.ticks(symbol, None, None, Some(from), Some(MAX_REPLAY)).await;
                read.map_err(|e| error_frame("replay_failed", e.to_string()))
            }
            Err(refused) => Err(refused),
        };
        let Some(subscription) = self.subscriptions.get(symbol) else { return };
        match ticks {
            Ok(ticks) => {
                for part in ticks.chunks(REPLAY_PART) {
                    for tick in part {
                        let tick = Tick {
                            symbol: Arc::from(tick.symbol.as_str()),
                            seq: tick.seq,
                            ts: tick.ts,
                            price: tick.price,
                            epoch_id: tick.epoch_id,
                        };
                        subscription.subscriber().replay(&price_frame(&tick));
                    }
                    if !self.outlet.drained(WRITE_TIMEOUT).await {
                        break;
                    }
                }
            }
            Err(refused) => self.outlet.send(&refused),
        }
        subscription.subscriber().release();
    }

    /// Signs in (or again): registers for the user's events (an admin's also for everyone's
    /// trades, as the admin API allows), then sends their state in full, read after the
    /// registration, and only then the events held meanwhile: an event that came during the
    /// read cannot be overtaken by a state older than it.
    async fn authenticate(&mut self, claims: &Claims, user: &UserRecord, checked: SignOffMark) {
        let (state, outlet) = (&self.state, &self.outlet);
        let left = (claims.expires_at() - Utc::now()).to_std().unwrap_or_default();
        self.expires = Some(Instant::now() + left);
        let greeting = frame("authenticated", json!({ "userId": claims.user_id, "role": claims.role }));
        let sign_in = SignIn {
            user: claims.user(),
            session: Arc::from(claims.jti.as_str()),
            admin: claims.role.is_admin(),
            two_factor: user.totp_enabled,
            outlet: outlet.clone(),
            checked,
        };
        let registered = state.hub.register(sign_in, &greeting, self.registration.take());
        let registration = match registered {
            Ok(registration) => registration,
            // Signed off while the token was being checked: closed as the sign-off would have.
            Err(reason) => return outlet.close(reason),
        };
        if let Ok(wallet) = state.store.wallet_state(claims.user(), Utc::now()).await {
            outlet.send(&balance_frame(&wallet));
        }
        if let Ok(views) = state.trades.active(claims.user()).await {
            for view in views {
                outlet.send(&trade_frame("trade_update", &view.trade, view.bid));
            }
        }
        registration.release();
        self.registration = Some(registration);
    }
}
