//! `/api/market/*`: the markets, their tick and candle history, and their epochs with
//! commitments and revealed seeds.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::dto::timestamp;
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Path, Query};
use crate::services::market::catalog::{MarketDefinition, MarketSource};
use crate::store::{Candle, EpochRecord, TickRecord};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketDto {
    #[schema(example = "SIMV25")]
    pub symbol: String,
    #[schema(example = "Simulated Volatility 25 Index")]
    pub name: String,
    /// `simulated` (provably fair ticks from committed seeds) or `replay` (recorded prices).
    #[schema(example = "simulated")]
    pub kind: String,
    pub tick_interval_ms: u32,
    /// Decimals of every price.
    pub decimals: u32,
    /// Annualised volatility in percent, for simulated markets.
    #[schema(example = "25.00")]
    pub volatility: Option<String>,
    /// The replayed file, for replay markets.
    pub source: Option<String>,
    /// `open`, `halted` (no new trades for now) or `disabled`.
    /// `open`, `halted` (no new trades for now) or `disabled`.
    #[schema(example = "open")]
    pub status: String,
}

impl From<&MarketDefinition> for MarketDto {
    fn from(market: &MarketDefinition) -> MarketDto {
        MarketDto {
            symbol: market.symbol.clone(),
            name: market.name.clone(),
            kind: market.kind().to_owned(),
            tick_interval_ms: market.tick_interval_ms,
            decimals: 8,
            volatility: market.volatility_bp().map(|bp| format!("{}.{:02}", bp / 100, bp % 100)),
            source: match &market.source {
                MarketSource::Replay(replay) => Some(replay.source.clone()),
                MarketSource::Simulated { .. } => None,
            },
            status: "open".to_owned(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SymbolsResponse {
    pub symbols: Vec<MarketDto>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TickDto {
    pub symbol: String,
    pub seq: i64,
    /// When the server produced the tick (RFC 3339, ms).
    pub ts: String,
    #[schema(example = "1000.04451800")]
    pub price: String,
    pub epoch_id: i64,
}

impl From<&TickRecord> for TickDto {
    fn from(tick: &TickRecord) -> TickDto {
        TickDto {
            symbol: tick.symbol.clone(),
            seq: tick.seq,
            ts: timestamp(crate::store::time_from_ms(tick.ts)),
            price: tick.price.to_string(),
            epoch_id: tick.epoch_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TicksResponse {
    /// Oldest first.
    pub ticks: Vec<TickDto>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TicksQuery {
    pub symbol: String,
    /// From this time (RFC 3339), inclusive. Without `from`, the newest ticks.
    pub from: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339), exclusive.
    pub to: Option<DateTime<Utc>>,
    /// Only ticks after this seq (catching up after a reconnect).
    pub after_seq: Option<i64>,
    /// 1 to 5000, default 500.
    #[param(minimum = 1, maximum = 5000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CandleDto {
    /// Start of the bucket (RFC 3339).
    pub ts: String,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub ticks: i64,
}

impl From<&Candle> for CandleDto {
    fn from(candle: &Candle) -> CandleDto {
        CandleDto {
            ts: timestamp(crate::store::time_from_ms(candle.ts)),
            open: candle.open.to_string(),
            high: candle.high.to_string(),
            low: candle.low.to_string(),
            close: candle.close.to_string(),
            ticks: candle.ticks,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CandlesResponse {
    /// Oldest first; buckets without ticks are absent.
    pub candles: Vec<CandleDto>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CandlesQuery {
    pub symbol: String,
    /// `1s`, `1m`, `5m` or `1h`.
    pub interval: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// 1 to 1000, default 300.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EpochDto {
    pub id: i64,
    pub symbol: String,
    /// `simulated` or `replay`.
    pub kind: String,
    /// Engine parameters of this epoch (see docs/fairness.md).
    pub volatility_bp: i64,
    pub tick_interval_ms: i64,
    /// seq of the epoch's first tick.
    pub start_tick: i64,
    /// seq of its last tick, once it has ended.
    pub end_tick: Option<i64>,
    /// The price before its first tick.
    pub start_price: String,
    /// hex(SHA-256(seed)), published before the first tick (for a replay: of the file).
    pub commitment: String,
    /// The seed, revealed once the epoch has ended.
    pub seed: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// Published with the commitment (docs/fairness.md §4): the seq of its last tick if it
    /// runs its course, and the id and commitment of the market's next epoch. Absent for
    /// epochs older than announcements.
    pub planned_end_tick: Option<i64>,
    pub next_id: Option<i64>,
    pub next_commitment: Option<String>,
}

impl From<&EpochRecord> for EpochDto {
    fn from(epoch: &EpochRecord) -> EpochDto {
        EpochDto {
            id: epoch.id,
            symbol: epoch.symbol.clone(),
            kind: epoch.kind.clone(),
            volatility_bp: epoch.volatility_bp,
            tick_interval_ms: epoch.tick_interval_ms,
            start_tick: epoch.start_seq,
            end_tick: epoch.end_seq,
            start_price: epoch.start_price.to_string(),
            commitment: epoch.commitment.clone(),
            seed: epoch.revealed_seed.clone(),
            started_at: timestamp(crate::store::time_from_ms(epoch.started_at)),
            ended_at: epoch.ended_at.map(|t| timestamp(crate::store::time_from_ms(t))),
            planned_end_tick: epoch.announced.as_ref().map(|a| a.planned_end_seq),
            next_id: epoch.announced.as_ref().map(|a| a.next_id),
            next_commitment: epoch.announced.as_ref().map(|a| a.next_commitment.clone()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EpochsResponse {
    /// Newest first.
    pub epochs: Vec<EpochDto>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EpochsQuery {
    pub symbol: String,
    pub cursor: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// An epoch with every stored tick: what `fairtick verify epoch` and `/verify` check.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EpochDetail {
    pub epoch: EpochDto,
    pub ticks: Vec<TickDto>,
}

/// The markets. Simulated indices are named as simulated; replays name their source.
#[utoipa::path(get, path = "/api/market/symbols", tag = "market",
    responses((status = 200, body = SymbolsResponse), (status = 429, body = ErrorBody)))]
pub async fn symbols(State(state): State<AppState>) -> Json<SymbolsResponse> {
    let terms = state.settings.current();
    let symbols = state
        .markets
        .catalog()
        .iter()
        .map(|m| {
            let mut dto = MarketDto::from(m.as_ref());
            let switch = terms.market(&m.symbol);
            dto.status = if !switch.enabled {
                "disabled"
            } else if switch.halted {
                "halted"
            } else {
                "open"
            }
            .to_owned();
            dto
        })
        .collect();
    Json(SymbolsResponse { symbols })
}

/// Tick history, oldest first.
#[utoipa::path(get, path = "/api/market/ticks", tag = "market", params(TicksQuery),
    responses((status = 200, body = TicksResponse), (status = 400, body = ErrorBody)))]
pub async fn ticks(
    State(state): State<AppState>,
    Query(query): Query<TicksQuery>,
) -> Result<Json<TicksResponse>, ApiError> {
    let ticks = state
        .markets
        .ticks(
            &query.symbol,
            query.from.map(|t| t.timestamp_millis()),
            query.to.map(|t| t.timestamp_millis()),
            query.after_seq,
            query.limit,
        )
        .await?;
    Ok(Json(TicksResponse { ticks: ticks.iter().map(TickDto::from).collect() }))
}

/// OHLC candles, oldest first.
#[utoipa::path(get, path = "/api/market/candles", tag = "market", params(CandlesQuery),
    responses((status = 200, body = CandlesResponse), (status = 400, body = ErrorBody)))]
pub async fn candles(
    State(state): State<AppState>,
    Query(query): Query<CandlesQuery>,
) -> Result<Json<CandlesResponse>, ApiError> {
    let candles = state
        .markets
        .candles(
            &query.symbol,
            &query.interval,
            query.from.map(|t| t.timestamp_millis()),
            query.to.map(|t| t.timestamp_millis()),
            query.limit,
            Utc::now().timestamp_millis(),
        )
        .await?;
    Ok(Json(CandlesResponse { candles: candles.iter().map(CandleDto::from).collect() }))
}

/// A market's epochs, newest first: commitments, and seeds once revealed.
#[utoipa::path(get, path = "/api/market/epochs", tag = "market", params(EpochsQuery),
    responses((status = 200, body = EpochsResponse), (status = 400, body = ErrorBody)))]
pub async fn epochs(
    State(state): State<AppState>,
    Query(query): Query<EpochsQuery>,
) -> Result<Json<EpochsResponse>, ApiError> {
    let (epochs, next_cursor) =
        state.markets.epochs(&query.symbol, query.cursor.as_deref(), query.limit).await?;
    Ok(Json(EpochsResponse { epochs: epochs.iter().map(EpochDto::from).collect(), next_cursor }))
}

/// One epoch with all its stored ticks, for independent verification.
#[utoipa::path(get, path = "/api/market/epochs/{id}", tag = "market",
    params(("id" = i64, Path, description = "Epoch id")),
    responses((status = 200, body = EpochDetail), (status = 404, body = ErrorBody)))]
pub async fn epoch(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<EpochDetail>, ApiError> {
    let detail = state.markets.epoch_with_ticks(id).await?;
    Ok(Json(EpochDetail {
        epoch: EpochDto::from(&detail.epoch),
        ticks: detail.ticks.iter().map(TickDto::from).collect(),
    }))
}
