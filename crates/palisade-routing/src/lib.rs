//! Routing decisions for one request's attempts: which deployment the next
//! attempt goes to, whether a failure may be tried again, and whether the
//! backend can afford the retry; and what a serving engine reports about
//! itself ([`EngineStats`]).
//!
//! A route lists deployments (backends with a weight and labels: region,
//! provider, data classes). The [`Planner`] picks one per attempt by
//! power-of-two-choices on outstanding requests × EWMA latency, weighted,
//! among the deployments the request's [`Residency`] allows and that are
//! healthy ([`PassiveHealth`], the breaker and active probes, all passed in
//! as [`DeploymentState`]). After a failure it decides, by the failure's
//! [`FailureClass`], between another deployment of the route, the route's
//! fallback chain for that class, or giving up; a retry waits an
//! exponential backoff with full jitter (at least the upstream's
//! `Retry-After` when the same deployment is tried again), stays within the
//! request's deadline, and is paid from the target backend's
//! [`RetryBudget`]. A side-effect-free request may also be *hedged*
//! ([`Planner::hedge`], [`HedgePolicy`]): a second attempt to another
//! deployment once the first is slower than a delay (fixed, or the route's
//! latency percentile from a [`LatencyWindow`]), under the same rules and
//! the same budget as a retry.
//!
//! # Which failures may be retried
//!
//! The rule is: a request is sent again only when the first attempt cannot
//! have reached the model, or the upstream said it did not act on it, or
//! the request is idempotent (the route or endpoint declares it free of
//! side effects, e.g. embeddings). Precisely ([`FailureClass::safety`]):
//!
//! | class | what happened | safety |
//! |---|---|---|
//! | [`FailureClass::Connect`] | no connection: not a byte of the body left | [`Safety::NotSent`] |
//! | [`FailureClass::RateLimited`] | upstream 429 | [`Safety::Refused`] |
//! | [`FailureClass::Unavailable`] | upstream 502 / 503 | [`Safety::Refused`] |
//! | [`FailureClass::ContextLength`] | 400 `context_length_exceeded` | [`Safety::Refused`] |
//! | [`FailureClass::ContentFilter`] | 400 content-filter refusal | [`Safety::Refused`] |
//! | [`FailureClass::ServerError`] | other 5xx (500, 504, ...) | [`Safety::Ambiguous`] |
//! | [`FailureClass::Timeout`] | the body was sent, no head in time | [`Safety::Ambiguous`] |
//! | [`FailureClass::Broken`] | the connection broke after the body was sent | [`Safety::Ambiguous`] |
//!
//! An ambiguous failure is retried only for an idempotent request. Nothing
//! is retried once a byte of the response went to the client: the caller
//! stops asking the planner at that point (this crate never sees a
//! response body).
//!
//! Must not: do I/O, read the clock or draw its own randomness. Time
//! ([`Nanos`]) and the random source ([`Rng`]) are passed in, so every
//! decision is reproducible in a test.

#![forbid(unsafe_code)]

mod balance;
mod budget;
mod cascade;
mod engine;
mod failure;
mod health;
mod hedge;
mod planner;
mod residency;

pub use balance::{pick, DeploymentState, Ewma};
pub use budget::{RetryBudget, RetryBudgetConfig};
pub use cascade::{
    is_refusal, json_invalid, judge_says_yes, mean_logprob, CascadeGates, EscalateReason,
};
pub use engine::{EngineStats, Speculation};
pub use failure::{Failure, FailureClass, Safety};
pub use health::{PassiveHealth, PassiveHealthConfig};
pub use hedge::{HedgeDelay, HedgeOutcome, HedgePolicy, LatencyWindow, MIN_SAMPLES};
pub use planner::{
    Attempt, Deployment, Fallbacks, GiveUp, Planner, RetryPolicy, RouteSpec, StateView,
};
pub use residency::{Labels, Residency};

/// Nanoseconds on the caller's monotonic clock.
pub type Nanos = u64;

/// A source of uniform randomness, injected so tests are reproducible.
pub trait Rng {
    /// A uniform value in `0..bound` (`bound > 0`; 0 when `bound == 0`).
    fn below(&mut self, bound: u64) -> u64;
}

/// A small deterministic generator (SplitMix64) for callers without one and
/// for tests. Not cryptographic: it only spreads load and jitter.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl Rng for SplitMix {
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        z % bound
    }
}
