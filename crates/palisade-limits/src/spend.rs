//! A circuit breaker on a tenant's spend rate: trips when a tenant spends far more tokens
//! in a minute than it usually does.
//!
//! A leaked API key or a runaway agent loop shows up as spend, not as a broken rate limit: a
//! tenant whose limits allow 1M tokens a minute but who normally spends 20k is in trouble
//! at 300k long before any limit says so. The breaker learns each key's baseline as an
//! exponentially weighted moving average of its spend per bucket (a minute, say) and trips
//! when the current bucket exceeds `factor ×` that baseline. A floor keeps small tenants
//! (and new ones, whose baseline is still zero) from tripping on a handful of requests.
//!
//! Once tripped, the key is refused for `cooldown`; the bucket that tripped is learned only
//! up to the threshold and the buckets spent refused are not learned at all (they say
//! nothing about demand). So a spike cannot teach the breaker that spikes are normal in
//! one go, yet a tenant whose real demand has grown is learned after a few trips rather
//! than refused forever (each trip raises an alert an operator can act on). A new tenant has no history: seed its baseline from the ledger
//! ([`SpendRateBreaker::seed_baseline`]) or rely on the floor.
//!
//! Arithmetic is in integers: the baseline is kept in thousandths of a token, and each
//! completed bucket moves it `1/half_weight` of the way to that bucket's spend.

use crate::error::LimitError;
use crate::store::{KeyedStore, SWEEP_STEP};
use crate::time::Nanos;

/// How the breaker judges a key's spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendRateConfig {
    /// Trip when a bucket's spend exceeds this multiple of the baseline.
    pub factor: u64,
    /// Never trip below this spend per bucket, whatever the baseline.
    pub floor: u64,
    /// The bucket length (typically a minute).
    pub bucket: Nanos,
    /// Each completed bucket moves the baseline `1/weight` of the way to its spend: the
    /// baseline remembers roughly the last `weight` buckets.
    pub weight: u64,
    /// How long a tripped key is refused.
    pub cooldown: Nanos,
}

/// One key's spend history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpendState {
    /// Start of the current bucket.
    pub bucket_start: Nanos,
    /// Spent in the current bucket.
    pub current: u64,
    /// The learned spend per bucket, in thousandths of a token.
    pub baseline_milli: u64,
    /// Refused until this instant (zero when never tripped).
    pub tripped_until: Nanos,
    /// The current bucket tripped the breaker (so it is learned only up to the threshold).
    pub bucket_tripped: bool,
}

/// What recording some spend did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendVerdict {
    /// This record tripped the breaker (it was not tripped before).
    pub tripped_now: bool,
    /// Spend in the current bucket, this record included.
    pub current: u64,
    /// The spend that trips the breaker in this bucket.
    pub threshold: u64,
}

/// Spend-rate breakers for string keys (tenants).
#[derive(Debug)]
pub struct SpendRateBreaker {
    config: SpendRateConfig,
    keys: KeyedStore<SpendState>,
}

/// Completed buckets beyond which the baseline is taken to have decayed to zero: after
/// `weight × 20` empty buckets, `(1 - 1/weight)^(20·weight) < e^-20`. Bounds the roll loop.
const DECAY_BUCKETS_PER_WEIGHT: u64 = 20;

impl SpendRateBreaker {
    /// Breakers with `config`.
    ///
    /// # Errors
    /// [`LimitError::InvalidConfig`] for a factor below 2, a zero bucket, weight or cooldown.
    pub fn new(config: SpendRateConfig) -> Result<Self, LimitError> {
        if config.factor < 2 {
            return Err(LimitError::InvalidConfig(
                "spend-rate factor must be at least 2",
            ));
        }
        if config.bucket == Nanos::ZERO || config.cooldown == Nanos::ZERO || config.weight == 0 {
            return Err(LimitError::InvalidConfig(
                "spend-rate bucket, weight and cooldown must be positive",
            ));
        }
        Ok(Self {
            config,
            keys: KeyedStore::default(),
        })
    }

    /// The configuration.
    pub const fn config(&self) -> SpendRateConfig {
        self.config
    }

    /// `state` advanced to the bucket holding `now`: completed buckets are learned into
    /// the baseline (empty ones pull it toward zero).
    fn rolled(&self, state: Option<SpendState>, now: Nanos) -> SpendState {
        let bucket = self.config.bucket.get();
        let start = Nanos(now.get() - now.get() % bucket);
        let Some(mut s) = state else {
            return SpendState {
                bucket_start: start,
                ..SpendState::default()
            };
        };
        if start <= s.bucket_start {
            return s;
        }
        let elapsed = (start.get() - s.bucket_start.get()) / bucket;
        let weight = self.config.weight;
        // The bucket that just completed; one that tripped counts only up to the threshold.
        let sample = if s.bucket_tripped {
            s.current.min(self.threshold(&s))
        } else {
            s.current
        };
        s.baseline_milli = ewma(s.baseline_milli, sample.saturating_mul(1000), weight);
        // Then the empty buckets in between, each pulling toward zero, except those the
        // key spent refused: they say nothing about its demand.
        let first_empty = s.bucket_start.get().saturating_add(bucket);
        let refused = s
            .tripped_until
            .get()
            .saturating_sub(first_empty)
            .div_ceil(bucket)
            .min(elapsed - 1);
        let empty = elapsed - 1 - refused;
        let cap = weight.saturating_mul(DECAY_BUCKETS_PER_WEIGHT);
        if empty > cap {
            s.baseline_milli = 0;
        }
        for _ in 0..empty.min(cap) {
            if s.baseline_milli == 0 {
                break;
            }
            s.baseline_milli = ewma(s.baseline_milli, 0, weight);
        }
        s.bucket_start = start;
        s.current = 0;
        s.bucket_tripped = false;
        s
    }

    fn threshold(&self, s: &SpendState) -> u64 {
        let learned = s.baseline_milli.saturating_mul(self.config.factor) / 1000;
        learned.max(self.config.floor)
    }

    /// Whether `key` is refused now; the time until it is not.
    pub fn check(&self, key: &str, now: Nanos) -> Option<Nanos> {
        let s = self.keys.get(key)?;
        (s.tripped_until > now).then(|| s.tripped_until.saturating_sub(now))
    }

    /// Records `tokens` spent by `key` at `now`.
    pub fn record(&mut self, key: &str, tokens: u64, now: Nanos) -> SpendVerdict {
        self.sweep(now);
        let mut s = self.rolled(self.keys.get(key).copied(), now);
        s.current = s.current.saturating_add(tokens);
        let threshold = self.threshold(&s);
        let was_tripped = s.tripped_until > now;
        let over = s.current > threshold;
        if over {
            s.bucket_tripped = true;
            if !was_tripped {
                s.tripped_until = now.saturating_add(self.config.cooldown);
            }
        }
        self.keys.put(key, s);
        SpendVerdict {
            tripped_now: over && !was_tripped,
            current: s.current,
            threshold,
        }
    }

    /// Sets `key`'s baseline to `per_bucket` tokens (its history, e.g. the ledger's average
    /// spend per bucket over the last day), keeping the current bucket's spend.
    pub fn seed_baseline(&mut self, key: &str, per_bucket: u64, now: Nanos) {
        let mut s = self.rolled(self.keys.get(key).copied(), now);
        s.baseline_milli = per_bucket.saturating_mul(1000);
        self.keys.put(key, s);
    }

    /// The state of `key` as of `now` (rolled), for metrics and tests.
    pub fn state(&self, key: &str, now: Nanos) -> Option<SpendState> {
        self.keys.get(key).map(|s| self.rolled(Some(*s), now))
    }

    /// Forgets keys with nothing learned and nothing to refuse, a few per call.
    fn sweep(&mut self, now: Nanos) {
        // Equivalent to absent: nothing learned, nothing spent, nothing to refuse.
        self.keys.sweep(SWEEP_STEP, |s| {
            s.baseline_milli == 0 && s.current == 0 && s.tripped_until <= now
        });
    }
}

/// One EWMA step: `old + (sample - old) / weight`, in integers.
fn ewma(old: u64, sample: u64, weight: u64) -> u64 {
    if sample >= old {
        old + (sample - old) / weight
    } else {
        old - (old - sample).div_ceil(weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Nanos = Nanos::from_secs(60);

    fn breaker(floor: u64) -> SpendRateBreaker {
        SpendRateBreaker::new(SpendRateConfig {
            factor: 10,
            floor,
            bucket: MINUTE,
            weight: 10,
            cooldown: Nanos::from_secs(300),
        })
        .unwrap()
    }

    fn minute(n: u64) -> Nanos {
        Nanos(MINUTE.get() * n + 1)
    }

    #[test]
    fn steady_spend_never_trips_and_becomes_the_baseline() {
        let mut b = breaker(10_000);
        for m in 0..100 {
            let v = b.record("t", 5_000, minute(m));
            assert!(!v.tripped_now, "minute {m}: {v:?}");
        }
        let s = b.state("t", minute(100)).unwrap();
        // Converges toward 5000 tokens per minute.
        assert!((4_900_000..=5_000_000).contains(&s.baseline_milli), "{s:?}");
        assert_eq!(b.check("t", minute(100)), None);
    }

    #[test]
    fn ten_times_the_baseline_in_a_minute_trips_and_cools_down() {
        let mut b = breaker(10_000);
        for m in 0..60 {
            b.record("t", 5_000, minute(m));
        }
        // Just under 10x stays allowed ...
        let mut tripped_at = None;
        for i in 0..100 {
            let v = b.record("t", 1_000, minute(60));
            if v.tripped_now {
                tripped_at = Some(i);
                assert!(v.current > v.threshold);
                break;
            }
        }
        // ... and ~50k (10 × ~5k) trips.
        let i = tripped_at.expect("trips within 100k tokens");
        assert!((45..=50).contains(&i), "tripped after {i}k tokens");
        let wait = b.check("t", minute(60)).expect("refused while tripped");
        assert!(wait <= Nanos::from_secs(300));
        // Recording more while tripped does not re-trip.
        assert!(!b.record("t", 10_000, minute(60)).tripped_now);
        assert_eq!(b.check("t", minute(66)), None, "cooled down");
        // The spike was learned only up to the threshold (one tenth of the way there).
        let s = b.state("t", minute(61)).unwrap();
        assert!(s.baseline_milli < 10_000_000, "{s:?}");
    }

    #[test]
    fn a_seeded_baseline_is_judged_from_the_first_minute() {
        let mut b = breaker(1_000);
        b.seed_baseline("t", 20_000, minute(0));
        assert!(!b.record("t", 150_000, minute(0)).tripped_now);
        assert!(b.record("t", 60_000, minute(0)).tripped_now);
    }

    #[test]
    fn real_growth_is_learned_after_a_trip() {
        let mut b = breaker(1_000);
        // A tenant whose steady demand is above the floor from its first minute trips,
        // but its capped spend is learned, so within a bounded time it is judged on it.
        let mut last_trip = 0;
        for m in 0..200 {
            if b.check("t", minute(m)).is_none() && b.record("t", 5_000, minute(m)).tripped_now {
                last_trip = m;
            }
        }
        assert!(last_trip < 40, "still tripping at minute {last_trip}");
        assert!(!b.record("t", 5_000, minute(200)).tripped_now);
    }

    #[test]
    fn the_floor_protects_new_and_small_tenants() {
        let mut b = breaker(1_000);
        assert!(!b.record("new", 1_000, minute(0)).tripped_now);
        assert!(b.record("new", 1, minute(0)).tripped_now);
        // Another key is independent.
        assert_eq!(b.check("other", minute(0)), None);
    }

    #[test]
    fn idle_time_decays_the_baseline_in_bounded_time() {
        let mut b = breaker(1_000);
        for m in 0..50 {
            b.record("t", 100_000, minute(m));
        }
        // A year later, the baseline is gone and the floor rules again.
        let later = Nanos(MINUTE.get() * 525_600);
        let s = b.state("t", later).unwrap();
        assert_eq!(s.baseline_milli, 0);
        assert!(b.record("t", 1_001, later).tripped_now);
    }

    #[test]
    fn rejects_nonsense_configs() {
        let ok = breaker(1_000).config();
        for bad in [
            SpendRateConfig { factor: 1, ..ok },
            SpendRateConfig {
                bucket: Nanos::ZERO,
                ..ok
            },
            SpendRateConfig { weight: 0, ..ok },
            SpendRateConfig {
                cooldown: Nanos::ZERO,
                ..ok
            },
        ] {
            assert!(SpendRateBreaker::new(bad).is_err(), "{bad:?}");
        }
    }
}
