//! Exact money: integer minor units (cents), parsed from and printed as decimal strings.
//!
//! Binary floating point never touches an amount. Parsing accepts at most two decimals and
//! refuses anything it would have to round.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Minor units per major unit: money has two decimals.
const SCALE: i64 = 100;

/// The largest amount the platform ever handles in one figure (one trillion VUSD). Far above
/// every limit, it only keeps sums of many amounts far away from `i64` overflow.
const MAX_CENTS: i64 = 1_000_000_000_000 * SCALE;

/// An exact amount of VUSD in cents. It may be negative (a signed ledger posting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// Why a text is not an amount of money.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyParseError {
    #[error("must be a decimal number such as \"10.50\"")]
    NotANumber,
    #[error("must have at most 2 decimals")]
    TooManyDecimals,
    #[error("is too large")]
    TooLarge,
}

impl Money {
    pub const ZERO: Money = Money(0);

    /// An amount from a count of cents.
    pub const fn from_cents(cents: i64) -> Money {
        Money(cents)
    }

    /// An amount from whole units, for constants and defaults.
    pub const fn from_units(units: i64) -> Money {
        Money(units * SCALE)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    pub fn checked_neg(self) -> Option<Money> {
        self.0.checked_neg().map(Money)
    }

    /// Parses a decimal text such as `"10"`, `"10.5"` or `"-3.25"`. Exponents, spaces,
    /// a leading `+` and more than two decimals are refused rather than rounded.
    pub fn parse(text: &str) -> Result<Money, MoneyParseError> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = match digits.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (digits, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return Err(MoneyParseError::NotANumber);
        }
        if digits.contains('.') && fraction.is_empty() {
            return Err(MoneyParseError::NotANumber);
        }
        if fraction.len() > 2 {
            return Err(MoneyParseError::TooManyDecimals);
        }
        let whole = whole.trim_start_matches('0');
        if whole.len() > 13 {
            return Err(MoneyParseError::TooLarge);
        }
        let units: i64 =
            if whole.is_empty() { 0 } else { whole.parse().map_err(|_| MoneyParseError::TooLarge)? };
        let mut cents: i64 = 0;
        for (i, b) in fraction.bytes().enumerate() {
            cents += i64::from(b - b'0') * if i == 0 { 10 } else { 1 };
        }
        let total = units * SCALE + cents;
        if total > MAX_CENTS {
            return Err(MoneyParseError::TooLarge);
        }
        Ok(Money(if negative { -total } else { total }))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / SCALE as u64, abs % SCALE as u64)
    }
}

impl FromStr for Money {
    type Err = MoneyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse(s)
    }
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Money::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_accepted_spellings() {
        for (text, cents) in [
            ("0", 0),
            ("10", 1000),
            ("10.5", 1050),
            ("10.50", 1050),
            ("0.01", 1),
            ("-3.25", -325),
            ("007.10", 710),
            ("10000.00", 1_000_000),
        ] {
            assert_eq!(Money::parse(text), Ok(Money::from_cents(cents)), "{text}");
        }
    }

    #[test]
    fn refuses_what_it_would_have_to_guess_or_round() {
        for (text, why) in [
            ("", MoneyParseError::NotANumber),
            ("abc", MoneyParseError::NotANumber),
            ("1e3", MoneyParseError::NotANumber),
            (" 1", MoneyParseError::NotANumber),
            ("+1", MoneyParseError::NotANumber),
            ("1.", MoneyParseError::NotANumber),
            (".5", MoneyParseError::NotANumber),
            ("1.2.3", MoneyParseError::NotANumber),
            ("--1", MoneyParseError::NotANumber),
            ("0.001", MoneyParseError::TooManyDecimals),
            ("10.999", MoneyParseError::TooManyDecimals),
            ("99999999999999999999", MoneyParseError::TooLarge),
            ("1000000000001", MoneyParseError::TooLarge),
        ] {
            assert_eq!(Money::parse(text), Err(why), "{text:?}");
        }
    }

    #[test]
    fn prints_two_decimals() {
        assert_eq!(Money::from_cents(0).to_string(), "0.00");
        assert_eq!(Money::from_cents(5).to_string(), "0.05");
        assert_eq!(Money::from_cents(-5).to_string(), "-0.05");
        assert_eq!(Money::from_units(10_000).to_string(), "10000.00");
    }

    proptest! {
        #[test]
        fn printing_then_parsing_gives_the_same_amount(cents in -MAX_CENTS..=MAX_CENTS) {
            let money = Money::from_cents(cents);
            prop_assert_eq!(Money::parse(&money.to_string()), Ok(money));
        }
    }
}
