//! Extractors: JSON and query strings whose rejections use our error shape, the authenticated
//! user, the client's address and the `Idempotency-Key` header.

use std::net::{IpAddr, SocketAddr};

use axum::extract::path::ErrorKind;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::services::tokens::Claims;
use crate::store::UserRecord;

/// The session cookie the web app uses; the same token as the `Authorization: Bearer` one.
pub const SESSION_COOKIE: &str = "fairtick_session";

/// `axum::Json` with our error body on rejection.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ),
            JsonRejection::JsonSyntaxError(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {}", e.body_text()),
            ),
            JsonRejection::JsonDataError(e) => data_error(&e.body_text()),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            ),
            other => ApiError::new(other.status(), "bad_request", other.body_text()),
        }
    }
}

/// Turns serde's message ("Failed to deserialize …: amount: must have at most 2 decimals at
/// line 1 column 20") into a validation error naming the field.
fn data_error(text: &str) -> ApiError {
    let detail = text.split_once("target type: ").map_or(text, |(_, rest)| rest);
    field_error(detail.rsplit_once(" at line ").map_or(detail, |(head, _)| head))
}

/// A validation error from serde's `path: message`, `missing field` or `unknown field` text.
fn field_error(detail: &str) -> ApiError {
    let (path, message) = match detail.split_once(": ") {
        Some((path, message)) if !path.contains(' ') && path != "." => (Some(path), message),
        _ => (None, detail),
    };
    let quoted = |prefix: &str| message.strip_prefix(prefix).and_then(|rest| rest.split('`').next());
    let nested = |name: &str| path.map_or_else(|| name.to_owned(), |p| format!("{p}.{name}"));
    if let Some(name) = quoted("missing field `") {
        return ApiError::invalid(nested(name), "is required");
    }
    if let Some(name) = quoted("unknown field `") {
        return ApiError::invalid(path.unwrap_or(name), "is not a known field");
    }
    match path {
        Some(path) => ApiError::invalid(path, message),
        None => ApiError::new(StatusCode::BAD_REQUEST, "validation_error", detail.to_owned()),
    }
}

/// `axum::extract::Query` with our error body on rejection, where a parameter with an empty
/// value is absent: `?from=&limit=` is what a form sends for its blank fields.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let given = parts.uri.query().unwrap_or_default();
        let kept: Vec<&str> = given
            .split('&')
            .filter(|pair| pair.split_once('=').is_some_and(|(_, value)| !value.is_empty()))
            .collect();
        let uri: Uri = format!("/?{}", kept.join("&")).parse().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "validation_error", "the query string is not valid")
        })?;
        let axum::extract::Query(value) = axum::extract::Query::try_from_uri(&uri)?;
        Ok(Query(value))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        let text = rejection.body_text();
        field_error(
            text.split_once("Failed to deserialize query string: ").map_or(text.as_str(), |(_, rest)| rest),
        )
    }
}

/// `axum::extract::Path` with our error body on rejection (`/api/flash-trade/abc`).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        if let PathRejection::FailedToDeserializePathParams(failed) = &rejection {
            match failed.kind() {
                ErrorKind::ParseErrorAtKey { key, value, .. } => {
                    return ApiError::invalid(key.as_str(), format!("{value:?} is not a valid {key}"));
                }
                ErrorKind::ParseError { value, .. } => {
                    return ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "validation_error",
                        format!("{value:?} in the path is not valid here"),
                    );
                }
                _ => {}
            }
        }
        ApiError::new(rejection.status(), "bad_request", rejection.body_text())
    }
}

/// The token a request presents: `Authorization: Bearer …` first, then the session cookie.
pub fn presented_token(parts: &Parts) -> Option<&str> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return value.strip_prefix("Bearer ").map(str::trim);
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// A request from a signed-in, active account, checked against the account's current state
/// (read from the database, or remembered since the last change to it).
pub struct AuthUser(pub Claims);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(AuthUser(signed_in(parts, state).await?.0))
    }
}

/// The claims of the request's token and its account's row, from one read: what every
/// extractor of a signed-in request starts from.
pub(super) async fn signed_in(parts: &Parts, state: &AppState) -> Result<(Claims, UserRecord), ApiError> {
    let token = presented_token(parts).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in first: no token was presented")
    })?;
    Ok(state.accounts.signed_in(token).await?)
}

/// [`AuthUser`] with the account's row as read to authenticate it, for a handler that needs more
/// of the account (a trade's stake limit and VIP level, the profile, two-factor state) without
/// reading it a second time.
pub struct AuthAccount(pub UserRecord);

impl FromRequestParts<AppState> for AuthAccount {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(AuthAccount(signed_in(parts, state).await?.1))
    }
}

/// The client's IP address, as seen on the socket.
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |ConnectInfo(addr)| addr.ip());
        Ok(ClientIp(ip))
    }
}

/// The optional `Idempotency-Key` header: 1–255 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else { return Ok(IdempotencyKey(None)) };
        let key = value
            .to_str()
            .ok()
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
        match key {
            Some(key) => Ok(IdempotencyKey(Some(key.to_owned()))),
            None => Err(ApiError::invalid("Idempotency-Key", "must be 1 to 255 visible ASCII characters")),
        }
    }
}
