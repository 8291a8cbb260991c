//! Who a user is: identifiers, roles, status, and the rules for emails, names and passwords.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A user's numeric identifier, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a user may do. Roles grant administration; no role can touch a trade's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
    Superadmin,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Superadmin => "superadmin",
        }
    }

    pub const fn is_admin(self) -> bool {
        matches!(self, Role::Admin | Role::Superadmin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text names no role or status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownVariant(pub String);

impl FromStr for Role {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            "superadmin" => Ok(Role::Superadmin),
            other => Err(UnknownVariant(other.to_owned())),
        }
    }
}

/// Whether an account may use the platform at all. A suspended account's sessions stop at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Suspended,
}

impl UserStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
        }
    }
}

impl FromStr for UserStatus {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(UserStatus::Active),
            "suspended" => Ok(UserStatus::Suspended),
            other => Err(UnknownVariant(other.to_owned())),
        }
    }
}

/// Why an account field was refused. The message completes "`field` …".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountFieldError {
    #[error("must be an email address such as name@example.com")]
    InvalidEmail,
    #[error("must be between {min} and {max} characters")]
    Length { min: usize, max: usize },
    #[error("must not contain control characters")]
    ControlCharacters,
}

/// An email address, trimmed and lowercased so that comparisons ignore case.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    /// A deliberately modest check: one `@`, something on both sides, a dot in the domain,
    /// no spaces. Deliverability is not our concern: the money is virtual.
    pub fn parse(text: &str) -> Result<Email, AccountFieldError> {
        let email = text.trim().to_lowercase();
        if email.is_empty() || email.chars().count() > Self::MAX_LEN {
            return Err(AccountFieldError::InvalidEmail);
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(AccountFieldError::InvalidEmail);
        };
        let well_formed = !local.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if !well_formed {
            return Err(AccountFieldError::InvalidEmail);
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Password length bounds, in characters. The upper bound keeps hashing cost bounded.
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 128;

/// Checks the password rules; the password itself is never stored or echoed.
pub fn check_password(password: &str) -> Result<(), AccountFieldError> {
    let chars = password.chars().count();
    if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&chars) {
        return Err(AccountFieldError::Length { min: PASSWORD_MIN_CHARS, max: PASSWORD_MAX_CHARS });
    }
    Ok(())
}

/// A first or last name: trimmed, 1–100 characters, printable.
pub fn parse_name(text: &str) -> Result<String, AccountFieldError> {
    let name = text.trim();
    let chars = name.chars().count();
    if !(1..=100).contains(&chars) {
        return Err(AccountFieldError::Length { min: 1, max: 100 });
    }
    if name.chars().any(char::is_control) {
        return Err(AccountFieldError::ControlCharacters);
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(Email::parse("  Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for (text, why) in [
            ("", "empty"),
            ("ann", "no @"),
            ("@example.com", "no local part"),
            ("ann@", "no domain"),
            ("ann@example", "no dot in the domain"),
            ("ann@@example.com", "two @"),
            ("an n@example.com", "a space"),
            ("ann@.com", "domain starts with a dot"),
        ] {
            assert!(Email::parse(text).is_err(), "accepted {text:?} ({why})");
        }
    }

    #[test]
    fn passwords_must_be_8_to_128_characters() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"é".repeat(128)).is_ok());
        assert!(check_password(&"x".repeat(129)).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("  Ann ").unwrap(), "Ann");
        assert!(parse_name("   ").is_err());
        assert!(parse_name(&"a".repeat(101)).is_err());
        assert!(parse_name("a\u{7}b").is_err());
    }

    #[test]
    fn roles_round_trip_through_text() {
        for role in [Role::User, Role::Admin, Role::Superadmin] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
