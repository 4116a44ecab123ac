//! What one request contributes to the telemetry: its sampling parameters
//! (read on the request path: a handful of map lookups), its outcome at the
//! gates, and the sketch of its text (computed off the request path from the
//! text the gateway hands over).
//!
//! Must not: read the clock (`at_ms` comes from the caller) or keep text.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::sketch::{hash_bytes, TextSketch};

/// How the gates treated a request: refusals and flags in a key's window are
/// its filter-probing rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GateOutcome {
    /// Passed every gate untouched.
    #[default]
    Passed,
    /// A gate flagged, redacted or rewrote it.
    Flagged,
    /// A gate refused it.
    Blocked,
    /// Parameter hardening refused or stripped a probe.
    ProbeRefused,
}

impl GateOutcome {
    /// True for anything but a clean pass.
    pub fn is_probe(self) -> bool {
        self != Self::Passed
    }

    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Flagged => "flagged",
            Self::Blocked => "blocked",
            Self::ProbeRefused => "probe_refused",
        }
    }
}

/// The sampling parameters of a request, reduced to what detectors compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SamplingSignature {
    /// Log-probabilities were asked for (`logprobs` truthy or `top_logprobs`).
    pub logprobs: bool,
    /// Entries in `logit_bias`.
    pub logit_bias_entries: u16,
    /// A hash of the whole sampling configuration (temperature, top_p,
    /// top_k, logit_bias, seed, n, stop, max_tokens): a sweep shows as many
    /// distinct values for one key.
    pub config_hash: u64,
}

/// The fields whose values make a sampling configuration.
const SAMPLING_FIELDS: [&str; 11] = [
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "logit_bias",
    "seed",
    "n",
    "stop",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
];

/// Reads the sampling signature of a request's top-level fields. Cheap:
/// eleven lookups and the serialization of the few that are present.
pub fn sampling_signature(fields: &Map<String, Value>) -> SamplingSignature {
    let logprobs = matches!(fields.get("logprobs"), Some(Value::Bool(true)))
        || matches!(fields.get("logprobs"), Some(Value::Number(_)))
        || fields.get("top_logprobs").is_some_and(|v| !v.is_null());
    let logit_bias_entries = fields
        .get("logit_bias")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len().min(u16::MAX as usize) as u16);
    let mut h: u64 = 0;
    for (i, name) in SAMPLING_FIELDS.iter().enumerate() {
        if let Some(v) = fields.get(*name) {
            // Value's Display is compact JSON; object keys are sorted by
            // serde_json's map, so equal configurations hash equal.
            let text = v.to_string();
            h ^= hash_bytes(text.as_bytes()).rotate_left(i as u32 * 5);
        }
    }
    SamplingSignature {
        logprobs,
        logit_bias_entries,
        config_hash: h,
    }
}

/// One request, as the detectors see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFeatures {
    /// When it arrived, Unix milliseconds (from the caller's clock).
    pub at_ms: i64,
    /// Its text's sketch.
    pub sketch: TextSketch,
    /// Its sampling parameters.
    pub sampling: SamplingSignature,
    /// What the gates did.
    pub outcome: GateOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sig(v: Value) -> SamplingSignature {
        sampling_signature(v.as_object().unwrap())
    }

    #[test]
    fn equal_configurations_hash_equal_and_sweeps_differ() {
        let a = sig(json!({"temperature": 0.7, "logit_bias": {"1": 2, "3": 4}}));
        let b = sig(json!({"logit_bias": {"3": 4, "1": 2}, "temperature": 0.7, "model": "x"}));
        let c = sig(json!({"temperature": 0.7, "logit_bias": {"1": 2, "3": 5}}));
        assert_eq!(a, b);
        assert_ne!(a.config_hash, c.config_hash);
        assert_eq!(a.logit_bias_entries, 2);
        assert!(!a.logprobs);
        assert!(sig(json!({"top_logprobs": 2})).logprobs);
        assert!(!sig(json!({"logprobs": false})).logprobs);
    }
}
