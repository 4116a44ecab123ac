//! `[[routes]] cascade`: a route whose requests a cheaper routed model
//! answers first; the route's own deployments (the stronger model) are
//! asked only when an evidence gate escalates the cheap answer.
//!
//! Each table checks its own fields; that `first` names another routed
//! model spans routes ([`crate::validate_routing_table`]). Nothing here may
//! judge an answer: the gates are `palisade_routing::CascadeGates`.

use super::*;

/// The evidence gates a cascade may escalate on.
pub const CASCADE_GATES: [&str; 5] = [
    "refusal",
    "json_invalid",
    "low_confidence",
    "policy_flag",
    "judge",
];

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
    /// `judge`: another routed model asked whether the cheap answer will
    /// do; it escalates when its answer opens with "yes".
    #[serde(default)]
    pub judge: Option<JudgeConfig>,
}

/// A cascade's judge: a routed model and the instructions it gets (its
/// system prompt) before the question and the cheap answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    /// The judge's routed model name (not a cascade).
    pub model: String,
    /// What to decide; it must ask for "yes" (escalate) or "no".
    pub prompt: String,
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
                    format!("unknown gate `{gate}` (refusal, json_invalid, low_confidence, policy_flag, judge)"),
                ));
            }
        }
        let judged = self.escalate_on.iter().any(|g| g == "judge");
        match &self.judge {
            Some(j) if !judged || j.prompt.trim().is_empty() || j.model.is_empty() => {
                return Err(invalid(
                    format!("{key}.judge"),
                    "a judge needs `model`, a non-empty `prompt`, and \"judge\" in `escalate_on`",
                ))
            }
            None if judged => {
                return Err(invalid(
                    format!("{key}.judge"),
                    "\"judge\" in `escalate_on` needs a `judge = { model, prompt }` table",
                ))
            }
            _ => {}
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
