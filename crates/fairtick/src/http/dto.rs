//! Request and response bodies shared by several routes: users, balances, amounts, statement
//! rows. Money is always a string with two decimals in responses.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use fairtick_core::Money;
use fairtick_core::wallet::WalletState;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::services::accounts::Profile;
use crate::store::StatementRow;

/// An amount in a request: a string (`"10.50"`) or a JSON number (`10.5`), with at most two
/// decimals. The number is read from its literal text, never through binary floating point.
#[derive(Clone, Copy, Debug)]
pub struct AmountInput(pub Money);

impl<'de> Deserialize<'de> for AmountInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <Box<RawValue>>::deserialize(deserializer)?;
        let text = raw.get();
        let literal: Cow<'_, str> = if text.starts_with('"') {
            Cow::Owned(serde_json::from_str::<String>(text).map_err(serde::de::Error::custom)?)
        } else {
            Cow::Borrowed(text)
        };
        Money::parse(&literal).map(AmountInput).map_err(serde::de::Error::custom)
    }
}

/// A rate in a request (`"0.85"`, `0.85`, `"0.8500"`): at most four decimals, read from its
/// literal text and held in basis points.
#[derive(Clone, Copy, Debug)]
pub struct RateInput(pub u32);

impl<'de> Deserialize<'de> for RateInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <Box<RawValue>>::deserialize(deserializer)?;
        parse_rate(raw.get().trim_matches('"')).map(RateInput).map_err(serde::de::Error::custom)
    }
}

fn parse_rate(text: &str) -> Result<u32, &'static str> {
    const INVALID: &str = "must be a decimal rate such as \"0.85\" with at most 4 decimals";
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || fraction.len() > 4
        || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(INVALID);
    }
    let whole: u32 = whole.parse().map_err(|_| INVALID)?;
    let fraction: u32 = format!("{fraction:0<4}").parse().map_err(|_| INVALID)?;
    whole.checked_mul(10_000).and_then(|w| w.checked_add(fraction)).ok_or(INVALID)
}

/// A rate in basis points as the API shows it: `"0.8500"`.
pub fn rate(bp: u32) -> String {
    format!("{}.{:04}", bp / 10_000, bp % 10_000)
}

pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A user as the API shows them (seed-compatible field names).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserDto {
    pub id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    #[schema(example = "user")]
    pub role: String,
    #[schema(example = "active")]
    pub status: String,
    /// Available plus in play, in VUSD (virtual).
    #[schema(example = "10000.00")]
    pub balance: String,
    pub vip_level: i32,
    pub created_at: String,
    /// A stake limit an admin set for this user, if any.
    pub max_stake: Option<String>,
    /// Whether an admin stopped this user from opening trades.
    pub trading_suspended: bool,
    pub totp_enabled: bool,
}

impl From<&Profile> for UserDto {
    fn from(profile: &Profile) -> UserDto {
        let user = &profile.user;
        UserDto {
            id: user.id.0,
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            role: user.role.as_str().to_owned(),
            status: user.status.as_str().to_owned(),
            balance: profile.wallet.balance().to_string(),
            vip_level: user.vip_level,
            created_at: timestamp(user.created_at),
            max_stake: user.max_stake.map(|m| m.to_string()),
            trading_suspended: user.trading_suspended,
            totp_enabled: user.totp_enabled,
        }
    }
}

/// Balances of the practice account. All money is virtual.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BalanceDto {
    /// Available plus in play.
    #[schema(example = "10000.00")]
    pub balance: String,
    /// What can be staked or withdrawn now.
    #[schema(example = "9900.00")]
    pub available: String,
    /// Stakes of open trades.
    #[schema(example = "100.00")]
    pub in_play: String,
    #[schema(example = "VUSD")]
    pub currency: String,
}

impl From<&WalletState> for BalanceDto {
    fn from(state: &WalletState) -> BalanceDto {
        BalanceDto {
            balance: state.balance().to_string(),
            available: state.available.to_string(),
            in_play: state.in_play.to_string(),
            currency: "VUSD".to_owned(),
        }
    }
}

/// One line of the statement: a movement of the available balance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionDto {
    pub id: i64,
    #[serde(rename = "type")]
    #[schema(example = "deposit")]
    pub kind: String,
    /// Signed change of the available balance.
    #[schema(example = "-25.00")]
    pub amount: String,
    #[schema(example = "9975.00")]
    pub balance_after: String,
    /// What caused it, e.g. a trade id.
    pub reference: Option<String>,
    pub created_at: String,
    pub description: String,
}

impl From<&StatementRow> for TransactionDto {
    fn from(row: &StatementRow) -> TransactionDto {
        TransactionDto {
            id: row.id,
            kind: row.kind.as_str().to_owned(),
            amount: row.amount.to_string(),
            balance_after: row.balance_after.to_string(),
            reference: row.reference.clone(),
            created_at: timestamp(row.created_at),
            description: row.kind.description().to_owned(),
        }
    }
}
