//! The price feed: one task per market that produces its ticks, epoch after epoch.
//!
//! Before an epoch's first tick its commitment is stored (and so published), with its planned
//! end and the id and commitment of the next epoch, whose seed is drawn then: so a trade that
//! reaches into the next epoch was accepted after that epoch's prices were fixed. Seeds are
//! kept only sealed until their epoch ends and they are revealed. After a crash or a takeover
//! the interrupted epoch is closed and revealed and the announced one continues from the last
//! stored tick, so `seq` never skips or repeats. Only the node holding the market's leadership
//! produces.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fairtick_core::fairness::{EpochSpec, Seed};
use fairtick_core::price::Price;
use rand::RngCore;
use tokio_util::sync::CancellationToken;

use super::TickBus;
use super::catalog::{MarketDefinition, MarketSource};
use super::pacer::Pacer;
use crate::services::events::EventBus;
use crate::services::sealing::DataKey;
use crate::store::{Appended, EpochRecord, Leadership, NewEpoch, Store, StoreError, TickRecord};

/// A tick as it travels inside the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tick {
    pub symbol: Arc<str>,
    pub seq: i64,
    pub epoch_id: i64,
    pub ts: i64,
    pub price: Price,
}

/// How the feeds run.
#[derive(Clone, Debug)]
pub struct FeedSettings {
    /// How long a simulated market's epoch lasts (`MarketDefinition::ticks_per_epoch`).
    pub epoch_length: Duration,
    /// Ticks older than this are deleted at each epoch's end.
    pub retention: Duration,
    /// How often a node that does not produce a market tries to take it over.
    pub takeover_poll: Duration,
}

/// Where a market's next tick continues from.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    next_seq: i64,
    price: Price,
    last_ts: i64,
}

/// Runs one market's feed until `cancel`: waits for leadership, produces, and starts over if
/// leadership or the database is lost.
pub async fn run(
    market: Arc<MarketDefinition>,
    store: Store,
    key: DataKey,
    bus: TickBus,
    events: EventBus,
    settings: FeedSettings,
    cancel: CancellationToken,
) {
    while !cancel.is_cancelled() {
        let leadership = tokio::select! {
            leadership = store.try_lead_market(&market.symbol) => leadership,
            () = cancel.cancelled() => return,
        };
        match leadership {
            Ok(Some(mut leadership)) => {
                tracing::info!(symbol = %market.symbol, "producing ticks");
                let producer = Producer {
                    market: &market,
                    store: &store,
                    key: &key,
                    bus: &bus,
                    events: &events,
                    settings: &settings,
                };
                if let Err(error) = producer.produce(&mut leadership, &cancel).await {
                    tracing::warn!(symbol = %market.symbol, %error, "the feed stopped; retrying");
                }
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(symbol = %market.symbol, %error, "could not take the feed's lead"),
        }
        tokio::select! {
            () = tokio::time::sleep(settings.takeover_poll) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Why a feed stopped producing (it starts over).
#[derive(Debug, thiserror::Error)]
enum Stopped {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("its timer failed: {0}")]
    Timer(#[from] std::io::Error),
}

struct Producer<'a> {
    market: &'a MarketDefinition,
    store: &'a Store,
    key: &'a DataKey,
    bus: &'a TickBus,
    events: &'a EventBus,
    settings: &'a FeedSettings,
}

impl Producer<'_> {
    async fn produce(&self, leadership: &mut Leadership, cancel: &CancellationToken) -> Result<(), Stopped> {
        let (mut cursor, mut announced) = self.resume().await?;
        let symbol: Arc<str> = Arc::from(self.market.symbol.as_str());
        let mut pacer = Pacer::start(&self.market.symbol, self.market.tick_interval_ms)?;
        loop {
            let Epoch { id: epoch_id, prices, seed, started_at, next } =
                self.start_epoch(cursor, announced).await?;
            announced = Some(next);
            // Not a time that fell due while the epoch was being stored: its first tick comes
            // after its commitment.
            pacer.skip_passed();
            let epoch_start = cursor.next_seq;
            let mut cancelled = false;
            let mut refused = None;
            'epoch: for price in prices {
                let tick = loop {
                    let due = tokio::select! {
                        due = pacer.tick() => due?,
                        () = cancel.cancelled() => { cancelled = true; break 'epoch; }
                    };
                    let tick = Tick {
                        symbol: symbol.clone(),
                        seq: cursor.next_seq,
                        epoch_id,
                        // After the last tick and the epoch's start even if the wall clock was
                        // set back meanwhile, or the pacer's thread announced a time late.
                        ts: due.max(cursor.last_ts + 1).max(started_at),
                        price,
                    };
                    self.bus.about_to_show(&self.market.symbol, tick.ts);
                    let record = TickRecord {
                        symbol: self.market.symbol.clone(),
                        seq: tick.seq,
                        epoch_id,
                        ts: tick.ts,
                        price,
                    };
                    match self.store.append_tick(&record).await? {
                        Appended::Stored => break tick,
                        // Its insert stalled, or this clock is behind the database's: the slot
                        // is missed, and the same tick waits for the next. Said once per tick.
                        Appended::Late { horizon } if refused != Some(tick.seq) => {
                            refused = Some(tick.seq);
                            tracing::warn!(
                                symbol = %self.market.symbol, seq = tick.seq, ts = tick.ts, horizon,
                                "a tick came after a trade was voided for want of it; it waits for a later due time"
                            );
                        }
                        Appended::Late { .. } => {}
                    }
                };
                cursor = Cursor { next_seq: tick.seq + 1, price, last_ts: tick.ts };
                metrics::counter!("ticks_produced_total", "symbol" => self.market.symbol.clone())
                    .increment(1);
                self.events.publish_tick(&tick);
                self.bus.send(tick);
                if (cursor.next_seq - epoch_start) % 64 == 0 {
                    leadership.check().await?;
                }
            }
            let now = Utc::now().timestamp_millis();
            // Stopped before its first tick, it fixed no price: withdrawn, it starts again as
            // announced (see `resume`).
            let withdrawn =
                cursor.next_seq == epoch_start && self.store.withdraw_empty_epoch(epoch_id).await?;
            if !withdrawn {
                let revealed = seed.as_ref().map(Seed::to_hex);
                self.store.close_epoch(epoch_id, cursor.next_seq - 1, revealed.as_deref(), now).await?;
            }
            let horizon = now - i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX);
            self.store.prune_ticks(&self.market.symbol, horizon).await?;
            if cancelled {
                return Ok(());
            }
        }
    }

    /// Closes and reveals any epoch a previous producer left open, and finds where to continue
    /// and the epoch the last one announced.
    async fn resume(&self) -> Result<(Cursor, Option<Next>), StoreError> {
        self.store.add_void_horizon(&self.market.symbol).await?;
        let now = Utc::now().timestamp_millis();
        for epoch in self.store.open_epochs(&self.market.symbol).await? {
            // Stopped before its first tick: withdrawn, so that it starts again as announced
            // (closing it would move on to the epoch it announced, one its predecessor did not).
            if self.store.withdraw_empty_epoch(epoch.id).await? {
                tracing::info!(symbol = %self.market.symbol, epoch = epoch.id, "withdrew an epoch interrupted before its first tick");
                continue;
            }
            let end_seq = self.store.epoch_last_seq(epoch.id).await?.unwrap_or(epoch.start_seq - 1);
            let revealed = self.unseal(&epoch, epoch.sealed_seed.as_deref())?.as_ref().map(Seed::to_hex);
            self.store.close_epoch(epoch.id, end_seq, revealed.as_deref(), now).await?;
            tracing::info!(symbol = %self.market.symbol, epoch = epoch.id, "closed and revealed an interrupted epoch");
        }
        let cursor = match self.store.last_tick(&self.market.symbol).await? {
            Some(last) => Cursor { next_seq: last.seq + 1, price: last.price, last_ts: last.ts },
            None => Cursor { next_seq: 1, price: self.initial_price(), last_ts: 0 },
        };
        let latest = self.store.latest_epoch(&self.market.symbol).await?;
        Ok((cursor, latest.and_then(|latest| self.announced_by(&latest))))
    }

    /// The epoch `latest` announced, if this market can run it: with the same engine
    /// parameters (they are inputs of every price, and were published with the announcement),
    /// and with its seed, unless that cannot be unsealed (a new data key): then a new epoch
    /// starts, and trades across the boundary are not proven fair, rather than no tick ever.
    fn announced_by(&self, latest: &EpochRecord) -> Option<Next> {
        let announced = latest.announced.as_ref()?;
        if (latest.kind.as_str(), latest.volatility_bp, latest.tick_interval_ms) != self.engine_params() {
            tracing::warn!(symbol = %self.market.symbol, epoch = latest.id, "the market's parameters changed: its announced epoch is not run");
            return None;
        }
        let seed = match self.unseal(latest, announced.next_sealed_seed.as_deref()) {
            Ok(seed) => seed,
            Err(error) => {
                tracing::warn!(symbol = %self.market.symbol, epoch = latest.id, %error, "the announced seed cannot be unsealed: a new epoch starts");
                return None;
            }
        };
        Some(Next { id: announced.next_id, commitment: announced.next_commitment.clone(), seed })
    }

    /// What an epoch of this market records of the engine: its kind, volatility (basis
    /// points) and tick interval (ms).
    fn engine_params(&self) -> (&'static str, i64, i64) {
        match &self.market.source {
            MarketSource::Simulated { params, .. } => {
                ("simulated", i64::from(params.volatility_bp()), i64::from(params.tick_interval_ms()))
            }
            MarketSource::Replay(_) => ("replay", 0, i64::from(self.market.tick_interval_ms)),
        }
    }

    /// A seed stored sealed in `epoch`'s row.
    fn unseal(&self, epoch: &EpochRecord, sealed: Option<&str>) -> Result<Option<Seed>, StoreError> {
        let Some(sealed) = sealed else { return Ok(None) };
        let bytes =
            self.key.open(sealed).map_err(|e| StoreError::Corrupt(format!("epoch {}: {e}", epoch.id)))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("epoch {}: a sealed seed is not 32 bytes", epoch.id)))?;
        Ok(Some(Seed::from_bytes(bytes)))
    }

    fn initial_price(&self) -> Price {
        match &self.market.source {
            MarketSource::Simulated { initial_price, .. } => *initial_price,
            MarketSource::Replay(replay) => replay.prices[0],
        }
    }

    /// Stores a new epoch (and so publishes its commitment and its announcement of the next).
    /// It is the one `announced` if that suits the market's source: a simulated market needs
    /// the announced seed, a replay the commitment to its file. Otherwise (the market changed,
    /// or nothing was announced) it is a new one, and trades across the boundary are not
    /// proven fair.
    async fn start_epoch(&self, cursor: Cursor, announced: Option<Next>) -> Result<Epoch, StoreError> {
        let now = Utc::now().timestamp_millis();
        let (kind, volatility_bp, tick_interval_ms) = self.engine_params();
        match &self.market.source {
            MarketSource::Simulated { params, .. } => {
                let (id, seed) = match announced {
                    Some(Next { id, seed: Some(seed), commitment })
                        if seed.commitment().to_string() == commitment =>
                    {
                        (Some(id), seed)
                    }
                    _ => (None, fresh_seed()),
                };
                let next_seed = fresh_seed();
                let commitment = seed.commitment().to_string();
                let next_commitment = next_seed.commitment().to_string();
                let left = self.market.ticks_per_epoch(self.settings.epoch_length);
                let ids = self
                    .store
                    .create_epoch(&NewEpoch {
                        id,
                        symbol: &self.market.symbol,
                        kind,
                        volatility_bp,
                        tick_interval_ms,
                        commitment: &commitment,
                        sealed_seed: Some(&self.key.seal(seed.as_bytes())),
                        start_price: cursor.price,
                        start_seq: cursor.next_seq,
                        started_at: now,
                        planned_end_seq: planned_end(cursor.next_seq, left),
                        next_commitment: &next_commitment,
                        next_sealed_seed: Some(&self.key.seal(next_seed.as_bytes())),
                    })
                    .await?;
                let spec = EpochSpec {
                    market: params.clone(),
                    epoch_id: ids.id,
                    seed: seed.clone(),
                    start_price: cursor.price,
                };
                let prices = EpochPrices::Simulated { spec, next_index: 0, prev: cursor.price, left };
                let next = Next { id: ids.next_id, commitment: next_commitment, seed: Some(next_seed) };
                Ok(Epoch { id: ids.id, prices, seed: Some(seed), started_at: now, next })
            }
            MarketSource::Replay(replay) => {
                let id = announced.filter(|next| next.commitment == replay.digest).map(|next| next.id);
                let left = self.market.ticks_per_epoch(self.settings.epoch_length);
                let ids = self
                    .store
                    .create_epoch(&NewEpoch {
                        id,
                        symbol: &self.market.symbol,
                        kind,
                        volatility_bp,
                        tick_interval_ms,
                        commitment: &replay.digest,
                        sealed_seed: None,
                        start_price: cursor.price,
                        start_seq: cursor.next_seq,
                        started_at: now,
                        planned_end_seq: planned_end(cursor.next_seq, left),
                        next_commitment: &replay.digest,
                        next_sealed_seed: None,
                    })
                    .await?;
                let prices = EpochPrices::Replay { prices: replay.prices.clone(), next: 0 };
                let next = Next { id: ids.next_id, commitment: replay.digest.clone(), seed: None };
                Ok(Epoch { id: ids.id, prices, seed: None, started_at: now, next })
            }
        }
    }
}

/// 32 bytes from the operating system's cryptographic random source.
fn fresh_seed() -> Seed {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Seed::from_bytes(bytes)
}

/// The seq of the last of `ticks` ticks from `start_seq`.
fn planned_end(start_seq: i64, ticks: u64) -> i64 {
    start_seq.saturating_add(i64::try_from(ticks).unwrap_or(i64::MAX)).saturating_sub(1)
}

/// The epoch an epoch announced: its id and commitment, and its seed if it is simulated.
struct Next {
    id: i64,
    commitment: String,
    seed: Option<Seed>,
}

/// An epoch just stored, whose ticks are to be produced.
struct Epoch {
    id: i64,
    prices: EpochPrices,
    /// The seed to reveal at the end; none for a replay.
    seed: Option<Seed>,
    /// When its commitment was stored (ms): no tick of it is older.
    started_at: i64,
    /// The epoch it announced.
    next: Next,
}

/// The prices of one epoch, in tick order.
enum EpochPrices {
    Simulated { spec: EpochSpec, next_index: u64, prev: Price, left: u64 },
    Replay { prices: Vec<Price>, next: usize },
}

impl Iterator for EpochPrices {
    type Item = Price;

    fn next(&mut self) -> Option<Price> {
        match self {
            EpochPrices::Simulated { spec, next_index, prev, left } => {
                if *left == 0 {
                    return None;
                }
                let price = fairtick_core::fairness::tick_price(
                    &spec.market,
                    &spec.seed,
                    spec.epoch_id,
                    *next_index,
                    *prev,
                );
                *left -= 1;
                *next_index += 1;
                *prev = price;
                Some(price)
            }
            EpochPrices::Replay { prices, next } => {
                let price = prices.get(*next).copied();
                *next += 1;
                price
            }
        }
    }
}
