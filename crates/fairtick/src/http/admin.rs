//! `/api/admin/*` and the public terms (`/api/settings`): users, roles and restrictions, the
//! versioned trading terms, every trade, the house's figures and the audit log. Nothing here
//! can choose or change a result: settings that would are unknown fields, refused with 400.

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Duration, Utc};
use fairtick_core::admin::UserChange;
use fairtick_core::settings::{TradingSettings, VipLevel};
use fairtick_core::trade::TradeStatus;
use fairtick_core::{Role, UserId, UserStatus};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::dto::{AmountInput, RateInput, TransactionDto, UserDto, rate, timestamp};
use super::error::{ApiError, ErrorBody};
use super::extract::{ClientIp, Json, Path, Query, signed_in};
use super::trades::TradeDto;
use crate::services::accounts::Profile;
use crate::services::paging;
use crate::services::settings::{MarketPatch, SettingsPatch, TickIntervals, beyond_the_next_epoch};
use crate::services::tokens::Claims;
use crate::store::{Actor, AdminUserRow, TradeQuery, UserSearch};

/// A signed-in admin or superadmin (403 for anyone else).
pub struct AdminUser {
    pub claims: Claims,
    pub actor: Actor,
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let (claims, user) = signed_in(parts, state).await?;
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        if !claims.role.is_admin() {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this needs an admin account"));
        }
        if state.settings.current().require_admin_totp && !user.totp_enabled {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "totp_required",
                "admin accounts must turn on two-factor authentication first",
            ));
        }
        let actor = Actor { id: claims.user(), role: claims.role, ip: Some(ip.to_string()) };
        Ok(AdminUser { claims, actor })
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminUserDto {
    #[serde(flatten)]
    pub user: UserDto,
    pub trades: i64,
    pub last_active_at: Option<String>,
}

impl From<&AdminUserRow> for AdminUserDto {
    fn from(row: &AdminUserRow) -> AdminUserDto {
        let wallet = fairtick_core::wallet::WalletState { available: row.balance, ..Default::default() };
        let profile = Profile { user: row.user.clone(), wallet };
        AdminUserDto {
            user: UserDto::from(&profile),
            trades: row.trades,
            last_active_at: row.last_active.map(timestamp),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminUsersResponse {
    pub users: Vec<AdminUserDto>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AdminUsersQuery {
    /// Part of an email or name.
    pub query: Option<String>,
    #[param(value_type = Option<String>, pattern = "^(user|admin|superadmin)$")]
    pub role: Option<Role>,
    #[param(value_type = Option<String>, pattern = "^(active|suspended)$")]
    pub status: Option<UserStatus>,
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUserDetail {
    pub user: AdminUserDto,
    pub trades: Vec<TradeDto>,
    pub transactions: Vec<TransactionDto>,
}

/// `null` and absent are different here: `"maxStake": null` lifts the limit.
fn explicit<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserPatch {
    #[schema(value_type = Option<String>, example = "admin")]
    pub role: Option<Role>,
    #[schema(value_type = Option<String>, example = "suspended")]
    pub status: Option<UserStatus>,
    /// A per-user stake limit (VUSD); `null` lifts it.
    #[serde(default, deserialize_with = "explicit")]
    #[schema(value_type = Option<String>, example = "100.00")]
    pub max_stake: Option<Option<AmountInput>>,
    pub trading_suspended: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub user: AdminUserDto,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VipLevelDto {
    pub level: u32,
    #[schema(value_type = String)]
    pub min_turnover: String,
    #[schema(value_type = String)]
    pub payout_bonus: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketSwitchDto {
    pub enabled: bool,
    pub halted: bool,
}

/// The trading terms in force, as published.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsDto {
    #[schema(example = "0.8500")]
    pub payout_rate: String,
    /// Seconds.
    pub durations: Vec<u32>,
    pub min_stake: String,
    pub max_stake: String,
    /// Taken off the model's fair value on an early close.
    pub sell_spread: String,
    pub sell_cutoff_seconds: u32,
    pub feed_grace_seconds: u32,
    pub vip_levels: Vec<VipLevelDto>,
    pub markets: BTreeMap<String, MarketSwitchDto>,
    pub starting_balance: String,
    pub max_deposit: String,
    pub max_deposit_per_day: String,
    pub max_balance: String,
    pub require_admin_totp: bool,
}

impl From<&TradingSettings> for SettingsDto {
    fn from(s: &TradingSettings) -> SettingsDto {
        SettingsDto {
            payout_rate: rate(s.payout_rate_bp),
            durations: s.durations_secs.clone(),
            min_stake: s.min_stake.to_string(),
            max_stake: s.max_stake.to_string(),
            sell_spread: rate(s.sell_spread_bp),
            sell_cutoff_seconds: s.sell_cutoff_secs,
            feed_grace_seconds: s.feed_grace_secs,
            vip_levels: s
                .vip_levels
                .iter()
                .map(|l| VipLevelDto {
                    level: l.level,
                    min_turnover: l.min_turnover.to_string(),
                    payout_bonus: rate(l.payout_bonus_bp),
                })
                .collect(),
            markets: s
                .markets
                .iter()
                .map(|(k, v)| (k.clone(), MarketSwitchDto { enabled: v.enabled, halted: v.halted }))
                .collect(),
            starting_balance: s.wallet.starting_balance.to_string(),
            max_deposit: s.wallet.max_deposit.to_string(),
            max_deposit_per_day: s.wallet.max_deposit_per_day.to_string(),
            max_balance: s.wallet.max_balance.to_string(),
            require_admin_totp: s.require_admin_totp,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VipLevelInput {
    pub level: u32,
    #[schema(value_type = String)]
    pub min_turnover: AmountInput,
    #[schema(value_type = String)]
    pub payout_bonus: RateInput,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarketSwitchInput {
    pub enabled: Option<bool>,
    pub halted: Option<bool>,
}

/// A partial change of the terms. Any field not listed here, such as one that claims to set a
/// result or a win rate, is refused with 400: no setting can touch an outcome.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsInput {
    #[schema(value_type = Option<String>, example = "0.85")]
    pub payout_rate: Option<RateInput>,
    pub durations: Option<Vec<u32>>,
    #[schema(value_type = Option<String>)]
    pub min_stake: Option<AmountInput>,
    #[schema(value_type = Option<String>)]
    pub max_stake: Option<AmountInput>,
    #[schema(value_type = Option<String>, example = "0.05")]
    pub sell_spread: Option<RateInput>,
    pub sell_cutoff_seconds: Option<u32>,
    pub feed_grace_seconds: Option<u32>,
    pub vip_levels: Option<Vec<VipLevelInput>>,
    pub markets: Option<BTreeMap<String, MarketSwitchInput>>,
    #[schema(value_type = Option<String>)]
    pub starting_balance: Option<AmountInput>,
    #[schema(value_type = Option<String>)]
    pub max_deposit: Option<AmountInput>,
    #[schema(value_type = Option<String>)]
    pub max_deposit_per_day: Option<AmountInput>,
    #[schema(value_type = Option<String>)]
    pub max_balance: Option<AmountInput>,
    pub require_admin_totp: Option<bool>,
}

impl From<SettingsInput> for SettingsPatch {
    fn from(input: SettingsInput) -> SettingsPatch {
        SettingsPatch {
            payout_rate_bp: input.payout_rate.map(|r| r.0),
            durations_secs: input.durations,
            min_stake: input.min_stake.map(|m| m.0),
            max_stake: input.max_stake.map(|m| m.0),
            sell_spread_bp: input.sell_spread.map(|r| r.0),
            sell_cutoff_secs: input.sell_cutoff_seconds,
            feed_grace_secs: input.feed_grace_seconds,
            vip_levels: input.vip_levels.map(|levels| {
                levels
                    .into_iter()
                    .map(|l| VipLevel {
                        level: l.level,
                        min_turnover: l.min_turnover.0,
                        payout_bonus_bp: l.payout_bonus.0,
                    })
                    .collect()
            }),
            markets: input.markets.map(|m| {
                m.into_iter()
                    .map(|(k, v)| (k, MarketPatch { enabled: v.enabled, halted: v.halted }))
                    .collect()
            }),
            starting_balance: input.starting_balance.map(|m| m.0),
            max_deposit: input.max_deposit.map(|m| m.0),
            max_deposit_per_day: input.max_deposit_per_day.map(|m| m.0),
            max_balance: input.max_balance.map(|m| m.0),
            require_admin_totp: input.require_admin_totp,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsResponse {
    pub settings: SettingsDto,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsVersionDto {
    pub version: i64,
    /// The fields this change touched.
    pub changed: Vec<String>,
    /// The role of the admin who made it.
    pub changed_by_role: String,
    pub changed_at: String,
    #[schema(value_type = Object)]
    pub settings: Value,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsHistoryResponse {
    pub versions: Vec<SettingsVersionDto>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AdminTradesQuery {
    #[param(value_type = Option<String>, pattern = "^(active|settled|sold|void)$")]
    pub status: Option<TradeStatus>,
    pub user_id: Option<i64>,
    pub symbol: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminTradesResponse {
    pub trades: Vec<TradeDto>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Default: 24 hours before `to`.
    pub from: Option<DateTime<Utc>>,
    /// Default: now.
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HouseStatsResponse {
    pub from: String,
    pub to: String,
    pub turnover: String,
    pub trades: i64,
    pub trades_per_minute: String,
    pub active_users: i64,
    /// Stakes kept minus what was paid beyond stakes, for trades ended in the period.
    pub house_profit: String,
    /// The most the house could still pay beyond stakes on open trades.
    pub open_exposure: String,
    pub open_trades: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryDto {
    pub id: i64,
    pub actor_id: i64,
    pub actor_role: String,
    pub action: String,
    pub target: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    pub ip: Option<String>,
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditResponse {
    pub entries: Vec<AuditEntryDto>,
    pub next_cursor: Option<String>,
}

/// Users, searchable by email or name, newest first.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin", params(AdminUsersQuery),
    responses((status = 200, body = AdminUsersResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn users(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<AdminUsersQuery>,
) -> Result<Json<AdminUsersResponse>, ApiError> {
    let search =
        UserSearch { query: query.query, role: query.role, status: query.status, ..UserSearch::default() };
    let (rows, next_cursor) = state.admin.users(search, query.cursor.as_deref(), query.limit).await?;
    Ok(Json(AdminUsersResponse { users: rows.iter().map(AdminUserDto::from).collect(), next_cursor }))
}

/// One user with recent trades and transactions.
#[utoipa::path(get, path = "/api/admin/users/{id}", tag = "admin", params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = AdminUserDetail), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn user(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(id): Path<i64>,
) -> Result<Json<AdminUserDetail>, ApiError> {
    let detail = state.admin.user(UserId(id)).await?;
    Ok(Json(AdminUserDetail {
        user: AdminUserDto::from(&detail.row),
        trades: detail.trades.iter().map(TradeDto::from).collect(),
        transactions: detail.transactions.iter().map(TransactionDto::from).collect(),
    }))
}

/// Change a user's role (superadmin only for admin roles), status, stake limit or trading
/// suspension. Limits only restrict; the user sees them on `/api/auth/me`.
#[utoipa::path(patch, path = "/api/admin/users/{id}", tag = "admin", params(("id" = i64, Path, description = "User id")),
    request_body = UserPatch,
    responses(
        (status = 200, body = UserResponse),
        (status = 400, body = ErrorBody),
        (status = 403, description = "Needs a superadmin", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The last superadmin, or oneself", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn update_user(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(id): Path<i64>,
    Json(patch): Json<UserPatch>,
) -> Result<Json<UserResponse>, ApiError> {
    let change = UserChange {
        role: patch.role,
        status: patch.status,
        max_stake: patch.max_stake.map(|limit| limit.map(|m| m.0)),
        trading_suspended: patch.trading_suspended,
    };
    state.admin.change_user(&admin.actor, UserId(id), change, Utc::now()).await?;
    let detail = state.admin.user(UserId(id)).await?;
    Ok(Json(UserResponse { user: AdminUserDto::from(&detail.row) }))
}

/// The trading terms in force (same as the public `/api/settings`).
#[utoipa::path(get, path = "/api/admin/settings", tag = "admin",
    responses((status = 200, body = SettingsResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_settings(State(state): State<AppState>, _admin: AdminUser) -> Json<SettingsResponse> {
    Json(SettingsResponse { settings: SettingsDto::from(&*state.settings.current()) })
}

/// Change some of the trading terms. The payout rate applies to new trades only; every version
/// is kept and public; connected users are notified.
#[utoipa::path(post, path = "/api/admin/settings", tag = "admin", request_body = SettingsInput,
    responses(
        (status = 200, body = SettingsResponse),
        (status = 400, description = "A field is invalid or unknown", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "`settings_changed`: another change came first; read the terms again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn update_settings(
    State(state): State<AppState>,
    admin: AdminUser,
    Json(input): Json<SettingsInput>,
) -> Result<Json<SettingsResponse>, ApiError> {
    let catalog = state.markets.catalog();
    let known: Vec<String> = catalog.iter().map(|m| m.symbol.clone()).collect();
    let intervals = TickIntervals::of(catalog.iter().map(|m| &m.tick_interval_ms));
    let next = state.settings.update(&admin.actor, input.into(), &known, intervals, Utc::now()).await?;
    let markets = catalog.iter().map(|market| &**market);
    if let Some((longest, symbol)) = beyond_the_next_epoch(&next, state.markets.epoch_length(), markets) {
        tracing::warn!(
            longest_secs = longest,
            symbol,
            "trades of the longest duration can outlast the next epoch: their receipts will not prove them fair"
        );
    }
    Ok(Json(SettingsResponse { settings: SettingsDto::from(&*next) }))
}

/// The trading terms in force, for everyone.
#[utoipa::path(get, path = "/api/settings", tag = "transparency", responses((status = 200, body = SettingsResponse), (status = 429, body = ErrorBody)))]
pub async fn public_settings(State(state): State<AppState>) -> Json<SettingsResponse> {
    Json(SettingsResponse { settings: SettingsDto::from(&*state.settings.current()) })
}

/// Every past version of the terms: what changed, when, and which admin role changed it.
#[utoipa::path(get, path = "/api/settings/history", tag = "transparency", params(PageQuery),
    responses((status = 200, body = SettingsHistoryResponse), (status = 400, body = ErrorBody)))]
pub async fn settings_history(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Json<SettingsHistoryResponse>, ApiError> {
    let limit = paging::limit(query.limit, 50, 200)?;
    let before = paging::cursor(query.cursor.as_deref())?;
    let (versions, next_cursor) =
        paging::split(state.settings.history(before, limit + 1).await?, limit, |v| v.id);
    Ok(Json(SettingsHistoryResponse {
        versions: versions
            .into_iter()
            .map(|v| SettingsVersionDto {
                version: v.id,
                changed: v.changed,
                changed_by_role: v.changed_role,
                changed_at: timestamp(v.created_at),
                settings: serde_json::from_value::<TradingSettings>(v.settings)
                    .map(|s| serde_json::to_value(SettingsDto::from(&s)).unwrap_or(Value::Null))
                    .unwrap_or(Value::Null),
            })
            .collect(),
        next_cursor,
    }))
}

/// Every trade, newest first, with filters.
#[utoipa::path(get, path = "/api/admin/trades", tag = "admin", params(AdminTradesQuery),
    responses((status = 200, body = AdminTradesResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn trades(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<AdminTradesQuery>,
) -> Result<Json<AdminTradesResponse>, ApiError> {
    if let Some(symbol) = &query.symbol {
        state.markets.market(symbol)?;
    }
    let filter = TradeQuery {
        user: query.user_id.map(UserId),
        symbol: query.symbol,
        status: query.status,
        from: query.from.map(|t| t.timestamp_millis()),
        to: query.to.map(|t| t.timestamp_millis()),
        ..TradeQuery::default()
    };
    let (trades, next_cursor) = state.admin.trades(filter, query.cursor.as_deref(), query.limit).await?;
    Ok(Json(AdminTradesResponse { trades: trades.iter().map(TradeDto::from).collect(), next_cursor }))
}

/// The house's figures over a period: turnover, profit and loss, open exposure, activity.
#[utoipa::path(get, path = "/api/admin/stats", tag = "admin", params(StatsQuery),
    responses((status = 200, body = HouseStatsResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stats(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<StatsQuery>,
) -> Result<Json<HouseStatsResponse>, ApiError> {
    let to = query.to.unwrap_or_else(Utc::now);
    // A `to` at the very start of the calendar has no day before it.
    let from = match query.from {
        Some(from) => from,
        None => to
            .checked_sub_signed(Duration::hours(24))
            .ok_or_else(|| ApiError::invalid("to", "is too early to count a day back from"))?,
    };
    let stats = state.admin.stats(from, to).await?;
    let minutes = ((to - from).num_seconds().max(60)) / 60;
    let per_minute_hundredths = stats.trades * 100 / minutes;
    let money = |cents: i64| fairtick_core::Money::from_cents(cents).to_string();
    Ok(Json(HouseStatsResponse {
        from: timestamp(from),
        to: timestamp(to),
        turnover: money(stats.turnover),
        trades: stats.trades,
        trades_per_minute: format!("{}.{:02}", per_minute_hundredths / 100, per_minute_hundredths % 100),
        active_users: stats.active_users,
        house_profit: money(stats.house_pnl),
        open_exposure: money(stats.open_exposure),
        open_trades: stats.open_trades,
    }))
}

/// Every admin action, newest first: who, what, before and after, when, from where.
#[utoipa::path(get, path = "/api/admin/audit", tag = "admin", params(PageQuery),
    responses((status = 200, body = AuditResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<PageQuery>,
) -> Result<Json<AuditResponse>, ApiError> {
    let (entries, next_cursor) = state.admin.audit(query.cursor.as_deref(), query.limit).await?;
    Ok(Json(AuditResponse {
        entries: entries
            .into_iter()
            .map(|e| AuditEntryDto {
                id: e.id,
                actor_id: e.actor_id,
                actor_role: e.actor_role,
                action: e.action,
                target: e.target,
                before: e.before,
                after: e.after,
                ip: e.ip,
                at: timestamp(e.created_at),
            })
            .collect(),
        next_cursor,
    }))
}
