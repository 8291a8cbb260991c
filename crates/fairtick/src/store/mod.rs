//! Persistence: one [`Store`] with the same use-case methods on SQLite and PostgreSQL.
//!
//! The SQL is written once in a portable dialect (`$N` parameters, `RETURNING`, `CAST`) and runs
//! through sqlx's `Any` driver; what differs between the backends (connection settings,
//! migrations, how a write transaction takes its locks) lives in [`sqlite`] and [`postgres`].
//! Queries are checked at run time, not by sqlx's compile-time macros, so that building needs no
//! database. Every method that moves money is one database transaction.

mod admin;
mod audit;
mod binds;
mod bulk;
mod dual;
mod group_commit;
mod ledger;
mod market;
pub mod postgres;
mod sessions;
pub mod sqlite;
mod trades;
mod turnover;
mod users;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::Mutex;

pub use admin::{Actor, AdminUserRow, AuditEntry, HouseStats, SettingsSaved, SettingsVersion, UserSearch};
pub use audit::AuditReport;
pub use group_commit::{MAX_BATCH, WriteOutcome, WriteRequest};
pub use ledger::{IdempotencyKey, StatementQuery, StatementRow, WalletOutcome, WalletReceipt};
pub use market::{Announcement, Appended, Candle, EpochIds, EpochRecord, NewEpoch, TickRecord};
pub use postgres::Leadership;
pub use sessions::{DEFAULT_TTL_MS as DEFAULT_SESSION_TTL_MS, USERS_CHANNEL};
pub use trades::{
    Ending, Endings, Finish, NewTrade, OpenOutcome, SaleOutcome, TradeCounts, TradeQuery, TradeRecord,
    TradeSpot,
};
pub use turnover::utc_day;
pub use users::{NewUser, SessionUser, UserRecord};

/// Which database the store talks to; chosen from the URL scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Failures of the store. Business refusals are not errors: they come back as values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("that email address is already registered")]
    EmailTaken,
    #[error("unsupported database URL {0:?}: use sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("the batch this request was committed with failed: {0}")]
    BatchFailed(String),
    /// A batch's bulk write failed; the batch is retried one request at a time (never seen by
    /// a requester).
    #[error("a batch's bulk write failed: {0}")]
    BulkFailed(String),
    /// A feed's epoch was closed by the producer that took the market over from it.
    #[error("another producer took the market over: {0}")]
    Superseded(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// From the SQLite group-commit writer's own connection.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// Whether a unique constraint refused a write. SQLite names no constraints, so the kind of
    /// error is what is compared, not a constraint name.
    pub(crate) fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(e) => is_unique_violation(e),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
            _ => false,
        }
    }
}

/// The database behind fairtick. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer at a time; queueing writers here instead of in SQLite's busy
    /// handler keeps waiting fair and fast. PostgreSQL uses row locks instead.
    write_lock: Option<Arc<Mutex<()>>>,
    system_accounts: SystemAccounts,
    /// The PostgreSQL URL, for connections of their own (listeners).
    url: Option<Arc<str>>,
    /// Where money movements queue to share a commit. `None` in the writers' own copies.
    group_commit: Option<group_commit::GroupCommit>,
    /// On SQLite, connections for the hot reads that run on the calling thread.
    readers: Option<Arc<dual::SqliteReaders>>,
    /// On SQLite, the connection of [`Store::write_now`].
    own_writer: Option<Arc<dual::SqliteOwnWriter>>,
    /// Sessions read lately, shared by every copy of the store.
    sessions: Arc<sessions::SessionCache>,
}

/// Ids of the house and faucet accounts, read once at start-up.
#[derive(Clone, Copy, Debug)]
struct SystemAccounts {
    house: i64,
    faucet: i64,
}

/// A write transaction, holding the SQLite writer lock for as long as it lives.
pub(crate) struct WriteTx {
    pub(crate) tx: Transaction<'static, Any>,
    _writer: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Store {
    /// Connects to `url`, creating the SQLite file or checking the PostgreSQL database, and runs
    /// the backend's migrations.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let options = AnyPoolOptions::new().max_connections(max_connections);
        let (pool, sqlite_file) = match backend {
            Backend::Sqlite => sqlite::connect(url, options).await?,
            Backend::Postgres => (postgres::connect(url, options).await?, None),
        };
        let write_lock = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(())));
        let system_accounts = Self::read_system_accounts(&pool).await?;
        let url = (backend == Backend::Postgres).then(|| Arc::from(url));
        let readers = sqlite_file.clone().map(|file| Arc::new(dual::SqliteReaders::new(file)));
        let own_writer = match &sqlite_file {
            Some(file) => Some(Arc::new(dual::SqliteOwnWriter::open(file)?)),
            None => None,
        };
        let mut store = Store {
            pool,
            backend,
            write_lock,
            system_accounts,
            url,
            group_commit: None,
            readers,
            own_writer,
            sessions: Arc::new(sessions::SessionCache::new(sessions::DEFAULT_TTL)),
        };
        store.group_commit = Some(group_commit::GroupCommit::start(store.clone(), sqlite_file.as_deref())?);
        store.fill_search_text().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Connections open in the pool, and how many of them are idle.
    pub fn pool_stats(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn read_system_accounts(pool: &AnyPool) -> StoreResult<SystemAccounts> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, kind FROM accounts WHERE user_id IS NULL").fetch_all(pool).await?;
        let find = |kind: &str| {
            rows.iter()
                .find(|(_, k)| k == kind)
                .map(|(id, _)| *id)
                .ok_or_else(|| StoreError::Corrupt(format!("the {kind} account is missing")))
        };
        Ok(SystemAccounts { house: find("house")?, faucet: find("faucet")? })
    }

    /// Begins a transaction that will write. On SQLite it queues for the in-process writer lock
    /// and then takes SQLite's write lock up front (`BEGIN IMMEDIATE`): a deferred transaction
    /// that reads and then writes would fail under contention instead of waiting.
    pub(crate) async fn begin_write(&self) -> StoreResult<WriteTx> {
        let writer = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _writer: writer })
    }

    /// The clause that locks the rows a write transaction reads before it changes them. SQLite
    /// needs none: `BEGIN IMMEDIATE` already holds the only write lock.
    pub(crate) fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// ` FOR SHARE` on PostgreSQL (a row kept as read until commit, others reading it too);
    /// nothing on SQLite, whose writers take turns anyway.
    pub(crate) fn for_share(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR SHARE",
        }
    }
}

/// Opens the pool, each new connection running a backend's `settings` before its first use.
async fn pool_with_settings(
    url: &str,
    options: AnyPoolOptions,
    settings: &'static str,
) -> StoreResult<AnyPool> {
    let pool = options
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                sqlx::Executor::execute(conn, settings).await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(pool)
}

/// Converts a stored millisecond timestamp.
pub fn time_from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Whether an error is a unique-constraint violation. SQLite names no constraints, so the kind
/// of error is what is compared, not a constraint name.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
