//! Administration: finding users, restricting or suspending them, reading every trade, the
//! house's figures and the audit log. Nothing here can touch a result: trades end only in
//! settlement, from the ticks.

use chrono::{DateTime, Utc};
use fairtick_core::UserId;
use fairtick_core::account::UserStatus;
use fairtick_core::admin::{Refusal, UserChange};

use super::events::{Event, EventBus, SignOff};
use super::paging;
use super::{Error, Result};
use crate::store::{
    Actor, AdminUserRow, AuditEntry, HouseStats, StatementQuery, StatementRow, Store, TradeQuery,
    TradeRecord, UserRecord, UserSearch,
};

pub const MAX_PAGE: u32 = 200;
pub const DEFAULT_PAGE: u32 = 50;
/// Recent trades and transactions shown with one user.
const RECENT: u32 = 20;

#[derive(Clone)]
pub struct Admin {
    store: Store,
    events: EventBus,
}

/// One user with what an admin needs to judge the account.
#[derive(Clone, Debug)]
pub struct UserDetail {
    pub row: AdminUserRow,
    pub trades: Vec<TradeRecord>,
    pub transactions: Vec<StatementRow>,
}

impl Admin {
    pub fn new(store: Store, events: EventBus) -> Admin {
        Admin { store, events }
    }

    pub async fn users(
        &self,
        mut search: UserSearch,
        cursor_text: Option<&str>,
        limit: Option<u32>,
    ) -> Result<(Vec<AdminUserRow>, Option<String>)> {
        let limit = paging::limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        search.before = paging::cursor(cursor_text)?;
        search.limit = limit + 1;
        if search.query.as_ref().is_some_and(|q| q.chars().count() > 100) {
            return Err(Error::invalid("query", "must be at most 100 characters"));
        }
        Ok(paging::split(self.store.admin_users(&search).await?, limit, |r| r.user.id.0))
    }

    pub async fn user(&self, id: UserId) -> Result<UserDetail> {
        let search = UserSearch { before: id.0.checked_add(1), limit: 1, ..UserSearch::default() };
        let row = self
            .store
            .admin_users(&search)
            .await?
            .into_iter()
            .find(|r| r.user.id == id)
            .ok_or(Error::NotFound("user"))?;
        let trades =
            self.store.trades(&TradeQuery { user: Some(id), limit: RECENT, ..TradeQuery::default() }).await?;
        let transactions =
            self.store.statement(id, &StatementQuery { limit: RECENT, ..StatementQuery::default() }).await?;
        Ok(UserDetail { row, trades, transactions })
    }

    /// Changes a user's role, status or limits under the rules of `fairtick_core::admin`; a
    /// suspension or a new role also ends the user's live connections on every node.
    pub async fn change_user(
        &self,
        actor: &Actor,
        id: UserId,
        change: UserChange,
        now: DateTime<Utc>,
    ) -> Result<UserRecord> {
        let updated = match self.store.change_user(actor, id, &change, now).await? {
            None => return Err(Error::NotFound("user")),
            Some(Err(refusal)) => return Err(refused(refusal)),
            Some(Ok(user)) => user,
        };
        if change.status == Some(UserStatus::Suspended) {
            self.events.publish(Event::SignedOff(id, SignOff::Suspended));
        } else if change.role.is_some() {
            self.events.publish(Event::SignedOff(id, SignOff::RoleChanged));
        }
        Ok(updated)
    }

    pub async fn trades(
        &self,
        mut query: TradeQuery,
        cursor_text: Option<&str>,
        limit: Option<u32>,
    ) -> Result<(Vec<TradeRecord>, Option<String>)> {
        let limit = paging::limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        query.before = paging::cursor(cursor_text)?;
        query.limit = limit + 1;
        Ok(paging::split(self.store.trades(&query).await?, limit, |t| t.id))
    }

    pub async fn stats(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<HouseStats> {
        if from >= to {
            return Err(Error::invalid("from", "must be before `to`"));
        }
        Ok(self.store.house_stats(from, to).await?)
    }

    pub async fn audit(
        &self,
        cursor_text: Option<&str>,
        limit: Option<u32>,
    ) -> Result<(Vec<AuditEntry>, Option<String>)> {
        let limit = paging::limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        let rows = self.store.audit_entries(paging::cursor(cursor_text)?, limit + 1).await?;
        Ok(paging::split(rows, limit, |e| e.id))
    }
}

fn refused(refusal: Refusal) -> Error {
    let code = match refusal {
        Refusal::RoleNeedsSuperadmin | Refusal::AdminNeedsSuperadmin | Refusal::OwnLimits => {
            return Error::Forbidden { code: "superadmin_required", message: refusal.to_string() };
        }
        Refusal::InvalidMaxStake => {
            return Error::invalid("maxStake", "must be positive; send null to lift the limit");
        }
        Refusal::Empty => {
            return Error::invalid(
                "body",
                "must name at least one of role, status, maxStake, tradingSuspended",
            );
        }
        Refusal::NotAnAdmin => {
            return Error::Forbidden { code: "forbidden", message: refusal.to_string() };
        }
        Refusal::LastSuperadmin => "last_superadmin",
        Refusal::NotYourself => "not_yourself",
    };
    Error::Conflict { code, message: refusal.to_string() }
}
