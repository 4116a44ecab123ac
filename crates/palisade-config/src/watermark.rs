//! `[watermark]`: output watermarking for model-extraction forensics. A
//! keyed green list, per tenant and rotation period, sent as the upstream's
//! `logit_bias` on the listed models (upstreams that accept a bias map as
//! large as the vocabulary's green fraction: vLLM, llama.cpp servers), and
//! who may ask `POST /v1/watermark/detect`.
//!
//! The shapes are `palisade-watermark`'s own where it has one
//! ([`ClientBias`]). Validation checks names and bounds; it must not read
//! the key (the gateway resolves `key_env` at start) or a tokenizer file.

use palisade_watermark::{ClientBias, LogprobsAction};

use super::*;

/// Output watermarking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatermarkConfig {
    /// Watermark the listed models' outputs.
    pub enabled: bool,
    /// The environment variable holding the master key (64 hex digits, the
    /// same on every replica); required at start when enabled.
    pub key_env: String,
    /// Public model names (`[[routes]] model`) to watermark. Each route must
    /// have a `tokenizer` (the bias map and detection need its vocabulary)
    /// and an upstream that accepts a large `logit_bias` map.
    pub models: Vec<String>,
    /// Tenants whose outputs are watermarked; `"*"` is every tenant.
    pub tenants: Vec<String>,
    /// Fraction of the vocabulary that is green.
    pub gamma: f64,
    /// Bias added to green tokens' logits (OpenAI range, at most 100).
    pub delta: f32,
    /// Hours per key: each tenant's key changes every period.
    pub rotation_hours: u64,
    /// The client's own `logit_bias` on a watermarked model: `strip`,
    /// `merge` or `refuse`.
    pub client_logit_bias: ClientBias,
    /// Requests for log-probabilities on a watermarked model: `refuse`,
    /// `strip` or `allow` (they reveal the green list to a client that
    /// compares two tenants' or two periods' answers).
    pub logprobs: LogprobsAction,
    /// Past periods `POST /v1/watermark/detect` tests besides the current
    /// one (each is one green list to build and score).
    pub detect_periods: u64,
    /// Detect calls a tenant's key may make per UTC day against its own
    /// tenant's keys; 0: only admin keys may call detect.
    pub tenant_detect_per_day: u32,
    /// Fewest distinct tokens a tenant's detect call must carry before it
    /// gets a verdict (admins get a score for any length).
    pub tenant_min_tokens: u64,
}

impl Default for WatermarkConfig {
    /// Rationale: off until an operator lists models whose upstreams take
    /// the map. gamma 0.25 and delta 2.0: the middle of Zhao et al.'s and
    /// Kirchenbauer et al.'s ranges, detected within ~100 tokens at a small
    /// perplexity cost (docs/benchmarks.md, "Watermark"). Weekly keys: a
    /// scrubbing attacker who knows the base token frequencies learns a
    /// unigram list from ~10 outputs (same section), which no rotation
    /// period outruns; rotation bounds what one leaked key exposes and
    /// dates a stolen model's training data to a week, and forensics tries
    /// one key per week. Tenants cannot query detect by default: each answer leaks
    /// a little of their green list (see README, "Watermarking").
    fn default() -> Self {
        Self {
            enabled: false,
            key_env: "PALISADE_WATERMARK_KEY".to_owned(),
            models: Vec::new(),
            tenants: vec![WILDCARD_MODEL.to_owned()],
            gamma: palisade_watermark::DEFAULT_GAMMA,
            delta: palisade_watermark::DEFAULT_DELTA,
            rotation_hours: 168,
            client_logit_bias: ClientBias::Strip,
            logprobs: LogprobsAction::Refuse,
            detect_periods: 8,
            tenant_detect_per_day: 0,
            tenant_min_tokens: 200,
        }
    }
}

impl WatermarkConfig {
    /// Whether `tenant`'s outputs are watermarked.
    pub fn covers(&self, tenant: &str) -> bool {
        self.enabled
            && self
                .tenants
                .iter()
                .any(|t| t == WILDCARD_MODEL || t == tenant)
    }

    /// Milliseconds per key period.
    pub fn rotation_ms(&self) -> u64 {
        self.rotation_hours.saturating_mul(3_600_000)
    }

    pub(crate) fn validate(&self, routes: &[RouteConfig]) -> Result<(), ConfigError> {
        if !(self.gamma > 0.0 && self.gamma < 1.0) {
            return Err(invalid("watermark.gamma", "must be between 0 and 1"));
        }
        if !(self.delta > 0.0 && self.delta <= 100.0) {
            return Err(invalid("watermark.delta", "must be in (0, 100]"));
        }
        if self.rotation_hours == 0 {
            return Err(invalid("watermark.rotation_hours", "must be at least 1"));
        }
        if self.detect_periods > 1000 {
            return Err(invalid(
                "watermark.detect_periods",
                "at most 1000 (each period is a green list built per detect call)",
            ));
        }
        if !self.enabled {
            return Ok(());
        }
        if self.key_env.is_empty() {
            return Err(invalid(
                "watermark.key_env",
                "names no environment variable",
            ));
        }
        if self.models.is_empty() {
            return Err(invalid(
                "watermark.models",
                "lists no model: name the routes whose upstream accepts logit_bias maps",
            ));
        }
        for (i, model) in self.models.iter().enumerate() {
            match routes.iter().find(|r| &r.model == model) {
                Some(r) if r.tokenizer.is_some() => {}
                Some(_) => {
                    return Err(invalid(
                        format!("watermark.models[{i}]"),
                        format!("route `{model}` has no tokenizer (its vocabulary is needed)"),
                    ))
                }
                None => {
                    return Err(invalid(
                        format!("watermark.models[{i}]"),
                        format!("`{model}` is not a routed model name"),
                    ))
                }
            }
        }
        Ok(())
    }
}
