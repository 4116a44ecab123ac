//! A circuit breaker on a backend's error rate: closed, open, half-open.
//!
//! When at least `min_requests` of the last `window` requests ended and the share of
//! failures reaches `error_rate`, the circuit opens: requests fail fast for `cooldown`
//! instead of piling onto a broken backend (and holding clients for its timeouts). After the
//! cooldown one probe request goes through; its success closes the circuit, its failure opens
//! it again.
//!
//! This is the state machine only. It takes `now` from the caller and holds no lock: the
//! gateway keeps one per backend behind a mutex, classifies outcomes (connect errors,
//! timeouts and 5xx are failures) and maps a refusal to HTTP.

use std::collections::VecDeque;

use crate::time::Nanos;

/// How long a caller is told to wait while the one half-open probe is in flight: the probe's
/// own outcome is what will decide, and no arithmetic here can predict when it ends.
pub const PROBE_WAIT: Nanos = Nanos::from_secs(1);

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitConfig {
    /// Failure share (0 to 1) that opens the circuit.
    pub error_rate: f64,
    /// How many recent outcomes are considered.
    pub window: usize,
    /// Outcomes needed before the rate is trusted.
    pub min_requests: usize,
    /// How long the circuit stays open.
    pub cooldown: Nanos,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Recent outcomes, oldest first (`true` is a success).
    Closed(VecDeque<bool>),
    Open {
        until: Nanos,
    },
    HalfOpen {
        probing: bool,
    },
}

/// What recording an outcome did to the circuit, for the caller's logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitChange {
    /// No change of state.
    None,
    /// The error rate opened a closed circuit.
    Opened {
        /// Failures among the recent outcomes.
        failures: usize,
        /// Recent outcomes considered.
        of: usize,
    },
    /// A failed probe opened the circuit again.
    Reopened,
    /// A good probe closed the circuit.
    Closed,
}

/// One backend's circuit.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreaker {
    config: CircuitConfig,
    state: State,
}

impl CircuitBreaker {
    /// A closed circuit. Settings are validated where they are read (palisade-config); here a
    /// zero window is taken as one, so the outcome window stays bounded whatever is passed.
    pub fn new(config: CircuitConfig) -> Self {
        let config = CircuitConfig {
            window: config.window.max(1),
            ..config
        };
        Self {
            config,
            state: Self::closed(&config),
        }
    }

    fn closed(config: &CircuitConfig) -> State {
        State::Closed(VecDeque::with_capacity(config.window))
    }

    /// The settings.
    pub const fn config(&self) -> &CircuitConfig {
        &self.config
    }

    /// May a request go to the backend at `now`? `Err` carries how long to wait. Once the
    /// cooldown has passed, the first caller is let through as the probe.
    pub fn allow(&mut self, now: Nanos) -> Result<(), Nanos> {
        match &mut self.state {
            State::Closed(_) => Ok(()),
            State::Open { until } if now < *until => Err(until.saturating_sub(now)),
            State::Open { .. } => {
                self.state = State::HalfOpen { probing: true };
                Ok(())
            }
            State::HalfOpen { probing: true } => Err(PROBE_WAIT),
            State::HalfOpen { probing } => {
                *probing = true;
                Ok(())
            }
        }
    }

    /// Records how a request that was allowed ended (`ok`: not a failure) at `now`.
    pub fn record(&mut self, now: Nanos, ok: bool) -> CircuitChange {
        let open = State::Open {
            until: now.saturating_add(self.config.cooldown),
        };
        match &mut self.state {
            State::Closed(outcomes) => {
                if outcomes.len() == self.config.window {
                    outcomes.pop_front();
                }
                outcomes.push_back(ok);
                let of = outcomes.len();
                let failures = outcomes.iter().filter(|ok| !**ok).count();
                if of >= self.config.min_requests
                    && failures as f64 >= self.config.error_rate * of as f64
                {
                    self.state = open;
                    return CircuitChange::Opened { failures, of };
                }
                CircuitChange::None
            }
            State::HalfOpen { .. } if ok => {
                self.state = Self::closed(&self.config);
                CircuitChange::Closed
            }
            State::HalfOpen { .. } => {
                self.state = open;
                CircuitChange::Reopened
            }
            // A request allowed before the circuit opened: already counted.
            State::Open { .. } => CircuitChange::None,
        }
    }

    /// True while requests are refused for the cooldown (not counting a half-open circuit
    /// whose probe is in flight).
    pub fn is_open(&self, now: Nanos) -> bool {
        matches!(&self.state, State::Open { until } if now < *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{Clock, ManualClock};

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(CircuitConfig {
            error_rate: 0.5,
            window: 10,
            min_requests: 4,
            cooldown: Nanos::from_secs(5),
        })
    }

    #[test]
    fn opens_on_error_rate_then_probes_and_closes() {
        let mut b = breaker();
        let t0 = Nanos::from_secs(100);
        b.record(t0, false);
        b.record(t0, false);
        b.record(t0, true);
        assert!(
            b.allow(t0).is_ok(),
            "three outcomes are not enough to judge"
        );
        assert_eq!(
            b.record(t0, false),
            CircuitChange::Opened { failures: 3, of: 4 }
        );
        let wait = b.allow(t0).unwrap_err();
        assert_eq!(wait, Nanos::from_secs(5), "3 of 4 failed: open");
        let later = t0.saturating_add(Nanos::from_secs(5));
        assert!(b.allow(later).is_ok(), "after the cooldown, one probe");
        assert!(b.allow(later).is_err(), "only one probe at a time");
        assert_eq!(b.record(later, true), CircuitChange::Closed);
        assert!(b.allow(later).is_ok(), "a good probe closes the circuit");
        assert!(!b.is_open(later));
    }

    #[test]
    fn a_failed_probe_reopens() {
        let mut b = breaker();
        let t0 = Nanos::from_secs(100);
        for _ in 0..4 {
            b.record(t0, false);
        }
        let t1 = t0.saturating_add(Nanos::from_secs(6));
        assert!(b.allow(t1).is_ok());
        assert_eq!(b.record(t1, false), CircuitChange::Reopened);
        assert!(b.is_open(t1.saturating_add(Nanos::from_secs(4))));
        assert!(!b.is_open(t1.saturating_add(Nanos::from_secs(5))));
    }

    #[test]
    fn healthy_traffic_never_opens() {
        let mut b = breaker();
        let t0 = Nanos::from_secs(100);
        for i in 0..100 {
            b.record(t0, i % 5 != 0); // 20% failures
            assert!(b.allow(t0).is_ok());
        }
    }

    /// One step of a scripted run: advance the clock, then ask or record.
    enum Step {
        Advance(u64),
        Record(bool),
        Allow(Result<(), Nanos>),
        Open(bool),
    }

    #[test]
    fn scripted_runs() {
        use Step::{Advance, Allow, Open, Record};
        let secs = Nanos::from_secs;
        let cases: &[(&str, &[Step])] = &[
            (
                "old outcomes leave the window",
                &[
                    Record(true),
                    Record(true),
                    Record(true),
                    Record(true),
                    Record(true),
                    Record(true),
                    Record(true),
                    Record(true),
                    Record(true),
                    Record(true),
                    Record(false),
                    Record(false),
                    Record(false),
                    Record(false),
                    Allow(Ok(())),
                    // 5 of the last 10; counting all 15 it would be a third.
                    Record(false),
                    Allow(Err(secs(5))),
                ],
            ),
            (
                "the wait shrinks as the cooldown runs",
                &[
                    Record(false),
                    Record(false),
                    Record(false),
                    Record(false),
                    Allow(Err(secs(5))),
                    Advance(2),
                    Allow(Err(secs(3))),
                    Open(true),
                    Advance(3),
                    Open(false),
                    Allow(Ok(())),
                    Allow(Err(PROBE_WAIT)),
                    Open(false),
                ],
            ),
            (
                "outcomes of requests allowed before opening are ignored",
                &[
                    Record(false),
                    Record(false),
                    Record(false),
                    Record(false),
                    Record(true),
                    Record(true),
                    Advance(4),
                    Allow(Err(secs(1))),
                    Advance(1),
                    Allow(Ok(())),
                    Record(true),
                    Allow(Ok(())),
                ],
            ),
        ];
        for (name, steps) in cases {
            let clock = ManualClock::new(secs(1_000));
            let mut b = breaker();
            for (i, step) in steps.iter().enumerate() {
                match step {
                    Advance(s) => {
                        clock.advance(secs(*s));
                    }
                    Record(ok) => {
                        b.record(clock.now(), *ok);
                    }
                    Allow(expected) => {
                        assert_eq!(b.allow(clock.now()), *expected, "{name}, step {i}")
                    }
                    Open(expected) => assert_eq!(b.is_open(clock.now()), *expected, "{name}, {i}"),
                }
            }
        }
    }

    #[test]
    fn a_zero_window_keeps_one_outcome() {
        let mut b = CircuitBreaker::new(CircuitConfig {
            error_rate: 1.0,
            window: 0,
            min_requests: 1,
            cooldown: Nanos::from_secs(1),
        });
        assert_eq!(b.config().window, 1);
        assert_eq!(b.record(Nanos::ZERO, true), CircuitChange::None);
        assert_eq!(
            b.record(Nanos::ZERO, false),
            CircuitChange::Opened { failures: 1, of: 1 }
        );
    }
}
