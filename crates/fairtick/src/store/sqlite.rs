//! The embedded SQLite backend: a file under the data directory, no setup needed.
//!
//! Durability comes first: WAL with `synchronous=FULL`, so an acknowledged money movement
//! survives `kill -9` and power loss.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

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

    let pool = super::pool_with_settings(url, options, SETTINGS).await?;
    Ok((pool, file))
}

/// How often the WAL is checkpointed (copied into the database file) off the writer thread.
/// Often, so that little is left for the writer when it finishes one.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// How often the writer finishes a checkpoint so that the WAL can start over.
pub(super) const WAL_RESTART_EVERY: Duration = Duration::from_secs(1);
/// How soon the writer tries again when it could not finish one.
pub(super) const CHECKPOINT_RETRY: Duration = Duration::from_millis(10);

/// The WAL's size once it starts over, at most: one that grew (a long read held old pages) is
/// cut back then, instead of keeping its largest size on disk for good. Above what a second
/// of full load writes (about 100 MB), so that in steady state the file is overwritten, never
/// cut and extended again.
const WAL_SIZE_LIMIT: u64 = 128 << 20;

/// Statements the writer keeps prepared: the single-row ones, settlement's bulk ones, whose
/// full chunks recur (parsing them was an eighth of the writer's time), and the batches' bulk
/// ones, one per statement and batch size (parsing those was about a twentieth of the server's
/// CPU per trade at 64 clients; the server's RSS did not move).
const WRITER_STATEMENTS: usize = 1_024;

/// The group-commit writer's own connection, with the same settings as the pool's, except that
/// it never checkpoints: a thread of its own does ([`checkpoint_while`]), so that the writer's
/// commits do not wait while pages are copied into the database file (a sixth of the writer's
/// time under load).
pub(super) fn writer_connection(file: &Path) -> StoreResult<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(file)?;
    conn.execute_batch(SETTINGS)?;
    conn.execute_batch(&format!(
        "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
    ))?;
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    Ok(conn)
}

/// Copies into the database file what the checkpoint thread has not yet, on the writer's
/// connection between two of its transactions, and so lets the WAL start over.
///
/// The WAL is written from its beginning again only when a write transaction begins with every
/// frame already copied. Under steady load the checkpoint thread never gets there (new frames
/// keep coming), so the WAL grew without end: 1.9 GB in 20 s of trade creation, every commit
/// extending the file, where overwriting pages already in the page cache costs less. Done by
/// the writer, nothing is written meanwhile, and the frames left are only those since the
/// thread's last pass.
/// Returns whether every frame is now copied; not when the checkpoint thread was busy with its
/// own pass, or a read still needs frames the checkpoint would overwrite.
pub(super) fn finish_checkpoint(conn: &rusqlite::Connection) -> bool {
    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        let (busy, frames, copied): (i64, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        Ok(busy == 0 && frames == copied)
    });
    done.unwrap_or_else(|error| {
        tracing::warn!(%error, "the writer's WAL checkpoint failed; it will try again");
        false
    })
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

    use super::{checkpoint_while, finish_checkpoint, writer_connection};

    /// A database in WAL mode with one table `t (v BLOB)`, in `dir`.
    fn wal_database(dir: &std::path::Path) -> std::path::PathBuf {
        let file = dir.join("wal.db");
        let setup = rusqlite::Connection::open(&file).unwrap();
        setup.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v BLOB);").unwrap();
        file
    }

    /// The writer never checkpoints, so its commits stay in the WAL until the checkpoint thread
    /// copies them into the database file: the file grows only if that thread runs.
    #[test]
    fn the_checkpoint_thread_moves_the_writers_commits_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = wal_database(dir.path());
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

    /// Without a finished checkpoint the WAL only grows; after one, the next commit writes it
    /// from its beginning again.
    #[test]
    fn a_finished_checkpoint_lets_the_wal_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let file = wal_database(dir.path());
        let wal = dir.path().join("wal.db-wal");
        let writer = writer_connection(&file).unwrap();
        let write = |n: usize| {
            for _ in 0..n {
                writer.execute("INSERT INTO t VALUES (zeroblob(4096))", []).unwrap();
            }
        };
        write(100);
        let grown = std::fs::metadata(&wal).unwrap().len();
        write(100);
        assert!(std::fs::metadata(&wal).unwrap().len() > grown, "the WAL started over by itself");

        let full = std::fs::metadata(&wal).unwrap().len();
        assert!(finish_checkpoint(&writer));
        write(100);
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), full, "the WAL grew after a finished checkpoint");
    }
}
