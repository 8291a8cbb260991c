//! The public pricing model: the probability that a driftless walk of the engine ends above,
//! below or exactly at a reference price, and the quote and early-close figures built on it.
//!
//! Everything is fixed-point integer arithmetic so that a browser can reproduce a quote or a
//! bid exactly from `docs/fairness.md` ("The pricing model"). The model only ever looks at
//! the current price and the number of ticks left; it has no access to future ticks.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::fixed::{ONE, ln_ratio, normal_cdf};
use super::market::TickSigma;
use crate::money::Money;
use crate::price::Price;

/// Probabilities are integers at this scale: parts per billion.
pub const PROBABILITY_SCALE: u64 = 1_000_000_000;

/// Rates (payout rate, spread) are given in basis points.
pub const BASIS_POINTS: u64 = 10_000;

/// The side a trade takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Wins if the exit price is strictly above the entry price.
    Up,
    /// Wins if the exit price is strictly below the entry price.
    Down,
}

/// Why the model cannot give a figure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// `σ² · n · 10³⁶` does not fit 128 bits (a standard deviation over the horizon above
    /// about 1800 %): no trade on a supported market comes anywhere near.
    #[error("the horizon is too long for the model")]
    HorizonTooLong,
    /// A stake below zero has no bid.
    #[error("the stake must not be negative")]
    NegativeStake,
    /// A spread above 100 % would make the bid negative.
    #[error("the spread must be at most 10000 basis points")]
    SpreadTooLarge,
}

/// A probability in parts per billion, in `[0, 1]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Probability(u64);

impl Probability {
    /// Impossible.
    pub const ZERO: Probability = Probability(0);
    /// Certain.
    pub const ONE: Probability = Probability(PROBABILITY_SCALE);

    /// A probability from parts per billion, if at most one billion.
    pub const fn from_ppb(ppb: u64) -> Option<Probability> {
        if ppb <= PROBABILITY_SCALE { Some(Probability(ppb)) } else { None }
    }

    /// Parts per billion.
    pub const fn ppb(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Probability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.0 / PROBABILITY_SCALE, self.0 % PROBABILITY_SCALE)
    }
}

impl Serialize for Probability {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A signed fraction in parts per billion: the house's expected gain per unit staked
/// (negative when the player has the advantage).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Edge(i64);

impl Edge {
    /// Parts per billion.
    pub const fn ppb(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:09}", abs / PROBABILITY_SCALE, abs % PROBABILITY_SCALE)
    }
}

impl Serialize for Edge {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The three ways a price can end relative to a reference. They always sum to exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OutcomeOdds {
    /// The final price is strictly above the reference.
    pub up: Probability,
    /// The final price is strictly below the reference.
    pub down: Probability,
    /// The final price equals the reference.
    pub tie: Probability,
}

impl OutcomeOdds {
    /// The probability that a trade in `direction` wins.
    pub fn win(&self, direction: Direction) -> Probability {
        match direction {
            Direction::Up => self.up,
            Direction::Down => self.down,
        }
    }

    /// The probability that a trade in `direction` loses.
    pub fn loss(&self, direction: Direction) -> Probability {
        match direction {
            Direction::Up => self.down,
            Direction::Down => self.up,
        }
    }
}

/// The odds that the price, now `current`, ends strictly above / strictly below / exactly at
/// `reference` after `remaining_ticks` more ticks of per-tick volatility `sigma`.
///
/// With `n` ticks left the final price is modelled as lognormal with the engine's martingale
/// property (`ln F ~ N(ln S − nσ²/2, nσ²)`), and the integer lattice of prices is respected by
/// a continuity correction: "up" is `F ≥ K + ½ unit`, "down" is `F < K − ½ unit`, and the tie
/// is the mass in between, about one unit's worth of density around `K`. With no tick left
/// (or no volatility) the answer is certain.
pub fn outcome_odds(
    sigma: TickSigma,
    remaining_ticks: u64,
    current: Price,
    reference: Price,
) -> Result<OutcomeOdds, ModelError> {
    if remaining_ticks == 0 || sigma.raw() == 0 {
        let certain = |yes: bool| if yes { Probability::ONE } else { Probability::ZERO };
        return Ok(OutcomeOdds {
            up: certain(current > reference),
            down: certain(current < reference),
            tie: certain(current == reference),
        });
    }
    // σ²n at scale 10²⁴, then σ√n at scale 10¹⁸ and nσ²/2 at scale 10¹⁸.
    let variance = u128::from(sigma.raw())
        .pow(2)
        .checked_mul(u128::from(remaining_ticks))
        .filter(|v| v.checked_mul(10_u128.pow(12)).is_some())
        .ok_or(ModelError::HorizonTooLong)?;
    let horizon_sd = (variance * 10_u128.pow(12)).isqrt();
    let half_variance = (variance / 2_000_000) as i128;

    let doubled_current = 2 * current.units() as u128;
    let doubled_reference = 2 * reference.units() as u128;
    // Φ(d) with d = (ln(S / b) − nσ²/2) / (σ√n): the probability that F ends above b.
    let above = |bound: u128| -> i128 {
        let numerator = ln_ratio(doubled_current, bound) - half_variance;
        let magnitude = numerator.unsigned_abs();
        // Beyond |d| = 10 Φ is exactly 0 or 1; capping first keeps the
        // division below inside 128 bits.
        let d = if magnitude >= 10 * horizon_sd {
            10 * ONE
        } else {
            (magnitude * ONE as u128 / horizon_sd) as i128
        };
        normal_cdf(if numerator < 0 { -d } else { d })
    };
    let above_upper = above(doubled_reference + 1);
    let above_lower = above(doubled_reference - 1);
    // The upper bound is the higher one, so at most as likely to be exceeded; taking the
    // minimum keeps the tie non-negative even if rounding ever said otherwise.
    let up = above_upper.min(above_lower);
    let down = ONE - above_lower;

    let to_ppb = |p: i128| (p / (ONE / PROBABILITY_SCALE as i128)) as u64;
    let (up, down) = (to_ppb(up), to_ppb(down));
    Ok(OutcomeOdds {
        up: Probability(up),
        down: Probability(down),
        tie: Probability(PROBABILITY_SCALE - up - down),
    })
}

/// The model's probability that a trade in `direction`, entered at `entry`, wins when the
/// price is now `current` with `remaining_ticks` to go.
pub fn fair_win_probability(
    direction: Direction,
    sigma: TickSigma,
    remaining_ticks: u64,
    current: Price,
    entry: Price,
) -> Result<Probability, ModelError> {
    Ok(outcome_odds(sigma, remaining_ticks, current, entry)?.win(direction))
}

/// What a user is shown before opening a trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    /// The model's probability that the trade wins.
    pub win_probability: Probability,
    /// The probability of a tie (stake refunded).
    pub tie_probability: Probability,
    /// The probability that the trade loses.
    pub loss_probability: Probability,
    /// The share of decided (non-tied) trades one must win to break even: `1 / (1 + r)`,
    /// rounded up.
    pub break_even_win_rate: Probability,
    /// `1 − P(win)·(1 + r) − P(tie)`: the house's expected gain per unit staked.
    pub house_edge: Edge,
}

/// The quote for a new trade of `ticks` ticks at payout rate `payout_rate_bp` (8500 = 85 %).
/// The entry price is the first tick after acceptance, so the odds are those of a walk
/// starting at its own reference, taken at the current `price` level.
pub fn quote(
    direction: Direction,
    sigma: TickSigma,
    ticks: u64,
    price: Price,
    payout_rate_bp: u32,
) -> Result<Quote, ModelError> {
    let odds = outcome_odds(sigma, ticks, price, price)?;
    let (win, tie) = (odds.win(direction), odds.tie);
    let gross = BASIS_POINTS + u64::from(payout_rate_bp);
    let break_even = (BASIS_POINTS * PROBABILITY_SCALE).div_ceil(gross);
    let returned = i128::from(win.0) * i128::from(gross) + i128::from(tie.0) * i128::from(BASIS_POINTS);
    let edge = (i128::from(PROBABILITY_SCALE * BASIS_POINTS) - returned) / i128::from(BASIS_POINTS);
    Ok(Quote {
        win_probability: win,
        tie_probability: tie,
        loss_probability: odds.loss(direction),
        break_even_win_rate: Probability(break_even),
        house_edge: Edge(i64::try_from(edge).expect("bounded by the payout rate")),
    })
}

/// The early-close bid for an open trade:
/// `⌊stake · (P(win)·(1 + r) + P(tie)) · (1 − spread)⌋` to the cent.
///
/// A tie refunds the stake, so it is worth the stake and is included. With `spread_bp ≥ 0`
/// and `P(win) + P(tie) ≤ 1` the bid is never above the full payout `stake · (1 + r)`.
pub fn early_close_bid(
    stake: Money,
    payout_rate_bp: u32,
    win: Probability,
    tie: Probability,
    spread_bp: u32,
) -> Result<Money, ModelError> {
    if stake.is_negative() {
        return Err(ModelError::NegativeStake);
    }
    if u64::from(spread_bp) > BASIS_POINTS {
        return Err(ModelError::SpreadTooLarge);
    }
    let gross = u128::from(BASIS_POINTS) + u128::from(payout_rate_bp);
    let value = u128::from(win.0) * gross + u128::from(tie.0) * u128::from(BASIS_POINTS);
    let kept = u128::from(BASIS_POINTS) - u128::from(spread_bp);
    let denominator = u128::from(BASIS_POINTS) * u128::from(PROBABILITY_SCALE) * u128::from(BASIS_POINTS);
    let cents = stake.cents() as u128 * value * kept / denominator;
    Ok(Money::from_cents(i64::try_from(cents).expect("at most stake · (1 + r)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn price(text: &str) -> Price {
        Price::parse(text).unwrap()
    }

    /// 25 % a year on one-second ticks.
    const SIGMA: TickSigma = TickSigma::from_raw(44_518_108);

    #[test]
    fn with_no_tick_left_the_outcome_is_certain() {
        for (current, expected) in [("101", (1, 0, 0)), ("99", (0, 1, 0)), ("100", (0, 0, 1))] {
            let odds = outcome_odds(SIGMA, 0, price(current), price("100")).unwrap();
            let ppb = |p: Probability| p.ppb() / PROBABILITY_SCALE;
            assert_eq!((ppb(odds.up), ppb(odds.down), ppb(odds.tie)), expected, "{current}");
        }
    }

    #[test]
    fn at_the_money_up_is_slightly_below_one_half() {
        // The walk is a martingale, so its median drifts down by σ√n/2 in log terms:
        // P(up) ≈ Φ(−σ√n / 2) = Φ(−0.000172) ≈ 0.4999313 over 60 ticks.
        let odds = outcome_odds(SIGMA, 60, price("1000"), price("1000")).unwrap();
        assert!((499_931_000..=499_931_600).contains(&odds.up.ppb()), "{odds:?}");
        assert!(odds.down > odds.up);
        // About one unit of density at K: 1 / (√(2π) · σ√n · 10¹¹ units) ≈ 11.6 ppb, plus up to
        // 2 ppb left over from rounding up and down down.
        assert!((11..=14).contains(&odds.tie.ppb()), "ties are rare at this price level: {odds:?}");
    }

    #[test]
    fn far_from_the_money_the_outcome_is_nearly_certain() {
        let odds = outcome_odds(SIGMA, 10, price("1010"), price("1000")).unwrap();
        assert_eq!(odds.up, Probability::ONE);
        let odds = outcome_odds(SIGMA, 10, price("990"), price("1000")).unwrap();
        assert_eq!(odds.down, Probability::ONE);
    }

    #[test]
    fn at_a_tiny_price_ties_become_likely() {
        // One unit of 10⁻⁸ is a large share of a 0.00001 price: σ·S ≈ 0.045 unit per tick.
        let odds = outcome_odds(SIGMA, 1, price("0.00001"), price("0.00001")).unwrap();
        assert!(odds.tie.ppb() > 999_000_000, "{odds:?}");
    }

    #[test]
    fn the_horizon_is_bounded() {
        let sigma = TickSigma::from_raw(523_423_922_590);
        assert!(outcome_odds(sigma, 1_000, price("1"), price("1")).is_ok());
        assert_eq!(outcome_odds(sigma, u64::MAX, price("1"), price("1")), Err(ModelError::HorizonTooLong));
    }

    #[test]
    fn the_quote_shows_the_edge_of_an_85_percent_payout() {
        let quote = quote(Direction::Up, SIGMA, 60, price("1000"), 8500).unwrap();
        // 1 / 1.85 = 0.540540540…, rounded up.
        assert_eq!(quote.break_even_win_rate.ppb(), 540_540_541);
        // 1 − 0.4999313·1.85 ≈ 0.07513.
        assert!((75_120_000..=75_135_000).contains(&quote.house_edge.ppb()), "{quote:?}");
        assert_eq!(quote.house_edge.to_string(), format!("0.{:09}", quote.house_edge.ppb()));
        let json = serde_json::to_value(quote).unwrap();
        assert_eq!(json["breakEvenWinRate"], "0.540540541");
    }

    #[test]
    fn the_bid_is_rounded_down_to_the_cent() {
        let stake = Money::from_units(100);
        let half = Probability::from_ppb(500_000_000).unwrap();
        // 100 · 0.5 · 1.85 = 92.50, less 2 % = 90.65.
        assert_eq!(early_close_bid(stake, 8500, half, Probability::ZERO, 200), Ok(Money::from_cents(9065)));
        // A tie is worth the stake: 100 · (0.5·1.85 + 0.5) = 142.50, less 1 bp = 142.48575 → 142.48.
        assert_eq!(early_close_bid(stake, 8500, half, half, 1), Ok(Money::from_cents(14248)));
        assert_eq!(
            early_close_bid(Money::from_cents(-1), 8500, half, half, 1),
            Err(ModelError::NegativeStake)
        );
        assert_eq!(early_close_bid(stake, 8500, half, half, 10_001), Err(ModelError::SpreadTooLarge));
    }

    fn any_price() -> impl Strategy<Value = Price> {
        prop_oneof![1_i64..=1_000, 1_000_000_i64..=1_000_000_000_000, 1_i64..=1_000_000_000_000_000_000]
            .prop_map(|units| Price::from_units(units).unwrap())
    }

    /// A per-tick sigma and a horizon inside the model's range: σ²n stays below 300.
    fn any_horizon() -> impl Strategy<Value = (TickSigma, u64)> {
        prop_oneof![(1_u64..=10_000_000_000, 0_u64..=100_000), (1_u64..=523_423_922_590, 0_u64..=1_000)]
            .prop_map(|(sigma, ticks)| (TickSigma::from_raw(sigma), ticks))
    }

    proptest! {
        #[test]
        fn probabilities_are_in_range_and_sum_to_one(
            (sigma, ticks) in any_horizon(),
            current in any_price(),
            reference in any_price(),
        ) {
            let odds = outcome_odds(sigma, ticks, current, reference).unwrap();
            for p in [odds.up, odds.down, odds.tie] {
                prop_assert!(p <= Probability::ONE);
            }
            prop_assert_eq!(odds.up.ppb() + odds.down.ppb() + odds.tie.ppb(), PROBABILITY_SCALE);
        }

        #[test]
        fn a_higher_price_never_makes_up_less_likely(
            (sigma, ticks) in any_horizon(),
            current in 1_i64..=1_000_000_000_000,
            rise in 1_i64..=1_000_000_000,
            reference in any_price(),
        ) {
            let low = Price::from_units(current).unwrap();
            let high = Price::from_units(current + rise).unwrap();
            let at_low = outcome_odds(sigma, ticks, low, reference).unwrap();
            let at_high = outcome_odds(sigma, ticks, high, reference).unwrap();
            prop_assert!(at_high.up >= at_low.up, "{:?} then {:?}", at_low, at_high);
            prop_assert!(at_high.down <= at_low.down, "{:?} then {:?}", at_low, at_high);
        }

        #[test]
        fn the_bid_lies_between_zero_and_the_full_payout(
            stake_cents in 0_i64..=100_000_000,
            payout_rate_bp in 0_u32..=100_000,
            win in 0_u64..=PROBABILITY_SCALE,
            tie_share in 0_u64..=PROBABILITY_SCALE,
            spread_bp in 0_u32..=10_000,
        ) {
            let tie = (PROBABILITY_SCALE - win) * tie_share / PROBABILITY_SCALE;
            let stake = Money::from_cents(stake_cents);
            let bid = early_close_bid(
                stake,
                payout_rate_bp,
                Probability::from_ppb(win).unwrap(),
                Probability::from_ppb(tie).unwrap(),
                spread_bp,
            ).unwrap();
            let full = stake_cents as i128 * (10_000 + i128::from(payout_rate_bp)) / 10_000;
            prop_assert!(bid.cents() >= 0);
            prop_assert!(i128::from(bid.cents()) <= full, "bid {} above {}", bid, full);
        }
    }
}
