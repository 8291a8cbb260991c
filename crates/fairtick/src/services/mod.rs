//! What fairtick does, in terms of the core rules and the store: accounts and the wallet.
//!
//! Services know nothing of HTTP. They validate input into domain values, call the store, and
//! answer with domain values or an [`Error`] that the HTTP layer maps to a status code once.

pub mod accounts;
pub mod admin;
pub mod events;
pub mod market;
pub mod paging;
pub mod passwords;
pub mod realtime;
pub mod sealing;
pub mod settings;
pub mod tokens;
pub mod totp;
pub mod trades;
pub mod wallet;

use std::time::Duration;

use crate::store::StoreError;

/// Every way a service call can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that can never succeed; names the offending field.
    #[error("{field} {message}")]
    Invalid { field: &'static str, message: String },
    #[error("that email address is already registered")]
    EmailTaken,
    #[error("email or password is incorrect")]
    BadCredentials,
    #[error("missing, expired or revoked token")]
    Unauthenticated,
    #[error("this account is suspended")]
    Suspended,
    /// Signed in, but not allowed to do this.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("too many requests")]
    RateLimited { retry_after: Duration },
    /// A well-formed request the rules refuse at this moment (a limit, the balance, a state).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// The request conflicts with the current state of the resource.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: &'static str, message: impl ToString) -> Error {
        Error::Invalid { field, message: message.to_string() }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
