//! `/api/auth/*`: register, login, logout, me. Thin: parse, call the accounts service, answer.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use fairtick_core::{Email, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::dto::UserDto;
use super::error::{ApiError, ErrorBody};
use super::extract::{AuthAccount, AuthUser, ClientIp, Json, SESSION_COOKIE};
use crate::services::accounts::{Registration, Session};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "ann@example.com")]
    pub email: String,
    /// 8 to 128 characters.
    pub password: String,
    pub first_name: String,
    pub last_name: String,
}

/// The longest password a login hashes. Far above what registration allows (accounts imported
/// from elsewhere may have longer ones), and far below what an attacker would like it to hash.
const MAX_LOGIN_PASSWORD_CHARS: usize = 1_024;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// The authenticator code, for accounts with two-factor authentication on.
    pub totp_code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    /// A JWT (HS256) to send as `Authorization: Bearer …`; also set as an HttpOnly cookie.
    pub token: String,
    pub user: UserDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user: UserDto,
}

fn session_cookie(value: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::try_from(format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}"
    ))
    .expect("a token is a valid header value")
}

fn session_response(state: &AppState, status: StatusCode, session: Session) -> Response {
    let ttl_secs = state.accounts.tokens().ttl().as_secs();
    let cookie = session_cookie(&session.token, ttl_secs, state.secure_cookie);
    let body = SessionResponse { user: UserDto::from(&session.profile), token: session.token };
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// Create an account, credited with 10,000.00 virtual VUSD, and sign in.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered and signed in", body = SessionResponse),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 409, description = "Email already registered", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    ))]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<RegisterRequest>,
) -> Result<Response, ApiError> {
    state.auth_limits.check_ip(ip)?;
    let registration = Registration {
        email: request.email,
        password: request.password,
        first_name: request.first_name,
        last_name: request.last_name,
        role: Role::User,
    };
    let session = state.accounts.sign_up(registration, Utc::now()).await?;
    Ok(session_response(&state, StatusCode::CREATED, session))
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = SessionResponse),
        (status = 401, description = "Email or password is incorrect", body = ErrorBody),
        (status = 403, description = "Account suspended", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    state.auth_limits.check_ip(ip)?;
    // Bounded before the email keys a limiter and the password is hashed (for a decoy too).
    if request.email.chars().count() > Email::MAX_LEN {
        return Err(ApiError::invalid("email", format!("must be at most {} characters", Email::MAX_LEN)));
    }
    if request.password.chars().count() > MAX_LOGIN_PASSWORD_CHARS {
        let most = MAX_LOGIN_PASSWORD_CHARS;
        return Err(ApiError::invalid("password", format!("must be at most {most} characters")));
    }
    state.auth_limits.check_account(&request.email)?;
    let session = state
        .accounts
        .login(&request.email, &request.password, request.totp_code.as_deref(), Utc::now())
        .await?;
    Ok(session_response(&state, StatusCode::OK, session))
}

/// Sign out: this token is refused from now on and the cookie is cleared.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn logout(State(state): State<AppState>, AuthUser(claims): AuthUser) -> Result<Response, ApiError> {
    state.accounts.logout(&claims, Utc::now()).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0, state.secure_cookie));
    Ok(response)
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth",
    responses(
        (status = 200, description = "The signed-in user", body = MeResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Account suspended", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn me(
    State(state): State<AppState>,
    AuthAccount(user): AuthAccount,
) -> Result<Json<MeResponse>, ApiError> {
    let profile = state.accounts.profile(user, Utc::now()).await?;
    Ok(Json(MeResponse { user: UserDto::from(&profile) }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TotpEnrolment {
    /// The shared secret, base32, for manual entry.
    pub secret: String,
    /// `otpauth://totp/…`, to scan as a QR code.
    pub otpauth_uri: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirm {
    /// The 6-digit code the authenticator shows now.
    pub code: String,
}

/// Start two-factor authentication (RFC 6238): a new secret, sealed at rest, to confirm next.
#[utoipa::path(post, path = "/api/auth/totp/enroll", tag = "auth",
    responses((status = 200, body = TotpEnrolment), (status = 401, body = ErrorBody), (status = 409, description = "Already on", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn totp_enrol(
    State(state): State<AppState>,
    AuthAccount(user): AuthAccount,
) -> Result<Json<TotpEnrolment>, ApiError> {
    let (secret, otpauth_uri) = state.accounts.totp_enrol(&user).await?;
    Ok(Json(TotpEnrolment { secret, otpauth_uri }))
}

/// Confirm enrolment with a current code; from then on login needs `totpCode`.
#[utoipa::path(post, path = "/api/auth/totp/confirm", tag = "auth", request_body = TotpConfirm,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn totp_confirm(
    State(state): State<AppState>,
    AuthAccount(user): AuthAccount,
    Json(request): Json<TotpConfirm>,
) -> Result<StatusCode, ApiError> {
    state.accounts.totp_confirm(&user, &request.code, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
