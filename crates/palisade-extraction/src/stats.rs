//! The statistics the window detectors need: the normal distribution, the
//! Shapiro–Wilk normality test (Royston's AS R94 approximation, n in
//! 3..=5000) and a kernel two-sample test (MMD², biased estimator, with a
//! permutation threshold from a seeded generator).
//!
//! Must not: draw randomness of its own; permutations come from a seed the
//! caller passes, so a decision can be replayed exactly.

/// Errors of the tests: the inputs they cannot judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatsError {
    /// Shapiro–Wilk needs 3 to 5000 values.
    #[error("sample size {0} is outside 3..=5000")]
    SampleSize(usize),
    /// Every value is the same: normality is undefined.
    #[error("all values are identical")]
    ZeroRange,
    /// A value is NaN or infinite.
    #[error("a value is not finite")]
    NotFinite,
}

/// Standard normal upper tail, `P(Z > z)`, from `erfc` (W. J. Cody's
/// rational approximations through [`erfc`]).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function, relative error below 1.2e-7 everywhere
/// (the Chebyshev fit of Numerical Recipes §6.2), plenty for p-values.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Standard normal quantile (Acklam's algorithm, relative error ≤ 1.2e-9),
/// for `p` in (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// A polynomial with coefficients in increasing order (AS 181.2's `poly`).
fn poly(coefficients: &[f64], x: f64) -> f64 {
    coefficients.iter().rev().fold(0.0, |acc, c| acc * x + c)
}

/// The Shapiro–Wilk statistic and its p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapiroWilk {
    /// W in (0, 1]; near 1 for normal samples.
    pub w: f64,
    /// P(W ≤ observed) under normality (small: not normal).
    pub p_value: f64,
}

/// The Shapiro–Wilk test of `values` (any order), after Royston (1995),
/// Algorithm AS R94: approximate coefficients from normal order statistics
/// with polynomial corrections for the two extreme pairs, and a normalizing
/// transformation of `1 - W` for the p-value.
pub fn shapiro_wilk(values: &[f64]) -> Result<ShapiroWilk, StatsError> {
    let n = values.len();
    if !(3..=5000).contains(&n) {
        return Err(StatsError::SampleSize(n));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NotFinite);
    }
    let mut x = values.to_vec();
    x.sort_by(f64::total_cmp);
    let range = x[n - 1] - x[0];
    if range < 1e-19 {
        return Err(StatsError::ZeroRange);
    }
    let half = n / 2;
    let an = n as f64;
    // Coefficients for the pairs (x[n-1-i] - x[i]), all positive.
    let mut a = vec![0.0; half];
    if n == 3 {
        a[0] = std::f64::consts::FRAC_1_SQRT_2;
    } else {
        const C1: [f64; 6] = [0.0, 0.221_157, -0.147_981, -2.071_19, 4.434_685, -2.706_056];
        const C2: [f64; 6] = [
            0.0, 0.042_981, -0.293_762, -1.752_461, 5.682_633, -3.582_633,
        ];
        let m: Vec<f64> = (1..=half)
            .map(|i| -normal_quantile((i as f64 - 0.375) / (an + 0.25)))
            .collect();
        let summ2 = 2.0 * m.iter().map(|v| v * v).sum::<f64>();
        let ssumm2 = summ2.sqrt();
        let rsn = 1.0 / an.sqrt();
        let a1 = m[0] / ssumm2 + poly(&C1, rsn);
        let (first_scaled, fac) = if n > 5 {
            let a2 = m[1] / ssumm2 + poly(&C2, rsn);
            let fac = ((summ2 - 2.0 * m[0] * m[0] - 2.0 * m[1] * m[1])
                / (1.0 - 2.0 * a1 * a1 - 2.0 * a2 * a2))
                .sqrt();
            a[1] = a2;
            (2, fac)
        } else {
            let fac = ((summ2 - 2.0 * m[0] * m[0]) / (1.0 - 2.0 * a1 * a1)).sqrt();
            (1, fac)
        };
        a[0] = a1;
        for i in first_scaled..half {
            a[i] = m[i] / fac;
        }
    }
    // W as the squared correlation of the data with the coefficients,
    // computed as 1 - W to keep precision when W is near 1 (AS R94).
    let coefficient = |i: usize| -> f64 {
        let j = n - 1 - i;
        match i.cmp(&j) {
            std::cmp::Ordering::Less => -a[i],
            std::cmp::Ordering::Greater => a[j],
            std::cmp::Ordering::Equal => 0.0,
        }
    };
    let mean_x = x.iter().map(|v| v / range).sum::<f64>() / an;
    let mean_a = (0..n).map(coefficient).sum::<f64>() / an;
    let (mut ssa, mut ssx, mut sax) = (0.0, 0.0, 0.0);
    for (i, xi) in x.iter().enumerate() {
        let da = coefficient(i) - mean_a;
        let dx = xi / range - mean_x;
        ssa += da * da;
        ssx += dx * dx;
        sax += da * dx;
    }
    let ssassx = (ssa * ssx).sqrt();
    let w1 = ((ssassx - sax) * (ssassx + sax) / (ssa * ssx)).max(0.0);
    let w = 1.0 - w1;
    if n == 3 {
        let p = 6.0 / std::f64::consts::PI * (w.sqrt().asin() - (0.75f64).sqrt().asin());
        return Ok(ShapiroWilk {
            w,
            p_value: p.max(0.0),
        });
    }
    if w1 <= 0.0 {
        return Ok(ShapiroWilk { w, p_value: 1.0 });
    }
    let mut y = w1.ln();
    let (m, s) = if n <= 11 {
        let gamma = poly(&[-2.273, 0.459], an);
        if y >= gamma {
            return Ok(ShapiroWilk { w, p_value: 1e-99 });
        }
        y = -(gamma - y).ln();
        (
            poly(&[0.544, -0.399_78, 0.025_054, -6.714e-4], an),
            poly(&[1.3822, -0.778_57, 0.062_767, -0.002_032_2], an).exp(),
        )
    } else {
        let ln_n = an.ln();
        (
            poly(&[-1.5861, -0.310_82, -0.083_751, 0.003_891_5], ln_n),
            poly(&[-0.4803, -0.082_676, 0.003_030_2], ln_n).exp(),
        )
    };
    Ok(ShapiroWilk {
        w,
        p_value: normal_sf((y - m) / s),
    })
}

/// A tiny seeded generator (SplitMix64) for permutations: reproducible, and
/// no dependency.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        crate::sketch::mix64(self.0)
    }

    /// Uniform in `0..n` (n > 0); the bias of the modulo is below 2^-40 for
    /// the window sizes used here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Result of a kernel two-sample test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TwoSample {
    /// The biased MMD² estimate between the two samples.
    pub mmd2: f64,
    /// Fraction of label permutations with an MMD² at least as large (with
    /// the +1 correction, so never 0); `None` when the statistic was below
    /// the caller's `min_effect` and the permutations were not run.
    pub p_value: Option<f64>,
}

/// MMD² two-sample test of `xs` against `ys` under `kernel`, with a
/// permutation p-value from `permutations` shuffles seeded by `seed`. The
/// Gram matrix is computed once; each permutation only re-sums it.
///
/// Permutations cost `permutations × (n + m)²`, so they run only when the
/// observed MMD² reaches `min_effect`: a smaller effect is not acted on
/// whatever its p-value (the caller fires on both), and most windows of
/// normal traffic are below it.
pub fn mmd_test<T>(
    xs: &[T],
    ys: &[T],
    kernel: impl Fn(&T, &T) -> f64,
    permutations: usize,
    seed: u64,
    min_effect: f64,
) -> TwoSample {
    let n = xs.len();
    let total = n + ys.len();
    if n == 0 || ys.is_empty() {
        return TwoSample {
            mmd2: 0.0,
            p_value: Some(1.0),
        };
    }
    let item = |i: usize| if i < n { &xs[i] } else { &ys[i - n] };
    let mut gram = vec![0.0f64; total * total];
    for i in 0..total {
        for j in i..total {
            let k = kernel(item(i), item(j));
            gram[i * total + j] = k;
            gram[j * total + i] = k;
        }
    }
    let statistic = |labels: &[bool]| -> f64 {
        // labels[i]: true = first sample.
        let (mut kxx, mut kyy, mut kxy) = (0.0, 0.0, 0.0);
        for i in 0..total {
            let row = &gram[i * total..(i + 1) * total];
            for (j, k) in row.iter().enumerate() {
                match (labels[i], labels[j]) {
                    (true, true) => kxx += k,
                    (false, false) => kyy += k,
                    _ => kxy += k,
                }
            }
        }
        let nx = n as f64;
        let ny = (total - n) as f64;
        kxx / (nx * nx) + kyy / (ny * ny) - kxy / (nx * ny)
    };
    let mut labels: Vec<bool> = (0..total).map(|i| i < n).collect();
    let observed = statistic(&labels);
    if observed < min_effect {
        return TwoSample {
            mmd2: observed,
            p_value: None,
        };
    }
    let mut rng = SplitMix::new(seed);
    let mut at_least = 0usize;
    for _ in 0..permutations {
        for i in (1..total).rev() {
            labels.swap(i, rng.below(i + 1));
        }
        if statistic(&labels) >= observed - 1e-12 {
            at_least += 1;
        }
    }
    TwoSample {
        mmd2: observed,
        p_value: Some((at_least + 1) as f64 / (permutations + 1) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_functions_match_tables() {
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_sf(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal_quantile(0.01) + 2.326_348).abs() < 1e-5);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
    }

    #[test]
    fn shapiro_wilk_accepts_normal_quantiles() {
        let n = 60;
        let xs: Vec<f64> = (1..=n)
            .map(|i| normal_quantile((i as f64 - 0.5) / n as f64))
            .collect();
        let r = shapiro_wilk(&xs).unwrap();
        assert!(r.w > 0.98, "{r:?}");
        assert!(r.p_value > 0.5, "{r:?}");
    }

    #[test]
    fn shapiro_wilk_rejects_skewed_and_bimodal_samples() {
        let n = 60;
        let exponential: Vec<f64> = (1..=n)
            .map(|i| -(1.0 - (i as f64 - 0.5) / n as f64).ln())
            .collect();
        let r = shapiro_wilk(&exponential).unwrap();
        assert!(r.w < 0.93 && r.p_value < 0.01, "{r:?}");
        let bimodal: Vec<f64> = (0..n)
            .map(|i| if i % 2 == 0 { 0.05 } else { 0.4 } + (i as f64) * 1e-3)
            .collect();
        let r = shapiro_wilk(&bimodal).unwrap();
        assert!(r.p_value < 1e-4, "{r:?}");
    }

    #[test]
    fn shapiro_wilk_matches_r_on_a_published_example() {
        // R: shapiro.test(c(148,154,158,160,161,162,166,170,182,195,236))
        // W = 0.79, p = 0.0069 (the small-sample branch, n = 11).
        let xs = [
            148.0, 154.0, 158.0, 160.0, 161.0, 162.0, 166.0, 170.0, 182.0, 195.0, 236.0,
        ];
        let r = shapiro_wilk(&xs).unwrap();
        assert!((r.w - 0.79).abs() < 0.01, "{r:?}");
        assert!(r.p_value < 0.02 && r.p_value > 0.002, "{r:?}");
    }

    #[test]
    fn shapiro_wilk_refuses_what_it_cannot_judge() {
        assert_eq!(shapiro_wilk(&[1.0, 2.0]), Err(StatsError::SampleSize(2)));
        assert_eq!(shapiro_wilk(&[1.0; 10]), Err(StatsError::ZeroRange));
        assert_eq!(
            shapiro_wilk(&[1.0, f64::NAN, 2.0]),
            Err(StatsError::NotFinite)
        );
        assert!(shapiro_wilk(&[1.0, 2.0, 4.0]).is_ok());
    }

    #[test]
    fn mmd_separates_shifted_samples_only() {
        let kernel = |a: &f64, b: &f64| (-(a - b) * (a - b)).exp();
        let xs: Vec<f64> = (0..40)
            .map(|i| normal_quantile((i as f64 + 0.5) / 40.0))
            .collect();
        let same: Vec<f64> = (0..40)
            .map(|i| normal_quantile((i as f64 + 0.3) / 40.2))
            .collect();
        let shifted: Vec<f64> = xs.iter().map(|v| v + 1.5).collect();
        assert!(mmd_test(&xs, &same, kernel, 99, 7, 0.0).p_value.unwrap() > 0.2);
        let r = mmd_test(&xs, &shifted, kernel, 99, 7, 0.0);
        assert!(r.p_value.unwrap() <= 0.011 && r.mmd2 > 0.05, "{r:?}");
        // Same seed, same answer.
        assert_eq!(r, mmd_test(&xs, &shifted, kernel, 99, 7, 0.0));
        // Below the effect that matters, the permutations are not run; at
        // or above it the answer is the full test's.
        let small = mmd_test(&xs, &same, kernel, 99, 7, 0.05);
        assert_eq!(small.p_value, None);
        assert_eq!(small.mmd2, mmd_test(&xs, &same, kernel, 99, 7, 0.0).mmd2);
        assert_eq!(r, mmd_test(&xs, &shifted, kernel, 99, 7, r.mmd2));
    }
}
