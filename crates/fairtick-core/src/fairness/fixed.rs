//! Fixed-point transcendental functions at scale 10¹⁸ for the pricing model: `ln`, `exp` and
//! the standard normal CDF, in integer arithmetic only.
//!
//! Each is specified step by step in `docs/fairness.md` (with the exact constants below) so
//! that a browser can reproduce a quote with `BigInt`. Where a signed product is scaled back
//! down, division truncates toward zero, which is what both Rust's `/` and `BigInt`'s `/` do.

/// 1.0 at the model's fixed-point scale.
pub(crate) const ONE: i128 = 1_000_000_000_000_000_000;
const ONE_U: u128 = ONE as u128;

/// ⌊ln 2 · 10¹⁸⌋.
pub(crate) const LN2: u128 = 693_147_180_559_945_309;

/// ⌊10¹⁸ / √(2π)⌋.
const INV_SQRT_2PI: i128 = 398_942_280_401_432_677;

/// Abramowitz & Stegun 26.2.17: `p` and `b1..b5` at scale 10¹⁸.
const AS_P: i128 = 231_641_900_000_000_000;
const AS_B: [i128; 5] = [
    319_381_530_000_000_000,
    -356_563_782_000_000_000,
    1_781_477_937_000_000_000,
    -1_821_255_978_000_000_000,
    1_330_274_429_000_000_000,
];

/// Beyond this |x| the normal CDF is taken as exactly 0 or 1 (the true tail is below 10⁻²³).
const CDF_SATURATION: i128 = 10 * ONE;

/// `ln(x)` for `x ≥ 1` given at scale 10¹⁸.
///
/// Halve `x` (rounding down) `k` times until it lies in `[1, 2)`, call that `m`, and sum the
/// series `ln m = 2·atanh(t)`, `t = (m − 1)/(m + 1) < 1/3`, until a term rounds to zero. Every
/// rounding is down and every step is non-decreasing in `x`, so the result is monotone.
fn ln_at_least_one(x: u128) -> u128 {
    debug_assert!(x >= ONE_U);
    let mut m = x;
    let mut k: u128 = 0;
    while m >= 2 * ONE_U {
        m >>= 1;
        k += 1;
    }
    let t = (m - ONE_U) * ONE_U / (m + ONE_U);
    let t_squared = t * t / ONE_U;
    let mut sum: u128 = 0;
    let mut power = t;
    let mut odd: u128 = 1;
    while power > 0 {
        sum += power / odd;
        power = power * t_squared / ONE_U;
        odd += 2;
    }
    k * LN2 + 2 * sum
}

/// `ln(num / den)` at scale 10¹⁸, for `1 ≤ num, den ≤ 10¹⁹`. The ratio is formed as a
/// fixed-point number at least 1 (inverting it when `num < den`), so a ratio and its inverse
/// give exactly opposite logarithms.
pub(crate) fn ln_ratio(num: u128, den: u128) -> i128 {
    debug_assert!(num > 0 && den > 0);
    if num >= den {
        ln_at_least_one(num * ONE_U / den) as i128
    } else {
        -(ln_at_least_one(den * ONE_U / num) as i128)
    }
}

/// `exp(−y)` for `y ≥ 0`, both at scale 10¹⁸.
///
/// `y = k·ln2 + r` with `0 ≤ r < ln2`; `exp(r)` is the Taylor series (all terms positive,
/// each rounded down) until a term rounds to zero; then `exp(−y) = ⌊10³⁶ / exp(r)⌋ >> k`.
pub(crate) fn exp_neg(y: u128) -> u128 {
    let k = y / LN2;
    let r = y - k * LN2;
    let mut sum: u128 = 0;
    let mut term = ONE_U;
    let mut j: u128 = 1;
    while term > 0 {
        sum += term;
        term = term * r / (ONE_U * j);
        j += 1;
    }
    let exp_neg_r = ONE_U * ONE_U / sum;
    if k >= 128 { 0 } else { exp_neg_r >> k }
}

/// The standard normal density at `x` (scale 10¹⁸): `⌊exp(−⌊x²/(2·10¹⁸)⌋) · INV_SQRT_2PI / 10¹⁸⌋`.
pub(crate) fn normal_pdf(x: i128) -> i128 {
    let a = x.unsigned_abs().min(CDF_SATURATION as u128);
    exp_neg(a * a / (2 * ONE_U)) as i128 * INV_SQRT_2PI / ONE
}

/// The standard normal CDF `Φ(x)` at scale 10¹⁸, by Abramowitz & Stegun 26.2.17 (absolute
/// error below 7.5·10⁻⁸), saturating to exactly 0 or 1 for `|x| ≥ 10`.
///
/// The approximation is monotone in exact arithmetic (its polynomial has a positive
/// derivative on `(0, 1]`), and the result is clamped to `[0, 1]`.
pub(crate) fn normal_cdf(x: i128) -> i128 {
    if x >= CDF_SATURATION {
        return ONE;
    }
    if x <= -CDF_SATURATION {
        return 0;
    }
    let a = x.abs();
    let t = ONE * ONE / (ONE + AS_P * a / ONE);
    let mut acc = AS_B[4];
    for b in AS_B[..4].iter().rev() {
        acc = b + acc * t / ONE;
    }
    let polynomial = acc * t / ONE;
    let upper_tail = (normal_pdf(a) * polynomial / ONE).clamp(0, ONE);
    if x >= 0 { ONE - upper_tail } else { upper_tail }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test-only conversion, to compare with the standard library's floating point.
    fn to_f64(x: i128) -> f64 {
        x as f64 / ONE as f64
    }

    #[test]
    fn ln_matches_known_values() {
        assert_eq!(ln_ratio(1, 1), 0);
        assert_eq!(ln_ratio(2, 1), LN2 as i128);
        assert_eq!(ln_ratio(1, 2), -(LN2 as i128));
        // ln 10 = 2.302585092994045684…; the error budget is a few hundred units of 10⁻¹⁸.
        assert!((ln_ratio(10, 1) - 2_302_585_092_994_045_684).abs() < 200);
        for (num, den) in
            [(3_u128, 7_u128), (1_000_001, 1_000_000), (10_u128.pow(19), 1), (1, 10_u128.pow(19))]
        {
            let expected = (num as f64 / den as f64).ln();
            assert!((to_f64(ln_ratio(num, den)) - expected).abs() < 1e-12, "{num}/{den}");
        }
    }

    #[test]
    fn exp_matches_known_values() {
        assert_eq!(exp_neg(0), ONE as u128);
        // e⁻¹ = 0.367879441171442321…
        assert!((exp_neg(ONE as u128) as i128 - 367_879_441_171_442_321).abs() < 100);
        for y in [0.001_f64, 0.5, 2.0, 10.0, 30.0, 50.0] {
            let got = exp_neg((y * 1e18) as u128) as f64 / 1e18;
            assert!((got - (-y).exp()).abs() < 1e-15, "exp(-{y})");
        }
        assert_eq!(exp_neg(200 * ONE as u128), 0);
    }

    #[test]
    fn the_normal_cdf_is_accurate_symmetric_and_monotone() {
        // Reference values of Φ to 10 decimals.
        for (x, phi) in [
            (0.0, 0.5),
            (0.5, 0.6914624613),
            (1.0, 0.8413447461),
            (1.96, 0.9750021049),
            (3.0, 0.9986501020),
            (-2.5, 0.0062096653),
            (6.0, 0.9999999990),
        ] {
            let got = to_f64(normal_cdf((x * 1e18) as i128));
            assert!((got - phi).abs() < 7.5e-8, "Φ({x}) = {got}, expected {phi}");
        }
        let mut previous = 0;
        for step in -12_000..=12_000_i128 {
            let x = step * ONE / 1000;
            let value = normal_cdf(x);
            assert!(value >= previous, "Φ decreases at {x}");
            assert!((0..=ONE).contains(&value));
            if x != 0 {
                assert_eq!(value + normal_cdf(-x), ONE, "Φ(x) + Φ(−x) = 1 at {x}");
            }
            previous = value;
        }
    }
}
