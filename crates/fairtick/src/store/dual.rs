//! Statements written once that run on either engine: through sqlx, or on a SQLite
//! connection of fairtick's own, called directly.
//!
//! Through sqlx, every SQLite statement is handed to a worker thread and its answer handed
//! back; with both cores busy, each hand-off waits to be scheduled: a group-commit batch of a
//! handful of statements took 3–5 ms that way, and the reads every request makes spent more
//! time waiting for a thread than reading. So on SQLite the group-commit writer runs its batch
//! on its own connection ([`BatchTx`]), and the hot reads run on the calling thread
//! ([`Store::read_rows`]). The SQL is the same for both engines: only how it runs differs.

use std::path::PathBuf;

use parking_lot::Mutex;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Arguments, Decode, Type};

use super::{Store, StoreError, StoreResult, WriteTx};

/// A bound value. Nulls carry their type: PostgreSQL checks it.
#[derive(Clone, Debug)]
pub(crate) enum Param {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Param {
    fn from(value: i64) -> Self {
        Param::Int(Some(value))
    }
}

impl From<Option<i64>> for Param {
    fn from(value: Option<i64>) -> Self {
        Param::Int(value)
    }
}

impl From<&str> for Param {
    fn from(value: &str) -> Self {
        Param::Text(Some(value.to_owned()))
    }
}

impl From<String> for Param {
    fn from(value: String) -> Self {
        Param::Text(Some(value))
    }
}

impl From<Option<String>> for Param {
    fn from(value: Option<String>) -> Self {
        Param::Text(value)
    }
}

/// Whether a statement is kept prepared for reuse. Statements built for one batch's number of
/// rows are not: a cache of one-off shapes would only hold memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prepared {
    Keep,
    Once,
}

/// A row type both engines can decode.
pub(crate) trait DualRow: Sized + Send + Unpin + for<'r> sqlx::FromRow<'r, AnyRow> {
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

/// A column type both engines can decode.
pub(crate) trait DualColumn:
    rusqlite::types::FromSql + for<'r> Decode<'r, Any> + Type<Any> + Send + Unpin
{
}

impl<T> DualColumn for T where T: rusqlite::types::FromSql + for<'r> Decode<'r, Any> + Type<Any> + Send + Unpin
{}

macro_rules! dual_row {
    ($($column:ident $index:tt),+) => {
        impl<$($column: DualColumn),+> DualRow for ($($column,)+) {
            fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(($(row.get::<_, $column>($index)?,)+))
            }
        }
    };
}

dual_row!(A 0);
dual_row!(A 0, B 1);
dual_row!(A 0, B 1, C 2);
dual_row!(A 0, B 1, C 2, D 3);

/// `params` as sqlx arguments, for `query_with` and `query_as_with` alike.
fn arguments(params: &[Param]) -> StoreResult<AnyArguments<'_>> {
    let mut arguments = AnyArguments::default();
    for param in params {
        match param {
            Param::Int(v) => arguments.add(*v),
            Param::Text(v) => arguments.add(v.clone()),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(arguments)
}

/// An open write transaction of either engine.
pub(crate) enum BatchTx<'a> {
    Sqlx(&'a mut WriteTx),
    /// A connection inside `BEGIN IMMEDIATE`, which its owner commits or rolls back. Held
    /// `mut` because a connection is `Send` but not `Sync`.
    Sqlite {
        conn: &'a mut rusqlite::Connection,
        /// Keep every statement prepared, bulk ones included: this turn's statements recur
        /// (settlement writes fixed-size chunks), where a create batch's vary with its size.
        recurring: bool,
    },
}

impl<'a> From<&'a mut WriteTx> for BatchTx<'a> {
    fn from(w: &'a mut WriteTx) -> Self {
        BatchTx::Sqlx(w)
    }
}

impl BatchTx<'_> {
    pub(crate) async fn execute(
        &mut self,
        sql: &str,
        params: &[Param],
        prepared: Prepared,
    ) -> StoreResult<u64> {
        Ok(match self {
            BatchTx::Sqlx(w) => sqlx::query_with(sql, arguments(params)?)
                .persistent(prepared == Prepared::Keep)
                .execute(&mut *w.tx)
                .await?
                .rows_affected(),
            BatchTx::Sqlite { conn, recurring } => {
                execute_sqlite(conn, sql, params, if *recurring { Prepared::Keep } else { prepared })?
            }
        })
    }

    pub(crate) async fn fetch<R: DualRow>(
        &mut self,
        sql: &str,
        params: &[Param],
        prepared: Prepared,
    ) -> StoreResult<Vec<R>> {
        match self {
            BatchTx::Sqlx(w) => {
                let query = sqlx::query_as_with::<_, R, _>(sql, arguments(params)?);
                Ok(query.persistent(prepared == Prepared::Keep).fetch_all(&mut *w.tx).await?)
            }
            BatchTx::Sqlite { conn, recurring } => {
                fetch_sqlite(conn, sql, params, if *recurring { Prepared::Keep } else { prepared })
            }
        }
    }

    pub(crate) async fn fetch_optional<R: DualRow>(
        &mut self,
        sql: &str,
        params: &[Param],
    ) -> StoreResult<Option<R>> {
        Ok(self.fetch(sql, params, Prepared::Keep).await?.into_iter().next())
    }
}

impl Store {
    /// The rows of a read that requests make all the time (the session behind a token, a
    /// user's trading limits): on SQLite on the calling thread, which costs less than handing
    /// it to a worker and waiting for the answer.
    pub(crate) async fn read_rows<R: DualRow>(
        &self,
        sql: &str,
        params: &[Param],
        prepared: Prepared,
    ) -> StoreResult<Vec<R>> {
        match &self.readers {
            Some(readers) => readers.with(|conn| fetch_sqlite(conn, sql, params, prepared)),
            None => self.fetch_pooled(sql, params, prepared).await,
        }
    }
}

impl Store {
    /// A write of one statement, committed by itself and durable when this returns, in one
    /// step: on SQLite on the calling thread (under the writer lock), on PostgreSQL in one round
    /// trip. For the price feed's ticks, whose every hand-off to a busy runtime thread showed
    /// as delivery lag: through sqlx the tick took four, each waiting out a fan-out in progress.
    pub(crate) async fn write_now(&self, sql: &str, params: &[Param]) -> StoreResult<u64> {
        let _writer = match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        match &self.own_writer {
            Some(own) => execute_sqlite(&own.conn.lock(), sql, params, Prepared::Keep),
            None => Ok(sqlx::query_with(sql, arguments(params)?).execute(&self.pool).await?.rows_affected()),
        }
    }

    /// The rows of a statement run through the pool, on either engine: for reads that may take
    /// a while, which would hold up the calling thread on SQLite.
    pub(crate) async fn fetch_pooled<R: DualRow>(
        &self,
        sql: &str,
        params: &[Param],
        prepared: Prepared,
    ) -> StoreResult<Vec<R>> {
        let query = sqlx::query_as_with::<_, R, _>(sql, arguments(params)?);
        Ok(query.persistent(prepared == Prepared::Keep).fetch_all(&self.pool).await?)
    }

    /// A statement run through the pool, on either engine.
    pub(crate) async fn execute_pooled(
        &self,
        sql: &str,
        params: &[Param],
        prepared: Prepared,
    ) -> StoreResult<()> {
        sqlx::query_with(sql, arguments(params)?)
            .persistent(prepared == Prepared::Keep)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// A SQLite connection for [`Store::write_now`], with the writer's settings (it leaves the
/// checkpoints to the checkpoint thread too).
pub(crate) struct SqliteOwnWriter {
    conn: Mutex<rusqlite::Connection>,
}

impl SqliteOwnWriter {
    pub(crate) fn open(file: &std::path::Path) -> StoreResult<SqliteOwnWriter> {
        Ok(SqliteOwnWriter { conn: Mutex::new(super::sqlite::writer_connection(file)?) })
    }
}

/// Read connections to the SQLite file, one per thread reading at the same moment (at most the
/// runtime's threads), kept for reuse.
pub(crate) struct SqliteReaders {
    file: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl SqliteReaders {
    pub(crate) fn new(file: PathBuf) -> SqliteReaders {
        SqliteReaders { file, idle: Mutex::new(Vec::new()) }
    }

    fn with<T>(&self, read: impl FnOnce(&mut rusqlite::Connection) -> StoreResult<T>) -> StoreResult<T> {
        let idle = self.idle.lock().pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => super::sqlite::reader_connection(&self.file)?,
        };
        let result = read(&mut conn);
        self.idle.lock().push(conn);
        result
    }
}

fn execute_sqlite(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Param],
    prepared: Prepared,
) -> StoreResult<u64> {
    let mut statement = sqlite_statement(conn, sql, prepared)?;
    bind_sqlite(&mut statement, params)?;
    Ok(statement.raw_execute()? as u64)
}

fn fetch_sqlite<R: DualRow>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Param],
    prepared: Prepared,
) -> StoreResult<Vec<R>> {
    let mut statement = sqlite_statement(conn, sql, prepared)?;
    bind_sqlite(&mut statement, params)?;
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(R::from_sqlite(row)?);
    }
    Ok(out)
}

/// A statement held by the connection's cache, or prepared for this one use.
enum SqliteStatement<'c> {
    Cached(rusqlite::CachedStatement<'c>),
    Once(rusqlite::Statement<'c>),
}

impl<'c> std::ops::Deref for SqliteStatement<'c> {
    type Target = rusqlite::Statement<'c>;

    fn deref(&self) -> &Self::Target {
        match self {
            SqliteStatement::Cached(s) => s,
            SqliteStatement::Once(s) => s,
        }
    }
}

impl std::ops::DerefMut for SqliteStatement<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            SqliteStatement::Cached(s) => s,
            SqliteStatement::Once(s) => s,
        }
    }
}

fn sqlite_statement<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    prepared: Prepared,
) -> rusqlite::Result<SqliteStatement<'c>> {
    Ok(match prepared {
        Prepared::Keep => SqliteStatement::Cached(conn.prepare_cached(sql)?),
        Prepared::Once => SqliteStatement::Once(conn.prepare(sql)?),
    })
}

/// Binds `params` the way sqlx does: `$N` (or `?N`) is the Nth value, an anonymous `?` the
/// next one in text order.
fn bind_sqlite(statement: &mut rusqlite::Statement<'_>, params: &[Param]) -> StoreResult<()> {
    for index in 1..=statement.parameter_count() {
        let position = match statement.parameter_name(index) {
            Some(name) => name.get(1..).and_then(|n| n.parse::<usize>().ok()),
            None => Some(index),
        };
        let param = position
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| params.get(n))
            .ok_or_else(|| StoreError::Corrupt(format!("parameter {index} of a statement has no value")))?;
        match param {
            Param::Int(v) => statement.raw_bind_parameter(index, v)?,
            Param::Text(v) => statement.raw_bind_parameter(index, v)?,
        }
    }
    Ok(())
}
