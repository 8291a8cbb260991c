//! Exact prices: integer units at scale 8, parsed from and printed as decimal strings.
//!
//! A trade's result compares two prices, so a price must be exact and must print the same way
//! everywhere (Rust, SQL, JSON, a browser). Parsing refuses anything it would have to round.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Units per whole price: prices have eight decimals.
pub const PRICE_SCALE: i64 = 100_000_000;

/// The largest price, in units: ten billion. Far above any simulated or replayed price, it
/// keeps every product the price engine forms inside 128-bit integers.
const MAX_UNITS: i64 = 1_000_000_000_000_000_000;

/// A price: a whole number of units of 0.00000001, always at least one unit.
///
/// A zero or negative price means nothing to a market, so the type cannot hold one; a
/// difference of two prices is a plain `i64` of units, not a `Price`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(i64);

/// Why a text or a number is not a price.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// Not a plain decimal number.
    #[error("must be a decimal number such as \"1234.5678\"")]
    NotANumber,
    /// More than eight decimals: refused rather than rounded.
    #[error("must have at most 8 decimals")]
    TooManyDecimals,
    /// Zero or negative.
    #[error("must be greater than zero")]
    NotPositive,
    /// Above [`Price::MAX`].
    #[error("must be at most 10000000000")]
    TooLarge,
}

impl Price {
    /// The smallest price, one unit (0.00000001). The price engine never goes below it.
    pub const MIN: Price = Price(1);
    /// The largest price, 10,000,000,000.00000000. The price engine never goes above it.
    pub const MAX: Price = Price(MAX_UNITS);
    /// The price 1.00000000.
    pub const ONE: Price = Price(PRICE_SCALE);

    /// A price from a count of units of 0.00000001, if it lies in `[MIN, MAX]`.
    pub const fn from_units(units: i64) -> Result<Price, PriceError> {
        if units < 1 {
            Err(PriceError::NotPositive)
        } else if units > MAX_UNITS {
            Err(PriceError::TooLarge)
        } else {
            Ok(Price(units))
        }
    }

    /// The number of units of 0.00000001.
    pub const fn units(self) -> i64 {
        self.0
    }

    /// The sum of two prices, if it is still a price.
    pub fn checked_add(self, other: Price) -> Option<Price> {
        self.checked_add_units(other.0)
    }

    /// The difference of two prices, if it is still a price (positive).
    pub fn checked_sub(self, other: Price) -> Option<Price> {
        self.checked_add_units(-other.0)
    }

    /// This price moved by a signed number of units, if the result is still a price.
    pub fn checked_add_units(self, delta: i64) -> Option<Price> {
        self.0.checked_add(delta).and_then(|units| Price::from_units(units).ok())
    }

    /// Parses a decimal text such as `"1234"` or `"0.00012345"`. Signs, exponents, spaces
    /// and more than eight decimals are refused rather than guessed or rounded.
    pub fn parse(text: &str) -> Result<Price, PriceError> {
        if text.starts_with('-') {
            return Err(PriceError::NotPositive);
        }
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return Err(PriceError::NotANumber);
        }
        if text.contains('.') && fraction.is_empty() {
            return Err(PriceError::NotANumber);
        }
        if fraction.len() > 8 {
            return Err(PriceError::TooManyDecimals);
        }
        let whole = whole.trim_start_matches('0');
        // Eleven digits already exceed the largest price; checking the length first keeps
        // the multiplication below far from overflow.
        if whole.len() > 11 {
            return Err(PriceError::TooLarge);
        }
        let whole: i64 =
            if whole.is_empty() { 0 } else { whole.parse().map_err(|_| PriceError::TooLarge)? };
        let mut fraction_units: i64 = 0;
        for (i, digit) in fraction.bytes().enumerate() {
            fraction_units += i64::from(digit - b'0') * 10_i64.pow(7 - i as u32);
        }
        Price::from_units(whole * PRICE_SCALE + fraction_units)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:08}", self.0 / PRICE_SCALE, self.0 % PRICE_SCALE)
    }
}

impl FromStr for Price {
    type Err = PriceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Price::parse(s)
    }
}

impl TryFrom<i64> for Price {
    type Error = PriceError;
    fn try_from(units: i64) -> Result<Self, Self::Error> {
        Price::from_units(units)
    }
}

impl Serialize for Price {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Price::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn units(n: i64) -> Price {
        Price::from_units(n).unwrap()
    }

    #[test]
    fn parses_the_accepted_spellings() {
        for (text, expected) in [
            ("1", 100_000_000),
            ("1.5", 150_000_000),
            ("0.00000001", 1),
            ("1234.56789012", 123_456_789_012),
            ("007.10", 710_000_000),
            ("10000000000", MAX_UNITS),
            ("10000000000.00000000", MAX_UNITS),
        ] {
            assert_eq!(Price::parse(text), Ok(units(expected)), "{text}");
        }
    }

    #[test]
    fn refuses_what_it_would_have_to_guess_or_round() {
        for (text, why) in [
            ("", PriceError::NotANumber),
            ("abc", PriceError::NotANumber),
            ("1e3", PriceError::NotANumber),
            (" 1", PriceError::NotANumber),
            ("+1", PriceError::NotANumber),
            ("1.", PriceError::NotANumber),
            (".5", PriceError::NotANumber),
            ("1.2.3", PriceError::NotANumber),
            ("0.000000001", PriceError::TooManyDecimals),
            ("1.123456789", PriceError::TooManyDecimals),
            ("0", PriceError::NotPositive),
            ("0.00000000", PriceError::NotPositive),
            ("-1", PriceError::NotPositive),
            ("10000000000.00000001", PriceError::TooLarge),
            ("99999999999999999999999", PriceError::TooLarge),
        ] {
            assert_eq!(Price::parse(text), Err(why), "{text:?}");
        }
    }

    #[test]
    fn prints_exactly_eight_decimals() {
        assert_eq!(units(1).to_string(), "0.00000001");
        assert_eq!(Price::ONE.to_string(), "1.00000000");
        assert_eq!(units(123_456_789_012).to_string(), "1234.56789012");
        assert_eq!(Price::MAX.to_string(), "10000000000.00000000");
    }

    #[test]
    fn arithmetic_stays_within_the_price_range() {
        assert_eq!(units(5).checked_add(units(7)), Some(units(12)));
        assert_eq!(units(7).checked_sub(units(5)), Some(units(2)));
        assert_eq!(units(5).checked_sub(units(5)), None);
        assert_eq!(Price::MAX.checked_add(Price::MIN), None);
        assert_eq!(units(10).checked_add_units(-9), Some(Price::MIN));
        assert_eq!(units(10).checked_add_units(-10), None);
        assert_eq!(units(10).checked_add_units(i64::MAX), None);
        assert_eq!(Price::from_units(0), Err(PriceError::NotPositive));
        assert_eq!(Price::try_from(MAX_UNITS + 1), Err(PriceError::TooLarge));
    }

    #[test]
    fn serializes_as_a_string() {
        let json = serde_json::to_string(&units(150_000_000)).unwrap();
        assert_eq!(json, "\"1.50000000\"");
        assert_eq!(serde_json::from_str::<Price>("\"1.5\"").unwrap(), units(150_000_000));
        assert!(serde_json::from_str::<Price>("1.5").is_err(), "a JSON number is binary floating point");
        assert!(serde_json::from_str::<Price>("\"0\"").is_err());
    }

    proptest! {
        #[test]
        fn printing_then_parsing_gives_the_same_price(n in 1..=MAX_UNITS) {
            let price = units(n);
            prop_assert_eq!(Price::parse(&price.to_string()), Ok(price));
        }
    }
}
