//! An epoch's secret seed and the public commitment to it.
//!
//! The server publishes `SHA-256(seed)` before an epoch's first tick and reveals the seed
//! after its last; the commitment is what stops the seed (and so every tick) from being
//! chosen after trades are placed. This crate does no IO, so the caller draws the 32 random
//! bytes from the operating system and hands them to [`Seed::from_bytes`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a text is not a seed or a commitment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeedParseError {
    /// Not 64 hexadecimal characters.
    #[error("must be exactly 64 hexadecimal characters")]
    NotHex64,
}

fn parse_hex32(text: &str) -> Result<[u8; 32], SeedParseError> {
    let mut bytes = [0_u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| SeedParseError::NotHex64)?;
    Ok(bytes)
}

/// The 32-byte secret of one epoch. Its `Debug` never shows the bytes, so a seed cannot leak
/// into a log before it is revealed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Seed([u8; 32]);

impl Seed {
    /// A seed from 32 bytes that the caller drew from a cryptographic random source.
    pub const fn from_bytes(bytes: [u8; 32]) -> Seed {
        Seed(bytes)
    }

    /// Parses a revealed seed written as 64 hexadecimal characters (either case).
    pub fn from_hex(text: &str) -> Result<Seed, SeedParseError> {
        parse_hex32(text).map(Seed)
    }

    /// The raw bytes, for hashing and for encrypted storage.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The seed as 64 lowercase hexadecimal characters: what is published at reveal time.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The public commitment: `SHA-256` of the 32 raw seed bytes (not of its hex text).
    pub fn commitment(&self) -> Commitment {
        Commitment(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

/// A published commitment to a seed: 32 bytes, written as 64 lowercase hexadecimal
/// characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Commitment([u8; 32]);

impl Commitment {
    /// A commitment from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Commitment {
        Commitment(bytes)
    }

    /// Parses 64 hexadecimal characters (either case).
    pub fn from_hex(text: &str) -> Result<Commitment, SeedParseError> {
        parse_hex32(text).map(Commitment)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Commitment({self})")
    }
}

impl FromStr for Commitment {
    type Err = SeedParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Commitment::from_hex(s)
    }
}

impl Serialize for Commitment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Commitment {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Commitment::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commitment_is_sha256_of_the_raw_bytes() {
        // SHA-256 of 32 zero bytes, a widely published value.
        let seed = Seed::from_bytes([0; 32]);
        assert_eq!(
            seed.commitment().to_string(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn seeds_round_trip_through_hex_and_never_print() {
        let seed = Seed::from_bytes(std::array::from_fn(|i| i as u8));
        let text = seed.to_hex();
        assert_eq!(text, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        assert_eq!(Seed::from_hex(&text.to_uppercase()), Ok(seed.clone()));
        assert_eq!(format!("{seed:?}"), "Seed(<redacted>)");
        for bad in ["", "00", &"0".repeat(63), &"0".repeat(65), &"g".repeat(64)] {
            assert_eq!(Seed::from_hex(bad), Err(SeedParseError::NotHex64), "{bad:?}");
        }
    }

    #[test]
    fn commitments_serialize_as_lowercase_hex() {
        let commitment = Seed::from_bytes([0; 32]).commitment();
        let json = serde_json::to_string(&commitment).unwrap();
        assert_eq!(serde_json::from_str::<Commitment>(&json.to_uppercase()).unwrap(), commitment);
        assert_eq!(json, format!("\"{commitment}\""));
    }
}
