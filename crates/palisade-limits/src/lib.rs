//! Palisade's admission-control arithmetic: what to admit, what to refuse, and what to tell
//! the client, decided from small per-key states and an injected time.
//!
//! - [`gcra`]: request rate with burst (GCRA), exact integer nanoseconds, one timestamp of
//!   state per key; [`MemoryGcra`] holds those states for string keys.
//! - [`budget`]: token budgets where admission reserves `prompt + max_tokens` and completion
//!   reconciles with actual usage, so a budget is never overshot by more than what upstreams
//!   used beyond their reservations.
//! - [`concurrency`]: in-flight counts per key, explicit acquire and release.
//! - [`ladder`]: the escalation ladder for repeat offenders (warn, slow, block) with decay.
//! - [`spend`]: a circuit breaker on a tenant's spend rate against its learned baseline.
//! - [`fair`]: the decision core of a weighted fair queue across tenants (VTC).
//! - [`circuit`]: a circuit breaker on a backend's error rate (closed, open, half-open).
//! - [`adaptive`]: an in-flight limit toward a backend that moves by AIMD on its latency.
//! - [`calendar`]: UTC months for monthly quotas: which month a timestamp is in, when its
//!   counters reset, how a tenant-month counter is named.
//! - [`key_budget`]: per-key budgets: dollar and token caps per UTC month or day, per-key
//!   rates, their validation and period arithmetic.
//! - [`alerts`]: which budget alert thresholds a spend total crosses, each raised once.
//! - [`decision`]: [`Decision`], [`LimitKind`] and its stable error codes, and the values of
//!   `Retry-After` and the `x-ratelimit-*` headers.
//!
//! The states are small `Copy` structs so that the in-memory stores here and a Redis
//! backend (Lua scripts, Redis `TIME` as the clock, key expiry as eviction) can implement
//! the same decisions with the same arithmetic.
//!
//! **Invariant:** this crate is pure. No I/O, no async, no threads, no randomness and no
//! clock: every time-dependent call takes `now: Nanos` from the caller (see [`Clock`]).
//! Stores take `&mut self` and hold no locks; the gateway shards and locks them. Every
//! per-call cost is bounded: idle keys are evicted a constant number per call, never in a
//! full sweep on the request path.
//!
//! ```
//! use palisade_limits::{GcraConfig, MemoryGcra, Nanos, RateLimitHeaders};
//!
//! // 2 requests per second, burst 2.
//! let mut limiter = MemoryGcra::new(GcraConfig::new(2, Nanos::from_secs(1))).unwrap();
//! let t0 = Nanos::from_secs(100);
//! assert!(limiter.check("tenant-a", t0).allowed);
//! assert!(limiter.check("tenant-a", t0).allowed);
//! let refused = limiter.check("tenant-a", t0);
//! assert!(!refused.allowed);
//! assert_eq!(refused.retry_after, Nanos::from_millis(500));
//!
//! let headers = RateLimitHeaders {
//!     requests: Some(refused.info()),
//!     retry_after: Some(refused.retry_after),
//!     ..RateLimitHeaders::default()
//! };
//! assert_eq!(headers.to_pairs()[0], ("retry-after", "1".to_owned()));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adaptive;
pub mod alerts;
pub mod budget;
pub mod calendar;
pub mod circuit;
pub mod concurrency;
pub mod decision;
mod error;
pub mod fair;
pub mod gcra;
pub mod key_budget;
pub mod ladder;
pub mod spend;
mod store;
mod time;

pub use adaptive::{is_overload, AdaptiveLimit};
pub use alerts::ThresholdAlerts;
pub use budget::{
    BudgetConfig, BudgetState, BudgetUsage, Reservation, SettleKind, Settlement, TokenBudget,
};
pub use calendar::Month;
pub use circuit::{CircuitBreaker, CircuitChange, CircuitConfig};
pub use concurrency::{Acquire, ConcurrencyLimiter, Permit};
pub use decision::{format_reset, Decision, Denial, LimitKind, RateLimitHeaders, RateLimitInfo};
pub use error::LimitError;
pub use fair::{FairQueue, FairQueueConfig, COUNTER_SCALE};
pub use gcra::{Gcra, GcraConfig, GcraDecision, GcraState, MemoryGcra};
pub use key_budget::{BudgetPeriod, KeyBudget, KeyBudgetError, PeriodSpan};
pub use ladder::{decay, EscalationLadder, LadderConfig, OffenceState, Rung, Standing};
pub use spend::{SpendRateBreaker, SpendRateConfig, SpendState, SpendVerdict};
pub use time::{Clock, ManualClock, Nanos};
