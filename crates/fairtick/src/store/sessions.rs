//! Sessions remembered between requests, so that a token checked a moment ago is not read
//! again: that read was the largest part of a trade's CPU time outside the writer, on both
//! backends. Every write to an account's row or to its tokens forgets that account's sessions
//! when it commits, on this node at once and on the other nodes by notification; a session is
//! trusted for [`SessionCache::ttl`] at most, the bound on a change this node never heard of.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fairtick_core::UserId;
use parking_lot::Mutex;

use super::users::SessionUser;

/// Sessions remembered at most; past it, the expired ones go, and all of them if none had.
const MAX_ENTRIES: usize = 65_536;
/// How long a session is trusted unless the server is told otherwise, in milliseconds.
pub const DEFAULT_TTL_MS: u64 = 2_000;
pub(super) const DEFAULT_TTL: Duration = Duration::from_millis(DEFAULT_TTL_MS);
/// The PostgreSQL channel on which a node tells the others whose sessions to forget; each
/// payload is one user id.
pub const USERS_CHANNEL: &str = "fairtick_users";

pub(crate) struct SessionCache {
    /// In milliseconds; set once at start-up, read by every lookup.
    ttl_ms: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_user: HashMap<UserId, Vec<Remembered>>,
    entries: usize,
    /// Counts the forgettings: a read that began before one may hold what was forgotten.
    generation: u64,
}

struct Remembered {
    jti: Box<str>,
    session: SessionUser,
    read_at: Instant,
}

/// Taken before a session is read from the database, and given back to keep what was read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadStart(u64);

impl SessionCache {
    /// A cache trusting what it holds for `ttl`; a zero `ttl` remembers nothing.
    pub(crate) fn new(ttl: Duration) -> SessionCache {
        let cache = SessionCache { ttl_ms: AtomicU64::new(0), inner: Mutex::default() };
        cache.set_ttl(ttl);
        cache
    }

    pub(crate) fn set_ttl(&self, ttl: Duration) {
        self.ttl_ms.store(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.forget_all();
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed))
    }

    /// The session of `user`'s token `jti` if it was read less than the TTL ago and nothing
    /// forgot it since; otherwise where a read of it starts.
    pub(crate) fn get(&self, user: UserId, jti: &str, now: Instant) -> Result<SessionUser, ReadStart> {
        let inner = self.inner.lock();
        let found = inner.by_user.get(&user).and_then(|sessions| sessions.iter().find(|s| &*s.jti == jti));
        match found {
            Some(remembered) if now.duration_since(remembered.read_at) < self.ttl() => {
                Ok(remembered.session.clone())
            }
            _ => Err(ReadStart(inner.generation)),
        }
    }

    /// Keeps a session read since `start`, unless something was forgotten meanwhile (the read
    /// may have seen the row before the change that was forgotten).
    pub(crate) fn keep(
        &self,
        start: ReadStart,
        user: UserId,
        jti: &str,
        session: &SessionUser,
        now: Instant,
    ) {
        let ttl = self.ttl();
        if ttl.is_zero() {
            return;
        }
        let mut inner = self.inner.lock();
        if inner.generation != start.0 {
            return;
        }
        if inner.entries >= MAX_ENTRIES {
            inner.drop_expired(now, ttl);
        }
        let remembered = Remembered { jti: jti.into(), session: session.clone(), read_at: now };
        let sessions = inner.by_user.entry(user).or_default();
        match sessions.iter_mut().find(|s| &*s.jti == jti) {
            Some(old) => *old = remembered,
            None => {
                sessions.push(remembered);
                inner.entries += 1;
            }
        }
    }

    /// Forgets every session of `users`, and any read of one that is under way.
    pub(crate) fn forget(&self, users: &[UserId]) {
        let mut inner = self.inner.lock();
        inner.generation += 1;
        for user in users {
            if let Some(sessions) = inner.by_user.remove(user) {
                inner.entries -= sessions.len();
            }
        }
    }

    /// Forgets everything, e.g. when notifications of changes may have been missed.
    pub(crate) fn forget_all(&self) {
        let mut inner = self.inner.lock();
        inner.generation += 1;
        inner.by_user.clear();
        inner.entries = 0;
    }
}

impl Inner {
    fn drop_expired(&mut self, now: Instant, ttl: Duration) {
        self.by_user.retain(|_, sessions| {
            sessions.retain(|s| now.duration_since(s.read_at) < ttl);
            !sessions.is_empty()
        });
        self.entries = self.by_user.values().map(Vec::len).sum();
        if self.entries >= MAX_ENTRIES {
            self.by_user.clear();
            self.entries = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use fairtick_core::{Role, UserStatus};

    use super::*;
    use crate::store::UserRecord;

    fn session(id: i64, revoked: bool) -> SessionUser {
        SessionUser {
            user: UserRecord {
                id: UserId(id),
                email: format!("user{id}@example.com"),
                password_hash: String::new(),
                first_name: "A".into(),
                last_name: "B".into(),
                role: Role::User,
                status: UserStatus::Active,
                vip_level: 1,
                created_at: Utc::now(),
                max_stake: None,
                trading_suspended: false,
                totp_sealed: None,
                totp_enabled: false,
            },
            revoked,
        }
    }

    fn cache() -> SessionCache {
        SessionCache::new(DEFAULT_TTL)
    }

    fn remember(cache: &SessionCache, id: i64, jti: &str, now: Instant) {
        let start = cache.get(UserId(id), jti, now).unwrap_err();
        cache.keep(start, UserId(id), jti, &session(id, false), now);
    }

    #[test]
    fn a_session_is_served_until_its_ttl_and_only_for_its_own_token() {
        let (cache, now) = (cache(), Instant::now());
        remember(&cache, 1, "a", now);
        let hit = cache.get(UserId(1), "a", now + Duration::from_millis(1_999)).unwrap();
        assert_eq!(hit.user.id, UserId(1));
        assert!(cache.get(UserId(1), "b", now).is_err(), "another token of the same user");
        assert!(cache.get(UserId(2), "a", now).is_err(), "the same token id of another user");
        assert!(cache.get(UserId(1), "a", now + Duration::from_secs(2)).is_err(), "expired");
    }

    #[test]
    fn forgetting_a_user_drops_all_their_sessions_and_no_one_elses() {
        let (cache, now) = (cache(), Instant::now());
        remember(&cache, 1, "a", now);
        remember(&cache, 1, "b", now);
        remember(&cache, 2, "c", now);
        cache.forget(&[UserId(1)]);
        assert!(cache.get(UserId(1), "a", now).is_err());
        assert!(cache.get(UserId(1), "b", now).is_err());
        assert!(cache.get(UserId(2), "c", now).is_ok());
        cache.forget_all();
        assert!(cache.get(UserId(2), "c", now).is_err());
    }

    #[test]
    fn a_read_that_a_forgetting_overtook_is_not_kept() {
        let (cache, now) = (cache(), Instant::now());
        let start = cache.get(UserId(1), "a", now).unwrap_err();
        // The row changes (and is forgotten) while the read is under way: what the read saw
        // may be the row before the change.
        cache.forget(&[UserId(1)]);
        cache.keep(start, UserId(1), "a", &session(1, false), now);
        assert!(cache.get(UserId(1), "a", now).is_err());
        remember(&cache, 1, "a", now);
        assert!(cache.get(UserId(1), "a", now).is_ok(), "a read begun after the change is kept");
    }

    #[test]
    fn a_zero_ttl_remembers_nothing() {
        let (cache, now) = (SessionCache::new(Duration::ZERO), Instant::now());
        remember(&cache, 1, "a", now);
        assert!(cache.get(UserId(1), "a", now).is_err());
        assert_eq!(cache.inner.lock().entries, 0);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let (cache, now) = (cache(), Instant::now());
        for id in 0..MAX_ENTRIES as i64 {
            remember(&cache, id, "a", now);
        }
        remember(&cache, -1, "a", now + Duration::from_secs(3));
        assert_eq!(cache.inner.lock().entries, 1, "the expired went when the cache was full");
        for id in 0..MAX_ENTRIES as i64 {
            remember(&cache, id, "b", now + Duration::from_secs(3));
        }
        assert!(cache.inner.lock().entries <= MAX_ENTRIES, "nothing had expired, so all went");
    }
}
