//! Rate limits on the authentication endpoints: per client IP, and per account for logins, so
//! neither a single client nor a distributed guesser can hammer one password; on every API
//! request; and on the WebSocket connections one address holds open.

use std::collections::HashMap;
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
    let ip = limited_as(
        request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip()),
    );
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

/// The address a client's requests are counted under: an IPv6 client by its /64, the block one
/// host is usually given (else each of its addresses would have a budget of its own), and an
/// IPv4 address mapped into IPv6 as the IPv4 address it is.
fn limited_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

/// Open WebSocket connections by client address, each held by a [`SocketSlot`]: one host cannot
/// hold more than its share of the node's sockets (and of what each costs to keep).
#[derive(Clone)]
pub struct SocketsPerIp {
    open: Arc<parking_lot::Mutex<HashMap<IpAddr, usize>>>,
    cap: usize,
}

/// One open connection counted against its address, until dropped.
pub struct SocketSlot {
    open: Arc<parking_lot::Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl SocketsPerIp {
    pub fn new(cap: usize) -> SocketsPerIp {
        SocketsPerIp { open: Arc::default(), cap }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// A slot for one more connection from `ip`, unless it has `cap` open already.
    pub fn admit(&self, ip: IpAddr) -> Option<SocketSlot> {
        let ip = limited_as(ip);
        let mut open = self.open.lock();
        let count = open.entry(ip).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(SocketSlot { open: self.open.clone(), ip })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
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
            .check_key(&limited_as(ip))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_one_as_itself() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limited_as(one), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(limited_as(one), limited_as(other));
        assert_ne!(limited_as(one), limited_as(elsewhere));
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        assert_eq!(limited_as(mapped), "192.0.2.9".parse::<IpAddr>().unwrap());
        let v4: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(limited_as(v4), v4);
    }
}
