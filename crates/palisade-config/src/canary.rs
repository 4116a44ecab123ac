//! A route's model canary (`[[routes]] canary = { ... }`) and the weighted
//! rollout of a new deployment (`[[routes]] rollout = { ... }`).
//!
//! Each validates its own fields and the route they sit on (the rolled-out
//! deployment is one of the route's deployments). Whether the golden set
//! file exists and parses is checked by the gateway when it builds the
//! routing snapshot (start and reload): this crate reads no file but the
//! config itself. Nothing here may grade answers or decide drift
//! (`palisade-canary` does).

use super::*;

/// A route's model canary: a golden set replayed against each of its
/// deployments on a schedule and whenever a deployment is new.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// The golden set (JSONL: prompts and the properties of their answers).
    pub golden_set: String,
    /// Seconds between two replays against every deployment. Default 300:
    /// a 20-item set then costs 240 requests per deployment per hour.
    #[serde(default = "default_interval_s")]
    pub interval_s: u64,
    /// Replay against a deployment at once when it is first seen (start)
    /// or new or changed on reload.
    #[serde(default = "yes")]
    pub on_new_deployment: bool,
    /// Longest wait for one golden answer, whole body included.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest golden answer body read; a bigger one fails its checks.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Results kept per check and deployment (the rolling window).
    #[serde(default = "default_window")]
    pub window: usize,
    /// Results a check needs before it is judged (and a rollout steps).
    #[serde(default = "default_min_samples")]
    pub min_samples: usize,
    /// Significance of the one-sided binomial drift test.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// How far below the baseline's pass rate is still no drift.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Pass rate required when no baseline deployment has enough results
    /// (a single-deployment route: the pinned baseline).
    #[serde(default = "default_min_pass_rate")]
    pub min_pass_rate: f64,
    /// p95 latency over the baseline's that counts as drift (0: off).
    #[serde(default = "default_latency_ratio")]
    pub latency_ratio: f64,
    /// A drift alert clears only after this long with every check back at
    /// its reference (no flapping).
    #[serde(default = "default_hold_down_s")]
    pub hold_down_s: u64,
}

fn default_interval_s() -> u64 {
    300
}
fn yes() -> bool {
    true
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_max_body_bytes() -> usize {
    1 << 20
}
fn default_window() -> usize {
    100
}
fn default_min_samples() -> usize {
    10
}
fn default_alpha() -> f64 {
    0.01
}
fn default_tolerance() -> f64 {
    0.1
}
fn default_min_pass_rate() -> f64 {
    0.9
}
fn default_latency_ratio() -> f64 {
    3.0
}
fn default_hold_down_s() -> u64 {
    900
}

/// A weighted canary rollout of one of the route's deployments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// The backend (one of the route's `deployments`) being rolled out.
    pub deployment: String,
    /// Share of the route's traffic after its first clean canary run, %.
    #[serde(default = "default_start_pct")]
    pub start_weight_pct: u32,
    /// Added after each further clean step, %.
    #[serde(default = "default_step_pct")]
    pub step_pct: u32,
    /// Least seconds between two steps (each needs a clean run after it).
    #[serde(default = "default_step_every_s")]
    pub step_every_s: u64,
    /// Drift sets its share to 0 for good; `false` holds the rollout.
    #[serde(default = "yes")]
    pub rollback_on_drift: bool,
}

fn default_start_pct() -> u32 {
    5
}
fn default_step_pct() -> u32 {
    25
}
fn default_step_every_s() -> u64 {
    300
}

/// Checks route `i`'s `canary` and `rollout`.
pub(crate) fn validate_canary(i: usize, route: &RouteConfig) -> Result<(), ConfigError> {
    let at = |key: &str| format!("routes[{i}].canary.{key}");
    if let Some(c) = &route.canary {
        if c.golden_set.trim().is_empty() {
            return Err(invalid(at("golden_set"), "must name a JSONL file"));
        }
        if c.interval_s == 0 {
            return Err(invalid(at("interval_s"), "must be at least 1"));
        }
        if c.timeout_ms == 0 {
            return Err(invalid(at("timeout_ms"), "must be greater than 0"));
        }
        if !(1024..=(64 << 20)).contains(&c.max_body_bytes) {
            return Err(invalid(
                at("max_body_bytes"),
                "must be within 1024..=67108864",
            ));
        }
        if c.min_samples == 0 {
            return Err(invalid(at("min_samples"), "must be at least 1"));
        }
        if c.window < c.min_samples || c.window > 10_000 {
            return Err(invalid(at("window"), "must be within min_samples..=10000"));
        }
        if !(c.alpha > 0.0 && c.alpha < 0.5) {
            return Err(invalid(at("alpha"), "must be within (0, 0.5)"));
        }
        if !(0.0..1.0).contains(&c.tolerance) {
            return Err(invalid(at("tolerance"), "must be within [0, 1)"));
        }
        if !(0.0..=1.0).contains(&c.min_pass_rate) {
            return Err(invalid(at("min_pass_rate"), "must be within [0, 1]"));
        }
        if !(c.latency_ratio == 0.0 || (1.0..=1000.0).contains(&c.latency_ratio)) {
            return Err(invalid(
                at("latency_ratio"),
                "must be 0 (off) or within 1..=1000",
            ));
        }
    }
    if let Some(r) = &route.rollout {
        let at = |key: &str| format!("routes[{i}].rollout.{key}");
        if route.canary.is_none() {
            return Err(invalid(
                format!("routes[{i}].rollout"),
                "a rollout needs the route's `canary` to judge it",
            ));
        }
        if route.deployments.len() < 2
            || !route.deployments.iter().any(|d| d.backend == r.deployment)
        {
            return Err(invalid(
                at("deployment"),
                "must be one of the route's `deployments`, beside at least one other",
            ));
        }
        if !(1..=100).contains(&r.start_weight_pct) {
            return Err(invalid(at("start_weight_pct"), "must be within 1..=100"));
        }
        if !(1..=100).contains(&r.step_pct) {
            return Err(invalid(at("step_pct"), "must be within 1..=100"));
        }
        if r.step_every_s == 0 {
            return Err(invalid(at("step_every_s"), "must be at least 1"));
        }
    }
    Ok(())
}
