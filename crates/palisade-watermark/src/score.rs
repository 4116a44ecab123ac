//! Detection: the one-proportion z-test of Kirchenbauer et al. / Zhao et
//! al. on the green count of a token sequence, with an exact binomial
//! p-value beside the normal one (the normal tail is optimistic for short
//! texts), and the ranking of candidate keys for forensics.
//!
//! Each distinct token is counted once (Zhao et al. §4): a text that repeats
//! a green token a thousand times has one green token, so neither a
//! degenerate generation nor an attacker's padding inflates the score, and
//! under the null hypothesis (a text written without the key) the score
//! stays a fair test whatever the repetition.
//!
//! Must not: tokenize, or read anything but the ids it is given.

use palisade_extraction::stats::normal_sf;
use serde::Serialize;

use crate::GreenList;

/// The false-positive rate detection is judged at by default: 1e-5, the
/// issue's target. Rationale: a forensic claim ("this text came from your
/// key") must survive many texts being tested; at 1e-5 one false accusation
/// needs 100k unwatermarked texts.
pub const DEFAULT_FPR: f64 = 1e-5;

/// The verdict on one token sequence under one green list.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// Distinct in-vocabulary tokens scored.
    pub tokens: u64,
    /// How many of them are green.
    pub green: u64,
    /// The green fraction expected without the key.
    pub gamma: f64,
    /// `(green - gamma·n) / sqrt(n·gamma·(1-gamma))`; 0 for an empty text.
    pub z: f64,
    /// Exact binomial `P(X ≥ green)` for `X ~ Bin(n, gamma)`.
    pub p_value: f64,
    /// The normal approximation's `P(Z ≥ z)`.
    pub p_normal: f64,
}

impl Score {
    /// Watermarked at false-positive rate `fpr` (on the exact p-value).
    pub fn detected(&self, fpr: f64) -> bool {
        self.tokens > 0 && self.p_value <= fpr
    }
}

/// Scores `tokens` against `list`, each distinct token once.
pub fn score(list: &GreenList, tokens: &[u32]) -> Score {
    let mut seen: Vec<u32> = tokens
        .iter()
        .copied()
        .filter(|&t| t < list.vocab())
        .collect();
    seen.sort_unstable();
    seen.dedup();
    let n = seen.len() as u64;
    let green = seen.iter().filter(|&&t| list.is_green(t)).count() as u64;
    from_counts(green, n, list.gamma())
}

/// The score of `green` green tokens out of `n` at fraction `gamma`.
pub fn from_counts(green: u64, n: u64, gamma: f64) -> Score {
    let (z, p_value, p_normal) = if n == 0 {
        (0.0, 1.0, 0.5)
    } else {
        let nf = n as f64;
        let z = (green as f64 - gamma * nf) / (nf * gamma * (1.0 - gamma)).sqrt();
        (z, binomial_sf(green, n, gamma), normal_sf(z))
    };
    Score {
        tokens: n,
        green,
        gamma,
        z,
        p_value,
        p_normal,
    }
}

/// Candidate keys ranked by how strongly `tokens` carries each one: highest
/// z first (ties by label). Forensics: which tenant and period a suspect
/// model's outputs were learned from.
pub fn rank<L: Clone + Ord>(candidates: &[(L, GreenList)], tokens: &[u32]) -> Vec<(L, Score)> {
    let mut out: Vec<(L, Score)> = candidates
        .iter()
        .map(|(label, list)| (label.clone(), score(list, tokens)))
        .collect();
    out.sort_by(|a, b| b.1.z.total_cmp(&a.1.z).then_with(|| a.0.cmp(&b.0)));
    out
}

/// `P(X ≥ k)` for `X ~ Bin(n, p)`, summed in log space from the tail that
/// is smaller, stopping once terms no longer change the sum (terms shrink
/// geometrically away from the mode), so it costs O(sqrt(n)) terms, not n.
pub fn binomial_sf(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    let mean = n as f64 * p;
    if (k as f64) > mean {
        sum_terms(k..=n, n, p).min(1.0)
    } else {
        (1.0 - sum_terms((0..k).rev(), n, p)).clamp(0.0, 1.0)
    }
}

/// Sums the pmf over `range`, walking away from the mode.
fn sum_terms(range: impl Iterator<Item = u64>, n: u64, p: f64) -> f64 {
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let ln_n = ln_gamma(n as f64 + 1.0);
    let mut sum = 0.0;
    for i in range {
        let term = (ln_n - ln_gamma(i as f64 + 1.0) - ln_gamma((n - i) as f64 + 1.0)
            + i as f64 * lp
            + (n - i) as f64 * lq)
            .exp();
        sum += term;
        if term <= sum * 1e-17 {
            break;
        }
    }
    sum
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, nine coefficients: ~15
/// significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive_key;

    fn check(k: u64, n: u64, p: f64, expected: f64) {
        let got = binomial_sf(k, n, p);
        let rel = ((got - expected) / expected).abs();
        assert!(
            rel < 1e-9,
            "P(X>={k}; {n}, {p}) = {got}, expected {expected}"
        );
    }

    #[test]
    fn binomial_tails_match_direct_sums() {
        // Direct sums (exact rationals evaluated in f64) for small n.
        check(1, 1, 0.25, 0.25);
        check(2, 2, 0.5, 0.25);
        check(3, 4, 0.5, 5.0 / 16.0);
        check(1, 4, 0.25, 1.0 - 0.75f64.powi(4));
        check(10, 10, 0.25, 0.25f64.powi(10));
        // P(X >= 50; 100, 0.25) = 6.638502483476651e-08 (exact rational
        // sum in Python's `fractions`), from the far tail.
        check(50, 100, 0.25, 6.638_502_483_476_651e-8);
        // And from below the mean: 1 - P(X <= 19; 100, 0.25).
        check(20, 100, 0.25, 0.900_469_589_894_686);
        assert_eq!(binomial_sf(0, 10, 0.3), 1.0);
        assert_eq!(binomial_sf(11, 10, 0.3), 0.0);
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut f = 1.0f64;
        for n in 1..30u32 {
            f *= f64::from(n);
            assert!((ln_gamma(f64::from(n) + 1.0) - f.ln()).abs() < 1e-10, "{n}");
        }
    }

    #[test]
    fn repeated_tokens_count_once_and_out_of_vocabulary_ids_not_at_all() {
        let list = GreenList::new(&derive_key(&[3; 32], "t", 1), 100, 0.25).unwrap();
        let g = list.green_ids().next().unwrap();
        let once = score(&list, &[g]);
        let many = score(&list, &[g; 500]);
        assert_eq!(once, many);
        assert_eq!((many.tokens, many.green), (1, 1));
        assert_eq!(score(&list, &[100, 5000]).tokens, 0);
        assert!(!score(&list, &[]).detected(0.5));
    }

    #[test]
    fn an_all_green_text_is_detected_and_ranked_first() {
        let keys: Vec<(String, GreenList)> = (0..4)
            .map(|p| {
                let l = GreenList::new(&derive_key(&[3; 32], "t", p), 1000, 0.25).unwrap();
                (format!("t@{p}"), l)
            })
            .collect();
        let text: Vec<u32> = keys[2].1.green_ids().take(40).collect();
        let s = score(&keys[2].1, &text);
        assert!(s.detected(DEFAULT_FPR), "{s:?}");
        assert!(s.z > 10.0);
        let ranked = rank(&keys, &text);
        assert_eq!(ranked[0].0, "t@2");
        assert!(!ranked[1].1.detected(DEFAULT_FPR));
    }
}
