//! Password hashing: argon2id with OWASP's parameters, computed off the async workers with a
//! bounded number running at once, so a login storm slows logins and nothing else.
//!
//! Hashes imported from the original system (bcrypt, `$2a$`/`$2b$`) still verify, and the
//! caller is told to upgrade them.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::{Error, Result};

/// The outcome of checking a password against a stored hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    Matches { needs_rehash: bool },
    Mismatch,
}

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified when an email is unknown so that a failed login
    /// takes as long whether or not the account exists.
    decoy: Arc<String>,
}

/// OWASP's argon2id recommendation: 19 MiB of memory, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_now(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Internal(format!("hashing a password: {e}")))
}

fn verify_now(password: &str, stored: &str) -> Verification {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        return match bcrypt::verify(password, stored) {
            Ok(true) => Verification::Matches { needs_rehash: true },
            _ => Verification::Mismatch,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else { return Verification::Mismatch };
    match argon2().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => {
            let current = parsed.algorithm.as_str() == "argon2id"
                && parsed.params.get_decimal("m") == Some(19 * 1024)
                && parsed.params.get_decimal("t") == Some(2);
            Verification::Matches { needs_rehash: !current }
        }
        Err(_) => Verification::Mismatch,
    }
}

impl Passwords {
    pub async fn new(concurrency: usize) -> Result<Passwords> {
        let decoy = tokio::task::spawn_blocking(|| hash_now("decoy password, never valid"))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(Passwords { permits: Arc::new(Semaphore::new(concurrency.max(1))), decoy: Arc::new(decoy) })
    }

    pub async fn hash(&self, password: &str) -> Result<String> {
        let password = password.to_owned();
        self.run(move || hash_now(&password)).await?
    }

    pub async fn verify(&self, password: &str, stored: &str) -> Result<Verification> {
        let (password, stored) = (password.to_owned(), stored.to_owned());
        self.run(move || verify_now(&password, &stored)).await
    }

    /// Spends the same effort as [`Passwords::verify`] and always fails.
    pub async fn verify_decoy(&self, password: &str) -> Result<Verification> {
        let decoy = self.decoy.clone();
        let password = password.to_owned();
        self.run(move || {
            verify_now(&password, &decoy);
            Verification::Mismatch
        })
        .await
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let _permit = self.permits.acquire().await.map_err(|e| Error::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(work).await.map_err(|e| Error::Internal(format!("hashing task: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_hashes_verify_and_wrong_passwords_do_not() {
        let hash = hash_now("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(verify_now("correct horse", &hash), Verification::Matches { needs_rehash: false });
        assert_eq!(verify_now("wrong horse", &hash), Verification::Mismatch);
    }

    #[test]
    fn bcrypt_hashes_from_the_original_system_verify_and_ask_for_an_upgrade() {
        let legacy = bcrypt::hash("imported pw", 4).unwrap();
        assert!(legacy.starts_with("$2b$"));
        assert_eq!(verify_now("imported pw", &legacy), Verification::Matches { needs_rehash: true });
        assert_eq!(verify_now("other pw", &legacy), Verification::Mismatch);
        let a_variant = legacy.replacen("$2b$", "$2a$", 1);
        assert_eq!(verify_now("imported pw", &a_variant), Verification::Matches { needs_rehash: true });
    }

    #[test]
    fn garbage_hashes_never_match() {
        assert_eq!(verify_now("anything", "not a hash"), Verification::Mismatch);
        assert_eq!(verify_now("anything", ""), Verification::Mismatch);
    }
}
