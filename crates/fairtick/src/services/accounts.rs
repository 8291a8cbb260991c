//! Accounts: registration, login, logout, and turning a presented token into an authenticated
//! user (checked against the database every time, so logout and suspension act at once).

use chrono::{DateTime, Utc};
use fairtick_core::account::{check_password, parse_name};
use fairtick_core::wallet::{WalletState, signup_credit};
use fairtick_core::{Email, Role, UserStatus};

use super::events::{Event, EventBus, SignOff};
use super::passwords::{Passwords, Verification};
use super::sealing::DataKey;
use super::settings::Settings;
use super::tokens::{Claims, Tokens};
use super::totp;
use super::{Error, Result};
use crate::store::{NewUser, SessionUser, Store, StoreError, UserRecord};

/// Registration input as received; validated here.
#[derive(Clone, Debug)]
pub struct Registration {
    pub email: String,
    pub password: String,
    pub first_name: String,
    pub last_name: String,
    pub role: Role,
}

/// A user with their current balances, as shown to them.
#[derive(Clone, Debug)]
pub struct Profile {
    pub user: UserRecord,
    pub wallet: WalletState,
}

/// A fresh login: the signed token, its claims and the profile.
#[derive(Clone, Debug)]
pub struct Session {
    pub token: String,
    pub claims: Claims,
    pub profile: Profile,
}

#[derive(Clone)]
pub struct Accounts {
    store: Store,
    passwords: Passwords,
    tokens: Tokens,
    settings: Settings,
    data_key: DataKey,
    /// Tells the realtime hubs when a session ends.
    events: EventBus,
}

impl Accounts {
    pub fn new(
        store: Store,
        passwords: Passwords,
        tokens: Tokens,
        settings: Settings,
        data_key: DataKey,
        events: EventBus,
    ) -> Accounts {
        Accounts { store, passwords, tokens, settings, data_key, events }
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Creates an account credited with the starting balance. Used by the API (role `user`)
    /// and by `fairtick user create` (any role).
    pub async fn register(&self, input: Registration, now: DateTime<Utc>) -> Result<UserRecord> {
        let email = Email::parse(&input.email).map_err(|e| Error::invalid("email", e))?;
        check_password(&input.password).map_err(|e| Error::invalid("password", e))?;
        let first_name = parse_name(&input.first_name).map_err(|e| Error::invalid("firstName", e))?;
        let last_name = parse_name(&input.last_name).map_err(|e| Error::invalid("lastName", e))?;
        let password_hash = self.passwords.hash(&input.password).await?;
        let new = NewUser { email, password_hash, first_name, last_name, role: input.role };
        match self.store.register_user(new, &signup_credit(&self.settings.current().wallet), now).await {
            Ok(user) => Ok(user),
            Err(StoreError::EmailTaken) => Err(Error::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Registers a `user` and signs them in.
    pub async fn sign_up(&self, input: Registration, now: DateTime<Utc>) -> Result<Session> {
        let user = self.register(input, now).await?;
        self.open_session(user, now).await
    }

    /// Checks the password and signs in. Every failure is the same error and costs the same
    /// hashing work, so it reveals nothing about which emails exist.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        totp_code: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        let user = match Email::parse(email) {
            Ok(email) => self.store.user_by_email(&email).await?,
            Err(_) => None,
        };
        let Some(user) = user else {
            self.passwords.verify_decoy(password).await?;
            return Err(Error::BadCredentials);
        };
        let Verification::Matches { needs_rehash } =
            self.passwords.verify(password, &user.password_hash).await?
        else {
            return Err(Error::BadCredentials);
        };
        if user.status == UserStatus::Suspended {
            return Err(Error::Suspended);
        }
        if user.totp_enabled {
            let Some(code) = totp_code else {
                return Err(Error::Refused {
                    code: "totp_required",
                    message: "enter the code from your authenticator app".into(),
                });
            };
            if !self.check_totp(&user, code, now)? {
                return Err(Error::BadCredentials);
            }
        }
        if needs_rehash {
            let upgraded = self.passwords.hash(password).await?;
            self.store.set_password_hash(user.id, &upgraded).await?;
            tracing::info!(user = %user.id, "upgraded a password hash to argon2id");
        }
        self.open_session(user, now).await
    }

    async fn open_session(&self, user: UserRecord, now: DateTime<Utc>) -> Result<Session> {
        let (token, claims) = self.tokens.issue(user.id, &user.email, user.role, now)?;
        let wallet = self.store.wallet_state(user.id, now).await?;
        Ok(Session { token, claims, profile: Profile { user, wallet } })
    }

    /// Refuses this token from now on, and ends the user's live connections: those signed in
    /// with it must not outlive it, and the others' clients sign in again with their own.
    pub async fn logout(&self, claims: &Claims, now: DateTime<Utc>) -> Result<()> {
        self.store.revoke_token(claims.user(), &claims.jti, claims.expires_at(), now).await?;
        self.events.publish(Event::SignedOff(claims.user(), SignOff::LoggedOut));
        Ok(())
    }

    /// The claims of a valid, unrevoked token whose account is active, with the role as it is
    /// now (a role change applies at once, not at the token's expiry).
    pub async fn authenticate(&self, token: &str) -> Result<Claims> {
        Ok(self.signed_in(token).await?.0)
    }

    /// [`Accounts::authenticate`], with the account's row as read for it.
    pub async fn signed_in(&self, token: &str) -> Result<(Claims, UserRecord)> {
        let mut claims = self.tokens.decode(token)?;
        let session = self.store.session_user(claims.user(), &claims.jti).await?;
        let user = match (signed_off(session.as_ref()), session) {
            (None, Some(session)) => session.user,
            (Some(SignOff::Suspended), _) => return Err(Error::Suspended),
            _ => return Err(Error::Unauthenticated),
        };
        claims.role = user.role;
        Ok((claims, user))
    }

    fn totp_secret(&self, user: &UserRecord) -> Result<Vec<u8>> {
        let sealed = user.totp_sealed.as_deref().ok_or_else(|| Error::Conflict {
            code: "totp_not_enrolled",
            message: "start TOTP enrolment first".into(),
        })?;
        self.data_key.open(sealed)
    }

    fn check_totp(&self, user: &UserRecord, code: &str, now: DateTime<Utc>) -> Result<bool> {
        let secret = self.totp_secret(user)?;
        totp::check(&secret, &user.email, code, u64::try_from(now.timestamp()).unwrap_or(0))
    }

    /// Starts (or restarts, while not yet confirmed) TOTP enrolment: a new secret, sealed under
    /// the data key, and the `otpauth://` URI to scan.
    pub async fn totp_enrol(&self, record: &UserRecord) -> Result<(String, String)> {
        if record.totp_enabled {
            return Err(Error::Conflict {
                code: "totp_enabled",
                message: "two-factor authentication is already on".into(),
            });
        }
        let secret = totp::new_secret();
        self.store.set_totp(record.id, Some(&self.data_key.seal(&secret)), false).await?;
        totp::enrolment(&secret, &record.email)
    }

    /// Confirms enrolment with a current code; from then on, login needs a code.
    pub async fn totp_confirm(&self, record: &UserRecord, code: &str, now: DateTime<Utc>) -> Result<()> {
        if !self.check_totp(record, code, now)? {
            return Err(Error::invalid("code", "is not the current code of the enrolled secret"));
        }
        self.store.set_totp(record.id, None, true).await?;
        Ok(())
    }

    pub async fn profile(&self, user: UserRecord, now: DateTime<Utc>) -> Result<Profile> {
        let wallet = self.store.wallet_state(user.id, now).await?;
        Ok(Profile { user, wallet })
    }
}

/// Why a session as the store has it (`None`: unknown) no longer signs its user in, if it does
/// not: the one rule for a token offered and for a socket checked again after missed events.
pub fn signed_off(session: Option<&SessionUser>) -> Option<SignOff> {
    match session {
        None => Some(SignOff::LoggedOut),
        Some(session) if session.revoked => Some(SignOff::LoggedOut),
        Some(session) if session.user.status == UserStatus::Suspended => Some(SignOff::Suspended),
        Some(_) => None,
    }
}
