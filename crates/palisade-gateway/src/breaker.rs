//! A circuit breaker per backend, on its error rate.
//!
//! When at least `min_requests` of the last `window` requests ended and the
//! share of failures (connect errors, timeouts, 5xx) reaches `error_rate`,
//! the circuit opens: requests fail fast with 503 `circuit_open` and
//! `Retry-After` for `cooldown`, instead of piling onto a broken model server
//! (and holding clients for its timeouts). After the cooldown one probe
//! request goes through; its success closes the circuit, its failure opens it
//! again. Time is passed in, so the state machine is tested without sleeping.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Failure share that opens the circuit.
    pub error_rate: f64,
    /// How many recent outcomes are considered.
    pub window: usize,
    /// Outcomes needed before the rate is trusted.
    pub min_requests: usize,
    /// How long the circuit stays open.
    pub cooldown: Duration,
}

#[derive(Debug)]
enum State {
    Closed(VecDeque<bool>),
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// One backend's breaker.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed(VecDeque::with_capacity(config.window))),
        }
    }

    /// May a request go to the backend now? `Err` carries how long to wait.
    pub fn allow(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *state {
            State::Closed(_) => Ok(()),
            State::Open { until } if now < *until => Err(*until - now),
            State::Open { .. } => {
                *state = State::HalfOpen { probing: true };
                Ok(())
            }
            State::HalfOpen { probing: true } => Err(Duration::from_secs(1)),
            State::HalfOpen { probing } => {
                *probing = true;
                Ok(())
            }
        }
    }

    /// Records how a request that was allowed ended.
    pub fn record(&self, now: Instant, ok: bool) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let open = State::Open {
            until: now + self.config.cooldown,
        };
        match &mut *state {
            State::Closed(outcomes) => {
                if outcomes.len() == self.config.window {
                    outcomes.pop_front();
                }
                outcomes.push_back(ok);
                let failures = outcomes.iter().filter(|ok| !**ok).count();
                if outcomes.len() >= self.config.min_requests
                    && failures as f64 >= self.config.error_rate * outcomes.len() as f64
                {
                    tracing::warn!(failures, of = outcomes.len(), "circuit opened");
                    *state = open;
                }
            }
            State::HalfOpen { .. } if ok => {
                *state = State::Closed(VecDeque::with_capacity(self.config.window));
            }
            State::HalfOpen { .. } => *state = open,
            // A request allowed before the circuit opened: already counted.
            State::Open { .. } => {}
        }
    }

    /// True while requests are refused.
    pub fn is_open(&self, now: Instant) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        matches!(&*state, State::Open { until } if now < *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            error_rate: 0.5,
            window: 10,
            min_requests: 4,
            cooldown: Duration::from_secs(5),
        })
    }

    #[test]
    fn opens_on_error_rate_then_probes_and_closes() {
        let b = breaker();
        let t0 = Instant::now();
        b.record(t0, false);
        b.record(t0, false);
        b.record(t0, true);
        assert!(
            b.allow(t0).is_ok(),
            "three outcomes are not enough to judge"
        );
        b.record(t0, false);
        let wait = b.allow(t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(5), "3 of 4 failed: open");
        let later = t0 + Duration::from_secs(5);
        assert!(b.allow(later).is_ok(), "after the cooldown, one probe");
        assert!(b.allow(later).is_err(), "only one probe at a time");
        b.record(later, true);
        assert!(b.allow(later).is_ok(), "a good probe closes the circuit");
        assert!(!b.is_open(later));
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..4 {
            b.record(t0, false);
        }
        let t1 = t0 + Duration::from_secs(6);
        assert!(b.allow(t1).is_ok());
        b.record(t1, false);
        assert!(b.is_open(t1 + Duration::from_secs(4)));
        assert!(!b.is_open(t1 + Duration::from_secs(5)));
    }

    #[test]
    fn healthy_traffic_never_opens() {
        let b = breaker();
        let t0 = Instant::now();
        for i in 0..100 {
            b.record(t0, i % 5 != 0); // 20% failures
            assert!(b.allow(t0).is_ok());
        }
    }
}
