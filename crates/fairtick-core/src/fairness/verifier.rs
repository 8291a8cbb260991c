//! An independent check of a revealed epoch: the commitment, then every tick, recomputed
//! from `docs/fairness.md` alone.
//!
//! This module deliberately calls nothing in [`super::engine`] nor
//! [`super::market::MarketParams::tick_sigma`]: it derives sigma, builds the hashed bytes,
//! draws and rounds in its own (differently written) code, so that a bug in the engine shows
//! up here as a mismatch instead of verifying itself. Keep it that way when either changes.

use sha2::{Digest, Sha256};

use super::market::MarketParams;
use super::seed::{Commitment, Seed};
use crate::price::Price;

/// Why a revealed epoch does not check out. Only the first problem is reported.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The revealed seed does not hash to the commitment published before the epoch.
    #[error("the seed does not match the commitment {published}: it hashes to {computed}")]
    CommitmentMismatch {
        /// The commitment published before the epoch.
        published: Commitment,
        /// `SHA-256` of the revealed seed.
        computed: Commitment,
    },
    /// A recorded tick differs from the one the seed implies.
    #[error("tick {index} should be {expected} but was recorded as {got}")]
    TickMismatch {
        /// The tick's index within the epoch.
        index: u64,
        /// The price the seed implies.
        expected: Price,
        /// The price that was recorded.
        got: Price,
    },
}

/// Checks a whole revealed epoch: that `SHA-256(seed)` is the published `commitment`, and that
/// `ticks` are exactly ticks `0, 1, …` of the epoch starting from `start_price`.
pub fn verify_epoch(
    params: &MarketParams,
    seed: &Seed,
    commitment: &Commitment,
    epoch_id: i64,
    start_price: Price,
    ticks: &[Price],
) -> Result<(), VerifyError> {
    let computed = Commitment::from_bytes(Sha256::digest(seed.as_bytes()).into());
    if computed != *commitment {
        return Err(VerifyError::CommitmentMismatch { published: *commitment, computed });
    }
    verify_ticks(params, seed, epoch_id, 0, start_price, ticks)
}

/// Checks a run of consecutive ticks starting at `first_index`, given the price of the tick
/// before it (the epoch's start price when `first_index` is 0). This is what a trade's proof
/// needs: its entry and exit lie somewhere inside an epoch.
pub fn verify_ticks(
    params: &MarketParams,
    seed: &Seed,
    epoch_id: i64,
    first_index: u64,
    prev: Price,
    ticks: &[Price],
) -> Result<(), VerifyError> {
    let sigma = sigma_per_tick(params.volatility_bp(), params.tick_interval_ms());
    let mut expected_prev = prev.units();
    for (offset, &got) in ticks.iter().enumerate() {
        let index = first_index + offset as u64;
        let expected = next_units(expected_prev, sigma, draw(seed, params.symbol(), epoch_id, index));
        if expected != got.units() {
            let expected = Price::from_units(expected).expect("kept within the price range");
            return Err(VerifyError::TickMismatch { index, expected, got });
        }
        // Continue from the recomputed price, so one bad tick is reported once, at its index.
        expected_prev = expected;
    }
    Ok(())
}

/// The first `count` ticks of an epoch as this module computes them, for display beside the
/// recorded ones.
pub fn recompute_ticks(
    params: &MarketParams,
    seed: &Seed,
    epoch_id: i64,
    start_price: Price,
    count: usize,
) -> Vec<Price> {
    let sigma = sigma_per_tick(params.volatility_bp(), params.tick_interval_ms());
    let mut units = start_price.units();
    (0..count as u64)
        .map(|index| {
            units = next_units(units, sigma, draw(seed, params.symbol(), epoch_id, index));
            Price::from_units(units).expect("kept within the price range")
        })
        .collect()
}

/// σ·10¹² = the largest `s` with `s² ≤ ⌊vol² · interval · 10¹⁶ / 31 536 000 000⌋`, found by
/// bisection (the engine uses the standard integer square root instead).
fn sigma_per_tick(volatility_bp: u32, tick_interval_ms: u32) -> u128 {
    let target = u128::from(volatility_bp).pow(2) * u128::from(tick_interval_ms) * 10_000_000_000_000_000
        / 31_536_000_000;
    let (mut low, mut high) = (0_u128, 1_u128 << 64);
    // Invariant: low² ≤ target < high².
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if mid * mid <= target {
            low = mid;
        } else {
            high = mid;
        }
    }
    low
}

/// `z_raw` for one tick: hash the documented message and add up the first twelve
/// big-endian 16-bit words.
fn draw(seed: &Seed, symbol: &str, epoch_id: i64, index: u64) -> i128 {
    let mut hasher = Sha256::new();
    hasher.update(b"fairtick/tick/v1");
    hasher.update(seed.as_bytes());
    hasher.update((symbol.len() as u32).to_be_bytes());
    hasher.update(symbol.as_bytes());
    hasher.update(epoch_id.to_be_bytes());
    hasher.update(index.to_be_bytes());
    let h = hasher.finalize();
    let mut sum: i128 = 0;
    for k in 0..12 {
        sum += i128::from(h[2 * k]) * 256 + i128::from(h[2 * k + 1]);
    }
    2 * sum - 786_420
}

/// The next price in units: the change `prev · σ · z_raw / (10¹² · 2¹⁷)` rounded to the
/// nearest unit with halves away from zero, then kept within `[1, 10¹⁸]`.
fn next_units(prev: i64, sigma: u128, z_raw: i128) -> i64 {
    let divisor: u128 = 131_072_000_000_000_000;
    let magnitude = prev.unsigned_abs() as u128 * sigma * z_raw.unsigned_abs();
    let (quotient, remainder) = (magnitude / divisor, magnitude % divisor);
    let rounded = if 2 * remainder >= divisor { quotient + 1 } else { quotient };
    let change = if z_raw < 0 { -(rounded as i128) } else { rounded as i128 };
    let next = i128::from(prev) + change;
    if next < 1 {
        1
    } else if next > 1_000_000_000_000_000_000 {
        1_000_000_000_000_000_000
    } else {
        next as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fairness::engine::EpochSpec;

    fn spec() -> EpochSpec {
        EpochSpec {
            market: MarketParams::new("SIM-50", 5000, 500).unwrap(),
            epoch_id: 3,
            seed: Seed::from_bytes([42; 32]),
            start_price: Price::parse("250.5").unwrap(),
        }
    }

    #[test]
    fn the_verifier_agrees_with_the_engine() {
        let spec = spec();
        let ticks: Vec<Price> = spec.ticks().take(2000).collect();
        assert_eq!(recompute_ticks(&spec.market, &spec.seed, spec.epoch_id, spec.start_price, 2000), ticks);
        let commitment = spec.seed.commitment();
        assert_eq!(
            verify_epoch(&spec.market, &spec.seed, &commitment, spec.epoch_id, spec.start_price, &ticks),
            Ok(())
        );
        assert_eq!(
            verify_ticks(&spec.market, &spec.seed, spec.epoch_id, 1500, ticks[1499], &ticks[1500..]),
            Ok(())
        );
    }

    #[test]
    fn sigma_matches_the_engine_over_the_parameter_range() {
        for vol in [1, 7, 2500, 9999, 100_000] {
            for interval in [1, 3, 250, 1000, 60_000, 86_400_000] {
                let params = MarketParams::new("S", vol, interval).unwrap();
                assert_eq!(
                    sigma_per_tick(vol, interval),
                    u128::from(params.tick_sigma().raw()),
                    "{vol} {interval}"
                );
            }
        }
    }

    #[test]
    fn a_wrong_seed_is_caught_by_the_commitment() {
        let spec = spec();
        let ticks: Vec<Price> = spec.ticks().take(10).collect();
        let published = Seed::from_bytes([43; 32]).commitment();
        let result =
            verify_epoch(&spec.market, &spec.seed, &published, spec.epoch_id, spec.start_price, &ticks);
        assert!(matches!(result, Err(VerifyError::CommitmentMismatch { .. })));
    }

    #[test]
    fn the_first_altered_tick_is_reported_with_both_prices() {
        let spec = spec();
        let mut ticks: Vec<Price> = spec.ticks().take(100).collect();
        let honest = ticks[57];
        ticks[57] = honest.checked_add_units(1).unwrap();
        ticks[80] = ticks[80].checked_add_units(-1).unwrap();
        let commitment = spec.seed.commitment();
        assert_eq!(
            verify_epoch(&spec.market, &spec.seed, &commitment, spec.epoch_id, spec.start_price, &ticks),
            Err(VerifyError::TickMismatch { index: 57, expected: honest, got: ticks[57] })
        );
    }

    #[test]
    fn ticks_from_another_epoch_or_market_do_not_verify() {
        let spec = spec();
        let ticks: Vec<Price> = spec.ticks().take(5).collect();
        let commitment = spec.seed.commitment();
        let other_market = MarketParams::new("SIM-51", 5000, 500).unwrap();
        for (params, epoch_id) in [(&spec.market, spec.epoch_id + 1), (&other_market, spec.epoch_id)] {
            let result = verify_epoch(params, &spec.seed, &commitment, epoch_id, spec.start_price, &ticks);
            assert!(matches!(result, Err(VerifyError::TickMismatch { index: 0, .. })), "{result:?}");
        }
    }
}
