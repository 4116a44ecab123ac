//! The drift rule and its hysteresis (see the crate docs for the rule).

use crate::{Check, Nanos, Summary};

/// Latency is never called drifted below this p95, whatever the ratio:
/// on loopback and a busy machine, tens of milliseconds are noise.
pub const LATENCY_FLOOR_MS: u64 = 250;

/// The rule's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftRule {
    /// Significance of the one-sided binomial test (e.g. 0.01).
    pub alpha: f64,
    /// How far below the baseline's pass rate is still no drift (e.g. 0.1).
    pub tolerance: f64,
    /// The pass rate required when there is no baseline to compare with.
    pub min_pass_rate: f64,
    /// Results a check needs before it is judged at all.
    pub min_samples: usize,
    /// p95 latency over the baseline's that is drift (0: latency is only
    /// judged through items' `max_latency_ms`).
    pub latency_ratio: f64,
}

impl Default for DriftRule {
    fn default() -> Self {
        Self {
            alpha: 0.01,
            tolerance: 0.1,
            min_pass_rate: 0.9,
            min_samples: 10,
            latency_ratio: 3.0,
        }
    }
}

/// One check that drifted.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Finding {
    /// Which check (`latency_p95` drift is reported as [`Check::Latency`]).
    pub check: Check,
    /// The deployment's figure (a pass rate, or p95 ms for latency).
    pub observed: f64,
    /// What it was held to (the reference rate, or the p95 limit in ms).
    pub reference: f64,
    /// Results behind `observed`.
    pub samples: usize,
    /// The test's p-value (0 for the latency ratio rule).
    pub p_value: f64,
}

impl Finding {
    /// A one-line reason for audit records and alerts.
    pub fn describe(&self) -> String {
        if self.p_value == 0.0 && self.check == Check::Latency {
            format!(
                "latency p95 {:.0} ms over the limit {:.0} ms",
                self.observed, self.reference
            )
        } else {
            format!(
                "{} pass rate {:.2} below {:.2} (n={}, p={:.2e})",
                self.check.as_str(),
                self.observed,
                self.reference,
                self.samples,
                self.p_value
            )
        }
    }
}

/// One evaluation of a deployment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evaluation {
    /// The checks that drifted (empty: no drift).
    pub findings: Vec<Finding>,
    /// Every judged check is at or above its reference (the point
    /// estimate): the condition a drift is cleared on, after hold-down.
    pub clear: bool,
    /// Checks with enough results to be judged.
    pub judged: usize,
}

impl Evaluation {
    /// Some check drifted.
    pub fn drifted(&self) -> bool {
        !self.findings.is_empty()
    }
}

/// `P(X ≤ k)` for `X ~ Binomial(n, p)`, summed in log space (exact up to
/// float rounding for any `n` this crate sees: windows are bounded).
pub fn binomial_cdf(k: usize, n: usize, p: f64) -> f64 {
    if k >= n {
        return 1.0;
    }
    let p = p.clamp(0.0, 1.0);
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        // Every trial succeeds: fewer than n successes has probability 0.
        return 0.0;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    // log pmf(0) = n ln(1-p); pmf(j+1) = pmf(j) * (n-j)/(j+1) * p/(1-p).
    let mut log_pmf = n as f64 * lq;
    let mut total = log_pmf.exp();
    for j in 0..k {
        log_pmf += ((n - j) as f64 / (j + 1) as f64).ln() + lp - lq;
        total += log_pmf.exp();
    }
    total.min(1.0)
}

/// Judges `candidate` against `baseline` (the route's other deployments,
/// pooled; `None` when there are none).
pub fn evaluate(rule: &DriftRule, candidate: &Summary, baseline: Option<&Summary>) -> Evaluation {
    let mut eval = Evaluation {
        clear: true,
        ..Evaluation::default()
    };
    for check in Check::ALL {
        let c = candidate.rate(check);
        if c.total < rule.min_samples.max(1) {
            continue;
        }
        eval.judged += 1;
        let reference = match baseline.map(|b| b.rate(check)) {
            Some(b) if b.total >= rule.min_samples.max(1) => {
                b.value().unwrap_or(1.0) - rule.tolerance
            }
            _ => rule.min_pass_rate,
        }
        .clamp(0.0, 1.0);
        let observed = c.value().unwrap_or(0.0);
        if observed < reference {
            eval.clear = false;
        }
        let p_value = binomial_cdf(c.passed, c.total, reference);
        if p_value < rule.alpha {
            eval.findings.push(Finding {
                check,
                observed,
                reference,
                samples: c.total,
                p_value,
            });
        }
    }
    if rule.latency_ratio > 0.0 {
        if let (Some(b), Some(c95)) = (baseline, candidate.latency_p95_ms) {
            let enough = candidate.latency_samples >= rule.min_samples.max(1)
                && b.latency_samples >= rule.min_samples.max(1);
            if let (true, Some(b95)) = (enough, b.latency_p95_ms) {
                eval.judged += 1;
                let limit = (b95 as f64 * rule.latency_ratio).max(LATENCY_FLOOR_MS as f64);
                if c95 as f64 > limit {
                    eval.clear = false;
                    eval.findings.push(Finding {
                        check: Check::Latency,
                        observed: c95 as f64,
                        reference: limit,
                        samples: candidate.latency_samples,
                        p_value: 0.0,
                    });
                }
            }
        }
    }
    eval
}

/// A deployment's drift state with hysteresis: raised at once, cleared
/// only after `hold_down` of continuously clear evaluations.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftMonitor {
    hold_down: Nanos,
    drifted_since: Option<Nanos>,
    clear_since: Option<Nanos>,
    reasons: Vec<String>,
}

impl DriftMonitor {
    /// A monitor clearing drift after `hold_down` clear.
    pub fn new(hold_down: Nanos) -> Self {
        Self {
            hold_down,
            drifted_since: None,
            clear_since: None,
            reasons: Vec::new(),
        }
    }

    /// Takes one evaluation at `now`. Returns `Some(true)` when drift was
    /// raised by it, `Some(false)` when it was cleared, `None` otherwise.
    pub fn update(&mut self, eval: &Evaluation, now: Nanos) -> Option<bool> {
        if eval.drifted() {
            self.clear_since = None;
            let raised = self.drifted_since.is_none();
            if raised {
                self.drifted_since = Some(now);
            }
            self.reasons = eval.findings.iter().map(Finding::describe).collect();
            return raised.then_some(true);
        }
        self.drifted_since?;
        if !eval.clear || eval.judged == 0 {
            // Not significant any more is not the same as recovered.
            self.clear_since = None;
            return None;
        }
        let since = *self.clear_since.get_or_insert(now);
        if now.saturating_sub(since) >= self.hold_down {
            self.drifted_since = None;
            self.clear_since = None;
            self.reasons.clear();
            return Some(false);
        }
        None
    }

    /// Drifted now.
    pub fn drifted(&self) -> bool {
        self.drifted_since.is_some()
    }

    /// Why it drifted (the last drifting evaluation's findings).
    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rate;

    fn summary(check: Check, passed: usize, total: usize) -> Summary {
        let mut s = Summary::default();
        s.rates[check as usize] = Rate { passed, total };
        s.items = total;
        s
    }

    #[test]
    fn binomial_cdf_matches_hand_values() {
        // n=8, p=0.85: P(X≤6) = 1 - P(7) - P(8).
        let p7 = 8.0 * 0.85f64.powi(7) * 0.15;
        let p8 = 0.85f64.powi(8);
        assert!((binomial_cdf(6, 8, 0.85) - (1.0 - p7 - p8)).abs() < 1e-12);
        assert!((binomial_cdf(0, 10, 0.5) - 0.5f64.powi(10)).abs() < 1e-15);
        assert_eq!(binomial_cdf(10, 10, 0.3), 1.0);
        assert_eq!(binomial_cdf(9, 10, 1.0), 0.0);
        assert_eq!(binomial_cdf(0, 10, 0.0), 1.0);
        // Large n stays finite.
        let v = binomial_cdf(400, 1_000, 0.5);
        assert!(v > 0.0 && v < 1e-9, "{v}");
    }

    /// `(candidate passed/total, baseline passed/total or None, drift?)`.
    fn check(c: (usize, usize), b: Option<(usize, usize)>, drift: bool) {
        let rule = DriftRule::default();
        let cand = summary(Check::Answer, c.0, c.1);
        let base = b.map(|b| summary(Check::Answer, b.0, b.1));
        let e = evaluate(&rule, &cand, base.as_ref());
        assert_eq!(e.drifted(), drift, "{c:?} vs {b:?}: {e:?}");
    }

    #[test]
    fn the_rule_on_a_table_of_cases() {
        // Against a perfect baseline (reference 0.9).
        check((10, 10), Some((50, 50)), false);
        check((9, 10), Some((50, 50)), false);
        check((7, 10), Some((50, 50)), false); // p = 0.070: not significant
        check((5, 10), Some((50, 50)), true); // p = 0.0016
        check((0, 10), Some((50, 50)), true);
        check((80, 100), Some((50, 50)), true);
        // Too few results: not judged.
        check((0, 9), Some((50, 50)), false);
        // A weak baseline lowers the bar.
        check((5, 10), Some((30, 50)), false);
        // No baseline (or a thin one): the pinned min_pass_rate 0.9.
        check((5, 10), None, true);
        check((5, 10), Some((1, 2)), true);
        check((9, 10), None, false);
    }

    #[test]
    fn latency_drifts_by_ratio_over_the_floor() {
        let rule = DriftRule::default();
        let mut base = summary(Check::Answer, 10, 10);
        base.latency_p95_ms = Some(100);
        base.latency_samples = 10;
        let mut cand = base.clone();
        cand.latency_p95_ms = Some(299);
        assert!(!evaluate(&rule, &cand, Some(&base)).drifted());
        cand.latency_p95_ms = Some(301);
        let e = evaluate(&rule, &cand, Some(&base));
        assert_eq!(e.findings[0].check, Check::Latency);
        assert!(e.findings[0].describe().contains("301 ms"));
        // Below the floor, never.
        base.latency_p95_ms = Some(10);
        cand.latency_p95_ms = Some(200);
        assert!(!evaluate(&rule, &cand, Some(&base)).drifted());
    }

    #[test]
    fn drift_is_raised_at_once_and_cleared_only_after_hold_down() {
        let rule = DriftRule::default();
        let base = summary(Check::Answer, 50, 50);
        let bad = evaluate(&rule, &summary(Check::Answer, 2, 10), Some(&base));
        let middling = evaluate(&rule, &summary(Check::Answer, 8, 10), Some(&base));
        let good = evaluate(&rule, &summary(Check::Answer, 10, 10), Some(&base));
        assert!(!middling.drifted() && !middling.clear);
        let mut m = DriftMonitor::new(100);
        assert_eq!(m.update(&good, 0), None);
        assert_eq!(m.update(&bad, 10), Some(true));
        assert_eq!(m.update(&bad, 11), None, "raised once");
        assert!(m.reasons()[0].contains("answer pass rate 0.20"));
        // Not significant any more, but below the reference: still drifted.
        assert_eq!(m.update(&middling, 20), None);
        assert_eq!(m.update(&good, 30), None);
        assert_eq!(m.update(&good, 129), None);
        // A relapse restarts the hold-down.
        assert_eq!(m.update(&middling, 130), None);
        assert_eq!(m.update(&good, 140), None);
        assert_eq!(m.update(&good, 239), None);
        assert!(m.drifted());
        assert_eq!(m.update(&good, 240), Some(false));
        assert!(!m.drifted() && m.reasons().is_empty());
    }
}
