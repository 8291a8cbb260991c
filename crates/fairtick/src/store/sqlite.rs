//! The embedded SQLite backend: a file under the data directory, no setup needed.
//!
//! Durability comes first: WAL with `synchronous=FULL`, so an acknowledged money movement
//! survives `kill -9` and power loss.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{AnyPool, Executor};

use super::StoreResult;

pub(super) async fn connect(url: &str, options: AnyPoolOptions) -> StoreResult<AnyPool> {
    // Create the file if needed, with the native driver, before the `Any` pool opens it.
    // Another process (a running server) may hold the write lock for a moment: wait for it.
    // WAL is a property of the database file: set once here, it holds for every connection.
    let native = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .busy_timeout(Duration::from_secs(30))
        .journal_mode(SqliteJournalMode::Wal);
    let bootstrap = sqlx::SqlitePool::connect_with(native).await?;
    sqlx::migrate!("migrations/sqlite").run(&bootstrap).await?;
    bootstrap.close().await;

    let pool = options
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // The wait for a busy database first, so nothing after it fails for a moment's lock.
                // Temporary storage (the journals of a batch's savepoints) in memory: it only ever
                // serves a rollback inside a transaction, so durability is unaffected.
                conn.execute(
                    "PRAGMA busy_timeout = 30000; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
                )
                .await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(pool)
}
