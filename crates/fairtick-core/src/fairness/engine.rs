//! The tick generator: every price of an epoch as a pure function of the seed, the market,
//! the epoch and the tick number, in exact integer arithmetic.
//!
//! Nothing else may feed a tick: no clock, no trade, no user, no setting beyond the market's
//! published parameters. That is what lets anyone recompute every tick once the seed is
//! revealed (`docs/fairness.md`, "The tick algorithm").

use sha2::{Digest, Sha256};

use super::market::{MarketParams, SIGMA_SCALE, TickSigma};
use super::seed::Seed;
use crate::price::Price;

/// Domain separation: a tick hash can never be mistaken for a hash made for another purpose.
const TICK_DOMAIN: &[u8; 16] = b"fairtick/tick/v1";

/// How many 16-bit uniforms are summed into one normal-like draw.
const UNIFORMS: usize = 12;

/// The sum of twelve uniforms on `0..=65535` has mean `12 · 65535 / 2`; twice the sum minus
/// this centre is an exactly symmetric integer `z_raw` in `[-786420, 786420]`.
const Z_CENTRE: i64 = 12 * 65_535;

/// `z_raw` has standard deviation `2 · √(65536² − 1) ≈ 2¹⁷`, so `z = z_raw / 2¹⁷` is a
/// standard-normal-like draw. The step divides by this scale times [`SIGMA_SCALE`].
const Z_SCALE: i128 = 1 << 17;

const STEP_DIVISOR: i128 = SIGMA_SCALE as i128 * Z_SCALE;

/// The exact bytes hashed for tick `index`: the domain tag, the seed, the symbol's length
/// (u32, big-endian) and bytes, the epoch id (i64, big-endian two's complement) and the tick
/// index (u64, big-endian).
fn tick_message(seed: &Seed, symbol: &str, epoch_id: i64, index: u64) -> Vec<u8> {
    let symbol_len = u32::try_from(symbol.len()).expect("symbols are at most 32 bytes");
    let mut message = Vec::with_capacity(TICK_DOMAIN.len() + 32 + 4 + symbol.len() + 16);
    message.extend_from_slice(TICK_DOMAIN);
    message.extend_from_slice(seed.as_bytes());
    message.extend_from_slice(&symbol_len.to_be_bytes());
    message.extend_from_slice(symbol.as_bytes());
    message.extend_from_slice(&epoch_id.to_be_bytes());
    message.extend_from_slice(&index.to_be_bytes());
    message
}

/// The normal-like draw `z_raw` of one tick: twice the sum of the first twelve big-endian
/// 16-bit words of the tick hash, minus [`Z_CENTRE`].
fn z_raw(hash: &[u8; 32]) -> i64 {
    let sum: i64 =
        hash.chunks_exact(2).take(UNIFORMS).map(|w| i64::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    2 * sum - Z_CENTRE
}

/// One multiplicative step: `prev · (1 + σ · z)`, with the change rounded to the nearest unit
/// (halves away from zero, so up and down moves are treated alike) and the result kept
/// within `[Price::MIN, Price::MAX]`.
fn step(prev: Price, sigma: TickSigma, z_raw: i64) -> Price {
    let numerator = i128::from(prev.units()) * i128::from(sigma.raw()) * i128::from(z_raw);
    let magnitude = (2 * numerator.abs() + STEP_DIVISOR) / (2 * STEP_DIVISOR);
    let change = if numerator < 0 { -magnitude } else { magnitude };
    let next = (i128::from(prev.units()) + change)
        .clamp(i128::from(Price::MIN.units()), i128::from(Price::MAX.units()));
    Price::from_units(i64::try_from(next).expect("clamped into the price range"))
        .expect("clamped into the price range")
}

/// The price of tick `index` (0-based within the epoch), given the price before it: the
/// epoch's start price for tick 0, otherwise the price of tick `index − 1`.
pub fn tick_price(params: &MarketParams, seed: &Seed, epoch_id: i64, index: u64, prev: Price) -> Price {
    let hash: [u8; 32] = Sha256::digest(tick_message(seed, params.symbol(), epoch_id, index)).into();
    step(prev, params.tick_sigma(), z_raw(&hash))
}

/// Everything that determines an epoch's ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochSpec {
    /// The market the epoch belongs to.
    pub market: MarketParams,
    /// The epoch's number; epochs of one market are numbered by the server and published.
    pub epoch_id: i64,
    /// The secret seed, committed to before the epoch and revealed after it.
    pub seed: Seed,
    /// The price before tick 0: the last price of the previous epoch, or the market's
    /// initial price for its first epoch.
    pub start_price: Price,
}

impl EpochSpec {
    /// The epoch's ticks from tick 0.
    pub fn ticks(&self) -> EpochTicks<'_> {
        self.ticks_from(0, self.start_price)
    }

    /// The epoch's ticks from tick `index`, given the price of tick `index − 1` (or the start
    /// price when `index` is 0): how a restarted feed resumes from its last stored tick.
    pub fn ticks_from(&self, index: u64, prev: Price) -> EpochTicks<'_> {
        EpochTicks { spec: self, sigma: self.market.tick_sigma(), next_index: Some(index), prev }
    }
}

/// The prices of an epoch, in tick order. The sequence is unbounded: the caller decides when
/// an epoch ends (by time) and takes as many ticks as it needs.
#[derive(Clone, Debug)]
pub struct EpochTicks<'a> {
    spec: &'a EpochSpec,
    sigma: TickSigma,
    next_index: Option<u64>,
    prev: Price,
}

impl EpochTicks<'_> {
    /// The index of the tick the next call to `next` yields.
    pub fn next_index(&self) -> Option<u64> {
        self.next_index
    }
}

impl Iterator for EpochTicks<'_> {
    type Item = Price;

    fn next(&mut self) -> Option<Price> {
        let index = self.next_index?;
        let spec = self.spec;
        let hash: [u8; 32] =
            Sha256::digest(tick_message(&spec.seed, spec.market.symbol(), spec.epoch_id, index)).into();
        let price = step(self.prev, self.sigma, z_raw(&hash));
        self.prev = price;
        self.next_index = index.checked_add(1);
        Some(price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(volatility_bp: u32, tick_interval_ms: u32, start: &str) -> EpochSpec {
        EpochSpec {
            market: MarketParams::new("SIM-100", volatility_bp, tick_interval_ms).unwrap(),
            epoch_id: 7,
            seed: Seed::from_bytes(*b"fairtick engine statistics seed!"),
            start_price: Price::parse(start).unwrap(),
        }
    }

    #[test]
    fn the_message_layout_is_as_documented() {
        let seed = Seed::from_bytes([0xAB; 32]);
        let message = tick_message(&seed, "SIM", -2, 258);
        let mut expected = b"fairtick/tick/v1".to_vec();
        expected.extend([0xAB; 32]);
        expected.extend([0, 0, 0, 3, b'S', b'I', b'M']);
        expected.extend([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]);
        expected.extend([0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(message, expected);
    }

    #[test]
    fn z_raw_is_centred_and_bounded() {
        assert_eq!(z_raw(&[0; 32]), -786_420);
        assert_eq!(z_raw(&[0xFF; 32]), 786_420);
        // Only the first 24 bytes count.
        let mut hash = [0x00; 32];
        hash[24..].fill(0xFF);
        assert_eq!(z_raw(&hash), -786_420);
        // Six words at 0 and six at 65535 sum to the exact centre.
        let mut hash = [0x00; 32];
        hash[..12].fill(0xFF);
        assert_eq!(z_raw(&hash), 0);
    }

    #[test]
    fn a_step_rounds_half_away_from_zero_and_respects_the_bounds() {
        // A change of exactly half a unit: 2 · σ · (±1) / (10¹² · 2¹⁷) = ±0.5 with σ = 2¹⁴ · 10¹².
        let half = TickSigma::from_raw(32_768_000_000_000_000);
        let two = Price::from_units(2).unwrap();
        assert_eq!(step(two, half, 1).units(), 3);
        assert_eq!(step(two, half, -1).units(), 1);
        // Just under a half rounds to no change.
        let under = TickSigma::from_raw(32_767_999_999_999_999);
        assert_eq!(step(two, under, 1), two);
        assert_eq!(step(two, under, -1), two);
        // The floor and the ceiling hold against extreme moves.
        let huge = TickSigma::from_raw(523_423_922_590);
        assert_eq!(step(Price::from_units(100).unwrap(), huge, -786_420), Price::MIN);
        assert_eq!(step(Price::MAX, huge, 786_420), Price::MAX);
    }

    #[test]
    fn ticks_chain_and_resume_where_they_left_off() {
        let spec = spec(2500, 1000, "1000");
        let ticks: Vec<Price> = spec.ticks().take(50).collect();
        let mut prev = spec.start_price;
        for (i, &tick) in ticks.iter().enumerate() {
            assert_eq!(tick, tick_price(&spec.market, &spec.seed, spec.epoch_id, i as u64, prev));
            prev = tick;
        }
        let resumed: Vec<Price> = spec.ticks_from(20, ticks[19]).take(30).collect();
        assert_eq!(resumed, ticks[20..]);
        assert_ne!(ticks[0], ticks[1], "a tick at this price level essentially always moves");
    }

    #[test]
    fn every_input_changes_the_ticks() {
        let base = spec(2500, 1000, "1000");
        let first: Vec<Price> = base.ticks().take(5).collect();
        let mut other_seed = base.clone();
        other_seed.seed = Seed::from_bytes([1; 32]);
        let mut other_epoch = base.clone();
        other_epoch.epoch_id += 1;
        let mut other_symbol = base.clone();
        other_symbol.market = MarketParams::new("SIM-101", 2500, 1000).unwrap();
        for changed in [other_seed, other_epoch, other_symbol] {
            assert_ne!(changed.ticks().take(5).collect::<Vec<_>>(), first);
        }
    }

    /// Test-only statistics in f64 over the draws and the relative moves of 100 000 ticks.
    #[test]
    fn moves_have_mean_zero_and_the_configured_sigma() {
        const N: usize = 100_000;
        let spec = spec(2500, 1000, "1000");
        let sigma = spec.market.tick_sigma().raw() as f64 / SIGMA_SCALE as f64;

        let mut z_sum = 0.0;
        let mut z_squares = 0.0;
        let mut r_sum = 0.0;
        let mut r_squares = 0.0;
        let mut prev = spec.start_price;
        for index in 0..N as u64 {
            let hash: [u8; 32] =
                Sha256::digest(tick_message(&spec.seed, spec.market.symbol(), spec.epoch_id, index)).into();
            let z = z_raw(&hash) as f64 / Z_SCALE as f64;
            z_sum += z;
            z_squares += z * z;
            let next = step(prev, spec.market.tick_sigma(), z_raw(&hash));
            let r = (next.units() - prev.units()) as f64 / prev.units() as f64;
            r_sum += r;
            r_squares += r * r;
            prev = next;
        }
        let n = N as f64;
        let z_mean = z_sum / n;
        let z_sd = (z_squares / n - z_mean * z_mean).sqrt();
        // The standard error of a mean of 100 000 unit draws is 0.00316; allow four of them.
        assert!(z_mean.abs() < 0.0127, "mean of z = {z_mean}");
        assert!((z_sd - 1.0).abs() < 0.01, "sd of z = {z_sd}");

        let r_mean = r_sum / n;
        let r_sd = (r_squares / n - r_mean * r_mean).sqrt();
        assert!(r_mean.abs() < 4.0 * sigma / n.sqrt(), "mean move {r_mean} vs σ {sigma}");
        assert!((r_sd / sigma - 1.0).abs() < 0.01, "sd of moves {r_sd} vs σ {sigma}");
    }
}
