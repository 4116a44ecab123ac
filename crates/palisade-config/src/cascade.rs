//! `[[routes]] cascade`: a route whose requests a cheaper routed model
//! answers first; the route's own deployments (the stronger model) are
//! asked only when an evidence gate escalates the cheap answer.
//!
//! Each table checks its own fields; that `first` names another routed
//! model spans routes ([`crate::validate_routing_table`]). Nothing here may
//! judge an answer: the gates are `palisade_routing::CascadeGates`.

use super::*;

/// The evidence gates a cascade may escalate on.
pub const CASCADE_GATES: [&str; 4] = ["refusal", "json_invalid", "low_confidence", "policy_flag"];

/// A route's cascade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeConfig {
    /// The cheap model (another routed name) that answers first.
    pub first: String,
    /// When to ask this route's own model instead: `refusal`,
    /// `json_invalid`, `low_confidence`, `policy_flag`. An unreadable or
    /// failed cheap answer always escalates.
    #[serde(default = "default_gates")]
    pub escalate_on: Vec<String>,
    /// `low_confidence`: escalate when the cheap answer's mean token
    /// log-probability is below this.
    #[serde(default = "default_min_mean_logprob")]
    pub min_mean_logprob: f64,
}

/// Refusals, broken JSON and the output gate's blocks: the gates that need
/// nothing from the model but its answer.
fn default_gates() -> Vec<String> {
    vec![
        "refusal".to_owned(),
        "json_invalid".to_owned(),
        "policy_flag".to_owned(),
    ]
}

/// e^-1 ≈ 0.37 per token on average: well below what a model sure of its
/// answer produces (typically above −0.3), without firing on ordinary
/// prose. A starting point to measure on one's own traffic, not tuned.
fn default_min_mean_logprob() -> f64 {
    -1.0
}

impl CascadeConfig {
    /// `key` is the table's path, e.g. `routes[0].cascade`.
    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.escalate_on.is_empty() {
            return Err(invalid(
                format!("{key}.escalate_on"),
                "name at least one gate (refusal, json_invalid, low_confidence, policy_flag)",
            ));
        }
        for (j, gate) in self.escalate_on.iter().enumerate() {
            if !CASCADE_GATES.contains(&gate.as_str()) {
                return Err(invalid(
                    format!("{key}.escalate_on[{j}]"),
                    format!("unknown gate `{gate}` (refusal, json_invalid, low_confidence, policy_flag)"),
                ));
            }
        }
        if !self.min_mean_logprob.is_finite() || self.min_mean_logprob > 0.0 {
            return Err(invalid(
                format!("{key}.min_mean_logprob"),
                "must be a finite log-probability (<= 0)",
            ));
        }
        Ok(())
    }
}
