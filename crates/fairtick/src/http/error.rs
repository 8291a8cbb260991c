//! The one place where failures become HTTP: a status code and the body
//! `{"error": {"code": "snake_case", "message": "…", "field": "…"?}}`.
//!
//! 5xx answers say nothing internal; the cause is logged once, here.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::services;

/// The error body every endpoint answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable, snake_case.
    #[schema(example = "validation_error")]
    pub code: String,
    /// For people.
    pub message: String,
    /// The request field at fault, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None, retry_after: None }
    }

    pub fn invalid(field: impl Into<String>, message: impl std::fmt::Display) -> ApiError {
        let field = field.into();
        ApiError {
            message: format!("{field} {message}"),
            field: Some(field),
            ..ApiError::new(StatusCode::BAD_REQUEST, "validation_error", "")
        }
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn rate_limited(retry_after: Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; try again later",
            )
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<services::Error> for ApiError {
    fn from(error: services::Error) -> ApiError {
        use services::Error as E;
        let message = error.to_string();
        match error {
            E::Invalid { field, message } => ApiError::invalid(field, message),
            E::EmailTaken => ApiError::new(StatusCode::CONFLICT, "email_taken", message),
            E::BadCredentials => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", message),
            E::Unauthenticated => ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message),
            E::Suspended => ApiError::new(StatusCode::FORBIDDEN, "account_suspended", message),
            E::Forbidden { code, message } => ApiError::new(StatusCode::FORBIDDEN, code, message),
            E::RateLimited { retry_after } => ApiError::rate_limited(retry_after),
            E::Refused { code, message } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message),
            E::Conflict { code, message } => ApiError::new(StatusCode::CONFLICT, code, message),
            E::NotFound(what) => ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}")),
            E::IdempotencyKeyReused => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", message)
            }
            E::Store(_) | E::Internal(_) => {
                tracing::error!(error = %message, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong on our side",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail { code: self.code.to_owned(), message: self.message, field: self.field },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}
