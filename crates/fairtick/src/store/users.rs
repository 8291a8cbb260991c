//! Accounts and sessions: registering a user with their ledger accounts and welcome credit,
//! finding users, revoking tokens and suspending accounts.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fairtick_core::ledger::Transfer;
use fairtick_core::{Email, Money, Role, UserId, UserStatus};

use super::bulk::Locking;
use super::dual::{DualRow, Prepared};
use super::{Backend, Store, StoreError, StoreResult, is_unique_violation, time_from_ms};

/// A new account to create.
#[derive(Debug)]
pub struct NewUser {
    pub email: Email,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub role: Role,
}

/// A user as stored.
#[derive(Clone, Debug)]
pub struct UserRecord {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub role: Role,
    pub status: UserStatus,
    pub vip_level: i32,
    pub created_at: DateTime<Utc>,
    /// A per-user stake limit set by an admin (it only ever restricts).
    pub max_stake: Option<Money>,
    /// An admin stopped this user from opening trades.
    pub trading_suspended: bool,
    pub totp_sealed: Option<String>,
    pub totp_enabled: bool,
}

/// What every authenticated request needs to know about its token's account: the account's
/// row, and whether the token was revoked. One read serves the whole request (a trade's stake
/// limit and VIP level come from the same row), and is remembered until the account changes
/// (see [`super::sessions`]), so that a suspension or a logout still takes effect at once.
#[derive(Clone, Debug)]
pub struct SessionUser {
    pub user: UserRecord,
    pub revoked: bool,
}

pub(crate) const USER_COLUMNS: &str = "id, email, password_hash, first_name, last_name, role, status, vip_level, \
     created_at, max_stake, CAST(trading_suspended AS INTEGER) AS trading_suspended, totp_sealed, \
     CAST(totp_enabled AS INTEGER) AS totp_enabled";

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    email: String,
    password_hash: String,
    first_name: String,
    last_name: String,
    role: String,
    status: String,
    vip_level: i32,
    created_at: i64,
    max_stake: Option<i64>,
    trading_suspended: i64,
    totp_sealed: Option<String>,
    totp_enabled: i64,
}

impl DualRow for UserRow {
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(UserRow {
            id: row.get("id")?,
            email: row.get("email")?,
            password_hash: row.get("password_hash")?,
            first_name: row.get("first_name")?,
            last_name: row.get("last_name")?,
            role: row.get("role")?,
            status: row.get("status")?,
            vip_level: row.get("vip_level")?,
            created_at: row.get("created_at")?,
            max_stake: row.get("max_stake")?,
            trading_suspended: row.get("trading_suspended")?,
            totp_sealed: row.get("totp_sealed")?,
            totp_enabled: row.get("totp_enabled")?,
        })
    }
}

/// The read behind every signed-in request, written out once.
static SESSION_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {USER_COLUMNS}, (SELECT COUNT(*) FROM revoked_tokens WHERE jti = $2) AS revoked \
         FROM users WHERE id = $1"
    )
});

/// A user's row and whether a token of theirs was revoked, as one read.
#[derive(sqlx::FromRow)]
struct SessionRow {
    #[sqlx(flatten)]
    user: UserRow,
    revoked: i64,
}

impl DualRow for SessionRow {
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(SessionRow { user: UserRow::from_sqlite(row)?, revoked: row.get("revoked")? })
    }
}

pub(crate) fn user_from_row(row: UserRow) -> StoreResult<UserRecord> {
    let id = row.id;
    Ok(UserRecord {
        id: UserId(id),
        email: row.email,
        password_hash: row.password_hash,
        first_name: row.first_name,
        last_name: row.last_name,
        role: row.role.parse().map_err(|e| StoreError::Corrupt(format!("user {id} role: {e}")))?,
        status: row.status.parse().map_err(|e| StoreError::Corrupt(format!("user {id} status: {e}")))?,
        vip_level: row.vip_level,
        created_at: time_from_ms(row.created_at),
        max_stake: row.max_stake.map(Money::from_cents),
        trading_suspended: row.trading_suspended != 0,
        totp_sealed: row.totp_sealed,
        totp_enabled: row.totp_enabled != 0,
    })
}

/// What the admin search matches a user by: the email, then the name, folded to lower case by
/// Unicode's rules. A line apart, so that a query cannot match across the two.
pub(crate) fn search_text(email: &str, first_name: &str, last_name: &str) -> String {
    format!("{email}\n{first_name} {last_name}").to_lowercase()
}

impl Store {
    /// Fills in what the admin search matches for users created before it was kept.
    pub(crate) async fn fill_search_text(&self) -> StoreResult<()> {
        let rows: Vec<(i64, String, String, String)> =
            sqlx::query_as("SELECT id, email, first_name, last_name FROM users WHERE search_text IS NULL")
                .fetch_all(&self.pool)
                .await?;
        for (id, email, first_name, last_name) in rows {
            sqlx::query("UPDATE users SET search_text = $1 WHERE id = $2")
                .bind(search_text(&email, &first_name, &last_name))
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Creates the user, their cash and in-play accounts, and posts the welcome credit, in one
    /// transaction: a user never exists without their accounts and opening balance.
    #[tracing::instrument(skip_all)]
    pub async fn register_user(
        &self,
        new: NewUser,
        welcome: &Transfer,
        now: DateTime<Utc>,
    ) -> StoreResult<UserRecord> {
        let mut w = self.begin_write().await?;
        let inserted: Result<(i64,), sqlx::Error> = sqlx::query_as(
            "INSERT INTO users (email, password_hash, first_name, last_name, role, created_at, search_text) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(new.email.as_str())
        .bind(&new.password_hash)
        .bind(&new.first_name)
        .bind(&new.last_name)
        .bind(new.role.as_str())
        .bind(now.timestamp_millis())
        .bind(search_text(new.email.as_str(), &new.first_name, &new.last_name))
        .fetch_one(&mut *w.tx)
        .await;
        let (id,) = match inserted {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e) => return Err(StoreError::EmailTaken),
            Err(e) => return Err(e.into()),
        };
        sqlx::query("INSERT INTO accounts (user_id, kind) VALUES ($1, 'cash'), ($1, 'in_play')")
            .bind(id)
            .execute(&mut *w.tx)
            .await?;
        let mut accounts = self.lock_accounts(&mut (&mut w).into(), &[UserId(id)], Locking::Wait).await?;
        let credit = accounts
            .apply(self, UserId(id), welcome, None, now)?
            .map_err(|refused| StoreError::Corrupt(format!("welcome credit refused: {refused}")))?;
        self.write_transfers(&mut (&mut w).into(), &[credit]).await?;
        w.tx.commit().await?;
        Ok(UserRecord {
            id: UserId(id),
            email: new.email.as_str().to_owned(),
            password_hash: new.password_hash,
            first_name: new.first_name,
            last_name: new.last_name,
            role: new.role,
            status: UserStatus::Active,
            vip_level: 1,
            created_at: time_from_ms(now.timestamp_millis()),
            max_stake: None,
            trading_suspended: false,
            totp_sealed: None,
            totp_enabled: false,
        })
    }

    #[tracing::instrument(skip_all)]
    pub async fn user_by_email(&self, email: &Email) -> StoreResult<Option<UserRecord>> {
        let row: Option<UserRow> =
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
                .bind(email.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.map(user_from_row).transpose()
    }

    /// Replaces a password hash, e.g. when an imported bcrypt hash is upgraded at login.
    #[tracing::instrument(skip_all)]
    pub async fn set_password_hash(&self, id: UserId, hash: &str) -> StoreResult<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        self.users_changed(&[id]).await;
        Ok(())
    }

    /// Suspends or reactivates an account; returns whether the user exists.
    #[tracing::instrument(skip_all)]
    pub async fn set_user_status(&self, id: UserId, status: UserStatus) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        self.users_changed(&[id]).await;
        Ok(done.rows_affected() == 1)
    }

    /// The account state behind a token, or `None` if the user no longer exists; remembered
    /// for a moment (see [`super::sessions`]).
    #[tracing::instrument(skip_all)]
    pub async fn session_user(&self, id: UserId, jti: &str) -> StoreResult<Option<SessionUser>> {
        let start = match self.sessions.get(id, jti, Instant::now()) {
            Ok(session) => return Ok(Some(session)),
            Err(start) => start,
        };
        let rows: Vec<SessionRow> =
            self.read_rows(&SESSION_USER, &[id.0.into(), jti.into()], Prepared::Keep).await?;
        let session = match rows.into_iter().next() {
            Some(row) => Some(SessionUser { user: user_from_row(row.user)?, revoked: row.revoked > 0 }),
            None => None,
        };
        if let Some(session) = &session {
            self.sessions.keep(start, id, jti, session, Instant::now());
        }
        Ok(session)
    }

    /// How long a session read is trusted without reading it again; zero reads every time.
    pub fn set_session_ttl(&self, ttl: Duration) {
        self.sessions.set_ttl(ttl);
    }

    /// After a committed change to the rows or tokens of `users`: forgets their sessions here
    /// and tells the other nodes to. A failed notification is logged, not returned: the change
    /// is done, and the other nodes read it within the sessions' TTL anyway.
    pub(crate) async fn users_changed(&self, users: &[UserId]) {
        self.sessions.forget(users);
        if self.backend != Backend::Postgres || users.is_empty() {
            return;
        }
        let payloads: Vec<String> = users.iter().map(|user| user.0.to_string()).collect();
        if let Err(error) = self.notify(super::USERS_CHANNEL, &payloads).await {
            tracing::warn!(%error, "could not tell the other nodes to forget sessions");
        }
    }

    /// Another node changed the user in `payload` (from [`super::USERS_CHANNEL`]).
    pub fn hear_user_changed(&self, payload: &str) {
        match payload.parse() {
            Ok(id) => self.sessions.forget(&[UserId(id)]),
            Err(_) => {
                tracing::warn!(
                    payload,
                    "a user change from another node is malformed; forgetting every session"
                );
                self.sessions.forget_all();
            }
        }
    }

    /// Forgets every session, when changes made on other nodes may have gone unheard.
    pub fn forget_all_sessions(&self) {
        self.sessions.forget_all();
    }

    /// Refuses a token from now on. Expired revocations are swept at the same time, so the
    /// table only ever holds tokens that could still be presented.
    #[tracing::instrument(skip_all)]
    pub async fn revoke_token(
        &self,
        user: UserId,
        jti: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        // Kept a minute past expiry: a token is accepted until the second after its `exp`, and
        // nodes' clocks differ a little.
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
            .bind(now.timestamp_millis() - 60_000)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at.timestamp_millis())
        .execute(&self.pool)
        .await?;
        self.users_changed(&[user]).await;
        Ok(())
    }
}

impl Store {
    /// Stores a sealed TOTP secret (not yet enabled), or enables or disables TOTP.
    #[tracing::instrument(skip_all)]
    pub async fn set_totp(&self, id: UserId, sealed: Option<&str>, enabled: bool) -> StoreResult<()> {
        sqlx::query(
            "UPDATE users SET totp_sealed = COALESCE($1, totp_sealed), totp_enabled = $2 WHERE id = $3",
        )
        .bind(sealed)
        .bind(enabled)
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        self.users_changed(&[id]).await;
        Ok(())
    }
}
