//! Liveness and readiness for orchestrators and load balancers.

use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use super::error::{ApiError, ErrorBody};

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The process can serve: its database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = String), (status = 503, description = "Database unreachable", body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.store.ping().await.map_err(|error| {
        tracing::warn!(%error, "readiness check failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the database is not reachable")
    })?;
    Ok("ready")
}
