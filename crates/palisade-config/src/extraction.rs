//! `[extraction]`: model-extraction defence. Parameter hardening per tier
//! (which tenant gets which tier), the behavioural telemetry's store and
//! retention, the window detectors' thresholds and the action ladder.
//!
//! The tier, detector and ladder shapes are `palisade-extraction`'s own
//! (pure, serde with defaults), so the config cannot drift from the code
//! that reads it. Validation checks names and bounds; it must not open the
//! store (the gateway does, at start).

use palisade_extraction::{Action, DetectorConfig, HuntConfig, LadderConfig, ParamPolicy};

use super::*;

/// The built-in tier every tenant gets unless `tenant_tiers` says otherwise.
pub const HARDENED_TIER: &str = "hardened";
/// The built-in tier that forwards every parameter.
pub const OPEN_TIER: &str = "open";

/// Model-extraction defence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractionConfig {
    /// Telemetry, detectors and the ladder run (parameter hardening runs
    /// regardless: it is the tier's business).
    pub enabled: bool,
    /// Apply the ladder's actions (slow, reverify, block) on a key's next
    /// request; `false` observes and flags only (a shadow rollout).
    pub enforce: bool,
    /// The tier of tenants not named in `tenant_tiers`.
    pub default_tier: String,
    /// Tenant id → tier name.
    pub tenant_tiers: BTreeMap<String, String>,
    /// Named tiers; `hardened` (the default policy) and `open` (everything
    /// allowed) exist unless redefined here.
    pub tiers: BTreeMap<String, ParamPolicy>,
    /// `sqlite:PATH` or `postgres://…`: where request features, key
    /// standings and hunt campaigns persist (standings survive a restart; a
    /// hunt job reads the features). PostgreSQL is for fleets: every
    /// replica writes the same tables, so the hunt sees the whole fleet and
    /// a standing decided on one replica reaches the others within about a
    /// second. Absent: memory only.
    pub store: Option<String>,
    /// Feature rows older than this are deleted.
    pub retention_hours: u64,
    /// At most this many feature rows are kept (the oldest go first).
    pub max_rows: u64,
    /// Requests waiting for the background task; beyond it records are
    /// dropped (and counted), never waited for.
    pub queue_capacity: usize,
    /// Keys tracked in memory (least recently seen evicted beyond it).
    pub max_keys: usize,
    /// The window detectors.
    pub detectors: DetectorConfig,
    /// The action ladder.
    pub ladder: LadderConfig,
    /// The cross-account threat hunt over the store.
    pub hunt: HuntJobConfig,
}

/// `[extraction.hunt]`: the scheduled in-process hunt that clusters keys
/// and accounts into campaigns from the store's rows (needs `store`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HuntJobConfig {
    /// Run the job (only when `extraction.store` is set).
    pub enabled: bool,
    /// Seconds between hunts.
    pub interval_secs: u64,
    /// Hours of rows each hunt reads (at most `retention_hours`).
    pub window_hours: u64,
    /// Rows each hunt reads at most (the newest first).
    pub max_rows: u64,
    /// The rung a confirmed campaign's keys are held at, at least (`flag`
    /// audits and shows them; `slow`, `reverify`, `block` act on requests).
    pub confirmed_action: Action,
    /// Send each new campaign to `limits.alert_webhook_url` once.
    pub alert: bool,
    /// The clustering's signals, thresholds and caps.
    pub clustering: HuntConfig,
}

impl Default for HuntJobConfig {
    /// Rationale: every five minutes over the last day finds a campaign
    /// within minutes of it starting and reads a bounded slice of the
    /// store; a confirmation flags by default, so a mistaken mark costs a
    /// customer nothing until an operator chooses a stronger rung.
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 300,
            window_hours: 24,
            max_rows: 2_000_000,
            confirmed_action: Action::Flag,
            alert: true,
            clustering: HuntConfig::default(),
        }
    }
}

impl Default for ExtractionConfig {
    /// Rationale: hardening and observation are on for everyone (they cost
    /// a legitimate user nothing); enforcement is on too, because the
    /// ladder needs several windows of consistent evidence before it slows
    /// anyone (see the benign rates in docs/benchmarks.md). Three days of
    /// features are enough for a hunt to link a campaign's keys.
    fn default() -> Self {
        Self {
            enabled: true,
            enforce: true,
            default_tier: HARDENED_TIER.to_owned(),
            tenant_tiers: BTreeMap::new(),
            tiers: BTreeMap::new(),
            store: None,
            retention_hours: 72,
            max_rows: 5_000_000,
            queue_capacity: 8192,
            max_keys: 100_000,
            detectors: DetectorConfig::default(),
            ladder: LadderConfig::default(),
            hunt: HuntJobConfig::default(),
        }
    }
}

impl ExtractionConfig {
    /// The policy of `tier` (built-ins unless redefined).
    pub fn tier(&self, tier: &str) -> Option<ParamPolicy> {
        if let Some(p) = self.tiers.get(tier) {
            return Some(p.clone());
        }
        match tier {
            HARDENED_TIER => Some(ParamPolicy::default()),
            OPEN_TIER => Some(ParamPolicy::open()),
            _ => None,
        }
    }

    /// The tier name a tenant gets.
    pub fn tier_of(&self, tenant: &str) -> &str {
        self.tenant_tiers
            .get(tenant)
            .map_or(self.default_tier.as_str(), String::as_str)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.tier(&self.default_tier).is_none() {
            return Err(invalid(
                "extraction.default_tier",
                format!("names no tier (built-in: {HARDENED_TIER}, {OPEN_TIER})"),
            ));
        }
        for (tenant, tier) in &self.tenant_tiers {
            if self.tier(tier).is_none() {
                return Err(invalid(
                    format!("extraction.tenant_tiers.{tenant}"),
                    format!("names no tier `{tier}`"),
                ));
            }
        }
        if let Some(store) = &self.store {
            let postgres = store.starts_with("postgres://") || store.starts_with("postgresql://");
            if !postgres && (!store.starts_with("sqlite:") || store.len() == "sqlite:".len()) {
                return Err(invalid(
                    "extraction.store",
                    "must be sqlite:PATH or a postgres:// URL",
                ));
            }
            stores::validate_postgres_tls("extraction.store", Some(store))?;
        }
        if self.queue_capacity == 0 || self.max_keys == 0 {
            return Err(invalid(
                "extraction.queue_capacity",
                "queue_capacity and max_keys must be at least 1",
            ));
        }
        let d = &self.detectors;
        if d.window < 8 || d.min_queries < 8 || d.min_queries > d.window || d.evaluate_every == 0 {
            return Err(invalid(
                "extraction.detectors.window",
                "window ≥ 8, 8 ≤ min_queries ≤ window, evaluate_every ≥ 1",
            ));
        }
        let l = &self.ladder;
        let ordered = 0.0 < l.flag_at
            && l.flag_at <= l.slow_at
            && l.slow_at <= l.reverify_at
            && l.reverify_at <= l.block_at
            && l.block_at.is_finite();
        if !ordered || l.half_life_ms == 0 {
            return Err(invalid(
                "extraction.ladder",
                "need 0 < flag_at ≤ slow_at ≤ reverify_at ≤ block_at and half_life_ms > 0",
            ));
        }
        self.validate_hunt()
    }

    fn validate_hunt(&self) -> Result<(), ConfigError> {
        let h = &self.hunt;
        if h.interval_secs == 0 || h.window_hours == 0 || h.window_hours > self.retention_hours {
            return Err(invalid(
                "extraction.hunt.window_hours",
                "interval_secs ≥ 1 and 1 ≤ window_hours ≤ extraction.retention_hours",
            ));
        }
        if h.confirmed_action == Action::Observe {
            return Err(invalid(
                "extraction.hunt.confirmed_action",
                "must be flag, slow, reverify or block",
            ));
        }
        let c = &h.clustering;
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        let sane = c.timing_bucket_ms > 0
            && c.template_slot_ms > 0
            && (1..=4).contains(&c.min_signals)
            && c.min_keys >= 2
            && c.max_keys >= 1
            && c.max_bucket >= 2
            && c.chain >= 1
            && c.max_pairs >= 1
            && c.top_k >= 1
            && c.max_listed_keys >= 1
            && unit(c.timing_min_jaccard)
            && unit(c.template_min_fraction)
            && (-1.0..=1.0).contains(&c.distribution_min_cosine)
            && c.off_baseline_ratio.is_finite()
            && c.off_baseline_ratio > 0.0;
        if !sane {
            return Err(invalid(
                "extraction.hunt.clustering",
                "bucket widths > 0, 1 ≤ min_signals ≤ 4, min_keys ≥ 2, caps ≥ 1 (max_bucket ≥ 2), fractions in [0, 1], off_baseline_ratio > 0",
            ));
        }
        Ok(())
    }
}
