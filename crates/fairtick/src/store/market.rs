//! Market data: epochs (commitment, sealed then revealed seed) and ticks, with the history
//! queries charts and verifiers need.

use fairtick_core::price::Price;
use fairtick_core::trade::Spot;

use super::dual::Param;
use super::{Backend, Store, StoreError, StoreResult, WriteTx};

/// One stored tick. Prices are units at scale 8; `ts` is milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TickRecord {
    pub symbol: String,
    pub seq: i64,
    pub epoch_id: i64,
    pub ts: i64,
    pub price: Price,
}

impl TickRecord {
    /// What the trade rules read of it.
    pub fn spot(&self) -> Spot {
        Spot { seq: self.seq, ts: self.ts, price: self.price }
    }
}

/// What became of a tick offered to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Appended {
    Stored,
    /// Stamped at or before its market's void horizon: a trade was voided because no tick had
    /// come by then, so none may be recorded as having come.
    Late {
        horizon: i64,
    },
}

/// An epoch as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochRecord {
    pub id: i64,
    pub symbol: String,
    pub kind: String,
    pub volatility_bp: i64,
    pub tick_interval_ms: i64,
    pub commitment: String,
    pub sealed_seed: Option<String>,
    pub revealed_seed: Option<String>,
    pub start_price: Price,
    pub start_seq: i64,
    pub end_seq: Option<i64>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// What it announced when it started; none for epochs older than announcements.
    pub announced: Option<Announcement>,
}

/// What an epoch publishes about the next when it starts (docs/fairness.md §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The seq of its own last tick, if it runs its course.
    pub planned_end_seq: i64,
    /// The id the market's next epoch will have.
    pub next_id: i64,
    /// The next epoch's commitment.
    pub next_commitment: String,
    /// The next epoch's seed, sealed; none when the next epoch is a replay.
    pub next_sealed_seed: Option<String>,
}

/// An epoch about to start: its commitment is stored before its first tick exists.
#[derive(Clone, Debug)]
pub struct NewEpoch<'a> {
    /// The id its predecessor announced; none reserves a new one.
    pub id: Option<i64>,
    pub symbol: &'a str,
    pub kind: &'a str,
    pub volatility_bp: i64,
    pub tick_interval_ms: i64,
    pub commitment: &'a str,
    pub sealed_seed: Option<&'a str>,
    pub start_price: Price,
    pub start_seq: i64,
    pub started_at: i64,
    pub planned_end_seq: i64,
    pub next_commitment: &'a str,
    pub next_sealed_seed: Option<&'a str>,
}

/// The ids of an epoch just stored and of the one it announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochIds {
    pub id: i64,
    pub next_id: i64,
}

/// One OHLC bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candle {
    /// Start of the bucket, ms.
    pub ts: i64,
    pub open: Price,
    pub high: Price,
    pub low: Price,
    pub close: Price,
    pub ticks: i64,
}

const EPOCH_COLUMNS: &str = "id, symbol, kind, volatility_bp, tick_interval_ms, commitment, sealed_seed, \
     revealed_seed, start_price, start_seq, end_seq, started_at, ended_at, planned_end_seq, next_id, \
     next_commitment, next_sealed_seed";

#[derive(sqlx::FromRow)]
struct EpochRow {
    id: i64,
    symbol: String,
    kind: String,
    volatility_bp: i64,
    tick_interval_ms: i64,
    commitment: String,
    sealed_seed: Option<String>,
    revealed_seed: Option<String>,
    start_price: i64,
    start_seq: i64,
    end_seq: Option<i64>,
    started_at: i64,
    ended_at: Option<i64>,
    planned_end_seq: Option<i64>,
    next_id: Option<i64>,
    next_commitment: Option<String>,
    next_sealed_seed: Option<String>,
}

fn price(units: i64) -> StoreResult<Price> {
    Price::from_units(units).map_err(|e| StoreError::Corrupt(format!("stored price {units}: {e}")))
}

fn epoch_from_row(row: EpochRow) -> StoreResult<EpochRecord> {
    let announced = match (row.planned_end_seq, row.next_id, row.next_commitment) {
        (Some(planned_end_seq), Some(next_id), Some(next_commitment)) => Some(Announcement {
            planned_end_seq,
            next_id,
            next_commitment,
            next_sealed_seed: row.next_sealed_seed,
        }),
        _ => None,
    };
    Ok(EpochRecord {
        id: row.id,
        symbol: row.symbol,
        kind: row.kind,
        volatility_bp: row.volatility_bp,
        tick_interval_ms: row.tick_interval_ms,
        commitment: row.commitment,
        sealed_seed: row.sealed_seed,
        revealed_seed: row.revealed_seed,
        start_price: price(row.start_price)?,
        start_seq: row.start_seq,
        end_seq: row.end_seq,
        started_at: row.started_at,
        ended_at: row.ended_at,
        announced,
    })
}

fn ticks_from_rows(rows: Vec<(String, i64, i64, i64, i64)>) -> StoreResult<Vec<TickRecord>> {
    rows.into_iter()
        .map(|(symbol, seq, epoch_id, ts, units)| {
            Ok(TickRecord { symbol, seq, epoch_id, ts, price: price(units)? })
        })
        .collect()
}

impl Store {
    /// Stores an epoch with its announcement of the next, reserving the next one's id (and its
    /// own, unless its predecessor announced one).
    #[tracing::instrument(skip_all)]
    pub async fn create_epoch(&self, epoch: &NewEpoch<'_>) -> StoreResult<EpochIds> {
        let mut w = self.begin_write().await?;
        let id = match epoch.id {
            Some(id) => id,
            None => self.reserve_epoch_id(&mut w).await?,
        };
        let next_id = self.reserve_epoch_id(&mut w).await?;
        sqlx::query(
            "INSERT INTO epochs (id, symbol, kind, volatility_bp, tick_interval_ms, commitment, sealed_seed, \
                                 start_price, start_seq, started_at, planned_end_seq, next_id, \
                                 next_commitment, next_sealed_seed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(id)
        .bind(epoch.symbol)
        .bind(epoch.kind)
        .bind(epoch.volatility_bp)
        .bind(epoch.tick_interval_ms)
        .bind(epoch.commitment)
        .bind(epoch.sealed_seed)
        .bind(epoch.start_price.units())
        .bind(epoch.start_seq)
        .bind(epoch.started_at)
        .bind(epoch.planned_end_seq)
        .bind(next_id)
        .bind(epoch.next_commitment)
        .bind(epoch.next_sealed_seed)
        .execute(&mut *w.tx)
        .await?;
        w.tx.commit().await?;
        Ok(EpochIds { id, next_id })
    }

    /// An epoch id no epoch has or will be given otherwise.
    async fn reserve_epoch_id(&self, w: &mut WriteTx) -> StoreResult<i64> {
        let (id,): (i64,) = match self.backend() {
            Backend::Postgres => {
                sqlx::query_as("SELECT nextval(pg_get_serial_sequence('epochs', 'id'))")
                    .fetch_one(&mut *w.tx)
                    .await?
            }
            Backend::Sqlite => {
                let reserved = sqlx::query_as("INSERT INTO epoch_ids DEFAULT VALUES RETURNING id")
                    .fetch_one(&mut *w.tx)
                    .await?;
                sqlx::query("DELETE FROM epoch_ids").execute(&mut *w.tx).await?;
                reserved
            }
        };
        Ok(id)
    }

    /// Ends an epoch: records its last tick and reveals its seed (if it has one).
    #[tracing::instrument(skip_all)]
    pub async fn close_epoch(
        &self,
        id: i64,
        end_seq: i64,
        revealed_seed: Option<&str>,
        ended_at: i64,
    ) -> StoreResult<()> {
        let mut w = self.begin_write().await?;
        self.lock_epoch(&mut w, id).await?;
        let (stored,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM ticks WHERE epoch_id = $1")
            .bind(id)
            .fetch_one(&mut *w.tx)
            .await?;
        sqlx::query(
            "UPDATE epochs SET end_seq = $1, revealed_seed = $2, sealed_seed = NULL, ended_at = $3 \
             WHERE id = $4 AND ended_at IS NULL",
        )
        .bind(stored.unwrap_or(end_seq).max(end_seq))
        .bind(revealed_seed)
        .bind(ended_at)
        .bind(id)
        .execute(&mut *w.tx)
        .await?;
        w.tx.commit().await?;
        Ok(())
    }

    /// Locks an epoch's row before it is ended or withdrawn: a tick being added to it (which
    /// holds it shared) is then committed, and seen by what follows; a tick added later finds
    /// it ended or gone and is refused (`append_tick`).
    async fn lock_epoch(&self, w: &mut WriteTx, id: i64) -> StoreResult<()> {
        let lock = self.for_update();
        sqlx::query(&format!("SELECT id FROM epochs WHERE id = $1{lock}"))
            .bind(id)
            .fetch_optional(&mut *w.tx)
            .await?;
        Ok(())
    }

    /// Deletes an open epoch that has no tick, and says whether it did: its seed then fixed no
    /// price, and it can start again as its predecessor announced it.
    #[tracing::instrument(skip_all)]
    pub async fn withdraw_empty_epoch(&self, id: i64) -> StoreResult<bool> {
        let mut w = self.begin_write().await?;
        self.lock_epoch(&mut w, id).await?;
        let deleted = sqlx::query(
            "DELETE FROM epochs WHERE id = $1 AND ended_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM ticks WHERE epoch_id = $1)",
        )
        .bind(id)
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        w.tx.commit().await?;
        Ok(deleted == 1)
    }

    /// Adds the market's void horizon, at time 0, unless it has one: before its first tick,
    /// since a tick is stored only while the horizon's row can be held (`append_tick`).
    pub async fn add_void_horizon(&self, symbol: &str) -> StoreResult<()> {
        let sql =
            "INSERT INTO void_horizons (symbol, horizon) VALUES ($1, 0) ON CONFLICT (symbol) DO NOTHING";
        self.write_now(sql, &[symbol.into()]).await?;
        Ok(())
    }

    /// Closes the market's record through `through` (ms), before trades are voided for want of
    /// a tick by then, and returns the horizon now in force: every tick stamped at or before it
    /// is stored, and so read by what follows, or will be refused (docs/fairness.md §6). Never
    /// closed past `margin_ms` before the database's clock: a node whose clock runs ahead would
    /// otherwise close it over ticks not yet due, and stop the market's feed until then.
    #[tracing::instrument(skip_all)]
    pub async fn raise_void_horizon(&self, symbol: &str, through: i64, margin_ms: i64) -> StoreResult<i64> {
        let through = through.min(self.database_now_ms().await? - margin_ms);
        // On PostgreSQL the upsert locks the row even when it changes nothing, and so waits for
        // a tick insert holding it to commit.
        let sql = "INSERT INTO void_horizons (symbol, horizon) VALUES ($1, CAST($2 AS BIGINT)) \
                   ON CONFLICT (symbol) DO UPDATE SET horizon = excluded.horizon \
                   WHERE void_horizons.horizon < excluded.horizon";
        self.write_now(sql, &[symbol.into(), through.into()]).await?;
        let (horizon,): (i64,) = sqlx::query_as("SELECT horizon FROM void_horizons WHERE symbol = $1")
            .bind(symbol)
            .fetch_one(&self.pool)
            .await?;
        Ok(horizon)
    }

    /// The time on the database's clock (ms): the one clock every node of a PostgreSQL store
    /// shares; SQLite's is this process's own.
    async fn database_now_ms(&self) -> StoreResult<i64> {
        match self.backend() {
            Backend::Sqlite => Ok(chrono::Utc::now().timestamp_millis()),
            Backend::Postgres => {
                let (now,): (i64,) = sqlx::query_as(
                    "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(now)
            }
        }
    }

    /// Stores a tick, unless it is stamped at or before its market's void horizon.
    #[tracing::instrument(skip_all)]
    pub async fn append_tick(&self, tick: &TickRecord) -> StoreResult<Appended> {
        let params: [Param; 5] = [
            tick.symbol.as_str().into(),
            tick.seq.into(),
            tick.epoch_id.into(),
            tick.ts.into(),
            tick.price.units().into(),
        ];
        // Only into an epoch still open: a producer that lost its lead without knowing it yet
        // must not add ticks to an epoch the next one has closed and revealed, whose prices
        // anyone could then work out before they were published. And only after the void
        // horizon, held shared until committed: a raise waits for this insert, or this insert
        // for the raise, and then sees it.
        let share = self.for_share();
        let sql = format!(
            "INSERT INTO ticks (symbol, seq, epoch_id, ts, price) \
             SELECT CAST($1 AS TEXT), CAST($2 AS BIGINT), CAST($3 AS BIGINT), CAST($4 AS BIGINT), \
                    CAST($5 AS BIGINT) \
             WHERE EXISTS (SELECT 1 FROM epochs WHERE id = $3 AND ended_at IS NULL{share}) \
               AND EXISTS (SELECT 1 FROM void_horizons \
                           WHERE symbol = $1 AND horizon < CAST($4 AS BIGINT){share})"
        );
        if self.write_now(&sql, &params).await? == 1 {
            return Ok(Appended::Stored);
        }
        let horizon: Option<(i64,)> = sqlx::query_as("SELECT horizon FROM void_horizons WHERE symbol = $1")
            .bind(&tick.symbol)
            .fetch_optional(&self.pool)
            .await?;
        match horizon {
            Some((horizon,)) if horizon >= tick.ts => Ok(Appended::Late { horizon }),
            Some(_) => Err(StoreError::Superseded(format!(
                "epoch {} of {} is closed; tick {} was not added",
                tick.epoch_id, tick.symbol, tick.seq
            ))),
            None => Err(StoreError::Corrupt(format!(
                "{} has no void horizon; tick {} was not added",
                tick.symbol, tick.seq
            ))),
        }
    }

    pub async fn last_tick(&self, symbol: &str) -> StoreResult<Option<TickRecord>> {
        let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT symbol, seq, epoch_id, ts, price FROM ticks WHERE symbol = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(symbol)
        .fetch_all(&self.pool)
        .await?;
        Ok(ticks_from_rows(rows)?.pop())
    }

    /// Epochs of `symbol` that were started and never ended (a crash or a lost leadership).
    pub async fn open_epochs(&self, symbol: &str) -> StoreResult<Vec<EpochRecord>> {
        let rows: Vec<EpochRow> = sqlx::query_as(&format!(
            "SELECT {EPOCH_COLUMNS} FROM epochs WHERE symbol = $1 AND ended_at IS NULL ORDER BY id"
        ))
        .bind(symbol)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(epoch_from_row).collect()
    }

    /// The market's newest epoch, whose announcement the next one follows.
    pub async fn latest_epoch(&self, symbol: &str) -> StoreResult<Option<EpochRecord>> {
        let row: Option<EpochRow> = sqlx::query_as(&format!(
            "SELECT {EPOCH_COLUMNS} FROM epochs WHERE symbol = $1 ORDER BY id DESC LIMIT 1"
        ))
        .bind(symbol)
        .fetch_optional(&self.pool)
        .await?;
        row.map(epoch_from_row).transpose()
    }

    pub async fn epoch(&self, id: i64) -> StoreResult<Option<EpochRecord>> {
        let row: Option<EpochRow> =
            sqlx::query_as(&format!("SELECT {EPOCH_COLUMNS} FROM epochs WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(epoch_from_row).transpose()
    }

    /// Epochs of a market, newest first, older than `before` (an epoch id) when given.
    pub async fn epochs(
        &self,
        symbol: &str,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<EpochRecord>> {
        let rows: Vec<EpochRow> = sqlx::query_as(&format!(
            "SELECT {EPOCH_COLUMNS} FROM epochs WHERE symbol = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(symbol)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(epoch_from_row).collect()
    }

    /// The ticks of one epoch in order, at most `limit`.
    pub async fn epoch_ticks(&self, epoch_id: i64, limit: u32) -> StoreResult<Vec<TickRecord>> {
        let rows = sqlx::query_as(
            "SELECT symbol, seq, epoch_id, ts, price FROM ticks WHERE epoch_id = $1 ORDER BY seq LIMIT $2",
        )
        .bind(epoch_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        ticks_from_rows(rows)
    }

    /// The last seq written in an epoch, if any tick was.
    pub async fn epoch_last_seq(&self, epoch_id: i64) -> StoreResult<Option<i64>> {
        let (seq,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM ticks WHERE epoch_id = $1")
            .bind(epoch_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(seq)
    }

    /// Ticks in `[from, to)` (ms) with `seq > after_seq`, oldest first, at most `limit`. Without
    /// a lower bound, the newest `limit` ticks before `to`.
    pub async fn ticks(
        &self,
        symbol: &str,
        from: Option<i64>,
        to: Option<i64>,
        after_seq: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<TickRecord>> {
        let newest_first = from.is_none() && after_seq.is_none();
        let order = if newest_first { "DESC" } else { "ASC" };
        let rows = sqlx::query_as(&format!(
            "SELECT symbol, seq, epoch_id, ts, price FROM ticks \
             WHERE symbol = $1 AND ts >= $2 AND ts < $3 AND seq > $4 ORDER BY seq {order} LIMIT $5"
        ))
        .bind(symbol)
        .bind(from.unwrap_or(i64::MIN))
        .bind(to.unwrap_or(i64::MAX))
        .bind(after_seq.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut ticks = ticks_from_rows(rows)?;
        if newest_first {
            ticks.reverse();
        }
        Ok(ticks)
    }

    /// OHLC buckets of `interval_ms` over `[from, to)`, oldest first. The window is bounded by
    /// the caller (at most `limit` buckets), so the scan is too.
    pub async fn candles(
        &self,
        symbol: &str,
        interval_ms: i64,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<Candle>> {
        let rows: Vec<(i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT b.bucket * $2, o.price, b.high, b.low, c.price, b.n FROM ( \
                 SELECT ts / $2 AS bucket, MIN(seq) AS first_seq, MAX(seq) AS last_seq, \
                        MAX(price) AS high, MIN(price) AS low, COUNT(*) AS n \
                 FROM ticks WHERE symbol = $1 AND ts >= $3 AND ts < $4 GROUP BY ts / $2 \
             ) b \
             JOIN ticks o ON o.symbol = $1 AND o.seq = b.first_seq \
             JOIN ticks c ON c.symbol = $1 AND c.seq = b.last_seq \
             ORDER BY b.bucket",
        )
        .bind(symbol)
        .bind(interval_ms)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(ts, open, high, low, close, ticks)| {
                Ok(Candle {
                    ts,
                    open: price(open)?,
                    high: price(high)?,
                    low: price(low)?,
                    close: price(close)?,
                    ticks,
                })
            })
            .collect()
    }

    /// Deletes ticks older than `before` (ms). Epochs and their seeds stay: a revealed epoch's
    /// prices can always be recomputed.
    #[tracing::instrument(skip_all)]
    pub async fn prune_ticks(&self, symbol: &str, before: i64) -> StoreResult<u64> {
        let mut w = self.begin_write().await?;
        // Never the ticks an open trade still needs: from its acceptance on, settlement finds
        // its entry and exit among them (a trade may run longer than ticks are kept).
        let done = sqlx::query(
            "DELETE FROM ticks WHERE symbol = $1 AND ts < $2 AND ts < COALESCE( \
               (SELECT MIN(accepted_at) FROM trades WHERE symbol = $1 AND status = 'active'), $2)",
        )
        .bind(symbol)
        .bind(before)
        .execute(&mut *w.tx)
        .await?;
        w.tx.commit().await?;
        Ok(done.rows_affected())
    }
}
