//! The detector's tunables, their defaults (each with its reason) and their
//! validation.
//!
//! Must not: decide anything; [`crate::Detector`] reads these.

use serde::{Deserialize, Serialize};

/// How the detector windows, learns and tests. Times in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Length of a tumbling window. 10 s: an attack burst is alerted within
    /// seconds, and a window holds enough requests to test at modest load.
    pub window_ms: u64,
    /// EWMA weight of a new window in a baseline. 0.2: about the last five
    /// windows matter, so a baseline follows slow drift, not one burst.
    pub alpha: f64,
    /// Windows a scope must have contributed before its own baseline is
    /// trusted; until then `prior_rate` stands in.
    pub warmup_windows: u32,
    /// The flag+block (and refusal) rate assumed for a scope with no history.
    /// 0.05: above the built-in policy's benign flag rate on the training
    /// sets (about 2%), so new tenants do not alert on ordinary traffic.
    pub prior_rate: f64,
    /// No baseline is taken below this rate: a tenant that was never flagged
    /// must not alert on its first two flags.
    pub floor_rate: f64,
    /// A window with fewer requests from a scope is not tested (too little
    /// evidence either way).
    pub min_requests: u64,
    /// Nor one with fewer flagged/blocked (or refused) requests.
    pub min_events: u64,
    /// One-sided binomial z-score at or above which a window is a burst.
    /// 4.0: about 3 in 100,000 windows of a steady tenant by chance.
    pub z_threshold: f64,
    /// And the window's rate must exceed the baseline by at least this much
    /// (absolute): a large tenant's tiny, significant drift is not a burst.
    pub min_excess: f64,
    /// This replica's requests in a window at least this many times its
    /// baseline is a load surge (when no scale event is under way).
    pub surge_ratio: f64,
    /// Windows with fewer requests on this replica are never a surge.
    pub surge_min_requests: u64,
    /// How long after a scale event (or a change of the replica count)
    /// capacity signals are held down and their baselines frozen. 120 s:
    /// longer than a pod's start and an HPA's stabilization step.
    pub hold_down_ms: u64,
    /// An alert of the same kind for the same tenant is not repeated within
    /// this time.
    pub dedup_ms: u64,
    /// At most this many tenants and keys are tracked; more are counted as
    /// dropped (operators configure tenants and keys, so this is a guard).
    pub max_scopes: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            window_ms: 10_000,
            alpha: 0.2,
            warmup_windows: 3,
            prior_rate: 0.05,
            floor_rate: 0.01,
            min_requests: 20,
            min_events: 5,
            z_threshold: 4.0,
            min_excess: 0.05,
            surge_ratio: 4.0,
            surge_min_requests: 50,
            hold_down_ms: 120_000,
            dedup_ms: 300_000,
            max_scopes: 10_000,
        }
    }
}

/// A parameter out of its range; names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("anomaly parameter `{field}` {reason}")]
pub struct ParamsError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Params {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let err = |field, reason| Err(ParamsError { field, reason });
        if self.window_ms == 0 {
            return err("window_ms", "must be positive");
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return err("alpha", "must be in (0, 1]");
        }
        for (field, rate) in [
            ("prior_rate", self.prior_rate),
            ("floor_rate", self.floor_rate),
            ("min_excess", self.min_excess),
        ] {
            if !(0.0..1.0).contains(&rate) {
                return err(field, "must be in [0, 1)");
            }
        }
        if !(self.z_threshold.is_finite() && self.z_threshold > 0.0) {
            return err("z_threshold", "must be a positive number");
        }
        if !(self.surge_ratio.is_finite() && self.surge_ratio > 1.0) {
            return err("surge_ratio", "must be a number above 1");
        }
        if self.max_scopes == 0 {
            return err("max_scopes", "must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        Params::default().validate().unwrap();
        type Case = (fn(&mut Params), &'static str);
        let cases: [Case; 5] = [
            (|p| p.window_ms = 0, "window_ms"),
            (|p| p.alpha = 0.0, "alpha"),
            (|p| p.prior_rate = 1.5, "prior_rate"),
            (|p| p.z_threshold = f64::NAN, "z_threshold"),
            (|p| p.surge_ratio = 1.0, "surge_ratio"),
        ];
        for (break_it, field) in cases {
            let mut p = Params::default();
            break_it(&mut p);
            assert_eq!(p.validate().unwrap_err().field, field);
        }
    }
}
