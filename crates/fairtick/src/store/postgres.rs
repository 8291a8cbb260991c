//! The PostgreSQL backend, for production and for several nodes sharing one database.
//!
//! `synchronous_commit` stays on (the server default): an acknowledged money movement is on disk.

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use super::StoreResult;
use super::binds::SqlType;
use super::dual::Param;

/// Every connection's settings. The planner's default cost of a random page read (4, four
/// times a sequential one) prices a disk seek; this service's hot rows (accounts, open trades,
/// index pages) are in shared buffers, where a random read costs about what a sequential one
/// does. At the default, a batch's balance update (`UPDATE accounts … FROM` its changes) read
/// every account in a sequential scan, for a hash join, instead of a few by key: 0.7 ms a batch
/// with 2,000 accounts, seen with `auto_explain`, and growing with the accounts until there are
/// enough of them for the planner to turn to the key at any cost.
const SETTINGS: &str = "SET random_page_cost = 1.1";

pub(super) async fn connect(url: &str, options: AnyPoolOptions) -> StoreResult<AnyPool> {
    let native = sqlx::PgPool::connect(url).await?;
    sqlx::migrate!("migrations/postgres").run(&native).await?;
    native.close().await;
    super::pool_with_settings(url, options, SETTINGS).await
}

/// The right to produce one market's ticks. On PostgreSQL it is a session-level advisory lock
/// held on a dedicated connection: if this node dies, its connection closes, the lock is freed
/// and another node takes over. On SQLite there is only ever one node.
pub enum Leadership {
    Local,
    /// A connection of its own, out of the pool: dropping it closes it, which frees the lock.
    Postgres(sqlx::AnyConnection),
}

impl Leadership {
    /// Fails when the lock's connection is gone, i.e. the lock may be someone else's now.
    pub async fn check(&mut self) -> StoreResult<()> {
        if let Leadership::Postgres(conn) = self {
            sqlx::query("SELECT 1").execute(conn).await?;
        }
        Ok(())
    }
}

/// The advisory-lock key of a market: the first 8 bytes of SHA-256 of a fixed prefix and the
/// symbol, so that no other use of advisory locks can collide with it by accident.
fn feed_lock_key(symbol: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("fairtick/feed/{symbol}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

impl super::Store {
    /// Tries to become the producer of `symbol`'s ticks; `None` if another node is.
    pub async fn try_lead_market(&self, symbol: &str) -> StoreResult<Option<Leadership>> {
        if self.backend == super::Backend::Sqlite {
            return Ok(Some(Leadership::Local));
        }
        let mut conn = self.pool.acquire().await?;
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(feed_lock_key(symbol))
            .fetch_one(&mut *conn)
            .await?;
        Ok(locked.then(|| Leadership::Postgres(conn.detach())))
    }
}

impl super::Store {
    /// Sends each of `payloads`, in order, to every listener of `channel` (PostgreSQL only):
    /// one statement for many, since a round trip per event cost more than the event.
    pub async fn notify(&self, channel: &str, payloads: &[String]) -> StoreResult<()> {
        for chunk in payloads.chunks(super::bulk::CHUNK) {
            let mut binds = self.binds();
            let rows: Vec<[Param; 1]> = chunk.iter().map(|payload| [payload.as_str().into()]).collect();
            let sql = format!(
                "SELECT pg_notify({}, v.column1) FROM ({}) AS v",
                binds.one(channel),
                binds.rows([SqlType::Text], &rows)
            );
            self.execute_pooled(&sql, binds.params(), binds.prepared()).await?;
        }
        Ok(())
    }

    /// A dedicated connection listening on every one of `channels`.
    pub async fn listen(&self, channels: &[&str]) -> StoreResult<sqlx::postgres::PgListener> {
        let url =
            self.url.as_deref().ok_or_else(|| super::StoreError::Corrupt("no URL to listen on".into()))?;
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen_all(channels.iter().copied()).await?;
        Ok(listener)
    }
}
