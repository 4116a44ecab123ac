//! Many keys' windows, standings and the benign baselines, bounded in keys
//! and baseline points: what the gateway's background task (and the
//! evaluation harness) holds. [`Tracker::observe`] adds one request to a
//! key's window and, every `evaluate_every` requests once the window has
//! `min_queries`, runs the detectors and moves the key's standing.
//!
//! The baseline the MMD detector compares against is per tenant: a
//! reservoir of the tenant's requests from keys whose standing is
//! `observe`, falling back to the seeded global baseline until the tenant
//! has enough of its own. A flagged key's traffic never teaches the
//! baseline what normal is.
//!
//! Must not: read the clock or draw randomness (reservoir slots come from a
//! hash of the request, permutation seeds from the key and its count).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::detect::{evaluate, DetectorConfig, Point, Signal};
use crate::features::RequestFeatures;
use crate::ladder::{Action, LadderConfig, Standing};
use crate::sketch::{hash_bytes, mix64};
use crate::window::KeyWindow;

/// Bounds and settings of a tracker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// The detectors.
    pub detectors: DetectorConfig,
    /// The ladder.
    pub ladder: LadderConfig,
    /// Most keys held; the least recently seen is evicted beyond it.
    pub max_keys: usize,
    /// Points in each tenant's baseline reservoir.
    pub baseline_points: usize,
    /// A tenant's own baseline is used once it holds this many points.
    pub baseline_min: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            detectors: DetectorConfig::default(),
            ladder: LadderConfig::default(),
            max_keys: 100_000,
            baseline_points: 256,
            baseline_min: 128,
        }
    }
}

/// The outcome of one evaluation of a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// The key.
    pub key: String,
    /// The rung after this evaluation.
    pub action: Action,
    /// The score after this evaluation.
    pub score: f64,
    /// Every detector's result (the evidence).
    pub signals: Vec<Signal>,
    /// Requests the key has sent in all.
    pub seen: u64,
}

impl Assessment {
    /// Detectors that fired.
    pub fn fired(&self) -> impl Iterator<Item = &Signal> + '_ {
        self.signals.iter().filter(|s| s.fired)
    }
}

#[derive(Debug, Clone)]
struct KeyState {
    window: KeyWindow,
    standing: Standing,
    tenant: String,
    last_ms: i64,
}

#[derive(Debug, Clone, Default)]
struct Reservoir {
    points: Vec<Point>,
    seen: u64,
}

impl Reservoir {
    fn offer(&mut self, point: Point, capacity: usize) {
        self.seen += 1;
        if self.points.len() < capacity {
            self.points.push(point);
            return;
        }
        // Algorithm R with a hash of the point and count as the draw.
        let slot = mix64(point.simhash ^ self.seen.rotate_left(17)) % self.seen;
        if let Some(p) = self.points.get_mut(slot as usize) {
            *p = point;
        }
    }
}

/// Windows, standings and baselines for many keys.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackerConfig,
    keys: HashMap<String, KeyState>,
    global_baseline: Vec<Point>,
    tenant_baselines: HashMap<String, Reservoir>,
}

impl Tracker {
    /// An empty tracker.
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            keys: HashMap::new(),
            global_baseline: Vec::new(),
            tenant_baselines: HashMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Sets the baseline used for tenants without enough traffic of their own.
    pub fn set_global_baseline(&mut self, points: Vec<Point>) {
        self.global_baseline = points;
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A key's standing, if held.
    pub fn standing(&self, key: &str) -> Option<Standing> {
        self.keys.get(key).map(|k| k.standing)
    }

    /// A key's rung at `now_ms` (`Observe` for an unknown key).
    pub fn action(&self, key: &str, now_ms: i64) -> Action {
        self.standing(key)
            .map_or(Action::Observe, |s| s.action(now_ms, &self.config.ladder))
    }

    /// Restores a persisted standing (at start), creating the key.
    pub fn restore(&mut self, key: &str, tenant: &str, standing: Standing) {
        let capacity = self.config.detectors.window;
        let state = self.keys.entry(key.to_owned()).or_insert_with(|| KeyState {
            window: KeyWindow::new(capacity),
            standing: Standing::default(),
            tenant: tenant.to_owned(),
            last_ms: standing.at_ms,
        });
        state.standing = standing;
    }

    /// Every key's standing (for persistence).
    pub fn standings(&self) -> impl Iterator<Item = (&str, &str, Standing)> + '_ {
        self.keys
            .iter()
            .map(|(k, s)| (k.as_str(), s.tenant.as_str(), s.standing))
    }

    /// Adds one request of `key` (of `tenant`); returns an assessment when
    /// the detectors ran.
    pub fn observe(
        &mut self,
        key: &str,
        tenant: &str,
        features: &RequestFeatures,
        now_ms: i64,
    ) -> Option<Assessment> {
        if !self.keys.contains_key(key) && self.keys.len() >= self.config.max_keys {
            self.evict_oldest();
        }
        let capacity = self.config.detectors.window;
        let state = self.keys.entry(key.to_owned()).or_insert_with(|| KeyState {
            window: KeyWindow::new(capacity),
            standing: Standing::default(),
            tenant: tenant.to_owned(),
            last_ms: now_ms,
        });
        state.last_ms = now_ms;
        let entry = state
            .window
            .push(features, self.config.detectors.coverage_block_words);
        let clean = state.standing.action(now_ms, &self.config.ladder) == Action::Observe;
        if clean {
            let capacity = self.config.baseline_points;
            if self.tenant_baselines.len() < self.config.max_keys
                || self.tenant_baselines.contains_key(tenant)
            {
                self.tenant_baselines
                    .entry(tenant.to_owned())
                    .or_default()
                    .offer(Point::from(&entry), capacity);
            }
        }
        let state = self.keys.get_mut(key)?;
        let detectors = &self.config.detectors;
        if state.window.len() < detectors.min_queries
            || state.window.since_evaluation < detectors.evaluate_every
        {
            return None;
        }
        state.window.since_evaluation = 0;
        let baseline = match self.tenant_baselines.get(tenant) {
            Some(r) if r.points.len() >= self.config.baseline_min => &r.points,
            _ => &self.global_baseline,
        };
        let seed = hash_bytes(key.as_bytes()) ^ state.window.seen;
        let signals = evaluate(&state.window, baseline, detectors, seed);
        let points = signals.iter().filter(|s| s.fired).count() as f64;
        state.standing.add(points, now_ms, &self.config.ladder);
        Some(Assessment {
            key: key.to_owned(),
            action: state.standing.action(now_ms, &self.config.ladder),
            score: state.standing.score_at(now_ms, &self.config.ladder),
            signals,
            seen: state.window.seen,
        })
    }

    fn evict_oldest(&mut self) {
        if let Some(oldest) = self
            .keys
            .iter()
            .min_by_key(|(_, s)| s.last_ms)
            .map(|(k, _)| k.clone())
        {
            self.keys.remove(&oldest);
        }
    }
}
