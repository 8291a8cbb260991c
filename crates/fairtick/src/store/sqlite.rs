//! The embedded SQLite backend: a file under the data directory, no setup needed.
//!
//! Durability comes first: WAL with `synchronous=FULL`, so an acknowledged money movement
//! survives `kill -9` and power loss.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{AnyPool, Executor};

use super::StoreResult;

/// Every connection's settings. The wait for a busy database first, so nothing after it fails
/// for a moment's lock. Temporary storage (the journals of a batch's savepoints) in memory: it
/// only ever serves a rollback inside a transaction, so durability is unaffected.
const SETTINGS: &str = "PRAGMA busy_timeout = 30000; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;";

/// Opens the pool, and names the database file for the group-commit writer's own connection
/// (`None` for an in-memory database, which no second connection could reach).
pub(super) async fn connect(url: &str, options: AnyPoolOptions) -> StoreResult<(AnyPool, Option<PathBuf>)> {
    // Create the file if needed, with the native driver, before the `Any` pool opens it.
    // Another process (a running server) may hold the write lock for a moment: wait for it.
    // WAL is a property of the database file: set once here, it holds for every connection.
    let native = SqliteConnectOptions::from_str(url)?;
    let file = native.get_filename();
    let file = (file != Path::new(":memory:")).then(|| file.to_owned());
    let native = native
        .create_if_missing(true)
        .busy_timeout(Duration::from_secs(30))
        .journal_mode(SqliteJournalMode::Wal);
    let bootstrap = sqlx::SqlitePool::connect_with(native).await?;
    sqlx::migrate!("migrations/sqlite").run(&bootstrap).await?;
    bootstrap.close().await;

    let pool = options
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(SETTINGS).await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok((pool, file))
}

/// How often the WAL is checkpointed (copied into the database file) off the writer thread.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// The group-commit writer's own connection, with the same settings as the pool's, except that
/// it never checkpoints: a thread of its own does ([`checkpoint_while`]), so that the writer's
/// commits do not wait while pages are copied into the database file (a sixth of the writer's
/// time under load).
/// Statements the writer keeps prepared: the single-row ones, and settlement's bulk ones,
/// whose full chunks recur (parsing them was an eighth of the writer's time).
const WRITER_STATEMENTS: usize = 128;

pub(super) fn writer_connection(file: &Path) -> StoreResult<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(file)?;
    conn.execute_batch(SETTINGS)?;
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    Ok(conn)
}

/// Checkpoints the WAL of `file` every [`CHECKPOINT_EVERY`], on a thread of its own, until
/// `writer` disconnects (the writer thread ended). `PASSIVE` never blocks the writer or readers.
pub(super) fn checkpoint_while(file: &Path, writer: std::sync::mpsc::Receiver<()>) -> StoreResult<()> {
    use std::sync::mpsc::RecvTimeoutError;
    let conn = rusqlite::Connection::open(file)?;
    conn.execute_batch(SETTINGS)?;
    std::thread::Builder::new()
        .name("fairtick-checkpoint".into())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = writer.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(%error, "a WAL checkpoint failed; the next one will try again");
                }
            }
        })
        .map_err(|e| super::StoreError::BatchFailed(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(())
}

/// A connection for the reads that run on the calling thread: read-only, and it never waits
/// for a lock (in WAL mode a reader does not wait for the writer) for long.
pub(super) fn reader_connection(file: &Path) -> StoreResult<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let flags =
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = rusqlite::Connection::open_with_flags(file, flags)?;
    conn.execute_batch("PRAGMA busy_timeout = 1000;")?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{checkpoint_while, writer_connection};

    /// The writer never checkpoints, so its commits stay in the WAL until the checkpoint thread
    /// copies them into the database file: the file grows only if that thread runs.
    #[test]
    fn the_checkpoint_thread_moves_the_writers_commits_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wal.db");
        let setup = rusqlite::Connection::open(&file).unwrap();
        setup.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v BLOB);").unwrap();
        drop(setup);
        let writer = writer_connection(&file).unwrap();
        for _ in 0..50 {
            writer.execute("INSERT INTO t VALUES (zeroblob(4096))", []).unwrap();
        }
        let before = std::fs::metadata(&file).unwrap().len();
        assert!(before < 50 * 4096, "the writer checkpointed by itself: {before} bytes");

        let (alive, gone) = std::sync::mpsc::channel::<()>();
        checkpoint_while(&file, gone).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&file).unwrap().len() < 50 * 4096 {
            assert!(Instant::now() < deadline, "no checkpoint within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(alive);
    }
}
