//! `GET /ws`: the one WebSocket. Messages are JSON `{type, data}` both ways.
//!
//! Each connection has a reader task (client messages, checked and rate-limited) and a writer
//! task (the only one that writes to the socket) joined by a small command channel. The writer
//! owns the subscriptions, forwards the shared price frames of subscribed markets, the user's
//! events and announcements, sends heartbeats and closes slow or silent peers with a reason.
//! Buffers are small on purpose: an idle connection costs a few kilobytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use chrono::Utc;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::AppState;
use super::error::ApiError;
use super::extract::presented_token;
use crate::services::market::feed::Tick;
use crate::services::realtime::{
    Outlet, PriceFrame, Registration, balance_frame, frame, price_frame, trade_frame,
};
use crate::services::tokens::Claims;

/// Bytes buffered per connection for reading and writing.
pub const BUFFER_BYTES: usize = 4 * 1024;
/// Largest client message.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Per-user messages queued for one connection before it counts as slow.
const QUEUE: usize = 256;
/// Markets one connection may watch.
pub const MAX_SUBSCRIPTIONS: usize = 20;
/// Client messages allowed per second (burst) before they are refused.
const MESSAGES_PER_SECOND: u32 = 20;
/// Refused messages after which the connection is closed.
const MAX_STRIKES: u32 = 50;
/// Ticks replayed at most for one `fromSeq` catch-up.
pub const MAX_REPLAY: u32 = 1_000;
const HEARTBEAT: Duration = Duration::from_secs(15);
/// A peer silent for this long (no message, no pong) is dead.
const SILENCE: Duration = Duration::from_secs(45);
/// A write that takes longer than this means the peer is not reading: a healthy client's
/// kernel accepts a frame at once.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

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
        (status = 401, description = "The token offered is not valid", body = super::error::ErrorBody),
    ))]
pub async fn upgrade(
    State(state): State<AppState>,
    OfferedToken(token): OfferedToken,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let claims = match token.as_deref() {
        Some(token) => Some(state.accounts.authenticate(token).await?),
        None => None,
    };
    Ok(ws
        .read_buffer_size(BUFFER_BYTES)
        .write_buffer_size(BUFFER_BYTES)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| connection(socket, state, claims)))
}

/// What the reader tells the writer.
enum Command {
    Send(Utf8Bytes),
    /// Markets to watch, with the seq to replay after (catch-up) where given. Boxed, like
    /// `Authenticated`, to keep every queued command (and each connection's queue) small.
    Subscribe(Box<(Vec<String>, HashMap<String, i64>)>),
    Unsubscribe(Vec<String>),
    /// Sign in (or again): register for the user's events and resend their state.
    Authenticated(Box<Claims>),
    Seen,
    Close(&'static str),
}

async fn connection(socket: WebSocket, state: AppState, claims: Option<Claims>) {
    let _presence = state.hub.present();
    let (sink, stream) = socket.split();
    let (commands, command_rx) = mpsc::channel::<Command>(64);
    if let Some(claims) = claims {
        let _ = commands.send(Command::Authenticated(Box::new(claims))).await;
    }
    let reader = tokio::spawn(read_loop(stream, state.clone(), commands));
    write_loop(sink, state, command_rx).await;
    reader.abort();
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

fn error_frame(code: &str, message: impl Into<String>) -> Utf8Bytes {
    frame("error", json!({ "code": code, "message": message.into() }))
}

async fn read_loop(
    mut stream: futures::stream::SplitStream<WebSocket>,
    state: AppState,
    commands: mpsc::Sender<Command>,
) {
    let mut allowance = MESSAGES_PER_SECOND;
    let mut window = Instant::now();
    let mut strikes = 0u32;
    while let Some(Ok(message)) = stream.next().await {
        if commands.send(Command::Seen).await.is_err() {
            return;
        }
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Binary(_) => {
                let _ =
                    commands.send(Command::Send(error_frame("unsupported", "send JSON text messages"))).await;
                continue;
            }
        };
        if window.elapsed() >= Duration::from_secs(1) {
            window = Instant::now();
            allowance = MESSAGES_PER_SECOND;
        }
        let reply = if allowance == 0 {
            Some(error_frame("rate_limited", format!("at most {MESSAGES_PER_SECOND} messages per second")))
        } else {
            allowance -= 1;
            // Boxed: rare and large, it would otherwise make every idle connection's task bigger.
            Box::pin(handle(&text, &state, &commands)).await
        };
        if let Some(error) = reply {
            strikes += 1;
            let _ = commands.send(Command::Send(error)).await;
            if strikes >= MAX_STRIKES {
                let _ = commands.send(Command::Close("too many invalid messages")).await;
                return;
            }
        }
    }
    let _ = commands.send(Command::Close("client went away")).await;
}

/// Handles one client message; `Some(error)` when it was refused.
async fn handle(text: &str, state: &AppState, commands: &mpsc::Sender<Command>) -> Option<Utf8Bytes> {
    let Ok(message) = serde_json::from_str::<ClientMessage>(text) else {
        return Some(error_frame(
            "malformed_message",
            "messages are JSON objects {\"type\": …, \"data\": …}",
        ));
    };
    let command = match message.kind.as_str() {
        "ping" => Command::Send(frame("pong", json!({}))),
        "subscribe" | "unsubscribe" => {
            let data: SubscribeData = match serde_json::from_value(message.data) {
                Ok(data) => data,
                Err(e) => return Some(error_frame("invalid_data", format!("{}: {e}", message.kind))),
            };
            if let Some(unknown) = data.symbols.iter().find(|s| state.markets.market(s).is_err()) {
                return Some(error_frame("unknown_symbol", format!("{unknown:?} is not a market")));
            }
            if message.kind == "unsubscribe" {
                Command::Unsubscribe(data.symbols)
            } else {
                if let Some(symbol) = data.from_seq.keys().find(|s| !data.symbols.contains(s)) {
                    return Some(error_frame(
                        "invalid_data",
                        format!("fromSeq names {symbol:?}, which is not subscribed"),
                    ));
                }
                Command::Subscribe(Box::new((data.symbols, data.from_seq)))
            }
        }
        "auth" => {
            let data: AuthData = match serde_json::from_value(message.data) {
                Ok(data) => data,
                Err(e) => return Some(error_frame("invalid_data", format!("auth: {e}"))),
            };
            match state.accounts.authenticate(&data.token).await {
                Ok(claims) => Command::Authenticated(Box::new(claims)),
                Err(e) => return Some(error_frame("unauthenticated", e.to_string())),
            }
        }
        other => return Some(error_frame("unknown_type", format!("unknown message type {other:?}"))),
    };
    let _ = commands.send(command).await;
    None
}

async fn write_loop(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    state: AppState,
    mut commands: mpsc::Receiver<Command>,
) {
    // The subscribed markets' ticks, one channel per market.
    let mut feeds: StreamMap<String, BroadcastStream<Arc<PriceFrame>>> = StreamMap::new();
    let mut notices = state.hub.notices();
    let (frames, mut events) = mpsc::channel::<Utf8Bytes>(QUEUE);
    let (close, mut closing) = watch::channel::<Option<&'static str>>(None);
    let outlet = Outlet { frames, close: Arc::new(close) };
    let mut registration: Option<Registration> = None;
    // Market → last seq sent, so a replayed tick is never sent twice or out of order.
    let mut subscribed: HashMap<String, i64> = HashMap::new();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut last_seen = Instant::now();
    let close_reason: &'static str = loop {
        // Biased, ticks first: a tick is what almost every wake-up is for, and polling the
        // other five sources on each of them showed in the profile (watch and interval polls,
        // queue pops). Nothing starves: at most one tick per market per interval is ready.
        let message = tokio::select! {
            biased;
            Some((_, price)) = feeds.next(), if !feeds.is_empty() => match price {
                Ok(price) => match subscribed.get_mut(&*price.symbol) {
                    Some(last) if price.seq > *last => { *last = price.seq; Message::Text(price.text.clone()) }
                    _ => continue,
                },
                Err(BroadcastStreamRecvError::Lagged(_)) => break "slow consumer",
            },
            command = commands.recv() => match command {
                None => break "client went away",
                Some(Command::Seen) => { last_seen = Instant::now(); continue; }
                Some(Command::Send(text)) => Message::Text(text),
                Some(Command::Subscribe(subscription)) => {
                    let (symbols, from_seq) = *subscription;
                    let fresh: Vec<&String> = symbols.iter().filter(|s| !subscribed.contains_key(*s)).collect();
                    if subscribed.len() + fresh.len() > MAX_SUBSCRIPTIONS {
                        Message::Text(error_frame(
                            "too_many_subscriptions",
                            format!("at most {MAX_SUBSCRIPTIONS} markets per connection"),
                        ))
                    } else {
                        for symbol in &symbols {
                            if !feeds.contains_key(symbol) {
                                feeds.insert(symbol.clone(), BroadcastStream::new(state.hub.prices(symbol)));
                            }
                            let last = subscribed.entry(symbol.clone()).or_insert(0);
                            if let Some(after) = from_seq.get(symbol) {
                                *last = (*last).max(*after);
                            }
                        }
                        // Subscribed before reading: a tick produced after the read is already
                        // queued for this connection, one produced before it is in the read.
                        if Box::pin(replay(&mut sink, &state, &from_seq, &mut subscribed)).await.is_err() {
                            break "write failed";
                        }
                        Message::Text(frame("subscribed", json!({ "symbols": symbols })))
                    }
                }
                Some(Command::Unsubscribe(symbols)) => {
                    for symbol in &symbols {
                        subscribed.remove(symbol);
                        feeds.remove(symbol);
                    }
                    Message::Text(frame("unsubscribed", json!({ "symbols": symbols })))
                }
                Some(Command::Authenticated(claims)) => {
                    registration = Some(state.hub.register(claims.user(), claims.role.is_admin(), outlet.clone()));
                    if Box::pin(send_state(&mut sink, &state, &claims)).await.is_err() {
                        break "write failed";
                    }
                    continue;
                }
                Some(Command::Close(reason)) => break reason,
            },
            outgoing = events.recv() => match outgoing {
                Some(text) => Message::Text(text),
                None => continue,
            },
            _ = closing.changed() => break closing.borrow().unwrap_or("closed by the server"),
            notice = notices.recv() => match notice {
                Ok(text) => Message::Text(text),
                Err(broadcast::error::RecvError::Lagged(_)) => break "slow consumer",
                Err(broadcast::error::RecvError::Closed) => break "server shutting down",
            },
            _ = heartbeat.tick() => {
                if last_seen.elapsed() > SILENCE {
                    break "heartbeat timeout";
                }
                Message::Ping(Default::default())
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break "write failed",
            Err(_) => break "slow consumer",
        }
    };
    drop(registration);
    let code = if close_reason == "slow consumer" { close_code::AGAIN } else { close_code::POLICY };
    let close = Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(close_reason) }));
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close)).await;
}

/// Sends the ticks missed since each `fromSeq` (at most [`MAX_REPLAY`] per market), oldest first.
async fn replay(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    state: &AppState,
    from_seq: &HashMap<String, i64>,
    subscribed: &mut HashMap<String, i64>,
) -> Result<(), axum::Error> {
    for (symbol, after) in from_seq {
        let ticks = match state.markets.ticks(symbol, None, None, Some(*after), Some(MAX_REPLAY)).await {
            Ok(ticks) => ticks,
            Err(e) => {
                sink.send(Message::Text(error_frame("replay_failed", e.to_string()))).await?;
                continue;
            }
        };
        for tick in ticks {
            let last = subscribed.entry(symbol.clone()).or_insert(0);
            if tick.seq <= *last {
                continue;
            }
            *last = tick.seq;
            let tick = Tick {
                symbol: Arc::from(tick.symbol.as_str()),
                seq: tick.seq,
                ts: tick.ts,
                price: tick.price,
                epoch_id: tick.epoch_id,
            };
            sink.send(Message::Text(price_frame(&tick).text.clone())).await?;
        }
    }
    Ok(())
}

/// On (re)authentication: the balance and every open trade, in full.
async fn send_state(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    state: &AppState,
    claims: &Claims,
) -> Result<(), axum::Error> {
    sink.send(Message::Text(frame(
        "authenticated",
        json!({ "userId": claims.user_id, "role": claims.role }),
    )))
    .await?;
    if let Ok(wallet) = state.store.wallet_state(claims.user(), Utc::now()).await {
        sink.send(Message::Text(balance_frame(&wallet))).await?;
    }
    if let Ok(views) = state.trades.active(claims.user()).await {
        for view in views {
            sink.send(Message::Text(trade_frame("trade_update", &view.trade, view.bid))).await?;
        }
    }
    Ok(())
}
