//! Rolling scores of one deployment: the last `window` results per check,
//! refusals, answer lengths and latencies, and what they sum up to.
//!
//! Bounded by construction: every series keeps at most `window` entries,
//! however long the canary runs.

use std::collections::VecDeque;

use crate::{Check, Grade};

/// A pass count out of a total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Rate {
    /// Results that passed.
    pub passed: usize,
    /// Results in all.
    pub total: usize,
}

impl Rate {
    /// `passed / total`, `None` without results.
    pub fn value(&self) -> Option<f64> {
        (self.total > 0).then(|| self.passed as f64 / self.total as f64)
    }
}

/// What a window sums up to.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Summary {
    /// Answers graded in the window (answered or not).
    pub items: usize,
    /// Pass rate per check, in [`Check::ALL`] order.
    pub rates: [Rate; 5],
    /// Share of answers that read as refusals.
    pub refusal_rate: Option<f64>,
    /// Mean characters per answer (answered only).
    pub mean_chars: Option<f64>,
    /// Median latency, milliseconds.
    pub latency_p50_ms: Option<u64>,
    /// 95th percentile latency, milliseconds.
    pub latency_p95_ms: Option<u64>,
    /// Latencies in the window.
    pub latency_samples: usize,
}

impl Summary {
    /// One check's rate.
    pub fn rate(&self, check: Check) -> Rate {
        self.rates[check.index()]
    }

    /// Pools two summaries' rates and counts (a route's baseline
    /// deployments together). Percentiles are not poolable: the larger of
    /// the two is kept (the conservative choice for a latency baseline).
    pub fn pooled(&self, other: &Summary) -> Summary {
        let mut rates = self.rates;
        for (r, o) in rates.iter_mut().zip(other.rates) {
            r.passed += o.passed;
            r.total += o.total;
        }
        let weighted = |a: Option<f64>, na: usize, b: Option<f64>, nb: usize| match (a, b) {
            (Some(a), Some(b)) if na + nb > 0 => {
                Some((a * na as f64 + b * nb as f64) / (na + nb) as f64)
            }
            (a, b) => a.or(b),
        };
        Summary {
            items: self.items + other.items,
            rates,
            refusal_rate: weighted(
                self.refusal_rate,
                self.items,
                other.refusal_rate,
                other.items,
            ),
            mean_chars: weighted(self.mean_chars, self.items, other.mean_chars, other.items),
            latency_p50_ms: self.latency_p50_ms.max(other.latency_p50_ms),
            latency_p95_ms: self.latency_p95_ms.max(other.latency_p95_ms),
            latency_samples: self.latency_samples + other.latency_samples,
        }
    }
}

/// One deployment's recent results.
#[derive(Debug, Clone)]
pub struct Window {
    cap: usize,
    checks: [VecDeque<bool>; 5],
    refused: VecDeque<bool>,
    chars: VecDeque<usize>,
    latency_ms: VecDeque<u64>,
    items: usize,
}

fn push<T>(q: &mut VecDeque<T>, cap: usize, v: T) {
    if q.len() >= cap {
        q.pop_front();
    }
    q.push_back(v);
}

impl Window {
    /// A window keeping the last `cap` (≥ 1) results of each series.
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            checks: Default::default(),
            refused: VecDeque::new(),
            chars: VecDeque::new(),
            latency_ms: VecDeque::new(),
            items: 0,
        }
    }

    /// Records one graded answer.
    pub fn record(&mut self, grade: &Grade) {
        for (check, ok) in &grade.results {
            push(&mut self.checks[check.index()], self.cap, *ok);
        }
        self.items = (self.items + 1).min(self.cap);
        if grade.answered {
            push(&mut self.refused, self.cap, grade.refused);
            push(&mut self.chars, self.cap, grade.chars);
            push(&mut self.latency_ms, self.cap, grade.latency_ms);
        }
    }

    /// Nothing recorded yet.
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// The window's figures.
    pub fn summary(&self) -> Summary {
        let mut rates = [Rate::default(); 5];
        for (rate, q) in rates.iter_mut().zip(&self.checks) {
            rate.total = q.len();
            rate.passed = q.iter().filter(|ok| **ok).count();
        }
        let share = |q: &VecDeque<bool>| {
            (!q.is_empty()).then(|| q.iter().filter(|b| **b).count() as f64 / q.len() as f64)
        };
        let mean_chars = (!self.chars.is_empty())
            .then(|| self.chars.iter().sum::<usize>() as f64 / self.chars.len() as f64);
        let mut sorted: Vec<u64> = self.latency_ms.iter().copied().collect();
        sorted.sort_unstable();
        Summary {
            items: self.items,
            rates,
            refusal_rate: share(&self.refused),
            mean_chars,
            latency_p50_ms: percentile(&sorted, 50),
            latency_p95_ms: percentile(&sorted, 95),
            latency_samples: sorted.len(),
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(results: &[(Check, bool)], answered: bool, refused: bool, chars: usize, ms: u64) -> Grade {
        Grade {
            results: results.to_vec(),
            refused,
            chars,
            latency_ms: ms,
            answered,
            failures: Vec::new(),
        }
    }

    #[test]
    fn the_window_keeps_the_last_results_only() {
        let mut w = Window::new(3);
        assert!(w.is_empty());
        for ok in [false, false, true, true, true] {
            w.record(&g(&[(Check::Answer, ok)], true, false, 10, 5));
        }
        let s = w.summary();
        assert_eq!(
            s.rate(Check::Answer),
            Rate {
                passed: 3,
                total: 3
            }
        );
        assert_eq!(s.items, 3);
        assert_eq!(s.rate(Check::Json).value(), None);
    }

    #[test]
    fn figures_of_a_window() {
        let mut w = Window::new(100);
        for (i, ms) in (1..=20u64).enumerate() {
            w.record(&g(
                &[(Check::Json, i % 2 == 0)],
                true,
                i < 5,
                10 * (i + 1),
                ms,
            ));
        }
        // An unanswered item counts against its checks, not in the figures.
        w.record(&g(&[(Check::Json, false)], false, false, 0, 9_999));
        let s = w.summary();
        assert_eq!(
            s.rate(Check::Json),
            Rate {
                passed: 10,
                total: 21
            }
        );
        assert_eq!(s.refusal_rate, Some(0.25));
        assert_eq!(s.mean_chars, Some(105.0));
        assert_eq!(s.latency_p50_ms, Some(10));
        assert_eq!(s.latency_p95_ms, Some(19));
        assert_eq!(s.latency_samples, 20);
        let pooled = s.pooled(&s);
        assert_eq!(
            pooled.rate(Check::Json),
            Rate {
                passed: 20,
                total: 42
            }
        );
        assert_eq!(pooled.refusal_rate, Some(0.25));
    }
}
