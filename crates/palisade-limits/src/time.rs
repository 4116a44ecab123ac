//! Time as the limiters see it: integer nanoseconds on a clock the caller injects.
//!
//! Nothing in this crate reads a clock. Every decision takes `now: Nanos`, so the same
//! arithmetic runs in memory (the gateway passes a monotonic clock), inside a Redis Lua
//! script (which passes Redis `TIME`), and in tests (which pass a [`ManualClock`]).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A point or a span of time in whole nanoseconds.
///
/// Points are measured from an epoch the caller chooses (process start, the Unix epoch for
/// Redis `TIME`); only differences between points matter to the limiters. `u64` nanoseconds
/// cover 584 years, so even Unix-epoch timestamps leave centuries of headroom. All arithmetic
/// on it saturates: a limiter may be wrong in the strict direction at the far edge of time,
/// never panic.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Nanos(pub u64);

impl Nanos {
    /// Zero: the epoch, or an empty span.
    pub const ZERO: Self = Self(0);
    /// The largest representable time.
    pub const MAX: Self = Self(u64::MAX);

    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms.saturating_mul(1_000_000))
    }

    /// `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1_000_000_000))
    }

    /// The raw nanosecond count.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self + rhs`, saturating at [`Nanos::MAX`].
    pub const fn saturating_add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }

    /// `self - rhs`, saturating at zero.
    pub const fn saturating_sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }

    /// Whole seconds, rounded up: the value of an RFC 9110 `Retry-After` header. Rounding up
    /// matters: a client that waits the rounded-down figure would be refused again.
    pub const fn as_secs_ceil(self) -> u64 {
        self.0.div_ceil(1_000_000_000)
    }

    /// As a [`Duration`], for the caller's timers.
    pub const fn to_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }
}

impl From<Duration> for Nanos {
    /// Saturates at [`Nanos::MAX`] (about 584 years).
    fn from(d: Duration) -> Self {
        Self(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl fmt::Debug for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ns", self.0)
    }
}

/// A source of `now`. The gateway implements it over a monotonic clock and the Redis
/// backend reads Redis `TIME`; tests use [`ManualClock`].
///
/// Implementations should be monotonic. The limiters stay safe if they are not: a clock that
/// steps backwards makes every limiter stricter, never more permissive.
pub trait Clock {
    /// The current time.
    fn now(&self) -> Nanos;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Nanos {
        (**self).now()
    }
}

/// A clock that moves only when told to. For tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start`.
    pub const fn new(start: Nanos) -> Self {
        Self {
            now: AtomicU64::new(start.0),
        }
    }

    /// Moves the clock forward by `by` (saturating) and returns the new time.
    pub fn advance(&self, by: Nanos) -> Nanos {
        let prev = self.now.load(Ordering::Relaxed);
        let next = prev.saturating_add(by.0);
        self.now.store(next, Ordering::Relaxed);
        Nanos(next)
    }

    /// Sets the clock to `to`, which may be in the past (to test clock steps).
    pub fn set(&self, to: Nanos) {
        self.now.store(to.0, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        Nanos(self.now.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        fn check(ns: u64, secs: u64) {
            assert_eq!(Nanos(ns).as_secs_ceil(), secs, "{ns}ns");
        }
        check(0, 0);
        check(1, 1);
        check(999_999_999, 1);
        check(1_000_000_000, 1);
        check(1_000_000_001, 2);
        check(u64::MAX, 18_446_744_074);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Nanos::from_secs(5));
        assert_eq!(c.now(), Nanos::from_secs(5));
        assert_eq!(c.advance(Nanos::from_millis(1)), Nanos(5_001_000_000));
        c.set(Nanos(3));
        assert_eq!(c.now(), Nanos(3));
        c.set(Nanos::MAX);
        assert_eq!(c.advance(Nanos(1)), Nanos::MAX);
    }

    #[test]
    fn duration_conversion_saturates() {
        assert_eq!(
            Nanos::from(Duration::from_millis(1500)),
            Nanos(1_500_000_000)
        );
        assert_eq!(Nanos::from(Duration::MAX), Nanos::MAX);
        assert_eq!(Nanos(1_500).to_duration(), Duration::from_nanos(1_500));
    }
}
