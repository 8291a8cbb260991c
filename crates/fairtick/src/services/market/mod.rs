//! Markets: the catalogue, the live feeds, and the history that charts and verifiers read.

pub mod catalog;
pub mod feed;
mod pacer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::events::EventBus;
use super::paging;
use super::sealing::DataKey;
use super::{Error, Result};
use crate::store::{Candle, EpochRecord, Store, TickRecord};
use catalog::MarketDefinition;
use feed::{FeedSettings, Tick};

/// Most ticks in one answer, and the default.
pub const MAX_TICKS: u32 = 5_000;
pub const DEFAULT_TICKS: u32 = 500;
/// Most candles in one answer, and the default.
pub const MAX_CANDLES: u32 = 1_000;
pub const DEFAULT_CANDLES: u32 = 300;
/// Most epochs in one page.
pub const MAX_EPOCHS: u32 = 100;
/// Most ticks served with one epoch (an epoch of 10 minutes at 10 ticks/s has 6,000).
pub const MAX_EPOCH_TICKS: u32 = 100_000;
/// Ticks buffered per subscriber inside the process before it counts as lagging.
const BUS_CAPACITY: usize = 1_024;

/// Candle widths offered to charts.
pub const CANDLE_INTERVALS: [(&str, i64); 4] =
    [("1s", 1_000), ("1m", 60_000), ("5m", 300_000), ("1h", 3_600_000)];

#[derive(Clone)]
pub struct Markets {
    store: Store,
    catalog: Arc<Vec<Arc<MarketDefinition>>>,
    bus: TickBus,
    epoch_length: Duration,
}

/// Where this node's ticks go out, and the newest tick time each market has shown here.
#[derive(Clone)]
pub struct TickBus {
    sender: broadcast::Sender<Tick>,
    shown: Arc<HashMap<String, AtomicI64>>,
}

impl TickBus {
    fn new(catalog: &[Arc<MarketDefinition>]) -> TickBus {
        let (sender, _) = broadcast::channel(BUS_CAPACITY);
        let shown = catalog.iter().map(|m| (m.symbol.clone(), AtomicI64::new(i64::MIN))).collect();
        TickBus { sender, shown: Arc::new(shown) }
    }

    /// Called before a tick can be seen anywhere (before it is stored, or passed on from
    /// another node): from then on no trade is accepted before its time.
    pub fn about_to_show(&self, symbol: &str, ts: i64) {
        if let Some(shown) = self.shown.get(symbol) {
            shown.fetch_max(ts, Ordering::AcqRel);
        }
    }

    pub fn send(&self, tick: Tick) {
        // Nobody listening is fine.
        let _ = self.sender.send(tick);
    }

    /// See [`Markets::accepted_at`].
    fn accepted_at(&self, symbol: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Nothing shown is i64::MIN, which is no time.
        let shown = DateTime::from_timestamp_millis(self.shown.get(symbol)?.load(Ordering::Acquire))?;
        Some(shown.max(now))
    }
}

/// An epoch with the ticks stored for it, for verification.
#[derive(Clone, Debug)]
pub struct EpochWithTicks {
    pub epoch: EpochRecord,
    pub ticks: Vec<TickRecord>,
}

impl Markets {
    pub fn new(store: Store, catalog: Vec<MarketDefinition>, epoch_length: Duration) -> Markets {
        let catalog: Vec<Arc<MarketDefinition>> = catalog.into_iter().map(Arc::new).collect();
        Markets { store, bus: TickBus::new(&catalog), catalog: Arc::new(catalog), epoch_length }
    }

    /// How long the feeds' epochs last: a trade must end within the epoch after the one it is
    /// accepted in for its receipt to prove it fair (docs/fairness.md §4).
    pub fn epoch_length(&self) -> Duration {
        self.epoch_length
    }

    /// When a trade on `symbol` asked for at `now` is accepted: `now`, or the time of the
    /// market's newest tick if that is later (ticks count on from the last one when a clock
    /// was set back, or run ahead on another node). Its entry, the first tick after, is then
    /// one that nobody could have seen when the trade was asked for. `None` while this node has
    /// shown no tick of the market: a trade then would come before a commitment anyone can be
    /// shown to have seen (docs/fairness.md §6), and it would have no price to be quoted at.
    pub fn accepted_at(&self, symbol: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.bus.accepted_at(symbol, now)
    }

    /// Counts each market's newest stored tick as shown: it was public before this node
    /// started, so no trade here is accepted before it, nor refused for want of a price.
    pub async fn recall_shown_ticks(&self) -> Result<()> {
        for market in self.catalog.iter() {
            if let Some(last) = self.store.last_tick(&market.symbol).await? {
                self.bus.about_to_show(&market.symbol, last.ts);
            }
        }
        Ok(())
    }

    pub fn catalog(&self) -> &[Arc<MarketDefinition>] {
        &self.catalog
    }

    pub fn market(&self, symbol: &str) -> Result<&Arc<MarketDefinition>> {
        self.catalog.iter().find(|m| m.symbol == symbol).ok_or_else(|| {
            Error::invalid("symbol", format!("{symbol:?} is not a market; see /api/market/symbols"))
        })
    }

    /// Live ticks of every market produced on this node.
    pub fn subscribe(&self) -> broadcast::Receiver<Tick> {
        self.bus.sender.subscribe()
    }

    /// Publishes a tick another node produced to this node's listeners.
    pub fn inject(&self, tick: Tick) {
        self.bus.about_to_show(&tick.symbol, tick.ts);
        self.bus.send(tick);
    }

    /// Starts one feed task per market.
    pub fn spawn_feeds(
        &self,
        key: DataKey,
        events: EventBus,
        settings: FeedSettings,
        cancel: CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        self.catalog
            .iter()
            .map(|market| {
                tokio::spawn(feed::run(
                    market.clone(),
                    self.store.clone(),
                    key.clone(),
                    self.bus.clone(),
                    events.clone(),
                    settings.clone(),
                    cancel.clone(),
                ))
            })
            .collect()
    }

    pub async fn ticks(
        &self,
        symbol: &str,
        from: Option<i64>,
        to: Option<i64>,
        after_seq: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<TickRecord>> {
        self.market(symbol)?;
        let limit = paging::limit(limit, DEFAULT_TICKS, MAX_TICKS)?;
        check_window(from, to)?;
        Ok(self.store.ticks(symbol, from, to, after_seq, limit).await?)
    }

    /// Candles of `interval` ending at `to` (default: now), at most `limit` of them.
    pub async fn candles(
        &self,
        symbol: &str,
        interval: &str,
        from: Option<i64>,
        to: Option<i64>,
        limit: Option<u32>,
        now_ms: i64,
    ) -> Result<Vec<Candle>> {
        self.market(symbol)?;
        let width =
            CANDLE_INTERVALS.iter().find(|(name, _)| *name == interval).map(|(_, ms)| *ms).ok_or_else(
                || {
                    let names: Vec<_> = CANDLE_INTERVALS.iter().map(|(n, _)| *n).collect();
                    Error::invalid("interval", format!("must be one of {}", names.join(", ")))
                },
            )?;
        let limit = i64::from(paging::limit(limit, DEFAULT_CANDLES, MAX_CANDLES)?);
        check_window(from, to)?;
        // Whole buckets only; the window never spans more than `limit` of them.
        let to = to.unwrap_or(now_ms + width).div_euclid(width) * width;
        let earliest = to - limit * width;
        let from = from.map_or(earliest, |f| f.div_euclid(width) * width).max(earliest);
        Ok(self.store.candles(symbol, width, from, to).await?)
    }

    pub async fn epochs(
        &self,
        symbol: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<(Vec<EpochRecord>, Option<String>)> {
        self.market(symbol)?;
        let limit = paging::limit(limit, 20, MAX_EPOCHS)?;
        let before = paging::cursor(cursor)?;
        Ok(paging::split(self.store.epochs(symbol, before, limit + 1).await?, limit, |e| e.id))
    }

    pub async fn epoch_with_ticks(&self, id: i64) -> Result<EpochWithTicks> {
        let epoch = self.store.epoch(id).await?.ok_or(Error::NotFound("epoch"))?;
        let ticks = self.store.epoch_ticks(id, MAX_EPOCH_TICKS).await?;
        Ok(EpochWithTicks { epoch, ticks })
    }
}

fn check_window(from: Option<i64>, to: Option<i64>) -> Result<()> {
    match (from, to) {
        (Some(from), Some(to)) if from > to => Err(Error::invalid("from", "must not be after `to`")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_trade_is_accepted_before_a_tick_already_shown() {
        let catalog = vec![Arc::new(catalog::default_markets(100).unwrap().remove(0))];
        let bus = TickBus::new(&catalog);
        let symbol = catalog[0].symbol.as_str();
        let now = DateTime::from_timestamp_millis(1_000_000).unwrap();
        assert_eq!(bus.accepted_at(symbol, now), None, "no tick shown yet: not accepted");
        bus.about_to_show(symbol, 999_000);
        assert_eq!(bus.accepted_at(symbol, now), Some(now), "ticks from before: the request's own time");
        // A clock set back: the feed's ticks count on from the last one, ahead of the clock.
        bus.about_to_show(symbol, 1_005_000);
        bus.about_to_show(symbol, 1_001_000);
        let accepted = bus.accepted_at(symbol, now).map(|t| t.timestamp_millis());
        assert_eq!(accepted, Some(1_005_000), "the newest tick shown");
        assert_eq!(bus.accepted_at("OTHER", now), None, "not a market");
    }
}
