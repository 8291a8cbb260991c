//! Sealing secrets at rest with AES-256-GCM under the data key: unrevealed epoch seeds (and,
//! later, TOTP secrets). A fresh random 96-bit nonce per encryption; stored as
//! `hex(nonce ‖ ciphertext ‖ tag)`.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use super::{Error, Result};

const NONCE_LEN: usize = 12;

/// The key that seals secrets. Every node of one deployment must use the same key.
#[derive(Clone)]
pub struct DataKey(Aes256Gcm);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

impl DataKey {
    /// From 64 hexadecimal characters (32 bytes), e.g. `FAIRTICK_DATA_KEY`.
    pub fn from_hex(text: &SecretString) -> anyhow::Result<DataKey> {
        let bytes = hex::decode(text.expose_secret().trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| anyhow::anyhow!("the data key must be 64 hexadecimal characters (32 bytes)"))?;
        Ok(DataKey(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes))))
    }

    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .0
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("AES-GCM encryption of a short secret");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        hex::encode(sealed)
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>> {
        let bytes = hex::decode(sealed).map_err(|_| Error::Internal("a sealed secret is not hex".into()))?;
        if bytes.len() <= NONCE_LEN {
            return Err(Error::Internal("a sealed secret is too short".into()));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        self.0
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| Error::Internal("a sealed secret does not open with this data key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: char) -> DataKey {
        DataKey::from_hex(&SecretString::from(byte.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_with_its_key_only() {
        let sealed = key('a').seal(b"the seed");
        assert_eq!(key('a').open(&sealed).unwrap(), b"the seed");
        assert!(key('b').open(&sealed).is_err());
        assert!(!sealed.contains(&hex::encode(b"the seed")));
    }

    #[test]
    fn every_sealing_uses_a_fresh_nonce() {
        assert_ne!(key('a').seal(b"same"), key('a').seal(b"same"));
    }

    #[test]
    fn tampering_is_detected() {
        let mut sealed = key('a').seal(b"the seed").into_bytes();
        let last = sealed.len() - 1;
        sealed[last] = if sealed[last] == b'0' { b'1' } else { b'0' };
        assert!(key('a').open(std::str::from_utf8(&sealed).unwrap()).is_err());
        assert!(DataKey::from_hex(&SecretString::from("abcd")).is_err());
    }
}
