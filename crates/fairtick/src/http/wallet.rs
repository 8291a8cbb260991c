//! `/api/wallet/*`: balances, virtual deposits and withdrawals, reset, and the statement.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use fairtick_core::ledger::TransactionKind;
use fairtick_core::wallet::WalletOp;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::dto::{AmountInput, BalanceDto, TransactionDto};
use super::error::{ApiError, ErrorBody};
use super::extract::{AuthUser, IdempotencyKey, Json, Query};
use crate::services::wallet::{Answer, StatementFilter};
use crate::store::StatementRow;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmountRequest {
    /// VUSD, as a string or a number with at most two decimals.
    #[schema(value_type = String, example = "250.00")]
    pub amount: AmountInput,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MovementResponse {
    /// The statement line written; `null` when nothing needed to move.
    pub transaction: Option<TransactionDto>,
    pub balance: BalanceDto,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionsResponse {
    pub transactions: Vec<TransactionDto>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TransactionsQuery {
    /// Only this type, e.g. `deposit`.
    #[serde(rename = "type")]
    #[param(pattern = "^(signup_credit|deposit|withdrawal|reset|stake|payout|refund|sell|loss)$")]
    pub kind: Option<String>,
    /// Only from this time (RFC 3339), inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Only before this time (RFC 3339), exclusive.
    pub to: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

impl TransactionsQuery {
    fn into_filter(self) -> Result<StatementFilter, ApiError> {
        let kind = match self.kind.as_deref() {
            None | Some("") => None,
            Some(text) => Some(text.parse::<TransactionKind>().map_err(|_| {
                let known: Vec<_> = TransactionKind::ALL.iter().map(|k| k.as_str()).collect();
                ApiError::invalid("type", format!("must be one of {}", known.join(", ")))
            })?),
        };
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from > to
        {
            return Err(ApiError::invalid("from", "must not be after `to`"));
        }
        Ok(StatementFilter { kind, from: self.from, to: self.to, cursor: self.cursor, limit: self.limit })
    }
}

fn movement_response(answer: Answer) -> Response {
    let body = MovementResponse {
        transaction: answer.receipt.entry.as_ref().map(TransactionDto::from),
        balance: BalanceDto::from(&answer.receipt.state),
    };
    let mut response = Json(body).into_response();
    if answer.replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Balances of the practice account (virtual VUSD).
#[utoipa::path(get, path = "/api/wallet/balance", tag = "wallet",
    responses((status = 200, body = BalanceDto), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn balance(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
) -> Result<Json<BalanceDto>, ApiError> {
    let balances = state.wallet.balances(claims.user(), Utc::now()).await?;
    Ok(Json(BalanceDto::from(&balances)))
}

/// Add virtual funds. Limits: per deposit, per rolling 24 hours, and a balance cap.
#[utoipa::path(post, path = "/api/wallet/deposit", tag = "wallet", request_body = AmountRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 200, body = MovementResponse),
        (status = 400, description = "Invalid amount", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, description = "A limit was hit, or the key was used for another request", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn deposit(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    Json(request): Json<AmountRequest>,
) -> Result<Response, ApiError> {
    let answer =
        state.wallet.apply(claims.user(), WalletOp::Deposit(request.amount.0), key, Utc::now()).await?;
    Ok(movement_response(answer))
}

/// Remove virtual funds, at most the available balance.
#[utoipa::path(post, path = "/api/wallet/withdraw", tag = "wallet", request_body = AmountRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 200, body = MovementResponse),
        (status = 400, description = "Invalid amount", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, description = "More than the available balance, or the key was reused", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn withdraw(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    Json(request): Json<AmountRequest>,
) -> Result<Response, ApiError> {
    let answer =
        state.wallet.apply(claims.user(), WalletOp::Withdraw(request.amount.0), key, Utc::now()).await?;
    Ok(movement_response(answer))
}

/// Set the available balance back to the starting balance (10,000.00), keeping all history.
#[utoipa::path(post, path = "/api/wallet/reset", tag = "wallet",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 200, body = MovementResponse),
        (status = 401, body = ErrorBody),
        (status = 409, description = "Trades are still in play", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn reset(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<Response, ApiError> {
    let answer = state.wallet.apply(claims.user(), WalletOp::Reset, key, Utc::now()).await?;
    Ok(movement_response(answer))
}

/// The statement, newest first, cursor-paginated.
#[utoipa::path(get, path = "/api/wallet/transactions", tag = "wallet", params(TransactionsQuery),
    responses((status = 200, body = TransactionsResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn transactions(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Query(query): Query<TransactionsQuery>,
) -> Result<Json<TransactionsResponse>, ApiError> {
    let page = state.wallet.statement(claims.user(), query.into_filter()?).await?;
    Ok(Json(TransactionsResponse {
        transactions: page.rows.iter().map(TransactionDto::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// The statement as CSV (same filters; `cursor` and `limit` are ignored).
#[utoipa::path(get, path = "/api/wallet/transactions.csv", tag = "wallet", params(TransactionsQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn transactions_csv(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    Query(query): Query<TransactionsQuery>,
) -> Result<Response, ApiError> {
    let mut filter = query.into_filter()?;
    filter.cursor = None;
    let pages = state.wallet.export(claims.user(), filter).await?;
    let header = futures::stream::once(async {
        Ok::<_, std::io::Error>(Bytes::from_static(
            b"id,type,amount,balanceAfter,reference,createdAt,description\r\n",
        ))
    });
    // A page that cannot be read ends the body with an error: the download fails rather than
    // end early looking complete.
    let lines = pages.map(|page| page.map(|rows| csv_lines(&rows)).map_err(std::io::Error::other));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"fairtick-transactions.csv\""),
        ],
        Body::from_stream(header.chain(lines)),
    )
        .into_response())
}

/// The CSV lines of a page of the statement.
fn csv_lines(rows: &[StatementRow]) -> Bytes {
    let mut csv = String::new();
    for row in rows.iter().map(TransactionDto::from) {
        let fields = [
            row.id.to_string(),
            row.kind,
            row.amount,
            row.balance_after,
            row.reference.unwrap_or_default(),
            row.created_at,
            row.description,
        ];
        let escaped: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        csv.push_str(&escaped.join(","));
        csv.push_str("\r\n");
    }
    Bytes::from(csv)
}

/// RFC 4180 quoting; a leading formula character is neutralised so spreadsheets never
/// execute a cell.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '@']) { format!("'{value}") } else { value.to_owned() };
    if value.contains([',', '"', '\r', '\n']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value }
}
