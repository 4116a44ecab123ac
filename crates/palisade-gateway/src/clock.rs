//! The gateway's clock: the one place the limit wiring reads time.
//!
//! Limit decisions live in `palisade-limits` and take `now` from the caller; this is where the
//! caller gets it. [`GatewayClock`] gives monotonic [`Nanos`] (rates, budgets, breakers,
//! cooldowns; it implements [`palisade_limits::Clock`]) and wall-clock Unix milliseconds (the
//! calendar months of quotas, ledger timestamps). A manual clock drives both from a
//! [`ManualClock`] so tests can step time.
//!
//! It must not decide anything, and nothing else in the limit wiring should call
//! `Instant::now()` or `SystemTime::now()`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_limits::{Clock, ManualClock, Nanos};

/// The process-wide origin of monotonic time, fixed by the first clock made, so every
/// system clock (and every `Instant` converted by one) agrees on what a `Nanos` means.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Where a clock's time comes from.
#[derive(Debug, Clone)]
enum Source {
    /// The OS: `Instant` for monotonic time, `SystemTime` for the calendar.
    System,
    /// A test clock: monotonic time is the manual clock's; wall time moves with it from
    /// `unix_ms_at_zero`.
    #[cfg_attr(not(test), allow(dead_code))]
    Manual {
        clock: Arc<ManualClock>,
        unix_ms_at_zero: i64,
    },
}

/// Monotonic and wall-clock time for the limit wiring.
#[derive(Debug, Clone)]
pub struct GatewayClock {
    source: Source,
}

impl Default for GatewayClock {
    fn default() -> Self {
        Self::system()
    }
}

impl GatewayClock {
    /// The OS clock. Monotonic time counts from the first clock made in this process.
    pub fn system() -> Self {
        origin();
        Self {
            source: Source::System,
        }
    }

    /// A clock that moves only when `clock` is moved; its wall time is `unix_ms_at_zero`
    /// plus the manual clock's reading.
    #[cfg(test)]
    pub fn manual(clock: Arc<ManualClock>, unix_ms_at_zero: i64) -> Self {
        Self {
            source: Source::Manual {
                clock,
                unix_ms_at_zero,
            },
        }
    }

    /// Milliseconds since the Unix epoch (0 for a system clock set before 1970).
    pub fn unix_ms(&self) -> i64 {
        match &self.source {
            Source::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Source::Manual {
                clock,
                unix_ms_at_zero,
            } => {
                let ms = i64::try_from(clock.now().get() / 1_000_000).unwrap_or(i64::MAX);
                unix_ms_at_zero.saturating_add(ms)
            }
        }
    }

    /// The monotonic time of `instant`, an `Instant` a caller read as its "now". A manual
    /// clock has no relation to real instants and answers its own reading.
    pub fn at(&self, instant: Instant) -> Nanos {
        match &self.source {
            Source::System => Nanos::from(instant.saturating_duration_since(origin())),
            Source::Manual { clock, .. } => clock.now(),
        }
    }

    /// Real time left until `deadline` (zero once passed), for timers, which run on the
    /// runtime's real clock whatever this clock's source.
    pub fn until(&self, deadline: Instant) -> Duration {
        deadline.saturating_duration_since(Instant::now())
    }
}

impl Clock for GatewayClock {
    fn now(&self) -> Nanos {
        match &self.source {
            Source::System => self.at(Instant::now()),
            Source::Manual { clock, .. } => clock.now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_time_is_monotonic_and_on_the_calendar() {
        let clock = GatewayClock::system();
        let (a, b) = (clock.now(), clock.now());
        assert!(a <= b);
        let later = Instant::now() + Duration::from_secs(2);
        assert!(clock.at(later) >= b.saturating_add(Nanos::from_secs(2)));
        // After 2020-01-01.
        assert!(clock.unix_ms() > 1_577_836_800_000);
        assert!(clock.until(later) > Duration::from_secs(1));
        assert_eq!(clock.until(Instant::now()), Duration::ZERO);
    }

    #[test]
    fn manual_time_moves_when_told() {
        let manual = Arc::new(ManualClock::new(Nanos::ZERO));
        let clock = GatewayClock::manual(manual.clone(), 1_700_000_000_000);
        assert_eq!(clock.now(), Nanos::ZERO);
        assert_eq!(clock.unix_ms(), 1_700_000_000_000);
        manual.advance(Nanos::from_millis(1_500));
        assert_eq!(clock.now(), Nanos::from_millis(1_500));
        assert_eq!(clock.at(Instant::now()), Nanos::from_millis(1_500));
        assert_eq!(clock.unix_ms(), 1_700_000_001_500);
        let copy = clock.clone();
        manual.advance(Nanos::from_secs(1));
        assert_eq!(
            copy.now(),
            Nanos::from_millis(2_500),
            "clones share the time"
        );
    }
}
