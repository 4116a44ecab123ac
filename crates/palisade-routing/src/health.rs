//! Passive health: a deployment that fails `consecutive_failures` times in
//! a row is ejected for `ejection` (Envoy's consecutive-5xx outlier
//! detection), so attempts stop going to it before its breaker opens.
//!
//! Must not: count failures that are about the request or the model
//! (context length, content filter) or a 429 (the deployment is alive);
//! [`crate::FailureClass::is_deployment_fault`] says which count.

use crate::Nanos;

/// Ejection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveHealthConfig {
    /// Failures in a row that eject the deployment.
    pub consecutive_failures: u32,
    /// How long an ejection lasts.
    pub ejection: Nanos,
}

impl Default for PassiveHealthConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            ejection: 10_000_000_000,
        }
    }
}

/// One deployment's passive health.
#[derive(Debug, Clone, Default)]
pub struct PassiveHealth {
    failures_in_a_row: u32,
    ejected_until: Nanos,
}

impl PassiveHealth {
    /// Records an attempt's outcome at `now`.
    pub fn record(&mut self, config: &PassiveHealthConfig, now: Nanos, ok: bool) {
        if ok {
            self.failures_in_a_row = 0;
            return;
        }
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        if config.consecutive_failures > 0 && self.failures_in_a_row >= config.consecutive_failures
        {
            self.ejected_until = now.saturating_add(config.ejection);
            self.failures_in_a_row = 0;
        }
    }

    /// Is the deployment in service at `now`?
    pub fn is_healthy(&self, now: Nanos) -> bool {
        now >= self.ejected_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_failures_eject_for_a_while() {
        let cfg = PassiveHealthConfig {
            consecutive_failures: 3,
            ejection: 100,
        };
        let mut h = PassiveHealth::default();
        h.record(&cfg, 0, false);
        h.record(&cfg, 1, false);
        h.record(&cfg, 2, true);
        h.record(&cfg, 3, false);
        h.record(&cfg, 4, false);
        assert!(h.is_healthy(5), "a success in between resets the count");
        h.record(&cfg, 5, false);
        assert!(!h.is_healthy(6));
        assert!(!h.is_healthy(104));
        assert!(h.is_healthy(105));
    }
}
