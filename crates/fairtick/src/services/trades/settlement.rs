//! Settlement: ends every trade by the rules, from the recorded ticks, exactly once.
//!
//! A task per node keeps the open trades in memory and sleeps until something can change one
//! (a new tick, or the next feed-grace deadline), then runs [`Settlement::settle_due`], the
//! one-step function. The in-memory index is filled by a full read of the open trades at the
//! first step, and then from the event bus (trades opened, entered or ended, on any node); it
//! is read again in full after a missed event and every [`FULL_RESCAN`] as a safety net. A
//! task of its own takes the trade events off the bus as they come, so that a step that takes
//! a while does not make settlement miss events (each miss cost a full read: 0.5–0.8 s with
//! 40,000 open trades). Each step reads only the ticks since the oldest open trade of each
//! market, applies `fairtick_core::trade::verdict`, ends the decided (or voided) trades and
//! then records the new entries, in transactions of [`WRITE_CHUNK`] trades (several at once
//! where the store allows, see [`crate::store::Store::settlement_writes_at_once`]). A stale index
//! costs nothing but time: the store only ends a trade that is still active, so with several
//! nodes each trade still ends once.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fairtick_core::ledger::TransactionKind;
use fairtick_core::trade::{self, Progress, Spot, Stall, TradeStatus, Verdict};
use futures::{Stream, StreamExt, stream};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use super::Trades;
use crate::services::Result;
use crate::services::events::Event;
use crate::store::{Ending, Finish, StoreError, StoreResult, TickRecord, TradeRecord, TradeSpot, utc_day};

/// Most ticks read for one market in one step: the longest duration plus the grace period at
/// the fastest tick rate fits in half of them (`settings::check_against_markets`).
pub const MAX_TICKS_PER_STEP: u32 = 200_000;
/// How long after a deadline with no tick a trade is voided by the clock: a tick timed before
/// the deadline may still be on its way into the database, and would be refused once the
/// market's record is closed for the void (docs/fairness.md §6).
const IN_FLIGHT_MS: i64 = 1_000;
/// How often a step runs without a tick, to void trades whose feed stalled.
const IDLE_STEP: Duration = Duration::from_secs(1);
/// How often the open trades are read again in full, in case an event was lost.
const FULL_RESCAN: Duration = Duration::from_secs(10);
/// The VIP level's window: today (UTC) and the days before it, this many in all.
const VIP_WINDOW_DAYS: i64 = 30;
/// Trades entered or ended per transaction. On SQLite settlement shares the one writer with
/// trade creation: in small transactions it takes turns with the creators' batches instead of
/// making them wait for a whole step's writes. On PostgreSQL a transaction holds its users'
/// accounts until it commits, and an opening of theirs waits for it.
pub const WRITE_CHUNK: usize = 64;

/// What one step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    pub entered: usize,
    pub settled: usize,
    pub voided: usize,
}

/// What settlement hears from the bus.
enum Heard {
    /// A trade's new state, from this node or another.
    Trade(Box<TradeRecord>),
    /// Events may have been missed: the index is to be read in full.
    Missed,
}

/// The open trades this node knows of, by id.
struct OpenTrades {
    trades: BTreeMap<i64, TradeRecord>,
    heard: mpsc::UnboundedReceiver<Heard>,
    /// When the index was last read in full; `None` forces a full read.
    scanned_at: Option<Instant>,
    /// The periodic full read, running beside the steps.
    rescan: Option<Rescan>,
}

/// A full read of the open trades in the background: with 50,000 open trades it takes
/// 0.35–0.85 s, which, run inside a step, delayed every ending of that step as much.
struct Rescan {
    started: Instant,
    read: tokio::task::JoinHandle<crate::store::StoreResult<Vec<TradeRecord>>>,
    /// What was heard since the read began, to be applied again on top of it.
    heard_since: Vec<TradeRecord>,
}

impl OpenTrades {
    fn note(&mut self, trade: TradeRecord) {
        if let Some(rescan) = &mut self.rescan {
            rescan.heard_since.push(trade.clone());
        }
        note(&mut self.trades, trade);
    }
}

fn note(trades: &mut BTreeMap<i64, TradeRecord>, trade: TradeRecord) {
    if trade.status == TradeStatus::Active {
        trades.insert(trade.id, trade);
    } else {
        trades.remove(&trade.id);
    }
}

/// The open trades of a full read, brought up to date with what was heard since it began. The
/// bus delivers a trade's events in order, so the last one heard is its state; one that
/// reflects a change the read already saw changes nothing.
fn caught_up(read: Vec<TradeRecord>, heard_since: Vec<TradeRecord>) -> BTreeMap<i64, TradeRecord> {
    let mut trades = read.into_iter().map(|t| (t.id, t)).collect();
    for trade in heard_since {
        note(&mut trades, trade);
    }
    trades
}

pub struct Settlement {
    trades: Trades,
    open: Mutex<OpenTrades>,
}

impl Settlement {
    pub fn new(trades: Trades) -> Settlement {
        // Subscribed before the first full read, so no trade falls between the two.
        let events = trades.events.subscribe();
        let (hear, heard) = mpsc::unbounded_channel();
        tokio::spawn(listen(events, hear));
        let open = OpenTrades { trades: BTreeMap::new(), heard, scanned_at: None, rescan: None };
        Settlement { trades, open: Mutex::new(open) }
    }

    /// Runs until `cancel`: a step whenever a tick arrives, or a second passes without one.
    pub async fn run(self, cancel: CancellationToken) {
        let mut ticks = self.trades.markets.subscribe();
        loop {
            // A step behind a backlog can take seconds; shutdown does not wait for it. What it
            // committed stays (each chunk is its own transaction), the rest is still active in
            // the database and is found by the next start's full read.
            let stepped = tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                stepped = self.settle_due(Utc::now()) => stepped,
            };
            if let Err(error) = stepped {
                tracing::warn!(%error, "a settlement step failed; retrying");
                self.open.lock().await.scanned_at = None;
            }
            // Cancellation first here too: with ticks queued behind a long step, an unbiased
            // choice kept stepping after shutdown began (seen on PostgreSQL: minutes to stop).
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                received = ticks.recv() => match received {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                () = tokio::time::sleep(IDLE_STEP) => {}
            }
        }
    }

    /// Brings the index up to date: the events since the last step, or a full read when one
    /// was missed or it is time for one.
    async fn refresh(&self, open: &mut OpenTrades) -> Result<()> {
        while let Ok(heard) = open.heard.try_recv() {
            match heard {
                Heard::Trade(trade) => open.note(*trade),
                Heard::Missed => open.scanned_at = None,
            }
        }
        let Some(scanned_at) = open.scanned_at else {
            // A missed event: nothing in the index can be trusted until it is read again, and a
            // read begun before the miss would be thrown away.
            if let Some(rescan) = open.rescan.take() {
                rescan.read.abort();
            }
            let now = Instant::now();
            open.trades = caught_up(self.trades.store.active_trades().await?, Vec::new());
            open.scanned_at = Some(now);
            return Ok(());
        };
        match open.rescan.take() {
            Some(rescan) if rescan.read.is_finished() => match rescan.read.await {
                Ok(Ok(read)) => {
                    open.trades = caught_up(read, rescan.heard_since);
                    open.scanned_at = Some(rescan.started);
                }
                Ok(Err(error)) => tracing::warn!(%error, "the periodic read of the open trades failed"),
                Err(error) => tracing::warn!(%error, "the periodic read of the open trades stopped"),
            },
            Some(running) => open.rescan = Some(running),
            None if scanned_at.elapsed() >= FULL_RESCAN => {
                let store = self.trades.store.clone();
                open.rescan = Some(Rescan {
                    started: Instant::now(),
                    read: tokio::spawn(async move { store.active_trades().await }),
                    heard_since: Vec::new(),
                });
            }
            None => {}
        }
        Ok(())
    }

    /// One step: settles decided trades, voids trades whose feed stalled past the grace period,
    /// and records new entries. Everything is decided from stored ticks.
    #[tracing::instrument(skip_all)]
    pub async fn settle_due(&self, now: DateTime<Utc>) -> Result<StepReport> {
        let store = &self.trades.store;
        let mut open = self.open.lock().await;
        self.refresh(&mut open).await?;
        let mut by_symbol: BTreeMap<&str, Vec<&TradeRecord>> = BTreeMap::new();
        for trade in open.trades.values() {
            by_symbol.entry(trade.symbol.as_str()).or_default().push(trade);
        }
        // For trades accepted before the grace period was fixed with them.
        let current_grace_ms = i64::from(self.trades.terms().feed_grace_secs) * 1_000;
        let now_ms = now.timestamp_millis();
        let mut report = StepReport::default();
        let mut entries = Vec::new();
        let mut finishes = Vec::new();
        for (symbol, trades) in by_symbol {
            let grace_of = |trade: &TradeRecord| trade.feed_grace_ms.unwrap_or(current_grace_ms);
            let oldest = trades.iter().map(|t| t.accepted_at).min().expect("at least one trade");
            let read = || store.ticks(symbol, Some(oldest + 1), None, None, MAX_TICKS_PER_STEP);
            let judge_all = |ticks: &[TickRecord]| -> Vec<Verdict> {
                let spots: Vec<Spot> = ticks.iter().map(TickRecord::spot).collect();
                let judge = |trade: &&TradeRecord| {
                    let after = spots.partition_point(|s| s.ts <= trade.accepted_at);
                    trade::verdict(&trade.terms(), grace_of(trade), &spots[after..])
                };
                trades.iter().map(judge).collect()
            };
            let mut ticks = read().await?;
            let mut verdicts = judge_all(&ticks);
            // A tick being stored as the clock passed a deadline is timed before it: given a
            // second to land, it decides the trade, not this clock. After that, the record is
            // closed through the latest such deadline (or less, if this clock is ahead of the
            // database's), so that no tick can come in behind the voids, and read again for any
            // that landed just before. Only trades whose deadline it covers are voided.
            let overdue = verdicts
                .iter()
                .filter_map(|verdict| match verdict {
                    Verdict::Waiting { deadline, .. } => {
                        Some(*deadline).filter(|d| now_ms > d + IN_FLIGHT_MS)
                    }
                    _ => None,
                })
                .max();
            let mut horizon = None;
            if let Some(overdue) = overdue {
                horizon = Some(store.raise_void_horizon(symbol, overdue, IN_FLIGHT_MS).await?);
                // Only what came after the last tick read: a tick stored late still has the
                // next seq.
                if let Some(last) = ticks.last().map(|t| t.seq) {
                    let limit =
                        MAX_TICKS_PER_STEP.saturating_sub(u32::try_from(ticks.len()).unwrap_or(u32::MAX));
                    ticks.extend(store.ticks(symbol, None, None, Some(last), limit.max(1)).await?);
                } else {
                    ticks = read().await?;
                }
                verdicts = judge_all(&ticks);
            }
            for (trade, verdict) in trades.iter().zip(verdicts) {
                let spot_of = |s: &Spot| trade_spot(&ticks, s);
                let entered = |entry: &Spot, expires_at| (trade.id, spot_of(entry), expires_at);
                let grace_ms = grace_of(trade);
                match verdict {
                    Verdict::Waiting { progress, deadline, stall } => {
                        if let Progress::Running { entry, expires_at } = progress
                            && trade.entry.is_none()
                        {
                            entries.push(entered(&entry, expires_at));
                        }
                        if horizon.is_some_and(|horizon| deadline <= horizon) {
                            finishes.push(void(trade, stall, grace_ms)?);
                        }
                    }
                    Verdict::Void { stall, progress, .. } => {
                        // Entered in time, then stalled: its entry is part of its record.
                        if let (
                            Stall::NoExit,
                            Progress::Running { entry, expires_at }
                            | Progress::Decided { entry, expires_at, .. },
                        ) = (stall, progress)
                            && trade.entry.is_none()
                        {
                            entries.push(entered(&entry, expires_at));
                        }
                        finishes.push(void(trade, stall, grace_ms)?);
                    }
                    Verdict::Settled { entry, expires_at, exit, result, .. } => {
                        if trade.entry.is_none() {
                            entries.push(entered(&entry, expires_at));
                        }
                        let payout = trade::returned(result, trade.stake, trade.payout_rate_bp);
                        let transfer = trade::settlement_transfer(result, trade.stake, trade.payout_rate_bp)
                            .map_err(|e| {
                                crate::services::Error::Internal(format!("trade {}: {e}", trade.id))
                            })?;
                        finishes.push(Finish {
                            trade_id: trade.id,
                            user_id: trade.user_id,
                            ending: Ending::Settled { exit: spot_of(&exit), result, grace_ms },
                            transfer,
                            payout,
                        });
                    }
                }
            }
        }
        // Endings first: they are what users wait for, and the step that ends a second's worth
        // of trades also records the entries of the second's new ones (ended after them, the
        // last endings of a step came up to 0.2 s later). A trade that ends without a recorded
        // entry gets it just before; it is announced once, as ended. Each chunk is announced as
        // soon as it is committed: a step's thousands of events at once overran the bus's
        // listeners (settlement's own included, which then had to read every open trade again).
        let ending: HashSet<i64> = finishes.iter().map(|f| f.trade_id).collect();
        let (entries_of_ending, entries): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|(id, ..)| ending.contains(id));
        let at_once = store.settlement_writes_at_once();
        let mut entered_first = in_chunks(&entries_of_ending, at_once, |chunk| store.set_entries(chunk));
        while let Some((_, entered)) = entered_first.next().await {
            entered?;
        }
        let mut users = Vec::new();
        // Stamped when they end (the future starts when its chunk's turn comes), not when the
        // step began: a step may start before its deciding tick.
        let end = |chunk| async move { store.finish_trades(chunk, Utc::now()).await };
        let mut ended_chunks = in_chunks(&finishes, at_once, end);
        // A chunk that failed does not stop those beside it, which may have committed, and may
        // itself have ended some trades before it failed: they are all still announced, and the
        // step fails once every chunk has answered (the next reads the open trades in full).
        let mut failed = None;
        while let Some((chunk, endings)) = ended_chunks.next().await {
            if let Some(error) = endings.failed {
                failed.get_or_insert(error);
            }
            for trade in endings.ended {
                match trade.status {
                    TradeStatus::Void => report.voided += 1,
                    _ => report.settled += 1,
                }
                let outcome = trade.result.map_or(trade.status.as_str(), |r| r.as_str());
                metrics::counter!("trades_ended_total", "outcome" => outcome).increment(1);
                if let Some(expires_at) = trade.expires_at {
                    // From expiry to settlement: the deciding tick comes up to one interval later.
                    let lag_ms = (now.timestamp_millis() - expires_at).max(0);
                    metrics::histogram!("settlement_lag_seconds").record(lag_ms as f64 / 1000.0);
                }
                users.push(trade.user_id);
                self.trades.publish(trade);
            }
            for finish in chunk {
                // Ended here or elsewhere (or, if the chunk failed, found again by the full read
                // after the failed step): either way no longer in this index.
                open.trades.remove(&finish.trade_id);
            }
        }
        if let Some(error) = failed {
            return Err(error.into());
        }
        let mut entered_chunks = in_chunks(&entries, at_once, |chunk| store.set_entries(chunk));
        while let Some((chunk, entered)) = entered_chunks.next().await {
            let Some(entered) = kept(entered, &mut failed) else { continue };
            let entered: HashSet<i64> = entered.into_iter().collect();
            for (id, entry, expires_at) in chunk {
                let Some(trade) = open.trades.get_mut(id) else { continue };
                // Known from here on, whether this node or another recorded it.
                trade.entry = Some(*entry);
                trade.expires_at = Some(*expires_at);
                if entered.contains(id) {
                    report.entered += 1;
                    self.trades.publish(trade.clone());
                }
            }
        }
        drop(open);
        if let Some(error) = failed {
            return Err(error.into());
        }
        users.sort();
        users.dedup();
        self.update_vip_levels(&users, now).await?;
        Ok(report)
    }

    /// Moves the users whose trades ended to the VIP level their turnover over the last
    /// [`VIP_WINDOW_DAYS`] UTC days earns (trades that ended other than void, by the day they
    /// were accepted).
    async fn update_vip_levels(&self, users: &[fairtick_core::UserId], now: DateTime<Utc>) -> Result<()> {
        let store = &self.trades.store;
        let terms = self.trades.terms();
        let first_day = utc_day(now.timestamp_millis()) - (VIP_WINDOW_DAYS - 1);
        let changes: Vec<_> = store
            .turnovers(users, first_day)
            .await?
            .into_iter()
            .filter_map(|(user, turnover, level)| {
                let earned = terms.vip_level(turnover).level;
                (earned != level).then_some((user, earned, turnover))
            })
            .collect();
        store.set_vip_levels(&changes, first_day).await?;
        Ok(())
    }
}

/// `write` of each [`WRITE_CHUNK`] of `items`, up to `at_once` running together, each with its
/// chunk, in order. The writes are made before the stream: one that makes them as it goes holds
/// the closure across its awaits, and the compiler then cannot prove the step's future `Send`.
fn in_chunks<'a, T, W: Future>(
    items: &'a [T],
    at_once: usize,
    write: impl Fn(&'a [T]) -> W,
) -> impl Stream<Item = (&'a [T], W::Output)> {
    let writes: Vec<_> = items
        .chunks(WRITE_CHUNK)
        .map(|chunk| {
            let written = write(chunk);
            async move { (chunk, written.await) }
        })
        .collect();
    stream::iter(writes).buffered(at_once)
}

/// `result`'s value, or `None` with its error kept in `failed` unless an earlier one is.
fn kept<T>(result: StoreResult<T>, failed: &mut Option<StoreError>) -> Option<T> {
    result.map_err(|error| failed.get_or_insert(error)).ok()
}

/// Passes the bus's trade events on to settlement until either side is gone. Unbounded: what
/// queues is what settlement's next step reads, and it reads everything.
async fn listen(mut events: broadcast::Receiver<Event>, hear: mpsc::UnboundedSender<Heard>) {
    loop {
        let heard = match events.recv().await {
            Ok(Event::Trade(trade)) => Heard::Trade(Box::new(trade)),
            Ok(Event::Resync) | Err(RecvError::Lagged(_)) => Heard::Missed,
            Ok(_) => continue,
            Err(RecvError::Closed) => return,
        };
        if hear.send(heard).is_err() {
            return;
        }
    }
}

fn trade_spot(ticks: &[TickRecord], spot: &Spot) -> TradeSpot {
    // `ticks` are in seq order and `spot` is one of them.
    let epoch_id = ticks.binary_search_by_key(&spot.seq, |t| t.seq).map_or(0, |i| ticks[i].epoch_id);
    TradeSpot { seq: spot.seq, ts: spot.ts, price: spot.price, epoch_id }
}

fn void(trade: &TradeRecord, stall: Stall, grace_ms: i64) -> Result<Finish> {
    let transfer = trade::release_transfer(TransactionKind::Refund, trade.stake, trade.stake)
        .map_err(|e| crate::services::Error::Internal(format!("trade {}: {e}", trade.id)))?;
    Ok(Finish {
        trade_id: trade.id,
        user_id: trade.user_id,
        ending: Ending::Void { reason: stall.reason().to_owned(), grace_ms },
        transfer,
        payout: trade.stake,
    })
}

#[cfg(test)]
mod tests {
    use fairtick_core::trade::Direction;
    use fairtick_core::{Money, UserId};

    use super::*;
    use crate::store::NewTrade;

    #[test]
    fn a_step_keeps_the_first_failure_of_its_chunks_and_the_values_of_the_others() {
        let mut failed = None;
        assert_eq!(kept(Ok(1), &mut failed), Some(1));
        assert!(failed.is_none());
        assert_eq!(kept::<i32>(Err(StoreError::Corrupt("first".into())), &mut failed), None);
        assert_eq!(kept(Ok(3), &mut failed), Some(3));
        assert_eq!(kept::<i32>(Err(StoreError::Corrupt("second".into())), &mut failed), None);
        assert!(matches!(failed, Some(StoreError::Corrupt(ref which)) if which == "first"), "{failed:?}");
    }

    fn trade(id: i64) -> TradeRecord {
        let new = NewTrade {
            symbol: "SIMV25".into(),
            direction: Direction::Up,
            stake: Money::from_cents(100),
            duration_ms: 5_000,
            payout_rate_bp: 8_500,
            feed_grace_ms: 10_000,
        };
        TradeRecord::opened(id, UserId(1), &new, 0)
    }

    #[tokio::test]
    async fn trade_events_are_passed_on_and_a_gap_is_reported() {
        let (bus, _) = broadcast::channel(4);
        let events = bus.subscribe();
        // Eight events before the listener runs, in a bus of four: the first four are lost.
        for id in 1..=6 {
            bus.send(Event::Trade(trade(id))).expect("a receiver");
        }
        bus.send(Event::Balance(UserId(1))).expect("a receiver");
        bus.send(Event::Trade(trade(7))).expect("a receiver");
        drop(bus);
        let (hear, mut heard) = mpsc::unbounded_channel();
        listen(events, hear).await;
        let mut got = Vec::new();
        while let Ok(next) = heard.try_recv() {
            got.push(match next {
                Heard::Trade(trade) => Some(trade.id),
                Heard::Missed => None,
            });
        }
        assert_eq!(got, [None, Some(5), Some(6), Some(7)]);
    }

    #[test]
    fn a_full_read_is_brought_up_to_date_with_what_was_heard_since_it_began() {
        let ended = |id| TradeRecord { status: TradeStatus::Settled, ..trade(id) };
        // Read: 1 and 2 open. Heard since: 2 ended, 3 opened, 1 again (as it was).
        let index = caught_up(vec![trade(1), trade(2)], vec![ended(2), trade(3), trade(1)]);
        assert_eq!(index.keys().copied().collect::<Vec<_>>(), [1, 3]);
        // An ending heard before the read saw it: the trade stays out.
        let index = caught_up(vec![trade(4)], vec![trade(5), ended(5)]);
        assert_eq!(index.keys().copied().collect::<Vec<_>>(), [4]);
    }
}
