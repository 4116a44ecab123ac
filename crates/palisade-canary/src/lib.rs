//! Model canaries, the pure part: a route's **golden set** (prompts with the
//! properties their answers must have), the **grader** that judges one
//! answer against them, **rolling scores** per deployment, the **drift
//! rule** that compares a deployment with its baseline, and the **rollout**
//! state machine that moves a new deployment's share of traffic up while it
//! stays healthy and to zero when it drifts.
//!
//! What a canary is for: a deployment can keep answering 200 while it got
//! worse (re-quantized weights, a changed chat template, a new engine
//! version). Health probes and breakers cannot see that; replaying known
//! prompts with checkable answers can.
//!
//! # The drift rule
//!
//! Every graded answer yields pass/fail results per [`Check`] (`answer`,
//! `json`, `refusal`, `length`, `latency`). A deployment's window holds its
//! last `window` results per check. For each check with at least
//! `min_samples` results, the reference rate `q` is:
//!
//! - the baseline's pass rate minus `tolerance`, when the baseline (the
//!   route's other, established deployments, pooled) has `min_samples`
//!   results for that check; else
//! - the pinned `min_pass_rate`.
//!
//! The deployment **drifts on that check** when a one-sided exact binomial
//! test rejects "its pass rate is at least `q`" at level `alpha`:
//! `P(X ≤ passed | n, q) < alpha` ([`binomial_cdf`]). The baseline's rate
//! is taken as known; `tolerance` absorbs its sampling error and the
//! ordinary run-to-run variation of sampled answers. Latency drifts too
//! when the deployment's p95 exceeds `latency_ratio` × the baseline's p95
//! (never below [`LATENCY_FLOOR_MS`]: loopback and scheduler noise).
//!
//! **No flapping** ([`DriftMonitor`]): a drift is raised at once (the test
//! is the confirmation), but cleared only after every judged check's
//! observed rate has stayed at or above its reference (the point estimate,
//! not merely "no longer significant") for `hold_down` without a break. A
//! rollout's rollback is terminal: only a changed deployment (a new
//! identity on reload) starts a new rollout.
//!
//! Must not: do I/O, read the clock, spawn, or know HTTP. The gateway sends
//! the prompts, times them, and passes answers and `now` in.

#![forbid(unsafe_code)]

mod drift;
mod golden;
mod grade;
mod rollout;
mod schema;
mod scores;

pub use drift::{
    binomial_cdf, evaluate, DriftMonitor, DriftRule, Evaluation, Finding, LATENCY_FLOOR_MS,
};
pub use golden::{Expect, GoldenError, GoldenItem, GoldenSet, Message, MAX_ITEMS};
pub use grade::{grade, is_refusal, Answer, Grade};
pub use rollout::{Phase, Rollout, RolloutSpec, Transition};
pub use scores::{Rate, Summary, Window};

/// Nanoseconds on the caller's monotonic clock.
pub type Nanos = u64;

/// One property an answer is checked for; the `check` label of the
/// gateway's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// `exact`, `contains` and `regex` together: the answer's content.
    Answer,
    /// `json_valid` / `json_schema`.
    Json,
    /// `refusal = true|false`: refused exactly when expected.
    Refusal,
    /// `min_chars` / `max_chars`.
    Length,
    /// `max_latency_ms`.
    Latency,
}

impl Check {
    /// Every check, in a fixed order.
    pub const ALL: [Check; 5] = [
        Check::Answer,
        Check::Json,
        Check::Refusal,
        Check::Length,
        Check::Latency,
    ];

    /// Its stable name (metric label, admin view).
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Answer => "answer",
            Check::Json => "json",
            Check::Refusal => "refusal",
            Check::Length => "length",
            Check::Latency => "latency",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}
