//! A trader's record, and whether their win rate is distinguishable from luck: a 95 % Wilson
//! score interval for the win rate, compared with the break-even win rate.

use serde::Serialize;

/// Parts per billion, as the fairness model uses.
const PPB: i128 = 1_000_000_000;
/// z for a two-sided 95 % interval, ×10⁹.
const Z: i128 = 1_959_963_985;

/// A 95 % confidence interval for a proportion, in parts per billion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Interval {
    pub low_ppb: u64,
    pub high_ppb: u64,
}

/// The Wilson score interval for `wins` out of `decided` trials (`None` without trials):
/// `(p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n)`, in 10⁹ fixed point, square roots by
/// integer square root.
pub fn wilson_interval(wins: u64, decided: u64) -> Option<Interval> {
    if decided == 0 || wins > decided {
        return None;
    }
    let n = i128::from(decided);
    let p = i128::from(wins) * PPB / n;
    let z2 = Z * Z / PPB;
    let denominator = PPB + z2 / n;
    let centre = p + z2 / (2 * n);
    // Inside the root at scale 10¹⁸, so its square root is at scale 10⁹.
    let radicand = p * (PPB - p) / n + z2 * PPB / (4 * n * n);
    let spread = Z * (radicand as u128).isqrt() as i128 / PPB;
    let low = ((centre - spread) * PPB / denominator).clamp(0, PPB);
    let high = ((centre + spread) * PPB / denominator).clamp(0, PPB);
    Some(Interval { low_ppb: low as u64, high_ppb: high as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_wilson_intervals() {
        // 50 of 100: about [0.4038, 0.5962].
        let i = wilson_interval(50, 100).unwrap();
        assert!((i.low_ppb as i64 - 403_800_000).abs() < 200_000, "{i:?}");
        assert!((i.high_ppb as i64 - 596_200_000).abs() < 200_000, "{i:?}");
        // 0 of 10: [0, about 0.2775].
        let i = wilson_interval(0, 10).unwrap();
        assert_eq!(i.low_ppb, 0);
        assert!((i.high_ppb as i64 - 277_500_000).abs() < 300_000, "{i:?}");
        assert_eq!(wilson_interval(0, 0), None);
    }

    #[test]
    fn more_trials_narrow_the_interval() {
        let few = wilson_interval(6, 10).unwrap();
        let many = wilson_interval(600, 1000).unwrap();
        assert!(many.high_ppb - many.low_ppb < few.high_ppb - few.low_ppb);
        assert!(many.low_ppb > 500_000_000, "600/1000 is distinguishable from a coin");
        assert!(few.low_ppb < 500_000_000, "6/10 is not");
    }
}
