//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps, one step of
//! clock skew either way), as authenticator apps expect them.

use totp_rs::{Algorithm, Secret, TOTP};

use super::{Error, Result};

/// 160 random bits, the size RFC 4226 recommends.
pub fn new_secret() -> Vec<u8> {
    rand::random::<[u8; 20]>().to_vec()
}

fn totp(secret: &[u8], account: &str) -> Result<TOTP> {
    TOTP::new(Algorithm::SHA1, 6, 1, 30, secret.to_vec(), Some("fairtick".to_owned()), account.to_owned())
        .map_err(|e| Error::Internal(format!("TOTP: {e}")))
}

/// The secret in base32 and the `otpauth://` URI an authenticator app scans.
pub fn enrolment(secret: &[u8], account: &str) -> Result<(String, String)> {
    let totp = totp(secret, account)?;
    Ok((Secret::Raw(secret.to_vec()).to_encoded().to_string(), totp.get_url()))
}

/// Whether `code` is valid at `unix_seconds` (±30 s).
pub fn check(secret: &[u8], account: &str, code: &str, unix_seconds: u64) -> Result<bool> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(false);
    }
    Ok(totp(secret, account)?.check(code, unix_seconds))
}

/// The code at `unix_seconds`, for tests and tools.
pub fn code_at(secret: &[u8], account: &str, unix_seconds: u64) -> Result<String> {
    Ok(totp(secret, account)?.generate(unix_seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_6238_sha1_vector() {
        // RFC 6238 appendix B, T = 59 s, SHA-1 secret "12345678901234567890": 94287082 (8 digits),
        // whose last six digits are the 6-digit code.
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, "a@b.co", 59).unwrap(), "287082");
        assert!(check(secret, "a@b.co", "287082", 59).unwrap());
        assert!(check(secret, "a@b.co", "287082", 80).unwrap(), "one step of skew is accepted");
        assert!(!check(secret, "a@b.co", "287082", 200).unwrap());
        assert!(!check(secret, "a@b.co", "28708x", 59).unwrap());
    }

    #[test]
    fn enrolment_gives_a_scannable_uri() {
        let (base32, uri) = enrolment(&new_secret(), "ann@example.com").unwrap();
        assert_eq!(base32.len(), 32);
        assert!(uri.starts_with("otpauth://totp/fairtick:ann%40example.com?"), "{uri}");
        assert!(uri.contains(&format!("secret={base32}")));
    }
}
