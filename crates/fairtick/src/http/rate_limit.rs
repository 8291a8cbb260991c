//! Rate limits on the authentication endpoints: per client IP, and per account for logins, so
//! neither a single client nor a distributed guesser can hammer one password.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;

/// Limits on every API request: per client IP, and per signed-in user.
#[derive(Clone)]
pub struct ApiRateLimits {
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    per_user: Arc<DefaultKeyedRateLimiter<i64>>,
}

impl ApiRateLimits {
    pub fn new(per_ip_per_minute: u32, per_user_per_minute: u32) -> ApiRateLimits {
        ApiRateLimits {
            per_ip: Arc::new(RateLimiter::keyed(per_minute(per_ip_per_minute))),
            per_user: Arc::new(RateLimiter::keyed(per_minute(per_user_per_minute))),
        }
    }

    pub fn sweep(&self) {
        self.per_ip.retain_recent();
        self.per_user.retain_recent();
    }
}

/// Applies [`ApiRateLimits`] to `/api/*`. The user is read from the token's claims without a
/// database round trip (an invalid token is refused later, by the handler).
pub async fn limit_api(
    axum::extract::State(state): axum::extract::State<super::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let ip = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    // The limiter's own clock: building a clock per request costs a CPU calibration.
    if let Err(not_until) = state.api_limits.per_ip.check_key(&ip) {
        let now = state.api_limits.per_ip.clock().now();
        return ApiError::rate_limited(not_until.wait_time_from(now)).into_response();
    }
    let (parts, body) = request.into_parts();
    let user = super::extract::presented_token(&parts)
        .and_then(|t| state.accounts.tokens().decode(t).ok())
        .map(|c| c.user_id);
    if let Some(user) = user
        && let Err(not_until) = state.api_limits.per_user.check_key(&user)
    {
        let now = state.api_limits.per_user.clock().now();
        return ApiError::rate_limited(not_until.wait_time_from(now)).into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, body)).await
}

#[derive(Clone)]
pub struct AuthRateLimits {
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    per_account: Arc<DefaultKeyedRateLimiter<String>>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least one"))
}

impl AuthRateLimits {
    pub fn new(per_ip_per_minute: u32, per_account_per_minute: u32) -> AuthRateLimits {
        AuthRateLimits {
            per_ip: Arc::new(RateLimiter::keyed(per_minute(per_ip_per_minute))),
            per_account: Arc::new(RateLimiter::keyed(per_minute(per_account_per_minute))),
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.per_ip
            .check_key(&ip)
            .map_err(|not_until| ApiError::rate_limited(not_until.wait_time_from(self.per_ip.clock().now())))
    }

    /// Keyed by the email as typed, trimmed and lowercased, whether or not it exists.
    pub fn check_account(&self, email: &str) -> Result<(), ApiError> {
        self.per_account.check_key(&email.trim().to_lowercase()).map_err(|not_until| {
            ApiError::rate_limited(not_until.wait_time_from(self.per_account.clock().now()))
        })
    }

    /// Forgets keys whose limits have fully recovered, so memory stays bounded.
    pub fn sweep(&self) {
        self.per_ip.retain_recent();
        self.per_account.retain_recent();
    }
}
