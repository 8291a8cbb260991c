//! Flash trades: opening one with its stake in the same transaction, fixing its entry, and
//! ending it (settled, sold or void) exactly once with the postings that pay it.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use fairtick_core::ledger::Transfer;
use fairtick_core::price::Price;
use fairtick_core::trade::{self, Direction, TradeResult, TradeStatus};
use fairtick_core::{Money, UserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::binds::Binds;
use super::binds::SqlType::{Int, Text};
use super::bulk::{CHUNK, LockedAccounts, Locking, NewRows};
use super::dual::{BatchTx, DualRow, Param};
use super::group_commit::Work;
use super::group_commit::{WriteOutcome, WriteRequest};
use super::ledger::{Remembered, remembered_from};
use super::{Backend, IdempotencyKey, Store, StoreError, StoreResult};

/// A tick a trade refers to, with the epoch that produced it (for its proof).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeSpot {
    pub seq: i64,
    pub ts: i64,
    pub price: Price,
    pub epoch_id: i64,
}

/// A trade as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeRecord {
    pub id: i64,
    pub user_id: UserId,
    pub symbol: String,
    pub direction: Direction,
    pub stake: Money,
    pub duration_ms: i64,
    pub payout_rate_bp: u32,
    pub status: TradeStatus,
    pub result: Option<TradeResult>,
    pub accepted_at: i64,
    pub entry: Option<TradeSpot>,
    pub expires_at: Option<i64>,
    pub exit: Option<TradeSpot>,
    /// Returned to the user's cash when the trade ended.
    pub payout: Option<Money>,
    pub settled_at: Option<i64>,
    pub void_reason: Option<String>,
    /// The feed's grace period (ms), fixed when it was accepted; none for trades accepted
    /// before it was recorded (migration 9), until they are settled or voided.
    pub feed_grace_ms: Option<i64>,
}

impl TradeRecord {
    /// A trade just accepted: active, waiting for its entry tick.
    pub(crate) fn opened(id: i64, user: UserId, new: &NewTrade, accepted_at: i64) -> TradeRecord {
        TradeRecord {
            id,
            user_id: user,
            symbol: new.symbol.clone(),
            direction: new.direction,
            stake: new.stake,
            duration_ms: new.duration_ms,
            payout_rate_bp: new.payout_rate_bp,
            status: TradeStatus::Active,
            result: None,
            accepted_at,
            entry: None,
            expires_at: None,
            exit: None,
            payout: None,
            settled_at: None,
            void_reason: None,
            feed_grace_ms: Some(new.feed_grace_ms),
        }
    }

    pub fn terms(&self) -> trade::Terms {
        trade::Terms {
            direction: self.direction,
            stake: self.stake,
            duration_ms: self.duration_ms,
            payout_rate_bp: self.payout_rate_bp,
            accepted_at: self.accepted_at,
        }
    }
}

/// A trade to open.
#[derive(Clone, Debug)]
pub struct NewTrade {
    pub symbol: String,
    pub direction: Direction,
    pub stake: Money,
    pub duration_ms: i64,
    pub payout_rate_bp: u32,
    /// The feed's grace period (ms), fixed with the other terms: it decides whether the trade
    /// is void (docs/fairness.md §6).
    pub feed_grace_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenOutcome {
    Opened(TradeRecord),
    Replayed(TradeRecord),
    InsufficientFunds { available: Money },
    KeyReused,
}

/// How an active trade ends.
#[derive(Clone, Debug)]
pub enum Ending {
    /// By the rules, under the feed's grace period `grace_ms`.
    Settled {
        exit: TradeSpot,
        result: TradeResult,
        grace_ms: i64,
    },
    Sold {
        value: Money,
    },
    /// Its feed stalled past the grace period `grace_ms`.
    Void {
        reason: String,
        grace_ms: i64,
    },
}

/// One trade to end, with the transfer that pays it (built by the caller from the rules).
#[derive(Clone, Debug)]
pub struct Finish {
    pub trade_id: i64,
    pub user_id: UserId,
    pub ending: Ending,
    pub transfer: Transfer,
    /// What goes back to the user's cash.
    pub payout: Money,
}

/// What [`Store::finish_trades`] ended, and the error that stopped it, if one did. Its endings
/// take up to two transactions (the users whose accounts another transaction holds come in the
/// second), and the first may have committed when the second fails: the trades it ended must
/// still be announced.
#[derive(Debug)]
#[must_use]
pub struct Endings {
    /// The trades this call ended, as they now are, in id order.
    pub ended: Vec<TradeRecord>,
    pub failed: Option<StoreError>,
}

impl Endings {
    /// The trades ended, or the error alone. Loses nothing where every ending is of one user:
    /// those share one transaction, so none of them ended if it failed.
    pub fn into_result(self) -> StoreResult<Vec<TradeRecord>> {
        match self.failed {
            None => Ok(self.ended),
            Some(error) => Err(error),
        }
    }
}

/// What came of a sale.
#[derive(Debug)]
pub enum SaleOutcome {
    Sold(TradeRecord),
    /// The trade had already ended (settled, sold or void).
    NotActive,
    /// The request's idempotency key already sold this trade: the sale as it was answered.
    Replayed(TradeRecord),
    /// The key was used for another request.
    KeyReused,
}

/// Filters and cursor of a trade history page, newest first.
#[derive(Clone, Debug, Default)]
pub struct TradeQuery {
    pub user: Option<UserId>,
    pub symbol: Option<String>,
    pub status: Option<TradeStatus>,
    pub result: Option<TradeResult>,
    /// Accepted at or after this time (ms).
    pub from: Option<i64>,
    /// Accepted before this time (ms).
    pub to: Option<i64>,
    pub before: Option<i64>,
    pub limit: u32,
}

/// A user's counts for their record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TradeCounts {
    pub wins: i64,
    pub losses: i64,
    pub ties: i64,
    pub sold: i64,
    pub void: i64,
    pub active: i64,
    /// Sum over ended trades of what came back minus the stake.
    pub net_profit: Money,
    /// Sum over decided trades (win or lose) of the payout rate, to average it.
    pub decided_rate_bp_sum: i64,
}

/// `trades.id IN (…)` of the trade ids in the first column of `rows`, for a write that joins
/// `trades` to that list.
///
/// Writes to listed trades name them twice, joined to the list and in this condition, and say
/// "still active" as `settled_at IS NULL` (the same, by the table's CHECK, and matching no
/// partial index), so that PostgreSQL reads them by key whatever its statistics say. With
/// statistics of a smaller table (or none, before the first ANALYZE) it expected one active
/// trade, took the partial index `trades_active`, and compared every active trade with every
/// row of the list: 70–700 ms for a chunk of 64, most of the database's CPU under load. By key:
/// about 2 ms.
fn listed_by_key<const C: usize>(binds: &mut Binds, rows: &[[Param; C]]) -> String {
    let ids: Vec<Param> = rows.iter().map(|row| row[0].clone()).collect();
    binds.any_of("trades.id", Int, &ids)
}

const TRADE_COLUMNS: &str = "id, user_id, symbol, direction, stake, duration_ms, payout_rate_bp, status, result, \
     accepted_at, entry_seq, entry_ts, entry_price, entry_epoch_id, expires_at, exit_seq, exit_ts, exit_price, \
     exit_epoch_id, payout, settled_at, void_reason, feed_grace_ms";

/// [`TRADE_COLUMNS`] named as of `trades`, for a write's RETURNING where another source of the
/// statement has columns of the same names.
static UPDATED_TRADE_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    TRADE_COLUMNS.split(", ").map(|c| format!("trades.{}", c.trim())).collect::<Vec<_>>().join(", ")
});

#[derive(sqlx::FromRow)]
struct TradeRow {
    id: i64,
    user_id: i64,
    symbol: String,
    direction: String,
    stake: i64,
    duration_ms: i64,
    payout_rate_bp: i64,
    status: String,
    result: Option<String>,
    accepted_at: i64,
    entry_seq: Option<i64>,
    entry_ts: Option<i64>,
    entry_price: Option<i64>,
    entry_epoch_id: Option<i64>,
    expires_at: Option<i64>,
    exit_seq: Option<i64>,
    exit_ts: Option<i64>,
    exit_price: Option<i64>,
    exit_epoch_id: Option<i64>,
    payout: Option<i64>,
    settled_at: Option<i64>,
    void_reason: Option<String>,
    feed_grace_ms: Option<i64>,
}

impl DualRow for TradeRow {
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        // In TRADE_COLUMNS order.
        Ok(TradeRow {
            id: row.get(0)?,
            user_id: row.get(1)?,
            symbol: row.get(2)?,
            direction: row.get(3)?,
            stake: row.get(4)?,
            duration_ms: row.get(5)?,
            payout_rate_bp: row.get(6)?,
            status: row.get(7)?,
            result: row.get(8)?,
            accepted_at: row.get(9)?,
            entry_seq: row.get(10)?,
            entry_ts: row.get(11)?,
            entry_price: row.get(12)?,
            entry_epoch_id: row.get(13)?,
            expires_at: row.get(14)?,
            exit_seq: row.get(15)?,
            exit_ts: row.get(16)?,
            exit_price: row.get(17)?,
            exit_epoch_id: row.get(18)?,
            payout: row.get(19)?,
            settled_at: row.get(20)?,
            void_reason: row.get(21)?,
            feed_grace_ms: row.get(22)?,
        })
    }
}

fn corrupt(id: i64, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("trade {id}: {what}"))
}

fn spot(
    id: i64,
    seq: Option<i64>,
    ts: Option<i64>,
    price: Option<i64>,
    epoch: Option<i64>,
) -> StoreResult<Option<TradeSpot>> {
    match (seq, ts, price, epoch) {
        (Some(seq), Some(ts), Some(price), Some(epoch_id)) => Ok(Some(TradeSpot {
            seq,
            ts,
            price: Price::from_units(price).map_err(|e| corrupt(id, e))?,
            epoch_id,
        })),
        (None, None, None, None) => Ok(None),
        _ => Err(corrupt(id, "a partly recorded tick")),
    }
}

impl TryFrom<TradeRow> for TradeRecord {
    type Error = StoreError;
    fn try_from(r: TradeRow) -> StoreResult<TradeRecord> {
        let id = r.id;
        Ok(TradeRecord {
            id,
            user_id: UserId(r.user_id),
            symbol: r.symbol,
            direction: r.direction.parse().map_err(|e| corrupt(id, e))?,
            stake: Money::from_cents(r.stake),
            duration_ms: r.duration_ms,
            payout_rate_bp: u32::try_from(r.payout_rate_bp).map_err(|e| corrupt(id, e))?,
            status: r.status.parse().map_err(|e| corrupt(id, e))?,
            result: r.result.map(|s| s.parse()).transpose().map_err(|e| corrupt(id, e))?,
            accepted_at: r.accepted_at,
            entry: spot(id, r.entry_seq, r.entry_ts, r.entry_price, r.entry_epoch_id)?,
            expires_at: r.expires_at,
            exit: spot(id, r.exit_seq, r.exit_ts, r.exit_price, r.exit_epoch_id)?,
            payout: r.payout.map(Money::from_cents),
            settled_at: r.settled_at,
            void_reason: r.void_reason,
            feed_grace_ms: r.feed_grace_ms,
        })
    }
}

fn records(rows: Vec<TradeRow>) -> StoreResult<Vec<TradeRecord>> {
    rows.into_iter().map(TradeRecord::try_from).collect()
}

impl Store {
    /// Opens a trade: checks the available balance under the account lock, records the trade
    /// and moves its stake to in play, all in one transaction, shared with its batch-mates
    /// (see [`super::group_commit`]).
    pub async fn open_trade(
        &self,
        user: UserId,
        new: &NewTrade,
        idempotency: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> StoreResult<OpenOutcome> {
        let request = WriteRequest::OpenTrade { user, trade: new.clone(), key: idempotency.cloned(), now };
        match self.submit(request).await? {
            WriteOutcome::Trade(outcome) => Ok(outcome),
            WriteOutcome::Wallet(_) => {
                Err(StoreError::Corrupt("a trade request answered as a wallet one".into()))
            }
        }
    }

    /// [`Store::open_trade`] inside `w`. Anything but `Opened` must be rolled back by the caller.
    pub(crate) async fn open_trade_in(
        &self,
        tx: &mut BatchTx<'_>,
        user: UserId,
        new: &NewTrade,
        idempotency: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> StoreResult<OpenOutcome> {
        if let Some(key) = idempotency {
            match self.remembered(tx, user, key).await? {
                Some(Remembered::Answer(trade)) => return Ok(OpenOutcome::Replayed(trade)),
                Some(Remembered::OtherRequest) => return Ok(OpenOutcome::KeyReused),
                None => {}
            }
        }
        let mut accounts = self.lock_accounts(tx, &[user], Locking::Wait).await?;
        let outcome = self
            .open_trades_in(tx, &mut accounts, &[(user, new, now)])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a trade request without an outcome".into()))?;
        if let (Some(key), OpenOutcome::Opened(trade)) = (idempotency, &outcome) {
            self.remember(tx, user, key, trade, now).await?;
        }
        Ok(outcome)
    }

    /// Opens trades in a handful of statements, however many, inside `w`:
    /// each is checked in order against the balance its predecessors left, and a refused one
    /// writes nothing. The accounts of the users must already be locked in `accounts`.
    pub(crate) async fn open_trades_in(
        &self,
        tx: &mut BatchTx<'_>,
        accounts: &mut LockedAccounts,
        requests: &[(UserId, &NewTrade, DateTime<Utc>)],
    ) -> StoreResult<Vec<OpenOutcome>> {
        let mut outcomes: Vec<Option<OpenOutcome>> = requests.iter().map(|_| None).collect();
        let mut accepted = Vec::new();
        let mut transfers = Vec::new();
        for (i, (user, new, now)) in requests.iter().enumerate() {
            let stake = trade::stake_transfer(new.stake)
                .map_err(|e| StoreError::Corrupt(format!("a stake of {}: {e}", new.stake)))?;
            match accounts.apply(self, *user, &stake, None, *now)? {
                Ok(checked) => {
                    accepted.push(i);
                    transfers.push(checked);
                }
                Err(_) => {
                    outcomes[i] = Some(OpenOutcome::InsufficientFunds { available: accounts.cash(*user) })
                }
            }
        }
        let trades = NewRows {
            head: "INSERT INTO trades (user_id, symbol, direction, stake, duration_ms, payout_rate_bp, accepted_at, \
                                       feed_grace_ms)",
            types: [Int, Text, Text, Int, Int, Int, Int, Int],
            rows: &accepted,
            values: |&i: &usize| -> [Param; 8] {
                let (user, new, now) = requests[i];
                [
                    user.0.into(),
                    new.symbol.as_str().into(),
                    new.direction.as_str().into(),
                    new.stake.cents().into(),
                    new.duration_ms.into(),
                    i64::from(new.payout_rate_bp).into(),
                    now.timestamp_millis().into(),
                    new.feed_grace_ms.into(),
                ]
            },
        };
        let ids = self.insert_with_transfers(tx, &trades, &mut transfers).await?;
        for (&i, &id) in accepted.iter().zip(&ids) {
            let (user, new, now) = requests[i];
            outcomes[i] =
                Some(OpenOutcome::Opened(TradeRecord::opened(id, user, new, now.timestamp_millis())));
        }
        outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Corrupt("a trade request without an outcome".into())))
            .collect()
    }

    pub async fn trade(&self, id: i64) -> StoreResult<Option<TradeRecord>> {
        let row: Option<TradeRow> =
            sqlx::query_as(&format!("SELECT {TRADE_COLUMNS} FROM trades WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(TradeRecord::try_from).transpose()
    }

    /// A page of trades, newest first.
    pub async fn trades(&self, query: &TradeQuery) -> StoreResult<Vec<TradeRecord>> {
        let rows: Vec<TradeRow> = sqlx::query_as(&format!(
            "SELECT {TRADE_COLUMNS} FROM trades \
             WHERE id < $1 \
               AND (CAST($2 AS BIGINT) IS NULL OR user_id = $2) \
               AND (CAST($3 AS TEXT) IS NULL OR symbol = $3) \
               AND (CAST($4 AS TEXT) IS NULL OR status = $4) \
               AND (CAST($5 AS TEXT) IS NULL OR result = $5) \
               AND accepted_at >= $7 AND accepted_at < $8 \
             ORDER BY id DESC LIMIT $6"
        ))
        .bind(query.before.unwrap_or(i64::MAX))
        .bind(query.user.map(|u| u.0))
        .bind(query.symbol.as_deref())
        .bind(query.status.map(TradeStatus::as_str))
        .bind(query.result.map(TradeResult::as_str))
        .bind(i64::from(query.limit))
        .bind(query.from.unwrap_or(i64::MIN))
        .bind(query.to.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        records(rows)
    }

    /// Every active trade, oldest first: what settlement watches.
    pub async fn active_trades(&self) -> StoreResult<Vec<TradeRecord>> {
        let rows: Vec<TradeRow> = sqlx::query_as(&format!(
            "SELECT {TRADE_COLUMNS} FROM trades WHERE status = 'active' ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        records(rows)
    }

    /// How many of settlement's transactions may run at once. One on SQLite, whose one writer
    /// would run them back to back ahead of the openings queued behind them. On PostgreSQL each
    /// has a connection and its users' row locks of its own; one at a time, settlement waited on
    /// its own round trips and commits and fell seconds behind 64 creating clients. Eight
    /// settled a burst faster still, but took more of the database's CPU from the openings
    /// (docs/performance.md, fifteenth session).
    pub fn settlement_writes_at_once(&self) -> usize {
        match self.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        }
    }

    /// Records the entry ticks of active trades, each once, in one transaction. Returns the ids
    /// of the trades this call entered (another node may have been first).
    #[tracing::instrument(skip_all, fields(batch = entries.len()))]
    pub async fn set_entries(&self, entries: &[(i64, TradeSpot, i64)]) -> StoreResult<Vec<i64>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        self.write_on_writer(|reply| Work::Entries { entries: entries.to_vec(), reply }).await
    }

    /// [`Store::set_entries`] inside `tx`.
    pub(crate) async fn set_entries_in(
        &self,
        tx: &mut BatchTx<'_>,
        entries: &[(i64, TradeSpot, i64)],
    ) -> StoreResult<Vec<i64>> {
        let mut entered = Vec::with_capacity(entries.len());
        for chunk in entries.chunks(CHUNK) {
            let mut binds = self.binds();
            let rows: Vec<[Param; 6]> = chunk
                .iter()
                .map(|(trade_id, entry, expires_at)| {
                    [
                        (*trade_id).into(),
                        entry.seq.into(),
                        entry.ts.into(),
                        entry.price.units().into(),
                        entry.epoch_id.into(),
                        (*expires_at).into(),
                    ]
                })
                .collect();
            let sql = format!(
                "UPDATE trades SET entry_seq = d.seq, entry_ts = d.ts, entry_price = d.price, \
                        entry_epoch_id = d.epoch_id, expires_at = d.expires_at \
                 FROM (SELECT column1 AS id, column2 AS seq, column3 AS ts, column4 AS price, \
                              column5 AS epoch_id, column6 AS expires_at FROM ({}) AS v) AS d \
                 WHERE trades.id = d.id AND {} \
                   AND trades.settled_at IS NULL AND trades.entry_seq IS NULL \
                 RETURNING trades.id",
                binds.rows([Int; 6], &rows),
                listed_by_key(&mut binds, &rows),
            );
            let rows: Vec<(i64,)> = tx.fetch(&sql, binds.params(), binds.prepared()).await?;
            entered.extend(rows.into_iter().map(|(id,)| id));
        }
        Ok(entered)
    }

    /// Ends trades in one transaction (one commit for a whole batch), or two where another
    /// transaction holds some of their users' accounts. Each trade ends only if it is still
    /// active: a trade already ended elsewhere is skipped and moves no money.
    #[tracing::instrument(skip_all, fields(batch = finishes.len()))]
    pub async fn finish_trades(&self, finishes: &[Finish], now: DateTime<Utc>) -> Endings {
        if finishes.is_empty() {
            return Endings { ended: Vec::new(), failed: None };
        }
        // The trades of users whose accounts an opening batch holds are ended right after the
        // others, waiting for those locks: the openings take what is free and never wait, and
        // a settlement that waited for them lost to every batch that took a lock ahead of it.
        let finish = |finishes: Vec<Finish>, locking| {
            self.write_on_writer(move |reply| Work::Finish { finishes, now, locking, reply })
        };
        let (mut ended, left) = match finish(finishes.to_vec(), Locking::SkipHeld).await {
            Ok(done) => done,
            Err(error) => return Endings { ended: Vec::new(), failed: Some(error) },
        };
        let mut failed = None;
        if !left.is_empty() {
            match finish(left, Locking::Wait).await {
                Ok((more, _)) => ended.extend(more),
                Err(error) => failed = Some(error),
            }
            ended.sort_by_key(|t| t.id);
        }
        Endings { ended, failed }
    }

    /// Sells a trade back: ends it with `finish` if it is still active, and remembers the answer
    /// under `key` in the same transaction, so that a retry gets the same sale.
    #[tracing::instrument(skip_all)]
    pub async fn sell_trade(
        &self,
        finish: Finish,
        key: Option<IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> StoreResult<SaleOutcome> {
        self.write_on_writer(move |reply| Work::Sell { finish, key, now, reply }).await
    }

    /// What a sale's idempotency key answered before, if it was used: the sale as it was
    /// answered, or [`SaleOutcome::KeyReused`].
    pub async fn remembered_sale(
        &self,
        user: UserId,
        key: &IdempotencyKey,
    ) -> StoreResult<Option<SaleOutcome>> {
        Ok(self.remembered_answer(user, key).await?.map(|remembered| match remembered {
            Remembered::Answer(sold) => SaleOutcome::Replayed(sold),
            Remembered::OtherRequest => SaleOutcome::KeyReused,
        }))
    }

    /// What an opening's idempotency key answered before, if it was used: the trade as it was
    /// opened, or [`OpenOutcome::KeyReused`].
    pub async fn remembered_opening(
        &self,
        user: UserId,
        key: &IdempotencyKey,
    ) -> StoreResult<Option<OpenOutcome>> {
        Ok(self.remembered_answer(user, key).await?.map(|remembered| match remembered {
            Remembered::Answer(trade) => OpenOutcome::Replayed(trade),
            Remembered::OtherRequest => OpenOutcome::KeyReused,
        }))
    }

    /// An idempotency record read outside any batch, for a request answered before it reaches
    /// the writer (which reads it again under the user's lock).
    async fn remembered_answer<T: DeserializeOwned>(
        &self,
        user: UserId,
        key: &IdempotencyKey,
    ) -> StoreResult<Option<Remembered<T>>> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT request_hash, response FROM idempotency_keys WHERE user_id = $1 AND key = $2",
        )
        .bind(user.0)
        .bind(key.key.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|record| remembered_from(key, record)).transpose()
    }

    /// [`Store::sell_trade`] inside `tx`.
    pub(crate) async fn sell_trade_in(
        &self,
        tx: &mut BatchTx<'_>,
        finish: &Finish,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> StoreResult<SaleOutcome> {
        let user = finish.user_id;
        if let Some(key) = key {
            // The user's accounts first: a retry racing the first request waits for it here,
            // and then finds its key (read after the lock) rather than a trade already sold.
            self.lock_accounts(tx, &[user], Locking::Wait).await?;
            match self.remembered(tx, user, key).await? {
                Some(Remembered::Answer(trade)) => return Ok(SaleOutcome::Replayed(trade)),
                Some(Remembered::OtherRequest) => return Ok(SaleOutcome::KeyReused),
                None => {}
            }
        }
        let (mut ended, _) =
            self.finish_trades_in(tx, std::slice::from_ref(finish), now, Locking::Wait).await?;
        let Some(sold) = ended.pop() else { return Ok(SaleOutcome::NotActive) };
        if let Some(key) = key {
            self.remember(tx, user, key, &sold, now).await?;
        }
        Ok(SaleOutcome::Sold(sold))
    }

    /// [`Store::finish_trades`] inside `tx`; returns the trades it ended, as they now are, in id
    /// order, and the endings it left out (see [`Locking::SkipHeld`]).
    pub(crate) async fn finish_trades_in(
        &self,
        tx: &mut BatchTx<'_>,
        finishes: &[Finish],
        now: DateTime<Utc>,
        locking: Locking,
    ) -> StoreResult<(Vec<TradeRecord>, Vec<Finish>)> {
        // One global order (user, then trade) for the locks a batch takes, so that batches on
        // two nodes cannot deadlock each other: the accounts first, all at once.
        let mut ordered: Vec<&Finish> = finishes.iter().collect();
        ordered.sort_by_key(|f| (f.user_id, f.trade_id));
        let mut users: Vec<UserId> = ordered.iter().map(|f| f.user_id).collect();
        users.dedup();
        let mut accounts = self.lock_accounts(tx, &users, locking).await?;
        let (ordered, left): (Vec<&Finish>, Vec<&Finish>) =
            ordered.into_iter().partition(|f| accounts.holds(f.user_id));
        let mut still_active = self.end_settled_trades(tx, &ordered, now).await?;
        for finish in ordered.iter().filter(|f| !matches!(f.ending, Ending::Settled { .. })) {
            if let Some(trade) = self.end_trade(tx, finish, now).await? {
                still_active.insert(finish.trade_id, trade);
            }
        }
        let mut ended = Vec::with_capacity(finishes.len());
        let mut transfers = Vec::with_capacity(finishes.len());
        for finish in ordered {
            let Some(trade) = still_active.remove(&finish.trade_id) else { continue };
            let reference = Some(finish.trade_id.to_string());
            let checked = accounts
                .apply(self, finish.user_id, &finish.transfer, reference, now)?
                .map_err(|e| corrupt(finish.trade_id, format!("its release was refused: {e}")))?;
            transfers.push(checked);
            ended.push(trade);
        }
        self.write_transfers(tx, &transfers).await?;
        self.add_turnover_in(tx, &ended).await?;
        ended.sort_by_key(|t| t.id);
        Ok((ended, left.into_iter().cloned().collect()))
    }

    /// Marks the settled endings among `finishes` in bulk, inside `w`. Returns the trades that
    /// were still active (and now are not), by id, as they now are.
    async fn end_settled_trades(
        &self,
        tx: &mut BatchTx<'_>,
        finishes: &[&Finish],
        now: DateTime<Utc>,
    ) -> StoreResult<HashMap<i64, TradeRecord>> {
        let settled: Vec<(i64, TradeResult, TradeSpot, Money, i64)> = finishes
            .iter()
            .filter_map(|f| match &f.ending {
                Ending::Settled { exit, result, grace_ms } => {
                    Some((f.trade_id, *result, *exit, f.payout, *grace_ms))
                }
                _ => None,
            })
            .collect();
        let mut ended = HashMap::with_capacity(settled.len());
        for chunk in settled.chunks(CHUNK) {
            let mut binds = self.binds();
            let rows: Vec<[Param; 8]> = chunk
                .iter()
                .map(|(id, result, exit, payout, grace_ms)| {
                    [
                        (*id).into(),
                        result.as_str().into(),
                        exit.seq.into(),
                        exit.ts.into(),
                        exit.price.units().into(),
                        exit.epoch_id.into(),
                        payout.cents().into(),
                        (*grace_ms).into(),
                    ]
                })
                .collect();
            let settled_at = binds.one(now.timestamp_millis());
            let sql = format!(
                "UPDATE trades SET status = 'settled', result = d.result, exit_seq = d.exit_seq, \
                        exit_ts = d.exit_ts, exit_price = d.exit_price, exit_epoch_id = d.exit_epoch_id, \
                        payout = d.payout, settled_at = {settled_at}, feed_grace_ms = d.feed_grace_ms \
                 FROM (SELECT column1 AS id, column2 AS result, column3 AS exit_seq, column4 AS exit_ts, \
                              column5 AS exit_price, column6 AS exit_epoch_id, column7 AS payout, \
                              column8 AS feed_grace_ms \
                       FROM ({}) AS v) AS d \
                 WHERE trades.id = d.id AND {} AND trades.settled_at IS NULL \
                 RETURNING {}",
                binds.rows([Int, Text, Int, Int, Int, Int, Int, Int], &rows),
                listed_by_key(&mut binds, &rows),
                *UPDATED_TRADE_COLUMNS,
            );
            let rows: Vec<TradeRow> = tx.fetch(&sql, binds.params(), binds.prepared()).await?;
            for trade in records(rows)? {
                ended.insert(trade.id, trade);
            }
        }
        Ok(ended)
    }

    /// Marks one trade ended inside `w` and returns it as it now is; `None` when it was no
    /// longer active.
    async fn end_trade(
        &self,
        tx: &mut BatchTx<'_>,
        finish: &Finish,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<TradeRecord>> {
        let (status, result, exit, reason, grace_ms) = match &finish.ending {
            Ending::Settled { exit, result, grace_ms } => {
                (TradeStatus::Settled, Some(*result), Some(*exit), None, Some(*grace_ms))
            }
            Ending::Sold { .. } => (TradeStatus::Sold, None, None, None, None),
            Ending::Void { reason, grace_ms } => {
                (TradeStatus::Void, None, None, Some(reason.as_str()), Some(*grace_ms))
            }
        };
        // Still active, said as in `listed_by_key`.
        let updated: Option<TradeRow> = tx
            .fetch_optional(
                &format!(
                    "UPDATE trades SET status = $1, result = $2, exit_seq = $3, exit_ts = $4, exit_price = $5, \
                            exit_epoch_id = $6, payout = $7, settled_at = $8, void_reason = $9, \
                            feed_grace_ms = COALESCE($10, feed_grace_ms) \
                     WHERE id = $11 AND settled_at IS NULL RETURNING {TRADE_COLUMNS}"
                ),
                &[
                    status.as_str().into(),
                    result.map(|r| r.as_str().to_owned()).into(),
                    exit.map(|e| e.seq).into(),
                    exit.map(|e| e.ts).into(),
                    exit.map(|e| e.price.units()).into(),
                    exit.map(|e| e.epoch_id).into(),
                    finish.payout.cents().into(),
                    now.timestamp_millis().into(),
                    reason.map(str::to_owned).into(),
                    grace_ms.into(),
                    finish.trade_id.into(),
                ],
            )
            .await?;
        updated.map(TradeRecord::try_from).transpose()
    }

    /// Sets VIP levels, in one transaction: each `(user, level, turnover)` only if the user's
    /// turnover from `first_day` on is still `turnover`, the one the level was earned by. A
    /// level worked out from an older read must not overwrite a newer one; and the step that
    /// changed the turnover since sets the level itself, after its own commit.
    pub async fn set_vip_levels(&self, levels: &[(UserId, u32, Money)], first_day: i64) -> StoreResult<()> {
        if levels.is_empty() {
            return Ok(());
        }
        // In user order, as every transaction that locks users' rows takes them: two nodes
        // moving overlapping users cannot deadlock each other.
        let mut levels = levels.to_vec();
        levels.sort_unstable_by_key(|(user, ..)| *user);
        let mut w = self.begin_write().await?;
        for (user, level, turnover) in &levels {
            sqlx::query(
                "UPDATE users SET vip_level = $1 WHERE id = $2 AND vip_level <> $1 \
                 AND (SELECT CAST(COALESCE(SUM(stake), 0) AS BIGINT) FROM turnover_days \
                      WHERE user_id = $2 AND day >= $3) = $4",
            )
            .bind(i64::from(*level))
            .bind(user.0)
            .bind(first_day)
            .bind(turnover.cents())
            .execute(&mut *w.tx)
            .await?;
        }
        w.tx.commit().await?;
        let users: Vec<UserId> = levels.iter().map(|(user, ..)| *user).collect();
        self.users_changed(&users).await;
        Ok(())
    }

    pub async fn trade_counts(&self, user: UserId) -> StoreResult<TradeCounts> {
        let row: (i64, i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT \
               CAST(COALESCE(SUM(CASE WHEN result = 'win' THEN 1 ELSE 0 END), 0) AS BIGINT), \
               CAST(COALESCE(SUM(CASE WHEN result = 'lose' THEN 1 ELSE 0 END), 0) AS BIGINT), \
               CAST(COALESCE(SUM(CASE WHEN result = 'tie' THEN 1 ELSE 0 END), 0) AS BIGINT), \
               CAST(COALESCE(SUM(CASE WHEN status = 'sold' THEN 1 ELSE 0 END), 0) AS BIGINT), \
               CAST(COALESCE(SUM(CASE WHEN status = 'void' THEN 1 ELSE 0 END), 0) AS BIGINT), \
               CAST(COALESCE(SUM(CASE WHEN status = 'active' THEN 1 ELSE 0 END), 0) AS BIGINT), \
               CAST(COALESCE(SUM(CASE WHEN status <> 'active' THEN payout - stake ELSE 0 END), 0) AS BIGINT), \
               CAST(COALESCE(SUM(CASE WHEN result IN ('win', 'lose') THEN payout_rate_bp ELSE 0 END), 0) AS BIGINT) \
             FROM trades WHERE user_id = $1",
        )
        .bind(user.0)
        .fetch_one(&self.pool)
        .await?;
        let (wins, losses, ties, sold, void, active, net, rate_sum) = row;
        Ok(TradeCounts {
            wins,
            losses,
            ties,
            sold,
            void,
            active,
            net_profit: Money::from_cents(net),
            decided_rate_bp_sum: rate_sum,
        })
    }
}
