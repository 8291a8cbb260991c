//! Password hashing: argon2id with OWASP's parameters, computed off the async workers on a
//! few threads of its own, so a login storm slows logins and nothing else.
//!
//! Each hash needs a 19 MiB work area. Allocated and freed per hash, glibc kept those blocks
//! (its mmap threshold rises to their size after the first one is freed): the server grew to
//! about 170 MB after 64 registrations. Each hashing thread now keeps one work area and reuses
//! it, so hashing holds at most `concurrency` × 19 MiB, allocated on first use.
//!
//! Hashes imported from the original system (bcrypt, `$2a$`/`$2b$`) still verify, and the
//! caller is told to upgrade them.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use std::cell::RefCell;

use argon2::password_hash::{Output, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

use super::{Error, Result};

/// The outcome of checking a password against a stored hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    Matches { needs_rehash: bool },
    Mismatch,
}

/// A hashing job for the hashing threads.
type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct Passwords {
    /// The hashing threads' queue; they stop when the last handle is dropped.
    jobs: mpsc::Sender<Job>,
    /// A hash of a random password, verified when an email is unknown so that a failed login
    /// takes as long whether or not the account exists.
    decoy: Arc<String>,
}

/// OWASP's argon2id recommendation: 19 MiB of memory, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

thread_local! {
    /// This thread's argon2 work area, kept between hashes.
    static WORK_AREA: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// The output `PasswordHasher::hash_password` computes, in this thread's reused work area.
fn hash_in_work_area(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: Salt<'_>,
) -> argon2::password_hash::Result<Output> {
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    WORK_AREA.with_borrow_mut(|blocks| {
        if blocks.len() < params.block_count() {
            blocks.resize(params.block_count(), Block::default());
        }
        Output::init_with(output_len, |out| {
            argon2
                .hash_password_into_with_memory(
                    password,
                    salt_bytes,
                    out,
                    &mut blocks[..params.block_count()],
                )
                .map_err(Into::into)
        })
    })
}

fn hash_now(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let argon2 = argon2();
    let params = argon2.params();
    let hash = hash_in_work_area(&argon2, params, password.as_bytes(), salt.as_salt()).and_then(|output| {
        Ok(PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: params.try_into()?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        }
        .to_string())
    });
    hash.map_err(|e| Error::Internal(format!("hashing a password: {e}")))
}

/// Whether `password` hashes to `stored` under the stored hash's own algorithm and parameters.
fn argon2_matches(password: &str, stored: &PasswordHash<'_>) -> bool {
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(stored.algorithm) else { return false };
    let Ok(version) = stored.version.map_or(Ok(Version::V0x13), Version::try_from) else { return false };
    // The stored output's length is among the parameters.
    let Ok(params) = Params::try_from(stored) else { return false };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    // `Output` compares in constant time.
    hash_in_work_area(&argon2, &params, password.as_bytes(), salt).is_ok_and(|output| output == expected)
}

fn verify_now(password: &str, stored: &str) -> Verification {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        return match bcrypt::verify(password, stored) {
            Ok(true) => Verification::Matches { needs_rehash: true },
            _ => Verification::Mismatch,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else { return Verification::Mismatch };
    if argon2_matches(password, &parsed) {
        let current = parsed.algorithm.as_str() == "argon2id"
            && parsed.params.get_decimal("m") == Some(19 * 1024)
            && parsed.params.get_decimal("t") == Some(2);
        Verification::Matches { needs_rehash: !current }
    } else {
        Verification::Mismatch
    }
}

impl Passwords {
    pub async fn new(concurrency: usize) -> Result<Passwords> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..concurrency.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job, not while hashing.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| Error::Internal(format!("starting a hashing thread: {e}")))?;
        }
        // Hashed once with a work area of its own that is freed (and, as the first large block,
        // returned to the system): an idle server holds no work area until someone signs in.
        let decoy = tokio::task::spawn_blocking(|| {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            argon2::password_hash::PasswordHasher::hash_password(
                &argon2(),
                b"decoy password, never valid",
                &salt,
            )
            .map(|hash| hash.to_string())
            .map_err(|e| Error::Internal(format!("hashing the decoy password: {e}")))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(Passwords { jobs, decoy: Arc::new(decoy) })
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

    /// Queues `work` for the hashing threads and waits for its result.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        let stopped = || Error::Internal("the hashing threads have stopped".into());
        self.jobs.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
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
    fn hashes_agree_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash_now("shared horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2().verify_password(b"shared horse", &parsed).is_ok());
        assert!(argon2().verify_password(b"other horse", &parsed).is_err());
        // Hashes stored before the work area was reused, and hashes with other parameters.
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let theirs = argon2().hash_password(b"shared horse", &salt).unwrap().to_string();
        assert_eq!(verify_now("shared horse", &theirs), Verification::Matches { needs_rehash: false });
        assert_eq!(verify_now("other horse", &theirs), Verification::Mismatch);
        let light =
            Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::new(1024, 1, 1, Some(16)).unwrap());
        let older = light.hash_password(b"shared horse", &salt).unwrap().to_string();
        assert_eq!(verify_now("shared horse", &older), Verification::Matches { needs_rehash: true });
        assert_eq!(verify_now("other horse", &older), Verification::Mismatch);
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
