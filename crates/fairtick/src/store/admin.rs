//! What administration reads and writes: the user list, guarded user changes, the versioned
//! trading terms, the append-only audit log and the house's figures. Every admin write and its
//! audit entry are one transaction.

use chrono::{DateTime, Utc};
use fairtick_core::admin::{Refusal, Target, UserChange, check_user_change};
use fairtick_core::{Money, Role, UserId, UserStatus};
use serde_json::Value;

use super::users::{USER_COLUMNS, UserRow, user_from_row};
use super::{Backend, Store, StoreError, StoreResult, UserRecord, WriteTx, time_from_ms};

/// Who did something, from where.
#[derive(Clone, Debug)]
pub struct Actor {
    pub id: UserId,
    pub role: Role,
    pub ip: Option<String>,
}

/// One line of the audit log: what was done to what, before and after.
#[derive(Clone, Copy, Debug)]
pub struct AuditRecord<'a> {
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub before: Option<&'a Value>,
    pub after: Option<&'a Value>,
}

/// A user as the admin list shows them.
#[derive(Clone, Debug)]
pub struct AdminUserRow {
    pub user: UserRecord,
    pub balance: Money,
    pub trades: i64,
    pub last_active: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default)]
pub struct UserSearch {
    /// Matched against email and name, case-insensitively.
    pub query: Option<String>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    pub before: Option<i64>,
    pub limit: u32,
}

#[derive(Clone, Debug)]
pub struct SettingsVersion {
    pub id: i64,
    pub settings: Value,
    pub changed: Vec<String>,
    pub changed_role: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct AuditEntry {
    pub id: i64,
    pub actor_id: i64,
    pub actor_role: String,
    pub action: String,
    pub target: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The house's figures over a period (cents).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HouseStats {
    pub turnover: i64,
    pub trades: i64,
    pub active_users: i64,
    /// What ended trades left with the house: stakes kept minus payouts beyond the stake.
    pub house_pnl: i64,
    /// The most the house could pay out beyond stakes on the trades still open.
    pub open_exposure: i64,
    pub open_trades: i64,
}

fn json_text(value: &Value) -> String {
    value.to_string()
}

fn parse_json(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// How a change of the terms went.
#[derive(Debug, PartialEq, Eq)]
pub enum SettingsSaved {
    /// Stored as this version.
    Saved(i64),
    /// Another change came first.
    Superseded,
    /// The actor is no longer an active admin.
    NotAnAdmin,
}

impl Store {
    pub(crate) async fn append_audit(
        &self,
        w: &mut WriteTx,
        actor: &Actor,
        entry: AuditRecord<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (actor_id, actor_role, action, target, before, after, ip, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(actor.id.0)
        .bind(actor.role.as_str())
        .bind(entry.action)
        .bind(entry.target)
        .bind(entry.before.map(json_text))
        .bind(entry.after.map(json_text))
        .bind(actor.ip.as_deref())
        .bind(now.timestamp_millis())
        .execute(&mut *w.tx)
        .await?;
        Ok(())
    }

    pub async fn admin_users(&self, search: &UserSearch) -> StoreResult<Vec<AdminUserRow>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            balance: i64,
            trades: i64,
            last_active: Option<i64>,
        }
        // What was typed is matched as text, folded as `search_text` is: LIKE's wildcards in it
        // stand for themselves.
        let folded = search.query.as_deref().map(|q| format!("%{}%", like_escaped(&q.trim().to_lowercase())));
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS}, \
                    CAST(COALESCE((SELECT SUM(a.balance) FROM accounts a WHERE a.user_id = users.id), 0) AS BIGINT) \
                        AS balance, \
                    (SELECT COUNT(*) FROM trades t WHERE t.user_id = users.id) AS trades, \
                    (SELECT MAX(t.accepted_at) FROM trades t WHERE t.user_id = users.id) AS last_active \
             FROM users \
             WHERE id < $1 \
               AND (CAST($2 AS TEXT) IS NULL OR search_text LIKE $2 ESCAPE '\\') \
               AND (CAST($3 AS TEXT) IS NULL OR role = $3) \
               AND (CAST($4 AS TEXT) IS NULL OR status = $4) \
             ORDER BY id DESC LIMIT $5"
        ))
        .bind(search.before.unwrap_or(i64::MAX))
        .bind(folded)
        .bind(search.role.map(Role::as_str))
        .bind(search.status.map(UserStatus::as_str))
        .bind(i64::from(search.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(AdminUserRow {
                    user: user_from_row(row.user)?,
                    balance: Money::from_cents(row.balance),
                    trades: row.trades,
                    last_active: row.last_active.map(time_from_ms),
                })
            })
            .collect()
    }

    /// Applies an admin's change to a user after checking the rules against the state read in
    /// the same transaction, and records it in the audit log. `Ok(Err(_))` is a refusal.
    #[tracing::instrument(skip_all)]
    pub async fn change_user(
        &self,
        actor: &Actor,
        id: UserId,
        change: &UserChange,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Result<UserRecord, Refusal>>> {
        let mut w = self.begin_write().await?;
        let lock = self.for_update();
        // The active superadmins are locked first, in one order, then the target: two of them
        // demoting each other at once cannot both count the other as still there.
        let superadmins: Vec<(i64,)> = sqlx::query_as(&format!(
            "SELECT id FROM users WHERE role = 'superadmin' AND status = 'active' ORDER BY id{lock}"
        ))
        .fetch_all(&mut *w.tx)
        .await?;
        let superadmins = superadmins.len() as i64;
        // Then the target and the actor, in id order: the actor's role is the one stored now,
        // not the one their session was signed in with (a superadmin demoted meanwhile counts).
        let rows: Vec<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id IN ($1, $2) ORDER BY id{lock}"
        ))
        .bind(id.0)
        .bind(actor.id.0)
        .fetch_all(&mut *w.tx)
        .await?;
        let users = rows.into_iter().map(user_from_row).collect::<StoreResult<Vec<UserRecord>>>()?;
        let Some(before) = users.iter().find(|u| u.id == id).cloned() else { return Ok(None) };
        let acting = users.iter().find(|u| u.id == actor.id);
        let Some(acting) = acting.filter(|u| u.status == UserStatus::Active && u.role.is_admin()) else {
            return Ok(Some(Err(Refusal::NotAnAdmin)));
        };
        let target = Target { role: before.role, status: before.status, is_self: actor.id == id };
        if let Err(refusal) = check_user_change(acting.role, target, change, superadmins) {
            return Ok(Some(Err(refusal)));
        }
        let max_stake = match change.max_stake {
            Some(limit) => limit.map(|m| m.cents()),
            None => before.max_stake.map(|m| m.cents()),
        };
        sqlx::query(
            "UPDATE users SET role = $1, status = $2, max_stake = $3, trading_suspended = $4 WHERE id = $5",
        )
        .bind(change.role.unwrap_or(before.role).as_str())
        .bind(change.status.unwrap_or(before.status).as_str())
        .bind(max_stake)
        .bind(change.trading_suspended.unwrap_or(before.trading_suspended))
        .bind(id.0)
        .execute(&mut *w.tx)
        .await?;
        let after_row: UserRow = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id.0)
            .fetch_one(&mut *w.tx)
            .await?;
        let after = user_from_row(after_row)?;
        let describe = |u: &UserRecord| {
            serde_json::json!({
                "role": u.role.as_str(),
                "status": u.status.as_str(),
                "maxStake": u.max_stake.map(|m| m.to_string()),
                "tradingSuspended": u.trading_suspended,
            })
        };
        let target = format!("user:{}", id.0);
        let (before, after_json) = (describe(&before), describe(&after));
        let entry = AuditRecord {
            action: "user.update",
            target: Some(&target),
            before: Some(&before),
            after: Some(&after_json),
        };
        self.append_audit(&mut w, actor, entry, now).await?;
        w.tx.commit().await?;
        self.users_changed(&[id]).await;
        Ok(Some(Ok(after)))
    }

    /// The newest version of the terms, with its id.
    pub async fn latest_settings(&self) -> StoreResult<Option<(i64, Value)>> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT id, settings FROM settings_versions ORDER BY id DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(id, text)| {
            let value =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("settings: {e}")))?;
            Ok((id, value))
        })
        .transpose()
    }

    /// Stores a new version of the terms with its audit entry, in one transaction, if the
    /// newest version is still `based_on` (`None`: there is none yet), so that no change is
    /// built on terms it never saw, and if the actor is still an active admin, as the row
    /// locked here says (a demotion may have come while the request ran).
    #[tracing::instrument(skip_all)]
    pub async fn save_settings(
        &self,
        actor: &Actor,
        based_on: Option<i64>,
        before: &Value,
        after: &Value,
        changed: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<SettingsSaved> {
        let mut w = self.begin_write().await?;
        if self.backend() == Backend::Postgres {
            // One change at a time; readers go on (SQLite's writers take turns anyway).
            sqlx::query("LOCK TABLE settings_versions IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *w.tx)
                .await?;
        }
        let acting: Option<(String, String)> =
            sqlx::query_as(&format!("SELECT role, status FROM users WHERE id = $1{}", self.for_update()))
                .bind(actor.id.0)
                .fetch_optional(&mut *w.tx)
                .await?;
        let still_admin = acting.is_some_and(|(role, status)| {
            status == UserStatus::Active.as_str() && role.parse::<Role>().is_ok_and(Role::is_admin)
        });
        if !still_admin {
            return Ok(SettingsSaved::NotAnAdmin);
        }
        let (newest,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(id) FROM settings_versions").fetch_one(&mut *w.tx).await?;
        if newest != based_on {
            return Ok(SettingsSaved::Superseded);
        }
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO settings_versions (settings, changed, changed_by, changed_role, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(json_text(after))
        .bind(changed.join(","))
        .bind(actor.id.0)
        .bind(actor.role.as_str())
        .bind(now.timestamp_millis())
        .fetch_one(&mut *w.tx)
        .await?;
        let target = format!("settings:{id}");
        let entry = AuditRecord {
            action: "settings.update",
            target: Some(&target),
            before: Some(before),
            after: Some(after),
        };
        self.append_audit(&mut w, actor, entry, now).await?;
        w.tx.commit().await?;
        Ok(SettingsSaved::Saved(id))
    }

    pub async fn settings_history(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<SettingsVersion>> {
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT id, settings, changed, changed_role, created_at FROM settings_versions \
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, settings, changed, changed_role, created_at)| SettingsVersion {
                id,
                settings: serde_json::from_str(&settings).unwrap_or(Value::Null),
                changed: changed.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
                changed_role,
                created_at: time_from_ms(created_at),
            })
            .collect())
    }

    pub async fn audit_entries(&self, before: Option<i64>, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        type Row =
            (i64, i64, String, String, Option<String>, Option<String>, Option<String>, Option<String>, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, actor_id, actor_role, action, target, before, after, ip, created_at FROM audit_log \
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, actor_id, actor_role, action, target, before, after, ip, created_at)| AuditEntry {
                id,
                actor_id,
                actor_role,
                action,
                target,
                before: parse_json(before),
                after: parse_json(after),
                ip,
                created_at: time_from_ms(created_at),
            })
            .collect())
    }

    pub async fn house_stats(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<HouseStats> {
        let (turnover, trades, active_users): (i64, i64, i64) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(stake), 0) AS BIGINT), COUNT(*), COUNT(DISTINCT user_id) \
             FROM trades WHERE accepted_at >= $1 AND accepted_at < $2 AND status <> 'void'",
        )
        .bind(from.timestamp_millis())
        .bind(to.timestamp_millis())
        .fetch_one(&self.pool)
        .await?;
        let (house_pnl,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(stake - payout), 0) AS BIGINT) FROM trades \
             WHERE status <> 'active' AND settled_at >= $1 AND settled_at < $2",
        )
        .bind(from.timestamp_millis())
        .bind(to.timestamp_millis())
        .fetch_one(&self.pool)
        .await?;
        let (open_exposure, open_trades): (i64, i64) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(stake * payout_rate_bp / 10000), 0) AS BIGINT), COUNT(*) \
             FROM trades WHERE status = 'active'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(HouseStats { turnover, trades, active_users, house_pnl, open_exposure, open_trades })
    }
}

/// `text` with LIKE's wildcards, and its escape character, escaped by `\`.
fn like_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
