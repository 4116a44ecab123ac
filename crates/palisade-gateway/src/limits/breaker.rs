//! A circuit breaker per backend, on its error rate: the lock and the clock around
//! `palisade_limits::CircuitBreaker`, which decides.
//!
//! When enough recent requests failed (connect errors, timeouts, 5xx), requests fail fast
//! with 503 `circuit_open` and `Retry-After` for the cooldown instead of piling onto a broken
//! model server; after the cooldown one probe decides whether the circuit closes. This module
//! must not decide anything itself: it converts the caller's instants into the limits
//! crate's time, logs transitions and maps waits back to `Duration`.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use palisade_limits::{CircuitBreaker, CircuitChange, CircuitConfig, Nanos};

use crate::clock::GatewayClock;

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

/// One backend's breaker.
#[derive(Debug)]
pub struct Breaker {
    /// The backend's name: the `backend` label of the state gauge.
    backend: std::sync::Arc<str>,
    clock: GatewayClock,
    state: Mutex<CircuitBreaker>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(backend: &str, config: BreakerConfig) -> Self {
        metrics::gauge!(crate::metrics::CIRCUIT_OPEN, "backend" => backend.to_owned()).set(0.0);
        Self {
            backend: backend.into(),
            clock: GatewayClock::system(),
            state: Mutex::new(CircuitBreaker::new(CircuitConfig {
                error_rate: config.error_rate,
                window: config.window,
                min_requests: config.min_requests,
                cooldown: Nanos::from(config.cooldown),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// May a request go to the backend now? `Err` carries how long to wait.
    pub fn allow(&self, now: Instant) -> Result<(), Duration> {
        let now = self.clock.at(now);
        self.lock().allow(now).map_err(Nanos::to_duration)
    }

    /// Records how a request that was allowed ended.
    pub fn record(&self, now: Instant, ok: bool) {
        let now = self.clock.at(now);
        let change = self.lock().record(now, ok);
        let open = match change {
            CircuitChange::Opened { failures, of } => {
                tracing::warn!(failures, of, backend = %self.backend, "circuit opened");
                Some(1.0)
            }
            CircuitChange::Reopened => Some(1.0),
            CircuitChange::Closed => Some(0.0),
            CircuitChange::None => None,
        };
        if let Some(open) = open {
            metrics::gauge!(crate::metrics::CIRCUIT_OPEN, "backend" => self.backend.to_string())
                .set(open);
        }
    }

    /// True while requests are refused (the balancer steers around it).
    pub fn is_open(&self, now: Instant) -> bool {
        let now = self.clock.at(now);
        self.lock().is_open(now)
    }
}

#[cfg(test)]
mod tests {
    // The state machine's tests are palisade-limits' (`circuit`); this checks the wiring:
    // instants in, durations out.
    use super::*;

    #[test]
    fn instants_in_durations_out() {
        let b = Breaker::new(
            "test",
            BreakerConfig {
                error_rate: 0.5,
                window: 10,
                min_requests: 4,
                cooldown: Duration::from_secs(5),
            },
        );
        let t0 = Instant::now();
        for _ in 0..4 {
            b.record(t0, false);
        }
        assert_eq!(b.allow(t0), Err(Duration::from_secs(5)));
        assert!(b.is_open(t0 + Duration::from_secs(4)));
        let later = t0 + Duration::from_secs(5);
        assert!(!b.is_open(later));
        assert!(b.allow(later).is_ok(), "after the cooldown, one probe");
        b.record(later, true);
        assert!(b.allow(later).is_ok());
    }
}
