//! A simulated market's parameters, validated once, and the per-tick volatility they imply.
//!
//! The bounds are part of the public algorithm: inside them every intermediate product of the
//! engine fits in 128 bits, so an implementation never has to detect overflow.

use serde::{Deserialize, Serialize};

/// Milliseconds in the 365-day year over which volatility is annualised.
pub const MS_PER_YEAR: u64 = 31_536_000_000;

/// [`TickSigma`] is a fraction at this scale (1.0 = 10¹²).
pub const SIGMA_SCALE: u64 = 1_000_000_000_000;

/// Annualised volatility bounds in basis points: 0.01 % to 1000 %.
pub const VOLATILITY_BP_RANGE: std::ops::RangeInclusive<u32> = 1..=100_000;

/// Tick interval bounds in milliseconds: 1 ms to one day.
pub const TICK_INTERVAL_MS_RANGE: std::ops::RangeInclusive<u32> = 1..=86_400_000;

/// The longest symbol, in bytes.
pub const SYMBOL_MAX_LEN: usize = 32;

/// Why market parameters were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MarketParamsError {
    /// The symbol is empty, too long, or has a character outside the allowed set.
    #[error("symbol must be 1 to 32 characters among A-Z a-z 0-9 - _ . / :")]
    InvalidSymbol,
    /// The volatility is outside [`VOLATILITY_BP_RANGE`].
    #[error("volatility must be between 1 and 100000 basis points")]
    VolatilityOutOfRange,
    /// The tick interval is outside [`TICK_INTERVAL_MS_RANGE`].
    #[error("tick interval must be between 1 and 86400000 ms")]
    TickIntervalOutOfRange,
}

/// What the price engine needs to know about a market. Everything else about a market
/// (its display name, whether it is halted) lives elsewhere and cannot influence a tick.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawMarketParams")]
pub struct MarketParams {
    symbol: String,
    volatility_bp: u32,
    tick_interval_ms: u32,
}

/// The unchecked shape of [`MarketParams`], so that deserializing validates.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMarketParams {
    symbol: String,
    volatility_bp: u32,
    tick_interval_ms: u32,
}

impl TryFrom<RawMarketParams> for MarketParams {
    type Error = MarketParamsError;
    fn try_from(raw: RawMarketParams) -> Result<Self, Self::Error> {
        MarketParams::new(&raw.symbol, raw.volatility_bp, raw.tick_interval_ms)
    }
}

impl MarketParams {
    /// Validates a market: `symbol` is short printable ASCII (it is hashed as its bytes),
    /// `volatility_bp` is annualised volatility in basis points (2500 = 25 % a year), and
    /// `tick_interval_ms` is the time between ticks.
    pub fn new(symbol: &str, volatility_bp: u32, tick_interval_ms: u32) -> Result<Self, MarketParamsError> {
        let symbol_ok = !symbol.is_empty()
            && symbol.len() <= SYMBOL_MAX_LEN
            && symbol.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b));
        if !symbol_ok {
            return Err(MarketParamsError::InvalidSymbol);
        }
        if !VOLATILITY_BP_RANGE.contains(&volatility_bp) {
            return Err(MarketParamsError::VolatilityOutOfRange);
        }
        if !TICK_INTERVAL_MS_RANGE.contains(&tick_interval_ms) {
            return Err(MarketParamsError::TickIntervalOutOfRange);
        }
        Ok(MarketParams { symbol: symbol.to_owned(), volatility_bp, tick_interval_ms })
    }

    /// The market's symbol, e.g. `SIM-100`.
    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    /// Annualised volatility in basis points.
    pub fn volatility_bp(&self) -> u32 {
        self.volatility_bp
    }

    /// Milliseconds between two ticks.
    pub fn tick_interval_ms(&self) -> u32 {
        self.tick_interval_ms
    }

    /// The standard deviation of one tick's relative move:
    /// `σ = (volatility_bp / 10⁴) · √(tick_interval_ms / MS_PER_YEAR)`, as
    /// `isqrt(⌊volatility_bp² · tick_interval_ms · 10¹⁶ / MS_PER_YEAR⌋)` at scale 10¹².
    ///
    /// Squaring first and taking one integer square root at the end keeps every digit the
    /// scale allows; both roundings are down, so the published σ never overstates the walk.
    pub fn tick_sigma(&self) -> TickSigma {
        let vol = u128::from(self.volatility_bp);
        let variance =
            vol * vol * u128::from(self.tick_interval_ms) * 10_u128.pow(16) / u128::from(MS_PER_YEAR);
        TickSigma(u64::try_from(variance.isqrt()).expect("σ < 1 inside the parameter bounds"))
    }

    /// How many ticks fall strictly after a tick and at or before `duration_ms` later, on a
    /// regular feed: `⌊duration_ms / tick_interval_ms⌋`. This is the `n` of the model.
    pub fn ticks_within(&self, duration_ms: u64) -> u64 {
        duration_ms / u64::from(self.tick_interval_ms)
    }
}

/// One tick's volatility: the standard deviation of its relative price move, at scale 10¹²
/// (`44_518_108` means 0.000044518108, i.e. about 0.0045 % per tick).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TickSigma(u64);

impl TickSigma {
    /// A sigma from its raw value at scale 10¹², for tests and for published figures.
    pub const fn from_raw(raw: u64) -> TickSigma {
        TickSigma(raw)
    }

    /// The raw value at scale 10¹².
    pub const fn raw(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_parameters_are_refused() {
        for (symbol, vol, interval, why) in [
            ("", 2500, 1000, MarketParamsError::InvalidSymbol),
            ("SIM 100", 2500, 1000, MarketParamsError::InvalidSymbol),
            ("SIMÉ", 2500, 1000, MarketParamsError::InvalidSymbol),
            (&"X".repeat(33), 2500, 1000, MarketParamsError::InvalidSymbol),
            ("SIM", 0, 1000, MarketParamsError::VolatilityOutOfRange),
            ("SIM", 100_001, 1000, MarketParamsError::VolatilityOutOfRange),
            ("SIM", 2500, 0, MarketParamsError::TickIntervalOutOfRange),
            ("SIM", 2500, 86_400_001, MarketParamsError::TickIntervalOutOfRange),
        ] {
            assert_eq!(
                MarketParams::new(symbol, vol, interval),
                Err(why.clone()),
                "{symbol:?} {vol} {interval}"
            );
        }
        assert!(MarketParams::new("SIM-100/x_y.z:1", 1, 1).is_ok());
    }

    #[test]
    fn tick_sigma_follows_the_square_root_of_time() {
        // 25 % a year over one second: 0.25 · √(1000 / 31 536 000 000) = 0.0000445181…
        let one_second = MarketParams::new("SIM", 2500, 1000).unwrap().tick_sigma();
        assert_eq!(one_second.raw(), 44_518_108);
        // Four times the interval doubles sigma, up to the rounding of the root.
        let four_seconds = MarketParams::new("SIM", 2500, 4000).unwrap().tick_sigma();
        assert!((four_seconds.raw() as i64 - 2 * one_second.raw() as i64).abs() <= 2);
        // The largest parameters stay below 1 and inside the 128-bit budget.
        let extreme = MarketParams::new("SIM", 100_000, 86_400_000).unwrap().tick_sigma();
        assert_eq!(extreme.raw(), 523_423_922_590);
    }

    #[test]
    fn deserializing_validates() {
        let ok: MarketParams =
            serde_json::from_str(r#"{"symbol":"SIM","volatilityBp":2500,"tickIntervalMs":1000}"#).unwrap();
        assert_eq!(ok.volatility_bp(), 2500);
        assert!(
            serde_json::from_str::<MarketParams>(
                r#"{"symbol":"SIM","volatilityBp":0,"tickIntervalMs":1000}"#
            )
            .is_err()
        );
    }

    #[test]
    fn ticks_within_counts_whole_intervals() {
        let params = MarketParams::new("SIM", 2500, 250).unwrap();
        assert_eq!(params.ticks_within(0), 0);
        assert_eq!(params.ticks_within(249), 0);
        assert_eq!(params.ticks_within(60_000), 240);
    }
}
