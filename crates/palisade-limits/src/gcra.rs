//! Request rate with burst: the generic cell rate algorithm (GCRA).
//!
//! GCRA is a token bucket expressed as one timestamp per key, the *theoretical arrival time*
//! (TAT): the time at which the bucket would be full again if nothing else arrived. A request
//! of cost `n` is admitted when pushing TAT forward by `n` emission intervals leaves it no
//! further than `burst` intervals ahead of now. One `u64` of state per key, no background
//! refill, and a decision in a handful of integer operations: that is why it is the rate
//! limiter here, and why the Redis backend can run the identical arithmetic in a Lua script
//! with `TIME` as the clock and `PEXPIRE` at the TAT as eviction.
//!
//! ## Exactness
//!
//! All arithmetic is integer nanoseconds; there are no floats in the decision. The emission
//! interval `T = period / limit` is rounded **up** to a whole nanosecond, so the limiter
//! never admits more than configured: over any span `d` it admits at most
//! `burst + floor(d / T) <= burst + d * limit / period` units. The price is a relative
//! under-admission below `1 / T` (under one part per million for anything slower than a
//! thousand requests a second).

use serde::{Deserialize, Serialize};

use crate::decision::RateLimitInfo;
use crate::error::LimitError;
use crate::store::{KeyedStore, SWEEP_STEP};
use crate::time::Nanos;

/// A rate with burst: `limit` units per `period`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcraConfig {
    /// Units (requests, or tokens with weighted costs) per period.
    pub limit: u64,
    /// The period over which `limit` applies.
    pub period: Nanos,
    /// How many units may be spent at one instant by a key that has been idle.
    pub burst: u64,
}

impl GcraConfig {
    /// `limit` per `period`, with a burst of `limit`.
    ///
    /// Rationale for the default burst: "60 per minute" means, to most operators and
    /// clients, that 60 requests in a burst are fine; a smaller burst is a stricter,
    /// explicit choice.
    pub const fn new(limit: u64, period: Nanos) -> Self {
        Self {
            limit,
            period,
            burst: limit,
        }
    }

    /// The same rate with an explicit burst.
    pub const fn with_burst(self, burst: u64) -> Self {
        Self { burst, ..self }
    }
}

/// The per-key state: the theoretical arrival time. Small and `Copy` so the same state can
/// live in a `HashMap` slot or in one Redis string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcraState {
    /// When the key's bucket would be full again with no further arrivals. A state with
    /// `tat <= now` is equivalent to no state at all.
    pub tat: Nanos,
}

impl GcraState {
    /// True when forgetting this state changes no future decision.
    pub fn is_idle(&self, now: Nanos) -> bool {
        self.tat <= now
    }
}

/// The outcome of one GCRA check, with everything needed for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraDecision {
    /// Whether the request was admitted (and its cost charged).
    pub allowed: bool,
    /// The burst capacity, reported as `x-ratelimit-limit-*`: the most a client can send at
    /// once, which is what OpenAI's header promises.
    pub limit: u64,
    /// Unit-cost requests that would still be admitted at this instant, after this decision.
    pub remaining: u64,
    /// Time until the bucket is completely full again (`x-ratelimit-reset-*`).
    pub reset_after: Nanos,
    /// When denied, the wait after which the same request would be admitted
    /// (`Retry-After`); zero when allowed.
    pub retry_after: Nanos,
}

impl GcraDecision {
    /// The values behind the `x-ratelimit-*` headers.
    pub const fn info(&self) -> RateLimitInfo {
        RateLimitInfo {
            limit: self.limit,
            remaining: self.remaining,
            reset_after: self.reset_after,
        }
    }
}

/// A validated GCRA configuration: the decision arithmetic, independent of storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    config: GcraConfig,
    /// `T`: nanoseconds per unit, rounded up.
    emission: u64,
    /// `burst * T`: how far ahead of now the TAT may run.
    tolerance: u64,
}

impl Gcra {
    /// Validates `config`.
    ///
    /// # Errors
    /// [`LimitError::InvalidConfig`] when the limit, period or burst is zero, or when
    /// `burst * T` does not fit in 64-bit nanoseconds.
    pub fn new(config: GcraConfig) -> Result<Self, LimitError> {
        if config.limit == 0 {
            return Err(LimitError::InvalidConfig("gcra limit must be at least 1"));
        }
        if config.period == Nanos::ZERO {
            return Err(LimitError::InvalidConfig("gcra period must be positive"));
        }
        if config.burst == 0 {
            return Err(LimitError::InvalidConfig("gcra burst must be at least 1"));
        }
        let emission = config.period.get().div_ceil(config.limit);
        let tolerance = config
            .burst
            .checked_mul(emission)
            .ok_or(LimitError::InvalidConfig(
                "gcra burst times interval overflows",
            ))?;
        Ok(Self {
            config,
            emission,
            tolerance,
        })
    }

    /// The configuration this was built from.
    pub const fn config(&self) -> GcraConfig {
        self.config
    }

    /// The emission interval `T` in nanoseconds (rounded up).
    pub const fn emission_interval(&self) -> Nanos {
        Nanos(self.emission)
    }

    /// Decides a request of `cost` units at `now` for a key in `state` (`None`: never seen
    /// or evicted). Returns the decision and, when the state must be written back, the new
    /// state. A cost of zero is a peek: it reports the headers and changes nothing.
    ///
    /// # Errors
    /// [`LimitError::CostExceedsCapacity`] when `cost > burst`: such a request can never be
    /// admitted, so it must not be told to retry.
    pub fn decide(
        &self,
        state: Option<GcraState>,
        cost: u64,
        now: Nanos,
    ) -> Result<(GcraDecision, Option<GcraState>), LimitError> {
        if cost > self.config.burst {
            return Err(LimitError::CostExceedsCapacity {
                cost,
                capacity: self.config.burst,
            });
        }
        Ok(self.decide_within_capacity(state, cost, now))
    }

    /// [`Gcra::decide`] for a cost already known to be at most the burst.
    fn decide_within_capacity(
        &self,
        state: Option<GcraState>,
        cost: u64,
        now: Nanos,
    ) -> (GcraDecision, Option<GcraState>) {
        let now = now.get();
        // A TAT in the past means a full bucket: start from now.
        let tat = state.map_or(now, |s| s.tat.get()).max(now);
        // `cost <= burst`, so `cost * T <= tolerance` cannot overflow.
        let new_tat = tat.saturating_add(cost * self.emission);
        let allow_at = new_tat.saturating_sub(self.tolerance);
        let allowed = now >= allow_at;
        let tat_after = if allowed { new_tat } else { tat };
        let ahead = tat_after - now;
        let decision = GcraDecision {
            allowed,
            limit: self.config.burst,
            remaining: self.tolerance.saturating_sub(ahead) / self.emission,
            reset_after: Nanos(ahead),
            retry_after: Nanos(if allowed { 0 } else { allow_at - now }),
        };
        let write = (allowed && cost > 0).then_some(GcraState {
            tat: Nanos(new_tat),
        });
        (decision, write)
    }
}

/// An in-memory GCRA limiter over string keys.
///
/// Takes `&mut self`: the gateway shards keys over several of these behind locks. Idle keys
/// (bucket full again) are evicted a few slots per call, which changes no decision.
#[derive(Debug)]
pub struct MemoryGcra {
    gcra: Gcra,
    store: KeyedStore<GcraState>,
}

impl MemoryGcra {
    /// An empty limiter.
    ///
    /// # Errors
    /// As [`Gcra::new`].
    pub fn new(config: GcraConfig) -> Result<Self, LimitError> {
        Ok(Self::with_gcra(Gcra::new(config)?))
    }

    /// An empty limiter from an already validated configuration.
    pub fn with_gcra(gcra: Gcra) -> Self {
        Self {
            gcra,
            store: KeyedStore::default(),
        }
    }

    /// The arithmetic this limiter applies.
    pub const fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    /// Checks and, if admitted, charges one request for `key`.
    pub fn check(&mut self, key: &str, now: Nanos) -> GcraDecision {
        // A burst is at least 1, so a unit cost always fits.
        self.check_within_capacity(key, 1, now)
    }

    /// Checks and, if admitted, charges `cost` units for `key` (for example tokens).
    ///
    /// # Errors
    /// [`LimitError::CostExceedsCapacity`] when `cost > burst`.
    pub fn check_n(
        &mut self,
        key: &str,
        cost: u64,
        now: Nanos,
    ) -> Result<GcraDecision, LimitError> {
        if cost > self.gcra.config.burst {
            return Err(LimitError::CostExceedsCapacity {
                cost,
                capacity: self.gcra.config.burst,
            });
        }
        Ok(self.check_within_capacity(key, cost, now))
    }

    fn check_within_capacity(&mut self, key: &str, cost: u64, now: Nanos) -> GcraDecision {
        self.store.sweep(SWEEP_STEP, |s| s.is_idle(now));
        // One hash lookup for a known key: decide and write through the same slot.
        if let Some(slot) = self.store.get_mut(key) {
            let (decision, write) = self.gcra.decide_within_capacity(Some(*slot), cost, now);
            if let Some(state) = write {
                *slot = state;
            }
            return decision;
        }
        let (decision, write) = self.gcra.decide_within_capacity(None, cost, now);
        if let Some(state) = write {
            self.store.put(key, state);
        }
        decision
    }

    /// The headers `key` would get now, charging nothing.
    pub fn peek(&self, key: &str, now: Nanos) -> GcraDecision {
        self.gcra
            .decide_within_capacity(self.store.get(key).copied(), 0, now)
            .0
    }

    /// The stored state of `key`, if any (for tests and for migrating to another backend).
    pub fn state(&self, key: &str) -> Option<GcraState> {
        self.store.get(key).copied()
    }

    /// A limiter applying `next` that starts from this one's state, each key
    /// keeping the *fraction* of its burst it has used: a key that spent its
    /// whole burst under the old rate has spent its whole burst under the new
    /// one. A config reload therefore neither hands out a fresh burst nor
    /// leaves a key owing more than the new burst allows. Idle keys (bucket
    /// full) are dropped, which is the same as keeping them.
    ///
    /// The rescaled debt is rounded up, so a key is never credited by the
    /// conversion.
    pub fn reconfigured(&self, next: Gcra, now: Nanos) -> Self {
        let mut out = Self::with_gcra(next);
        let old = u128::from(self.gcra.tolerance.max(1));
        let new = u128::from(next.tolerance);
        for (key, state) in self.store.iter() {
            let ahead = u128::from(state.tat.get().saturating_sub(now.get()));
            if ahead == 0 {
                continue;
            }
            let scaled = (ahead * new).div_ceil(old).min(new);
            let scaled = u64::try_from(scaled).unwrap_or(u64::MAX);
            out.store.put(
                key,
                GcraState {
                    tat: Nanos(now.get().saturating_add(scaled)),
                },
            );
        }
        out
    }

    /// Keys currently held, idle ones not yet swept included.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.store.len() == 0
    }

    /// Evicts every idle key now; returns how many. O(keys): for maintenance, not the
    /// request path, which sweeps incrementally on its own.
    pub fn sweep_all(&mut self, now: Nanos) -> usize {
        self.store.sweep_all(|s| s.is_idle(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// 10 per second, burst 3: T = 100 ms, tolerance 300 ms.
    fn limiter() -> MemoryGcra {
        MemoryGcra::new(GcraConfig::new(10, Nanos::from_secs(1)).with_burst(3)).unwrap()
    }

    /// `(requests spent at 10/s burst 3 at t=0, next rpm-per-second, next
    /// burst, expected admitted right after the switch)`: the share of the
    /// burst a key used carries over, so a reload grants no fresh burst.
    #[test]
    fn reconfigured_keeps_the_used_share_of_the_burst() {
        let table: &[(u64, u64, u64, u64)] = &[
            (0, 10, 3, 3),   // idle key: a full new burst, like an unseen key
            (3, 10, 3, 0),   // same config: still empty
            (3, 1, 2, 0),    // lowered rate and burst: still empty
            (3, 100, 10, 0), // raised: empty too (the whole burst was used)
            (1, 10, 3, 2),   // a third used: two of three left
            (1, 10, 6, 4),   // a third of a burst of six used: four left
        ];
        for &(spent, rate, burst, expect) in table {
            let mut l = limiter();
            for _ in 0..spent {
                assert!(l.check("k", Nanos::ZERO).allowed);
            }
            let next =
                Gcra::new(GcraConfig::new(rate, Nanos::from_secs(1)).with_burst(burst)).unwrap();
            let mut r = l.reconfigured(next, Nanos::ZERO);
            let admitted = (0..burst + 1)
                .filter(|_| r.check("k", Nanos::ZERO).allowed)
                .count() as u64;
            assert_eq!(
                admitted, expect,
                "spent {spent}, then {rate}/s burst {burst}"
            );
        }
    }

    /// Runs `(at_ms, expected allowed, remaining, retry_after_ms)` against one key.
    fn check(steps: &[(u64, bool, u64, u64)]) {
        let mut l = limiter();
        for &(at, allowed, remaining, retry) in steps {
            let d = l.check("k", Nanos::from_millis(at));
            assert_eq!(
                (d.allowed, d.remaining, d.retry_after),
                (allowed, remaining, Nanos::from_millis(retry)),
                "at {at} ms: {d:?}"
            );
        }
    }

    #[test]
    fn burst_then_steady_rate() {
        check(&[
            (0, true, 2, 0),
            (0, true, 1, 0),
            (0, true, 0, 0),
            (0, false, 0, 100),
            (50, false, 0, 50),
            (100, true, 0, 0),
            (150, false, 0, 50),
            (200, true, 0, 0),
            // Idle for a second: the full burst is back.
            (1_200, true, 2, 0),
        ]);
    }

    #[test]
    fn reset_after_is_time_to_full() {
        let mut l = limiter();
        let d = l.check("k", Nanos::ZERO);
        assert_eq!(d.reset_after, Nanos::from_millis(100));
        let d = l.check("k", Nanos::ZERO);
        assert_eq!(d.reset_after, Nanos::from_millis(200));
        assert_eq!(d.limit, 3);
        let p = l.peek("k", Nanos::from_millis(150));
        assert_eq!(
            (p.allowed, p.remaining, p.reset_after),
            (true, 2, Nanos::from_millis(50))
        );
    }

    #[test]
    fn weighted_cost_and_capacity() {
        let mut l = limiter();
        let d = l.check_n("k", 3, Nanos::ZERO).unwrap();
        assert!(d.allowed && d.remaining == 0);
        let d = l.check_n("k", 2, Nanos::from_millis(100)).unwrap();
        assert_eq!((d.allowed, d.retry_after), (false, Nanos::from_millis(100)));
        assert_eq!(
            l.check_n("k", 4, Nanos::ZERO),
            Err(LimitError::CostExceedsCapacity {
                cost: 4,
                capacity: 3
            })
        );
    }

    #[test]
    fn keys_are_independent() {
        let mut l = limiter();
        for _ in 0..3 {
            assert!(l.check("a", Nanos::ZERO).allowed);
        }
        assert!(!l.check("a", Nanos::ZERO).allowed);
        assert!(l.check("b", Nanos::ZERO).allowed);
    }

    #[test]
    fn emission_interval_rounds_up() {
        let g = Gcra::new(GcraConfig::new(3, Nanos::from_secs(1))).unwrap();
        assert_eq!(g.emission_interval(), Nanos(333_333_334));
    }

    #[test]
    fn invalid_configs_are_rejected() {
        fn check(cfg: GcraConfig) {
            assert!(
                matches!(Gcra::new(cfg), Err(LimitError::InvalidConfig(_))),
                "{cfg:?}"
            );
        }
        check(GcraConfig::new(0, Nanos::from_secs(1)));
        check(GcraConfig::new(1, Nanos::ZERO));
        check(GcraConfig::new(1, Nanos::from_secs(1)).with_burst(0));
        check(GcraConfig::new(1, Nanos::MAX).with_burst(2));
    }

    #[test]
    fn driven_by_an_injected_clock() {
        use crate::time::{Clock, ManualClock};
        let clock = ManualClock::new(Nanos::from_secs(1_000));
        let mut l = limiter();
        let admitted = (0..10)
            .filter(|_| l.check("k", clock.now()).allowed)
            .count();
        assert_eq!(admitted, 3);
        clock.advance(Nanos::from_millis(250));
        let admitted = (0..10)
            .filter(|_| l.check("k", clock.now()).allowed)
            .count();
        assert_eq!(admitted, 2, "250 ms at 100 ms per request");
    }

    #[test]
    fn clock_stepping_back_is_stricter() {
        let mut l = limiter();
        for _ in 0..3 {
            assert!(l.check("k", Nanos(10 * S)).allowed);
        }
        // The clock steps back a second: still denied, and retry-after grows accordingly.
        let d = l.check("k", Nanos(9 * S));
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Nanos(S + 100_000_000));
    }

    #[test]
    fn idle_keys_are_swept_without_changing_decisions() {
        let mut l = limiter();
        for i in 0..100 {
            l.check(&format!("k{i}"), Nanos::ZERO);
        }
        assert_eq!(l.len(), 100);
        // After a second every bucket is full; each call sweeps two slots.
        for _ in 0..60 {
            l.check("hot", Nanos::from_secs(1));
        }
        assert_eq!(l.len(), 1, "only the hot key is left");
        assert_eq!(l.sweep_all(Nanos::from_secs(10)), 1);
        assert!(l.is_empty());
    }
}
