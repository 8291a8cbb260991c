//! What happened, for whoever is listening: trade changes, balance changes, announcements and
//! suspensions. Published only after the database transaction behind them committed.
//!
//! Each node has a local bus. On PostgreSQL every event (and every tick) is also sent with
//! `NOTIFY`, carrying ids rather than rows (payloads are small and bounded), and each node's
//! listener re-reads the rows and republishes them locally, so a client connected to node B
//! sees what node A did. After the listener reconnects, clients are resynchronised.

use std::sync::Arc;

use fairtick_core::UserId;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::market::Markets;
use super::market::feed::Tick;
use crate::store::{Backend, Store, TradeRecord, USERS_CHANNEL};

/// Events buffered per listener inside the process.
const CAPACITY: usize = 8_192;
/// The PostgreSQL channel events travel on.
pub const CHANNEL: &str = "fairtick_events";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// `info`, `success`, `warning` or `error`.
    pub level: String,
    pub title: String,
    pub message: String,
    /// The trade a result notice is about, so that a page that said so itself can skip it.
    #[serde(default, rename = "tradeId", skip_serializing_if = "Option::is_none")]
    pub trade_id: Option<i64>,
}

/// Why a user's live connections end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignOff {
    Suspended,
    /// A new role: an admin's connections would otherwise keep getting every user's trades.
    RoleChanged,
    /// One of the user's sessions was closed; the others' clients reconnect and sign in again.
    LoggedOut,
}

impl SignOff {
    /// The close reason the client is given.
    pub fn reason(self) -> &'static str {
        match self {
            SignOff::Suspended => "account suspended",
            SignOff::RoleChanged => "role changed: sign in again",
            SignOff::LoggedOut => "signed out: sign in again",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Event {
    /// A trade was opened, entered or ended.
    Trade(TradeRecord),
    /// A user's balances changed.
    Balance(UserId),
    /// An announcement to everyone connected.
    Notice(Notice),
    /// A notification for one user.
    UserNotice(UserId, Notice),
    /// What the user's connections were signed in with no longer holds: they must end.
    SignedOff(UserId, SignOff),
    /// The trading terms changed: every node reloads them.
    SettingsChanged,
    /// Live state may have been missed (e.g. a listener reconnected): resend it.
    Resync,
}

/// What crosses nodes: ids and small values only.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    Trade {
        node: String,
        id: i64,
    },
    Balance {
        node: String,
        user: i64,
    },
    Notice {
        node: String,
        notice: Notice,
    },
    UserNotice {
        node: String,
        user: i64,
        notice: Notice,
    },
    SignedOff {
        node: String,
        user: i64,
        why: SignOff,
    },
    Settings {
        node: String,
    },
    Tick {
        node: String,
        symbol: String,
        seq: i64,
        ts: i64,
        price: i64,
        epoch: i64,
    },
    /// Notifications of `node` were lost (a `NOTIFY` failed): the others resync their clients.
    Lost {
        node: String,
    },
}

/// Notifications sent in one statement at most.
const NOTIFY_BATCH: usize = 1_000;

#[derive(Clone)]
pub struct EventBus {
    local: broadcast::Sender<Event>,
    store: Store,
    /// Identifies this process in notifications, so it ignores its own.
    node: Arc<str>,
    /// On PostgreSQL, the payloads waiting for the notifier task. Unbounded so that publishing
    /// never waits or drops: the notifier sends whatever has queued in one statement, so it
    /// keeps up with any rate the database can commit.
    outgoing: Option<mpsc::UnboundedSender<String>>,
}

impl EventBus {
    pub fn new(store: Store) -> EventBus {
        let (local, _) = broadcast::channel(CAPACITY);
        let node: String = hex::encode(rand::random::<[u8; 8]>());
        let outgoing = (store.backend() == Backend::Postgres).then(|| {
            let (outgoing, queued) = mpsc::unbounded_channel();
            tokio::spawn(send_notifications(store.clone(), queued, node.clone()));
            outgoing
        });
        EventBus { local, store, node: node.into(), outgoing }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.local.subscribe()
    }

    /// Publishes on this node at once, and to the other nodes through the database.
    pub fn publish(&self, event: Event) {
        let wire = match &event {
            Event::Trade(trade) => Some(Wire::Trade { node: self.node.to_string(), id: trade.id }),
            Event::Balance(user) => Some(Wire::Balance { node: self.node.to_string(), user: user.0 }),
            Event::Notice(notice) => {
                Some(Wire::Notice { node: self.node.to_string(), notice: notice.clone() })
            }
            Event::UserNotice(user, notice) => {
                Some(Wire::UserNotice { node: self.node.to_string(), user: user.0, notice: notice.clone() })
            }
            Event::SignedOff(user, why) => {
                Some(Wire::SignedOff { node: self.node.to_string(), user: user.0, why: *why })
            }
            Event::SettingsChanged => Some(Wire::Settings { node: self.node.to_string() }),
            Event::Resync => None,
        };
        let _ = self.local.send(event);
        if let Some(wire) = wire {
            self.send_wire(wire);
        }
    }

    /// Tells the other nodes about a tick this node produced.
    pub fn publish_tick(&self, tick: &Tick) {
        self.send_wire(Wire::Tick {
            node: self.node.to_string(),
            symbol: tick.symbol.to_string(),
            seq: tick.seq,
            ts: tick.ts,
            price: tick.price.units(),
            epoch: tick.epoch_id,
        });
    }

    fn send_wire(&self, wire: Wire) {
        if let Some(outgoing) = &self.outgoing {
            let _ = outgoing.send(serde_json::to_string(&wire).expect("events serialise"));
        }
    }

    /// On PostgreSQL, listens for the other nodes' events, ticks and changes to accounts until
    /// `cancel`, reconnecting (and asking for a resync) when the connection drops.
    pub async fn run_listener(self, markets: Markets, cancel: CancellationToken) {
        if self.store.backend() != Backend::Postgres {
            return;
        }
        let mut first = true;
        while !cancel.is_cancelled() {
            match self.store.listen(&[CHANNEL, USERS_CHANNEL]).await {
                Ok(mut listener) => {
                    if !first {
                        // What changed while no one listened is unknown: sessions are read again.
                        self.store.forget_all_sessions();
                        let _ = self.local.send(Event::Resync);
                    }
                    first = false;
                    loop {
                        tokio::select! {
                            // Not `recv`: it reconnects by itself and never says so, and what was
                            // sent meanwhile would be missed without a resync.
                            received = listener.try_recv() => match received {
                                Ok(Some(notification)) if notification.channel() == USERS_CHANNEL => {
                                    self.store.hear_user_changed(notification.payload());
                                }
                                Ok(Some(notification)) => self.receive(notification.payload(), &markets).await,
                                Ok(None) => {
                                    tracing::warn!("the event listener lost its connection and is back");
                                    self.store.forget_all_sessions();
                                    let _ = self.local.send(Event::Resync);
                                }
                                Err(error) => {
                                    tracing::warn!(%error, "the event listener lost its connection");
                                    self.store.forget_all_sessions();
                                    break;
                                }
                            },
                            () = cancel.cancelled() => return,
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "could not listen for events"),
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    async fn receive(&self, payload: &str, markets: &Markets) {
        let wire: Wire = match serde_json::from_str(payload) {
            Ok(wire) => wire,
            Err(error) => return tracing::warn!(%error, "an event from another node is malformed"),
        };
        let from_self = |node: &str| node == &*self.node;
        let event = match wire {
            Wire::Trade { node, .. }
            | Wire::Balance { node, .. }
            | Wire::Notice { node, .. }
            | Wire::UserNotice { node, .. }
            | Wire::SignedOff { node, .. }
            | Wire::Settings { node }
            | Wire::Tick { node, .. }
            | Wire::Lost { node }
                if from_self(&node) =>
            {
                return;
            }
            Wire::Trade { id, .. } => match self.store.trade(id).await {
                Ok(Some(trade)) => Event::Trade(trade),
                Ok(None) => return,
                Err(error) => return tracing::warn!(%error, "reading a trade another node changed"),
            },
            Wire::Balance { user, .. } => Event::Balance(UserId(user)),
            Wire::Notice { notice, .. } => Event::Notice(notice),
            Wire::UserNotice { user, notice, .. } => Event::UserNotice(UserId(user), notice),
            Wire::SignedOff { user, why, .. } => Event::SignedOff(UserId(user), why),
            Wire::Settings { .. } => Event::SettingsChanged,
            Wire::Lost { .. } => Event::Resync,
            Wire::Tick { symbol, seq, ts, price, epoch, .. } => {
                let Ok(price) = fairtick_core::price::Price::from_units(price) else { return };
                markets.inject(Tick { symbol: symbol.into(), seq, ts, price, epoch_id: epoch });
                return;
            }
        };
        let _ = self.local.send(event);
    }
}

/// Sends the queued notifications, as many at a time as have queued, until the bus is gone.
/// After a batch that could not be sent, the next one starts by saying so.
async fn send_notifications(store: Store, mut queued: mpsc::UnboundedReceiver<String>, node: String) {
    let mut batch = Vec::new();
    let mut lost = false;
    while queued.recv_many(&mut batch, NOTIFY_BATCH).await > 0 {
        if lost {
            let wire = Wire::Lost { node: node.clone() };
            batch.insert(0, serde_json::to_string(&wire).expect("events serialise"));
        }
        lost = match store.notify(CHANNEL, &batch).await {
            Ok(()) => false,
            Err(error) => {
                tracing::warn!(%error, count = batch.len(), "could not notify the other nodes");
                true
            }
        };
        batch.clear();
    }
}
