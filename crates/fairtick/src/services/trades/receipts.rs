//! Trade receipts: everything needed to re-derive a trade's result, signed with the server's
//! Ed25519 key so that a receipt cannot be altered after the fact.
//!
//! The receipt carries its signed content as a JSON text (`payload`) and the signature over
//! exactly those bytes, so a verifier never has to re-serialise anything to check it.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::format_rate;
use crate::services::{Error, Result};
use crate::store::{EpochRecord, TickRecord, TradeRecord};

/// 2: each epoch carries its announcement of the next (docs/fairness.md §4). 3: the trade
/// carries the grace period it was accepted under (§6).
pub const RECEIPT_VERSION: u32 = 3;

/// The server's receipt-signing key. Every node of one deployment must use the same key.
#[derive(Clone)]
pub struct ReceiptSigner(SigningKey);

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReceiptSigner(public {})", self.public_key_hex())
    }
}

impl ReceiptSigner {
    /// From 64 hexadecimal characters: the 32-byte Ed25519 secret key.
    pub fn from_hex(secret: &SecretString) -> anyhow::Result<ReceiptSigner> {
        let bytes: [u8; 32] = hex::decode(secret.expose_secret().trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow::anyhow!("the signing key must be 64 hexadecimal characters (32 bytes)"))?;
        Ok(ReceiptSigner(SigningKey::from_bytes(&bytes)))
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.0.verifying_key().as_bytes())
    }

    pub fn sign(&self, body: &ReceiptBody) -> Result<Receipt> {
        let payload = serde_json::to_string(body).map_err(|e| Error::Internal(format!("receipt: {e}")))?;
        let signature = self.0.sign(payload.as_bytes());
        Ok(Receipt {
            payload,
            signature: hex::encode(signature.to_bytes()),
            public_key: self.public_key_hex(),
            algorithm: "Ed25519".to_owned(),
        })
    }
}

/// A signed receipt as served and saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// The signed content: a [`ReceiptBody`] as JSON text.
    pub payload: String,
    /// hex(Ed25519 signature over the UTF-8 bytes of `payload`).
    pub signature: String,
    /// hex of the server's public key (also at `GET /api/fairness/key`).
    pub public_key: String,
    pub algorithm: String,
}

impl Receipt {
    /// Checks the signature against `public_key_hex` and returns the signed content.
    pub fn open(&self, public_key_hex: &str) -> std::result::Result<ReceiptBody, String> {
        let key: [u8; 32] = hex::decode(public_key_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the public key is not 32 hex bytes")?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| "the public key is not a valid Ed25519 key")?;
        let signature: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the signature is not 64 hex bytes")?;
        key.verify(self.payload.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| "the signature does not match the receipt's content")?;
        serde_json::from_str(&self.payload).map_err(|e| format!("the signed content is not a receipt: {e}"))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptBody {
    pub version: u32,
    pub issued_at: i64,
    pub trade: ReceiptTrade,
    /// The epochs of the ticks below, with their commitments and, once revealed, seeds.
    pub epochs: Vec<ReceiptEpoch>,
    /// Consecutive ticks from the last one at or before acceptance (or the market's first, for
    /// a trade accepted before it) to the one that decided it (the first after expiry, or for a
    /// void the one that came too late): enough to re-derive the entry, the exit and the result.
    pub ticks: Vec<ReceiptTick>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptTrade {
    pub id: i64,
    pub user_id: i64,
    pub symbol: String,
    pub direction: String,
    pub stake: String,
    pub duration_ms: i64,
    pub payout_rate: String,
    pub accepted_at: i64,
    pub status: String,
    pub result: Option<String>,
    pub entry_seq: Option<i64>,
    pub expires_at: Option<i64>,
    pub exit_seq: Option<i64>,
    pub payout: Option<String>,
    pub void_reason: Option<String>,
    /// The feed's grace period (ms), fixed when the trade was accepted (docs/fairness.md §6);
    /// absent from receipts of version 2 and before, and for trades accepted before it was
    /// recorded (migration 9) that were sold, or had ended, before it was.
    pub feed_grace_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptEpoch {
    pub id: i64,
    pub kind: String,
    pub volatility_bp: i64,
    pub tick_interval_ms: i64,
    pub start_tick: i64,
    pub start_price: String,
    pub commitment: String,
    pub seed: Option<String>,
    /// What the epoch announced when it started (docs/fairness.md §4): absent from version 1
    /// and from epochs older than announcements.
    pub planned_end_tick: Option<i64>,
    pub next_id: Option<i64>,
    pub next_commitment: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptTick {
    pub seq: i64,
    pub ts: i64,
    pub price: String,
    pub epoch_id: i64,
}

/// Assembles a receipt body from stored records.
pub fn body(
    trade: &TradeRecord,
    epochs: &[EpochRecord],
    ticks: &[TickRecord],
    issued_at: i64,
) -> ReceiptBody {
    ReceiptBody {
        version: RECEIPT_VERSION,
        issued_at,
        trade: ReceiptTrade {
            id: trade.id,
            user_id: trade.user_id.0,
            symbol: trade.symbol.clone(),
            direction: trade.direction.as_str().to_owned(),
            stake: trade.stake.to_string(),
            duration_ms: trade.duration_ms,
            payout_rate: format_rate(trade.payout_rate_bp),
            accepted_at: trade.accepted_at,
            status: trade.status.as_str().to_owned(),
            result: trade.result.map(|r| r.as_str().to_owned()),
            entry_seq: trade.entry.map(|e| e.seq),
            expires_at: trade.expires_at,
            exit_seq: trade.exit.map(|e| e.seq),
            payout: trade.payout.map(|p| p.to_string()),
            void_reason: trade.void_reason.clone(),
            feed_grace_ms: trade.feed_grace_ms,
        },
        epochs: epochs
            .iter()
            .map(|e| ReceiptEpoch {
                id: e.id,
                kind: e.kind.clone(),
                volatility_bp: e.volatility_bp,
                tick_interval_ms: e.tick_interval_ms,
                start_tick: e.start_seq,
                start_price: e.start_price.to_string(),
                commitment: e.commitment.clone(),
                seed: e.revealed_seed.clone(),
                planned_end_tick: e.announced.as_ref().map(|a| a.planned_end_seq),
                next_id: e.announced.as_ref().map(|a| a.next_id),
                next_commitment: e.announced.as_ref().map(|a| a.next_commitment.clone()),
            })
            .collect(),
        ticks: ticks
            .iter()
            .map(|t| ReceiptTick { seq: t.seq, ts: t.ts, price: t.price.to_string(), epoch_id: t.epoch_id })
            .collect(),
    }
}
