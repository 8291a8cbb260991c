//! Rate limits on the authentication endpoints: per client IP, and per account for logins, so
//! neither a single client nor a distributed guesser can hammer one password.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;

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
        self.per_ip.check_key(&ip).map_err(|not_until| {
            ApiError::rate_limited(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }

    /// Keyed by the email as typed, trimmed and lowercased, whether or not it exists.
    pub fn check_account(&self, email: &str) -> Result<(), ApiError> {
        self.per_account.check_key(&email.trim().to_lowercase()).map_err(|not_until| {
            ApiError::rate_limited(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }

    /// Forgets keys whose limits have fully recovered, so memory stays bounded.
    pub fn sweep(&self) {
        self.per_ip.retain_recent();
        self.per_account.retain_recent();
    }
}
