//! Flash trades: the honest quote, opening a trade, selling it back, reading trades and the
//! trader's record. Results are never decided here: only [`settlement`] ends a trade at expiry,
//! from recorded ticks.

pub mod receipts;
pub mod settlement;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use fairtick_core::fairness::{MarketParams, Probability, model};
use fairtick_core::ledger::TransactionKind;
use fairtick_core::settings::TradingSettings;
use fairtick_core::stats::{Interval, wilson_interval};
use fairtick_core::trade::{self, Direction, Spot, TradeStatus};
use fairtick_core::{Money, UserId};
use sha2::{Digest, Sha256};

use super::events::{Event, EventBus};
use super::market::Markets;
use super::market::catalog::MarketSource;
use super::paging;
use super::settings::Settings;
use super::{Error, Result};
use crate::store::{
    Ending, Finish, IdempotencyKey, NewTrade, OpenOutcome, SaleOutcome, Store, TickRecord, TradeQuery,
    TradeRecord, UserRecord,
};
use receipts::ReceiptSigner;
use settlement::MAX_TICKS_PER_STEP;

/// How long a quote's terms are shown as valid.
pub const QUOTE_VALIDITY_MS: i64 = 5_000;
pub const MAX_PAGE: u32 = 200;
pub const DEFAULT_PAGE: u32 = 50;

/// A request to open a trade, as received.
#[derive(Clone, Debug)]
pub struct OpenRequest {
    pub symbol: String,
    pub direction: Direction,
    pub stake: Money,
    pub duration_secs: u32,
    /// The payout rate (bp) the client was shown; a different current rate is a conflict.
    pub expected_payout_rate_bp: Option<u32>,
}

/// What a user is shown before trading.
#[derive(Clone, Debug)]
pub struct QuoteView {
    pub payout_rate_bp: u32,
    pub payout: Money,
    pub profit_if_win: Money,
    pub break_even_win_rate: Probability,
    /// `None` for replay markets, which have no published model.
    pub model: Option<model::Quote>,
    pub quote_id: String,
    pub valid_until: DateTime<Utc>,
}

/// A trade with its live sell-back bid when it has one.
#[derive(Clone, Debug)]
pub struct TradeView {
    pub trade: TradeRecord,
    pub bid: Option<Money>,
}

/// A trader's record.
#[derive(Clone, Debug)]
pub struct TraderStats {
    pub counts: crate::store::TradeCounts,
    /// Wins over decided (won or lost) trades.
    pub win_rate: Option<Probability>,
    /// 1 / (1 + average payout rate of the decided trades).
    pub break_even_win_rate: Option<Probability>,
    pub win_rate_interval: Option<Interval>,
    /// Whether the 95 % interval of the win rate excludes break-even.
    pub distinguishable_from_break_even: bool,
}

#[derive(Clone)]
pub struct Trades {
    store: Store,
    markets: Markets,
    signer: ReceiptSigner,
    settings: Settings,
    events: EventBus,
}

impl Trades {
    pub fn new(
        store: Store,
        markets: Markets,
        events: EventBus,
        signer: ReceiptSigner,
        settings: Settings,
    ) -> Trades {
        Trades { store, markets, signer, settings, events }
    }

    pub fn public_key_hex(&self) -> String {
        self.signer.public_key_hex()
    }

    /// A signed receipt for the user's trade: its terms, the ticks from the last one at or
    /// before acceptance to the one that decided it (the first after expiry, or for a void the
    /// one that came too late), and their epochs.
    pub async fn receipt(&self, user: UserId, id: i64, now: DateTime<Utc>) -> Result<receipts::Receipt> {
        let trade = self.own(user, id).await?;
        let before = self.store.ticks(&trade.symbol, None, Some(trade.accepted_at + 1), None, 1).await?;
        let interval = i64::from(self.markets.market(&trade.symbol)?.tick_interval_ms);
        let span = trade.duration_ms / interval.max(1) + 2;
        let last_needed = trade.exit.map(|e| e.seq + 1);
        let after_seq = before.first().map_or(0, |t| t.seq - 1);
        let wanted = match last_needed {
            Some(last) => last - after_seq,
            None => span * 2,
        };
        let mut ticks = match (trade.status, trade.feed_grace_ms) {
            // Void: every tick up to the latest deadline it can have (a late entry's, plus a
            // duration and the grace period), and the next, then cut after the tick the rules
            // void it by, which shows that the feed stalled past it (docs/fairness.md §6).
            (TradeStatus::Void, Some(grace_ms)) => {
                let latest_deadline = trade.accepted_at + 2 * (trade.duration_ms + grace_ms);
                let mut ticks = self
                    .store
                    .ticks(
                        &trade.symbol,
                        None,
                        Some(latest_deadline + 1),
                        Some(after_seq),
                        MAX_TICKS_PER_STEP,
                    )
                    .await?;
                let last_seq = ticks.last().map_or(after_seq, |t| t.seq);
                ticks.extend(self.store.ticks(&trade.symbol, None, None, Some(last_seq), 1).await?);
                let spots: Vec<Spot> = ticks.iter().map(TickRecord::spot).collect();
                let after = spots.partition_point(|s| s.ts <= trade.accepted_at);
                if let trade::Verdict::Void { late, .. } =
                    trade::verdict(&trade.terms(), grace_ms, &spots[after..])
                {
                    ticks.retain(|t| t.seq <= late.seq);
                }
                ticks
            }
            _ => {
                self.store
                    .ticks(
                        &trade.symbol,
                        None,
                        None,
                        Some(after_seq),
                        u32::try_from(wanted.clamp(1, i64::from(MAX_TICKS_PER_STEP))).unwrap_or(1),
                    )
                    .await?
            }
        };
        // With no tick at or before acceptance, the trade came before the market's first tick
        // (seq 1), or its ticks were deleted with the retention: then no receipt can show them.
        if before.is_empty() && ticks.first().is_some_and(|first| first.seq != 1) {
            return Err(Error::Conflict {
                code: "receipt_unavailable",
                message: "this trade's ticks are older than the ticks the server keeps \
                          (FAIRTICK_TICK_RETENTION_HOURS), so its receipt can no longer be assembled; \
                          a receipt saved while they were kept still verifies"
                    .into(),
            });
        }
        if let Some(last) = last_needed {
            ticks.retain(|t| t.seq <= last);
        }
        let mut epochs = Vec::new();
        for epoch_id in ticks.iter().map(|t| t.epoch_id) {
            if !epochs.iter().any(|e: &crate::store::EpochRecord| e.id == epoch_id) {
                epochs.extend(self.store.epoch(epoch_id).await?);
            }
        }
        self.signer.sign(&receipts::body(&trade, &epochs, &ticks, now.timestamp_millis()))
    }

    /// The trading terms in force now.
    pub fn terms(&self) -> Arc<TradingSettings> {
        self.settings.current()
    }

    /// Tells listeners (on every node) that a trade changed, and with it the owner's balance.
    pub(crate) fn publish(&self, trade: TradeRecord) {
        self.events.publish(Event::Trade(trade));
    }

    pub fn settlement(&self) -> settlement::Settlement {
        settlement::Settlement::new(self.clone())
    }

    fn params(&self, symbol: &str) -> Result<Option<MarketParams>> {
        Ok(match &self.markets.market(symbol)?.source {
            MarketSource::Simulated { params, .. } => Some(params.clone()),
            MarketSource::Replay(_) => None,
        })
    }

    /// The payout rate a user is offered now (the setting plus their VIP level's bonus), after
    /// checking that the user may trade this stake at all.
    fn offered_rate(&self, record: &UserRecord, stake: Money) -> Result<u32> {
        if record.trading_suspended {
            return Err(Error::Forbidden {
                code: "trading_suspended",
                message: "trading is suspended for this account".into(),
            });
        }
        if let Some(limit) = record.max_stake
            && stake > limit
        {
            return Err(Error::invalid(
                "amount",
                format!("must be at most {limit} VUSD, this account's stake limit"),
            ));
        }
        let terms = self.terms();
        let level = terms
            .vip_levels
            .iter()
            .find(|l| i64::from(l.level) == i64::from(record.vip_level))
            .copied()
            .unwrap_or_else(|| terms.vip_level(Money::ZERO));
        Ok(terms.payout_rate_for(&level))
    }

    /// Whether the market takes new trades now.
    fn check_open(&self, symbol: &str) -> Result<()> {
        let switch = self.terms().market(symbol);
        if !switch.enabled {
            return Err(Error::Conflict {
                code: "market_disabled",
                message: format!("{symbol} is not open for trading"),
            });
        }
        if switch.halted {
            return Err(Error::Conflict {
                code: "market_halted",
                message: format!("{symbol} is halted: no new trades for now"),
            });
        }
        Ok(())
    }

    fn check_terms(&self, stake: Money, duration_secs: u32) -> Result<()> {
        let s = self.terms();
        if stake < s.min_stake || stake > s.max_stake {
            return Err(Error::invalid(
                "amount",
                format!("must be between {} and {} VUSD", s.min_stake, s.max_stake),
            ));
        }
        if !s.durations_secs.contains(&duration_secs) {
            let allowed: Vec<String> = s.durations_secs.iter().map(u32::to_string).collect();
            return Err(Error::invalid(
                "duration",
                format!("must be one of {} (seconds)", allowed.join(", ")),
            ));
        }
        Ok(())
    }

    pub async fn quote(
        &self,
        user: &UserRecord,
        symbol: &str,
        direction: Direction,
        stake: Money,
        duration_secs: u32,
        now: DateTime<Utc>,
    ) -> Result<QuoteView> {
        let params = self.params(symbol)?;
        self.check_terms(stake, duration_secs)?;
        self.check_open(symbol)?;
        let rate = self.offered_rate(user, stake)?;
        let payout = trade::win_payout(stake, rate);
        let model = match (params, self.store.last_tick(symbol).await?) {
            (Some(params), Some(last)) => {
                let ticks = params.ticks_within(u64::from(duration_secs) * 1_000);
                Some(
                    model::quote(direction, params.tick_sigma(), ticks, last.price, rate)
                        .map_err(|e| Error::Internal(format!("quote: {e}")))?,
                )
            }
            _ => None,
        };
        let break_even = model.map(|q| q.break_even_win_rate).unwrap_or_else(|| break_even(rate));
        let valid_until = now + Duration::milliseconds(QUOTE_VALIDITY_MS);
        let identity = format!(
            "{symbol}|{direction}|{}|{duration_secs}|{rate}|{}",
            stake.cents(),
            valid_until.timestamp_millis()
        );
        Ok(QuoteView {
            payout_rate_bp: rate,
            payout,
            profit_if_win: payout.checked_sub(stake).unwrap_or(Money::ZERO),
            break_even_win_rate: break_even,
            model,
            quote_id: hex::encode(&Sha256::digest(identity.as_bytes())[..12]),
            valid_until,
        })
    }

    /// Opens a trade at the current terms. The stake moves to in play in the same transaction.
    pub async fn open(
        &self,
        user: &UserRecord,
        request: OpenRequest,
        idempotency_key: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(TradeRecord, bool)> {
        let key = idempotency_key.map(|key| {
            let canonical = format!(
                "trade.open:{}:{}:{}:{}:{:?}",
                request.symbol,
                request.direction,
                request.stake.cents(),
                i64::from(request.duration_secs) * 1_000,
                request.expected_payout_rate_bp
            );
            IdempotencyKey { request_hash: hex::encode(Sha256::digest(canonical.as_bytes())), key }
        });
        let (new, now) = match self.opening(user, request, now) {
            Ok(checked) => checked,
            // A key used before answers as it did, though the same request would be refused now
            // (the market halted, the terms changed since): the trade it opened. Read only on a
            // refusal; an opening the checks pass reads it in its batch.
            Err(refused) => {
                return match &key {
                    Some(key) => match self.store.remembered_opening(user.id, key).await? {
                        Some(remembered) => self.answer_opening(remembered),
                        None => Err(refused),
                    },
                    None => Err(refused),
                };
            }
        };
        let outcome = self.store.open_trade(user.id, &new, key.as_ref(), now).await?;
        self.answer_opening(outcome)
    }

    /// The trade `request` would open now, and when it is accepted; or why it is refused.
    fn opening(
        &self,
        user: &UserRecord,
        request: OpenRequest,
        now: DateTime<Utc>,
    ) -> Result<(NewTrade, DateTime<Utc>)> {
        let interval_ms = i64::from(self.markets.market(&request.symbol)?.tick_interval_ms);
        let accepted_at = self.markets.accepted_at(&request.symbol, now);
        self.check_terms(request.stake, request.duration_secs)?;
        self.check_open(&request.symbol)?;
        let Some(now) = accepted_at else {
            return Err(Error::Conflict {
                code: "no_price",
                message: format!("{} has no price yet: try again in a moment", request.symbol),
            });
        };
        // A grace period of two ticks or less would void trades of a feed that is working, and
        // no verifier accepts it (docs/fairness.md §6). The terms cannot be changed to one, but
        // a market's interval can be, at a restart.
        let feed_grace_ms = i64::from(self.terms().feed_grace_secs) * 1_000;
        if !trade::grace_outlasts_two_ticks(feed_grace_ms, interval_ms) {
            return Err(Error::Conflict {
                code: "grace_too_short",
                message: format!(
                    "{} ticks every {interval_ms} ms, too seldom for the feed's grace period of {} s: an admin \
                     must lengthen feedGraceSeconds",
                    request.symbol,
                    feed_grace_ms / 1_000
                ),
            });
        }
        let rate = self.offered_rate(user, request.stake)?;
        if let Some(expected) = request.expected_payout_rate_bp
            && expected != rate
        {
            return Err(Error::Conflict {
                code: "payout_rate_changed",
                message: format!(
                    "the payout rate is now {}, not {}",
                    format_rate(rate),
                    format_rate(expected)
                ),
            });
        }
        let new = NewTrade {
            symbol: request.symbol,
            direction: request.direction,
            stake: request.stake,
            duration_ms: i64::from(request.duration_secs) * 1_000,
            payout_rate_bp: rate,
            feed_grace_ms,
        };
        Ok((new, now))
    }

    fn answer_opening(&self, outcome: OpenOutcome) -> Result<(TradeRecord, bool)> {
        match outcome {
            OpenOutcome::Opened(trade) => {
                metrics::counter!("trades_opened_total", "symbol" => trade.symbol.clone()).increment(1);
                self.publish(trade.clone());
                Ok((trade, false))
            }
            OpenOutcome::Replayed(trade) => Ok((trade, true)),
            OpenOutcome::InsufficientFunds { available } => Err(Error::Refused {
                code: "insufficient_funds",
                message: format!("the stake exceeds the available balance of {available}"),
            }),
            OpenOutcome::KeyReused => Err(Error::IdempotencyKeyReused),
        }
    }

    /// The user's own trade; another user's is "not found", never "forbidden".
    pub async fn own(&self, user: UserId, id: i64) -> Result<TradeRecord> {
        match self.store.trade(id).await? {
            Some(trade) if trade.user_id == user => Ok(trade),
            _ => Err(Error::NotFound("trade")),
        }
    }

    pub async fn view(&self, trade: TradeRecord) -> Result<TradeView> {
        let bid = match self.bid(&trade).await {
            Ok(bid) => Some(bid),
            Err(Error::Conflict { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(TradeView { trade, bid })
    }

    /// The early-close bid: the model's fair value of the payout from the current price and
    /// the remaining time, minus the published spread. A conflict explains why there is none.
    pub async fn bid(&self, trade: &TradeRecord) -> Result<Money> {
        let refuse = |code, message: String| Err(Error::Conflict { code, message });
        if trade.status != TradeStatus::Active {
            return refuse("trade_not_active", format!("the trade is {}", trade.status));
        }
        let (Some(entry), Some(expires_at)) = (trade.entry, trade.expires_at) else {
            return refuse("not_entered", "the trade has no entry tick yet".into());
        };
        let Some(params) = self.params(&trade.symbol)? else {
            return refuse("no_model", "replay markets have no published model to price a sale".into());
        };
        let Some(last) = self.store.last_tick(&trade.symbol).await? else {
            return refuse("no_price", "the market has no price yet".into());
        };
        self.bid_at(trade, &params, entry.price, expires_at, &last)
    }

    /// The bid of an entered trade at the market's `last` tick: no IO.
    fn bid_at(
        &self,
        trade: &TradeRecord,
        params: &MarketParams,
        entry: fairtick_core::price::Price,
        expires_at: i64,
        last: &crate::store::TickRecord,
    ) -> Result<Money> {
        let refuse = |code, message: String| Err(Error::Conflict { code, message });
        let remaining_ms = expires_at - last.ts;
        let cutoff_ms = i64::from(self.terms().sell_cutoff_secs) * 1_000;
        if remaining_ms <= cutoff_ms {
            return refuse(
                "sell_cutoff",
                format!("sales close {} s before expiry", self.terms().sell_cutoff_secs),
            );
        }
        let remaining_ticks = params.ticks_within(u64::try_from(remaining_ms).unwrap_or(0));
        let odds = model::outcome_odds(params.tick_sigma(), remaining_ticks, last.price, entry)
            .map_err(|e| Error::Internal(format!("bid: {e}")))?;
        model::early_close_bid(
            trade.stake,
            trade.payout_rate_bp,
            odds.win(trade.direction),
            odds.tie,
            self.terms().sell_spread_bp,
        )
        .map_err(|e| Error::Internal(format!("bid: {e}")))
    }

    /// The live bids of every sellable open trade of `users`: what the realtime hub pushes
    /// every second.
    pub async fn live_bids(
        &self,
        users: &std::collections::HashSet<UserId>,
    ) -> Result<Vec<(TradeRecord, Money)>> {
        let open = self.open_with_bids(users).await?;
        Ok(open.into_iter().filter_map(|(trade, bid)| Some((trade, bid?))).collect())
    }

    /// Every open trade of `users`, with its live bid where it has one (from its entry on),
    /// from one read of the open trades and one read of each market's last tick.
    pub async fn open_with_bids(
        &self,
        users: &std::collections::HashSet<UserId>,
    ) -> Result<Vec<(TradeRecord, Option<Money>)>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut last_ticks = std::collections::HashMap::new();
        let mut open = Vec::new();
        for trade in self.store.active_trades().await?.into_iter().filter(|t| users.contains(&t.user_id)) {
            let mut bid = None;
            if let (Some(entry), Some(expires_at), Some(params)) =
                (trade.entry, trade.expires_at, self.params(&trade.symbol)?)
            {
                if !last_ticks.contains_key(&trade.symbol) {
                    let last = self.store.last_tick(&trade.symbol).await?;
                    last_ticks.insert(trade.symbol.clone(), last);
                }
                if let Some(Some(last)) = last_ticks.get(&trade.symbol) {
                    bid = self.bid_at(&trade, &params, entry.price, expires_at, last).ok();
                }
            }
            open.push((trade, bid));
        }
        Ok(open)
    }

    /// Sells an active trade back at the current bid, if it is at least `min_value`.
    /// Sells an active trade back at the current bid, if it is at least `min_value`. With an
    /// idempotency key, a retry gets the same sale (and `true`), even once the trade has ended.
    pub async fn sell(
        &self,
        user: UserId,
        id: i64,
        min_value: Option<Money>,
        idempotency_key: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(TradeRecord, bool)> {
        let key = idempotency_key.map(|key| {
            let canonical = format!("trade.close:{id}:{:?}", min_value.map(|m| m.cents()));
            IdempotencyKey { request_hash: hex::encode(Sha256::digest(canonical.as_bytes())), key }
        });
        let trade = self.own(user, id).await?;
        // A key used before answers as it did, whatever the trade's state now (the sale checks
        // it again in its own transaction, under the user's lock, for a retry racing the first).
        if let Some(key) = &key
            && let Some(answered) = self.store.remembered_sale(user, key).await?
        {
            return self.answer_sale(answered);
        }
        let bid = self.bid(&trade).await?;
        if let Some(min) = min_value
            && bid < min
        {
            return Err(Error::Conflict {
                code: "bid_below_minimum",
                message: format!("the bid is {bid}, below {min}"),
            });
        }
        let transfer = trade::release_transfer(TransactionKind::Sell, trade.stake, bid)
            .map_err(|e| Error::Internal(format!("sale transfer: {e}")))?;
        let finish = Finish {
            trade_id: id,
            user_id: user,
            ending: Ending::Sold { value: bid },
            transfer,
            payout: bid,
        };
        let outcome = self.store.sell_trade(finish, key, now).await?;
        self.answer_sale(outcome)
    }

    /// The answer to a sale: the trade, and whether it is one answered before (a new sale is
    /// announced).
    fn answer_sale(&self, outcome: SaleOutcome) -> Result<(TradeRecord, bool)> {
        match outcome {
            SaleOutcome::Sold(sold) => {
                self.publish(sold.clone());
                Ok((sold, false))
            }
            SaleOutcome::Replayed(sold) => Ok((sold, true)),
            SaleOutcome::NotActive => Err(Error::Conflict {
                code: "trade_not_active",
                message: "the trade has already ended".into(),
            }),
            SaleOutcome::KeyReused => Err(Error::IdempotencyKeyReused),
        }
    }

    pub async fn active(&self, user: UserId) -> Result<Vec<TradeView>> {
        let query = TradeQuery {
            user: Some(user),
            status: Some(TradeStatus::Active),
            limit: MAX_PAGE,
            ..TradeQuery::default()
        };
        let mut views = Vec::new();
        for trade in self.store.trades(&query).await? {
            views.push(self.view(trade).await?);
        }
        Ok(views)
    }

    /// A page of the user's trades (or, for admins, anyone's), newest first.
    pub async fn history(
        &self,
        mut query: TradeQuery,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<(Vec<TradeRecord>, Option<String>)> {
        if let Some(symbol) = &query.symbol {
            self.markets.market(symbol)?;
        }
        let limit = paging::limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        query.before = paging::cursor(cursor)?;
        query.limit = limit + 1;
        Ok(paging::split(self.store.trades(&query).await?, limit, |t| t.id))
    }

    pub async fn stats(&self, user: UserId) -> Result<TraderStats> {
        let counts = self.store.trade_counts(user).await?;
        let decided = u64::try_from(counts.wins + counts.losses).unwrap_or(0);
        let wins = u64::try_from(counts.wins).unwrap_or(0);
        let win_rate = (decided > 0).then(|| Probability::from_ppb(wins * 1_000_000_000 / decided)).flatten();
        let break_even_rate = (decided > 0).then(|| {
            let average_rate = u32::try_from(counts.decided_rate_bp_sum / (decided as i64)).unwrap_or(0);
            break_even(average_rate)
        });
        let interval = wilson_interval(wins, decided);
        let distinguishable = match (interval, break_even_rate) {
            (Some(i), Some(b)) => b.ppb() < i.low_ppb || b.ppb() > i.high_ppb,
            _ => false,
        };
        Ok(TraderStats {
            counts,
            win_rate,
            break_even_win_rate: break_even_rate,
            win_rate_interval: interval,
            distinguishable_from_break_even: distinguishable,
        })
    }
}

/// `1 / (1 + r)`, rounded up: the share of decided trades one must win to break even.
pub fn break_even(rate_bp: u32) -> Probability {
    let ppb = 10_000u64 * 1_000_000_000u64;
    Probability::from_ppb(ppb.div_ceil(10_000 + u64::from(rate_bp))).unwrap_or(Probability::ONE)
}

/// A rate in basis points as the API shows it: `"0.8500"`.
pub fn format_rate(bp: u32) -> String {
    format!("{}.{:04}", bp / 10_000, bp % 10_000)
}
