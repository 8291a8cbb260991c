//! `/api/flash-trade/*`: quote, open, sell back, read trades, receipts and the trader's record.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use fairtick_core::trade::{Direction, TradeResult, TradeStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::dto::{AmountInput, RateInput, timestamp};
use super::error::{ApiError, ErrorBody};
use super::extract::{AuthAccount, AuthUser, IdempotencyKey, Json, Path, Query};
use crate::services::trades::receipts::Receipt;
use crate::services::trades::{OpenRequest, TradeView, format_rate};
use crate::store::{TradeQuery, TradeRecord, TradeSpot, time_from_ms};

#[derive(Debug, Serialize, ToSchema)]
pub struct SpotDto {
    pub seq: i64,
    pub ts: String,
    pub price: String,
}

impl From<&TradeSpot> for SpotDto {
    fn from(spot: &TradeSpot) -> SpotDto {
        SpotDto { seq: spot.seq, ts: timestamp(time_from_ms(spot.ts)), price: spot.price.to_string() }
    }
}

/// A flash trade. Money and prices are strings; all money is virtual (VUSD).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TradeDto {
    pub id: i64,
    pub user_id: i64,
    pub symbol: String,
    #[schema(example = "up")]
    pub direction: String,
    /// The stake.
    #[schema(example = "100.00")]
    pub amount: String,
    /// Seconds.
    pub duration: i64,
    #[schema(example = "0.8500")]
    pub payout_rate: String,
    /// `active`, `settled`, `sold` or `void`.
    pub status: String,
    /// `win`, `lose` or `tie` once settled.
    pub result: Option<String>,
    pub accepted_at: String,
    /// The first tick after acceptance.
    pub entry: Option<SpotDto>,
    pub expires_at: Option<String>,
    /// The last tick at or before expiry.
    pub exit: Option<SpotDto>,
    /// What came back to the balance when the trade ended.
    pub payout: Option<String>,
    /// `payout − amount` once ended.
    pub profit: Option<String>,
    pub settled_at: Option<String>,
    pub void_reason: Option<String>,
    /// The feed's grace period, fixed at acceptance: void if the entry, or the first tick
    /// after expiry, comes later than it allows (docs/fairness.md §6).
    pub feed_grace_seconds: Option<i64>,
    /// The current sell-back bid of an active, entered trade.
    pub bid: Option<String>,
}

impl From<&TradeView> for TradeDto {
    fn from(view: &TradeView) -> TradeDto {
        let mut dto = TradeDto::from(&view.trade);
        dto.bid = view.bid.map(|b| b.to_string());
        dto
    }
}

impl From<&TradeRecord> for TradeDto {
    fn from(t: &TradeRecord) -> TradeDto {
        TradeDto {
            id: t.id,
            user_id: t.user_id.0,
            symbol: t.symbol.clone(),
            direction: t.direction.as_str().to_owned(),
            amount: t.stake.to_string(),
            duration: t.duration_ms / 1_000,
            payout_rate: format_rate(t.payout_rate_bp),
            status: t.status.as_str().to_owned(),
            result: t.result.map(|r| r.as_str().to_owned()),
            accepted_at: timestamp(time_from_ms(t.accepted_at)),
            entry: t.entry.as_ref().map(SpotDto::from),
            expires_at: t.expires_at.map(|ms| timestamp(time_from_ms(ms))),
            exit: t.exit.as_ref().map(SpotDto::from),
            payout: t.payout.map(|p| p.to_string()),
            profit: t.payout.and_then(|p| p.checked_sub(t.stake)).map(|p| p.to_string()),
            settled_at: t.settled_at.map(|ms| timestamp(time_from_ms(ms))),
            void_reason: t.void_reason.clone(),
            feed_grace_seconds: t.feed_grace_ms.map(|ms| ms / 1_000),
            bid: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TradeResponse {
    pub trade: TradeDto,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TradesResponse {
    pub trades: Vec<TradeDto>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRequest {
    #[schema(example = "SIMV25")]
    pub symbol: String,
    /// `up` or `down`.
    #[schema(value_type = String, example = "up")]
    pub direction: Direction,
    /// The stake in VUSD: a string or a number with at most two decimals.
    #[schema(value_type = String, example = "100.00")]
    pub amount: AmountInput,
    /// Seconds; one of the published durations.
    pub duration: u32,
    /// The payout rate the client was shown (`"0.8500"`); 409 if it has changed.
    #[schema(value_type = Option<String>, example = "0.8500")]
    pub expected_payout_rate: Option<RateInput>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloseRequest {
    pub trade_id: i64,
    /// Refuse the sale if the bid is below this (VUSD).
    #[schema(value_type = Option<String>, example = "50.00")]
    pub min_price: Option<AmountInput>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QuoteQuery {
    pub symbol: String,
    #[param(value_type = String, example = "up")]
    pub direction: Direction,
    /// VUSD, at most two decimals.
    pub amount: String,
    /// Seconds.
    pub duration: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuoteResponse {
    #[schema(example = "0.8500")]
    pub payout_rate: String,
    /// Paid back on a win, stake included.
    #[schema(example = "185.00")]
    pub payout: String,
    #[schema(example = "85.00")]
    pub profit_if_win: String,
    /// `1 / (1 + payoutRate)`: the win rate (over decided trades) that breaks even.
    pub break_even_win_rate: String,
    /// From the market's published model (docs/fairness.md); `null` for replays.
    pub tie_probability: Option<String>,
    pub fair_win_probability: Option<String>,
    /// Expected loss per unit staked: `1 − P(win)(1 + r) − P(tie)`.
    pub house_edge: Option<String>,
    pub quote_id: String,
    pub valid_until: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    pub symbol: Option<String>,
    /// `win`, `lose` or `tie`.
    #[param(value_type = Option<String>, pattern = "^(win|lose|tie)$")]
    pub result: Option<TradeResult>,
    /// `active`, `settled`, `sold` or `void`.
    #[param(value_type = Option<String>, pattern = "^(active|settled|sold|void)$")]
    pub status: Option<TradeStatus>,
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsResponse {
    pub wins: i64,
    pub losses: i64,
    pub ties: i64,
    pub sold: i64,
    pub void: i64,
    pub active: i64,
    /// Wins over decided (won or lost) trades.
    pub win_rate: Option<String>,
    /// Break-even at the payout rates traded.
    pub break_even_win_rate: Option<String>,
    /// 95 % Wilson interval of the win rate.
    pub win_rate_low: Option<String>,
    pub win_rate_high: Option<String>,
    /// Whether the interval excludes break-even: otherwise the record is consistent with luck.
    pub distinguishable_from_break_even: bool,
    pub net_profit: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyResponse {
    #[schema(example = "Ed25519")]
    pub algorithm: String,
    /// hex of the 32-byte public key that signs receipts.
    pub public_key: String,
}

fn ppb(p: u64) -> String {
    format!("{}.{:09}", p / 1_000_000_000, p % 1_000_000_000)
}

/// The honest terms before buying: payout, break-even and the model's probabilities.
#[utoipa::path(get, path = "/api/flash-trade/quote", tag = "flash-trade", params(QuoteQuery),
    responses((status = 200, body = QuoteResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn quote(
    State(state): State<AppState>,
    AuthAccount(user): AuthAccount,
    Query(query): Query<QuoteQuery>,
) -> Result<Json<QuoteResponse>, ApiError> {
    let amount = fairtick_core::Money::parse(&query.amount).map_err(|e| ApiError::invalid("amount", e))?;
    let quote =
        state.trades.quote(&user, &query.symbol, query.direction, amount, query.duration, Utc::now()).await?;
    Ok(Json(QuoteResponse {
        payout_rate: format_rate(quote.payout_rate_bp),
        payout: quote.payout.to_string(),
        profit_if_win: quote.profit_if_win.to_string(),
        break_even_win_rate: quote.break_even_win_rate.to_string(),
        tie_probability: quote.model.map(|m| m.tie_probability.to_string()),
        fair_win_probability: quote.model.map(|m| m.win_probability.to_string()),
        house_edge: quote.model.map(|m| m.house_edge.to_string()),
        quote_id: quote.quote_id,
        valid_until: timestamp(quote.valid_until),
    }))
}

/// Open a flash trade. The stake moves to in play at once; the result follows from the ticks.
#[utoipa::path(post, path = "/api/flash-trade/create", tag = "flash-trade", request_body = CreateRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, body = TradeResponse),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "`payout_rate_changed`, `market_halted`, `market_disabled`, `no_price` before the market's first tick, or `grace_too_short`", body = ErrorBody),
        (status = 422, description = "Insufficient available balance, or the key was reused", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    AuthAccount(user): AuthAccount,
    IdempotencyKey(key): IdempotencyKey,
    Json(request): Json<CreateRequest>,
) -> Result<Response, ApiError> {
    let expected = request.expected_payout_rate.map(|r| r.0);
    let open = OpenRequest {
        symbol: request.symbol,
        direction: request.direction,
        stake: request.amount.0,
        duration_secs: request.duration,
        expected_payout_rate_bp: expected,
    };
    let (trade, replayed) = state.trades.open(&user, open, key, Utc::now()).await?;
    let status = if replayed { StatusCode::OK } else { StatusCode::CREATED };
    let mut response = (status, Json(TradeResponse { trade: TradeDto::from(&trade) })).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Sell an active trade back at the current bid (the model's fair value minus the spread).
#[utoipa::path(post, path = "/api/flash-trade/close", tag = "flash-trade", request_body = CloseRequest,
    responses(
        (status = 200, body = TradeResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not sellable now (before entry, after the cut-off, ended, below minPrice)", body = ErrorBody),
        (status = 422, description = "The idempotency key was used for another request", body = ErrorBody),
    ),
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the same sale")),
    security(("bearer" = [])))]
pub async fn close(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    Json(request): Json<CloseRequest>,
) -> Result<Response, ApiError> {
    let min_price = request.min_price.map(|m| m.0);
    let (sold, replayed) =
        state.trades.sell(claims.user(), request.trade_id, min_price, key, Utc::now()).await?;
    let mut response = Json(TradeResponse { trade: TradeDto::from(&sold) }).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The user's open trades, with their live bids.
#[utoipa::path(get, path = "/api/flash-trade/active", tag = "flash-trade",
    responses((status = 200, body = TradesResponse), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn active(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
) -> Result<Json<TradesResponse>, ApiError> {
    let views = state.trades.active(claims.user()).await?;
    Ok(Json(TradesResponse { trades: views.iter().map(TradeDto::from).collect(), next_cursor: None }))
}

/// The user's trades, newest first.
#[utoipa::path(get, path = "/api/flash-trade/history", tag = "flash-trade", params(HistoryQuery),
    responses((status = 200, body = TradesResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<TradesResponse>, ApiError> {
    let filter = TradeQuery {
        user: Some(claims.user()),
        symbol: query.symbol,
        status: query.status,
        result: query.result,
        ..TradeQuery::default()
    };
    let (trades, next_cursor) = state.trades.history(filter, query.cursor.as_deref(), query.limit).await?;
    Ok(Json(TradesResponse { trades: trades.iter().map(TradeDto::from).collect(), next_cursor }))
}

/// The user's record: results, win rate against break-even, and whether it is more than luck.
#[utoipa::path(get, path = "/api/flash-trade/stats", tag = "flash-trade",
    responses((status = 200, body = StatsResponse), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stats(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
) -> Result<Json<StatsResponse>, ApiError> {
    let stats = state.trades.stats(claims.user()).await?;
    let c = stats.counts;
    Ok(Json(StatsResponse {
        wins: c.wins,
        losses: c.losses,
        ties: c.ties,
        sold: c.sold,
        void: c.void,
        active: c.active,
        win_rate: stats.win_rate.map(|p| p.to_string()),
        break_even_win_rate: stats.break_even_win_rate.map(|p| p.to_string()),
        win_rate_low: stats.win_rate_interval.map(|i| ppb(i.low_ppb)),
        win_rate_high: stats.win_rate_interval.map(|i| ppb(i.high_ppb)),
        distinguishable_from_break_even: stats.distinguishable_from_break_even,
        net_profit: c.net_profit.to_string(),
    }))
}

/// One of the user's trades (404 for anyone else's).
#[utoipa::path(get, path = "/api/flash-trade/{id}", tag = "flash-trade",
    params(("id" = i64, Path, description = "Trade id")),
    responses((status = 200, body = TradeResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn one(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<i64>,
) -> Result<Json<TradeResponse>, ApiError> {
    let trade = state.trades.own(claims.user(), id).await?;
    let view = state.trades.view(trade).await?;
    Ok(Json(TradeResponse { trade: TradeDto::from(&view) }))
}

/// A signed receipt with everything needed to re-derive the trade's result
/// (`fairtick verify trade --receipt FILE`, or `/verify`).
#[utoipa::path(get, path = "/api/flash-trade/{id}/receipt", tag = "flash-trade",
    params(("id" = i64, Path, description = "Trade id")),
    responses((status = 200, body = Receipt), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`receipt_unavailable`: the trade's ticks were deleted with the retention")),
    security(("bearer" = [])))]
pub async fn receipt(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<i64>,
) -> Result<Json<Receipt>, ApiError> {
    Ok(Json(state.trades.receipt(claims.user(), id, Utc::now()).await?))
}

/// The public key that signs trade receipts.
#[utoipa::path(get, path = "/api/fairness/key", tag = "market", responses((status = 200, body = KeyResponse), (status = 429, body = ErrorBody)))]
pub async fn key(State(state): State<AppState>) -> Json<KeyResponse> {
    Json(KeyResponse { algorithm: "Ed25519".to_owned(), public_key: state.trades.public_key_hex() })
}
