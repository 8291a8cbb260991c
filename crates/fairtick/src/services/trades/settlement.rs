//! Settlement: ends every trade by the rules, from the recorded ticks, exactly once.
//!
//! A task per node sleeps until something can change a trade (a new tick, a new trade, or the
//! next feed-grace deadline) and then runs [`Settlement::settle_due`], the one-step function
//! tests call too. Each step reads the ticks since the oldest active trade of each market,
//! applies `fairtick_core::trade::progress`, records entries, and ends the decided (or voided)
//! trades in one database transaction. At start-up the first step settles everything that
//! came due while the server was down. With several nodes, each trade still ends once: the
//! store only ends a trade that is still active.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fairtick_core::ledger::TransactionKind;
use fairtick_core::trade::{self, Progress, Spot};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::Trades;
use crate::services::Result;
use crate::store::{Ending, Finish, TickRecord, TradeRecord, TradeSpot};

/// Most ticks read for one market in one step: the longest duration plus the grace period at
/// the fastest tick rate fits many times over.
const MAX_TICKS_PER_STEP: u32 = 200_000;
/// How often a node looks for trades opened on other nodes, and re-checks deadlines.
const IDLE_RESCAN: Duration = Duration::from_secs(1);
const VIP_WINDOW_DAYS: i64 = 30;

/// What one step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    pub entered: usize,
    pub settled: usize,
    pub voided: usize,
}

pub struct Settlement {
    trades: Trades,
}

impl Settlement {
    pub fn new(trades: Trades) -> Settlement {
        Settlement { trades }
    }

    /// Runs until `cancel`: a step whenever a tick arrives, a trade is opened, or a second
    /// passes without either.
    pub async fn run(self, cancel: CancellationToken) {
        let mut ticks = self.trades.markets.subscribe();
        let wake = self.trades.wake.clone();
        loop {
            if let Err(error) = self.settle_due(Utc::now()).await {
                tracing::warn!(%error, "a settlement step failed; retrying");
            }
            tokio::select! {
                received = ticks.recv() => match received {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                () = wake.notified() => {}
                () = tokio::time::sleep(IDLE_RESCAN) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    /// One step: records entries, settles decided trades, voids trades whose feed stalled past
    /// the grace period. Everything is decided from stored ticks.
    #[tracing::instrument(skip_all)]
    pub async fn settle_due(&self, now: DateTime<Utc>) -> Result<StepReport> {
        let store = &self.trades.store;
        let active = store.active_trades().await?;
        let mut by_symbol: BTreeMap<&str, Vec<&TradeRecord>> = BTreeMap::new();
        for trade in &active {
            by_symbol.entry(trade.symbol.as_str()).or_default().push(trade);
        }
        let grace_ms = i64::from(self.trades.terms().feed_grace_secs) * 1_000;
        let now_ms = now.timestamp_millis();
        let mut report = StepReport::default();
        let mut finishes = Vec::new();
        for (symbol, trades) in by_symbol {
            let oldest = trades.iter().map(|t| t.accepted_at).min().expect("at least one trade");
            let ticks = store.ticks(symbol, Some(oldest + 1), None, None, MAX_TICKS_PER_STEP).await?;
            let spots: Vec<Spot> =
                ticks.iter().map(|t| Spot { seq: t.seq, ts: t.ts, price: t.price }).collect();
            for trade in trades {
                let after = spots.partition_point(|s| s.ts <= trade.accepted_at);
                let progress = trade::progress(&trade.terms(), &spots[after..]);
                let spot_of = |s: &Spot| trade_spot(&ticks, s);
                match progress {
                    Progress::AwaitingEntry => {
                        if now_ms > trade.accepted_at + trade.duration_ms + grace_ms {
                            finishes.push(void(trade, "no tick arrived after the trade was accepted")?);
                        }
                    }
                    Progress::Running { entry, expires_at } => {
                        if trade.entry.is_none()
                            && store.set_entry(trade.id, &spot_of(&entry), expires_at).await?
                        {
                            report.entered += 1;
                            if let Some(updated) = store.trade(trade.id).await? {
                                self.trades.publish(updated);
                            }
                        }
                        if now_ms > expires_at + grace_ms {
                            finishes
                                .push(void(trade, "no tick arrived within the grace period after expiry")?);
                        }
                    }
                    Progress::Decided { entry, expires_at, exit, result } => {
                        if trade.entry.is_none() {
                            store.set_entry(trade.id, &spot_of(&entry), expires_at).await?;
                        }
                        let payout = trade::returned(result, trade.stake, trade.payout_rate_bp);
                        let transfer = trade::settlement_transfer(result, trade.stake, trade.payout_rate_bp)
                            .map_err(|e| {
                                crate::services::Error::Internal(format!("trade {}: {e}", trade.id))
                            })?;
                        finishes.push(Finish {
                            trade_id: trade.id,
                            user_id: trade.user_id,
                            ending: Ending::Settled { exit: spot_of(&exit), result },
                            transfer,
                            payout,
                        });
                    }
                }
            }
        }
        if finishes.is_empty() {
            return Ok(report);
        }
        // Stamped when they end, not when the step began: a step may start before its deciding tick.
        let ended = store.finish_trades(&finishes, Utc::now()).await?;
        let mut users = Vec::new();
        for trade in ended {
            match trade.status {
                fairtick_core::trade::TradeStatus::Void => report.voided += 1,
                _ => report.settled += 1,
            }
            let outcome = trade.result.map_or(trade.status.as_str(), |r| r.as_str());
            metrics::counter!("trades_ended_total", "outcome" => outcome).increment(1);
            if let Some(expires_at) = trade.expires_at {
                // From expiry to settlement: the deciding tick comes up to one interval later.
                let lag_ms = (now.timestamp_millis() - expires_at).max(0);
                metrics::histogram!("settlement_lag_seconds").record(lag_ms as f64 / 1000.0);
            }
            if !users.contains(&trade.user_id) {
                users.push(trade.user_id);
            }
            self.trades.publish(trade);
        }
        for user in users {
            let turnover = store.turnover(user, now - chrono::Duration::days(VIP_WINDOW_DAYS)).await?;
            store.set_vip_level(user, self.trades.terms().vip_level(turnover).level).await?;
        }
        Ok(report)
    }
}

fn trade_spot(ticks: &[TickRecord], spot: &Spot) -> TradeSpot {
    // `ticks` are in seq order and `spot` is one of them.
    let epoch_id = ticks.binary_search_by_key(&spot.seq, |t| t.seq).map_or(0, |i| ticks[i].epoch_id);
    TradeSpot { seq: spot.seq, ts: spot.ts, price: spot.price, epoch_id }
}

fn void(trade: &TradeRecord, reason: &str) -> Result<Finish> {
    let transfer = trade::release_transfer(TransactionKind::Refund, trade.stake, trade.stake)
        .map_err(|e| crate::services::Error::Internal(format!("trade {}: {e}", trade.id)))?;
    Ok(Finish {
        trade_id: trade.id,
        user_id: trade.user_id,
        ending: Ending::Void { reason: reason.to_owned() },
        transfer,
        payout: trade.stake,
    })
}
