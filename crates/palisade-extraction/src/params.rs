//! Parameter hardening: the request fields logit-stealing attacks need
//! (Carlini et al. 2024; Finlayson et al. 2024: log-probabilities combined
//! with logit control) are refused, stripped or capped per policy tier,
//! before the request goes upstream.
//!
//! The gateway reads a body as `serde_json` does: an escaped key
//! (`"logit\u005fbias"`) is decoded, and of duplicate keys the last wins. An
//! upstream with another parser could read the *first* duplicate, so
//! whenever a watched key is present at all (in any form) the verdict says
//! [`Hardening::reserialize`]: the gateway then forwards its own encoding of
//! what it judged, never the client's bytes. Keys nested in `extra_body`-style
//! objects that an upstream or SDK merges into the top level are judged as
//! if they were top level.
//!
//! Must not: touch any other field, or keep the request's text.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a tier does with one kind of probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProbeAction {
    /// Forward as sent.
    Allow,
    /// Remove the field(s) and serve.
    Strip,
    /// Refuse the request (400 `logprob_probe_refused`).
    #[default]
    Refuse,
}

/// One tier's hardening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParamPolicy {
    /// `logit_bias` in a request that also asks for `logprobs` or
    /// `top_logprobs`: refuse, or strip `logit_bias`.
    pub logit_bias_with_logprobs: ProbeAction,
    /// Highest `top_logprobs` served; larger values are lowered to it
    /// (`None`: no cap).
    pub max_top_logprobs: Option<u64>,
    /// `echo` with log-probabilities (the prompt's own log-probabilities).
    pub echo_with_logprobs: ProbeAction,
    /// `prompt_logprobs` (vLLM).
    pub prompt_logprobs: ProbeAction,
    /// Engine-specific probes: vLLM `allowed_token_ids`, llama.cpp `n_probs`
    /// and `post_sampling_probs`.
    pub engine_probes: ProbeAction,
}

impl Default for ParamPolicy {
    /// The hardened tier. Rationale: logit bias with logprobs is the
    /// logit-stealing primitive, so refuse (a client learns why, and the
    /// refusal counts as a probe); five top log-probabilities serve every
    /// product use seen (ranking, confidence) while each extra one is
    /// another logit leaked per call; prompt log-probabilities and
    /// engine-specific probability dumps have no product use behind a
    /// gateway and are refused or stripped.
    fn default() -> Self {
        Self {
            logit_bias_with_logprobs: ProbeAction::Refuse,
            max_top_logprobs: Some(5),
            echo_with_logprobs: ProbeAction::Refuse,
            prompt_logprobs: ProbeAction::Refuse,
            engine_probes: ProbeAction::Strip,
        }
    }
}

impl ParamPolicy {
    /// A tier that forwards everything (trusted tenants, research accounts).
    pub fn open() -> Self {
        Self {
            logit_bias_with_logprobs: ProbeAction::Allow,
            max_top_logprobs: None,
            echo_with_logprobs: ProbeAction::Allow,
            prompt_logprobs: ProbeAction::Allow,
            engine_probes: ProbeAction::Allow,
        }
    }
}

/// Why a field was refused, stripped or capped: stable snake_case codes for
/// audit records and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeReason {
    /// `logit_bias` together with log-probabilities.
    LogitBiasWithLogprobs,
    /// `top_logprobs` above the tier's cap.
    TopLogprobsCapped,
    /// `echo` together with log-probabilities.
    EchoWithLogprobs,
    /// `prompt_logprobs`.
    PromptLogprobs,
    /// An engine-specific probability probe.
    EngineProbe,
}

impl ProbeReason {
    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LogitBiasWithLogprobs => "logit_bias_with_logprobs",
            Self::TopLogprobsCapped => "top_logprobs_capped",
            Self::EchoWithLogprobs => "echo_with_logprobs",
            Self::PromptLogprobs => "prompt_logprobs",
            Self::EngineProbe => "engine_probe",
        }
    }
}

/// One thing hardening did to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeFinding {
    /// Why.
    pub reason: ProbeReason,
    /// The field, with its container when nested (`extra_body.n_probs`).
    pub field: String,
    /// What was done: `Strip` (removed or lowered) or `Refuse`.
    pub action: ProbeAction,
}

/// The verdict on a request's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hardening {
    /// Everything found, in the order checked.
    pub findings: Vec<ProbeFinding>,
    /// Forward the gateway's encoding, not the client's bytes (a watched key
    /// was present, or the body was changed).
    pub reserialize: bool,
}

impl Hardening {
    /// The first refusal, if any: the request must not go upstream.
    pub fn refusal(&self) -> Option<&ProbeFinding> {
        self.findings
            .iter()
            .find(|f| f.action == ProbeAction::Refuse)
    }
}

/// Objects whose keys an SDK or upstream merges into the request's top level
/// (the OpenAI SDKs' `extra_body`, vLLM's `vllm_xargs`, NVIDIA NIM's
/// `nvext`), so a probe hidden in them is a probe.
pub const MERGED_CONTAINERS: [&str; 4] = ["extra_body", "extra_params", "vllm_xargs", "nvext"];

/// Engine-specific probability probes.
pub const ENGINE_PROBES: [&str; 3] = ["allowed_token_ids", "n_probs", "post_sampling_probs"];

/// Every field hardening reads; present in any form, the body is re-encoded.
const WATCHED: [&str; 9] = [
    "include",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "echo",
    "prompt_logprobs",
    "allowed_token_ids",
    "n_probs",
    "post_sampling_probs",
];

/// Applies `policy` to a request's top-level `fields`, in place.
pub fn harden(fields: &mut Map<String, Value>, policy: &ParamPolicy) -> Hardening {
    let mut verdict = Hardening::default();
    let watched_present = WATCHED.iter().any(|k| fields.contains_key(*k))
        || MERGED_CONTAINERS.iter().any(|k| fields.contains_key(*k));
    if !watched_present {
        return verdict;
    }
    verdict.reserialize = true;
    // The effective request: top level plus every merged container.
    // The Responses API asks by `include: ["message.output_text.logprobs"]`.
    let asks_logprobs = |f: &Map<String, Value>| {
        truthy(f.get("logprobs"))
            || f.get("top_logprobs").is_some_and(|v| !v.is_null())
            || f.get("include").and_then(Value::as_array).is_some_and(|i| {
                i.iter()
                    .any(|v| v.as_str().is_some_and(|s| s.contains("logprobs")))
            })
    };
    let mut wants_logprobs = asks_logprobs(fields);
    for c in MERGED_CONTAINERS {
        if let Some(Value::Object(inner)) = fields.get(c) {
            wants_logprobs |= asks_logprobs(inner);
        }
    }
    harden_object(fields, "", policy, wants_logprobs, &mut verdict);
    for c in MERGED_CONTAINERS {
        if let Some(Value::Object(inner)) = fields.get_mut(c) {
            harden_object(inner, c, policy, wants_logprobs, &mut verdict);
        }
    }
    verdict
}

fn harden_object(
    object: &mut Map<String, Value>,
    container: &str,
    policy: &ParamPolicy,
    wants_logprobs: bool,
    verdict: &mut Hardening,
) {
    let name = |field: &str| {
        if container.is_empty() {
            field.to_owned()
        } else {
            format!("{container}.{field}")
        }
    };
    let mut act =
        |object: &mut Map<String, Value>, field: &str, reason: ProbeReason, action: ProbeAction| {
            match action {
                ProbeAction::Allow => return,
                ProbeAction::Strip => {
                    object.remove(field);
                }
                ProbeAction::Refuse => {}
            }
            verdict.findings.push(ProbeFinding {
                reason,
                field: name(field),
                action,
            });
        };
    let has_bias = object
        .get("logit_bias")
        .is_some_and(|v| !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()));
    if wants_logprobs && has_bias {
        act(
            object,
            "logit_bias",
            ProbeReason::LogitBiasWithLogprobs,
            policy.logit_bias_with_logprobs,
        );
    }
    if wants_logprobs && truthy(object.get("echo")) {
        act(
            object,
            "echo",
            ProbeReason::EchoWithLogprobs,
            policy.echo_with_logprobs,
        );
    }
    // `prompt_logprobs: null` or `0`-less forms still name the probe; any
    // non-null value asks for it.
    if object.get("prompt_logprobs").is_some_and(|v| !v.is_null()) {
        act(
            object,
            "prompt_logprobs",
            ProbeReason::PromptLogprobs,
            policy.prompt_logprobs,
        );
    }
    for probe in ENGINE_PROBES {
        if object.get(probe).is_some_and(|v| !v.is_null()) {
            act(
                object,
                probe,
                ProbeReason::EngineProbe,
                policy.engine_probes,
            );
        }
    }
    if let Some(cap) = policy.max_top_logprobs {
        let over = match object.get("top_logprobs") {
            Some(Value::Number(n)) => n.as_u64().is_none_or(|v| v > cap),
            // A string, float or object is not a count the cap can judge:
            // lowered to the cap like an oversized one.
            Some(Value::Null) | None => false,
            Some(_) => true,
        };
        if over {
            object.insert("top_logprobs".to_owned(), Value::from(cap));
            verdict.findings.push(ProbeFinding {
                reason: ProbeReason::TopLogprobsCapped,
                field: name("top_logprobs"),
                action: ProbeAction::Strip,
            });
        }
    }
    // Completions' `logprobs` is itself a count (0..=5 at OpenAI).
    if let (Some(cap), Some(Value::Number(n))) = (policy.max_top_logprobs, object.get("logprobs")) {
        if n.as_u64().is_none_or(|v| v > cap) && n.as_u64() != Some(1) {
            object.insert("logprobs".to_owned(), Value::from(cap));
            verdict.findings.push(ProbeFinding {
                reason: ProbeReason::TopLogprobsCapped,
                field: name("logprobs"),
                action: ProbeAction::Strip,
            });
        }
    }
}

/// A JSON value a lenient upstream reads as "yes": `true`, a non-zero
/// number, a non-empty string other than "false"/"0".
fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|v| v != 0.0),
        Some(Value::String(s)) => {
            !matches!(s.trim().to_ascii_lowercase().as_str(), "" | "false" | "0")
        }
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Null) | None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(body: Value, policy: &ParamPolicy) -> (Map<String, Value>, Hardening) {
        let Value::Object(mut fields) = body else {
            panic!("object")
        };
        let verdict = harden(&mut fields, policy);
        (fields, verdict)
    }

    fn reasons(h: &Hardening) -> Vec<(ProbeReason, ProbeAction)> {
        h.findings.iter().map(|f| (f.reason, f.action)).collect()
    }

    /// Body, tier, expected findings, expected re-encoding.
    type Case<'a> = (
        Value,
        &'a ParamPolicy,
        Vec<(ProbeReason, ProbeAction)>,
        bool,
    );

    #[test]
    fn table() {
        use ProbeAction::*;
        use ProbeReason::*;
        let hardened = ParamPolicy::default();
        let open = ParamPolicy::open();
        let strip_bias = ParamPolicy {
            logit_bias_with_logprobs: Strip,
            ..ParamPolicy::default()
        };
        let cases: Vec<Case<'_>> = vec![
            (json!({"model": "m"}), &hardened, vec![], false),
            (
                json!({"logprobs": true, "top_logprobs": 3}),
                &hardened,
                vec![],
                true,
            ),
            (
                json!({"logit_bias": {"50256": -100}}),
                &hardened,
                vec![],
                true,
            ),
            (
                json!({"logprobs": true, "logit_bias": {"1": 5}}),
                &hardened,
                vec![(LogitBiasWithLogprobs, Refuse)],
                true,
            ),
            (
                json!({"top_logprobs": 2, "logit_bias": {"1": 5}}),
                &strip_bias,
                vec![(LogitBiasWithLogprobs, Strip)],
                true,
            ),
            (
                json!({"logprobs": true, "logit_bias": {}}),
                &hardened,
                vec![],
                true,
            ),
            (
                json!({"logprobs": true, "top_logprobs": 20}),
                &hardened,
                vec![(TopLogprobsCapped, Strip)],
                true,
            ),
            (
                json!({"logprobs": 3, "echo": true}),
                &hardened,
                vec![(EchoWithLogprobs, Refuse)],
                true,
            ),
            (json!({"echo": true}), &hardened, vec![], true),
            (
                json!({"prompt_logprobs": 1}),
                &hardened,
                vec![(PromptLogprobs, Refuse)],
                true,
            ),
            (
                json!({"n_probs": 10, "allowed_token_ids": [1, 2]}),
                &hardened,
                vec![(EngineProbe, Strip), (EngineProbe, Strip)],
                true,
            ),
            (
                json!({"extra_body": {"post_sampling_probs": true}}),
                &hardened,
                vec![(EngineProbe, Strip)],
                true,
            ),
            (
                json!({"logprobs": true, "extra_body": {"logit_bias": {"9": 100}}}),
                &hardened,
                vec![(LogitBiasWithLogprobs, Refuse)],
                true,
            ),
            (
                json!({"logit_bias": {"9": 100}, "vllm_xargs": {"logprobs": "yes"}}),
                &hardened,
                vec![(LogitBiasWithLogprobs, Refuse)],
                true,
            ),
            (
                json!({"logprobs": true, "logit_bias": {"1": 5}, "prompt_logprobs": 5, "top_logprobs": 50}),
                &open,
                vec![],
                true,
            ),
            (
                json!({"logprobs": true, "top_logprobs": "20"}),
                &hardened,
                vec![(TopLogprobsCapped, Strip)],
                true,
            ),
        ];
        for (i, (body, policy, want, reserialize)) in cases.into_iter().enumerate() {
            let (_, verdict) = run(body, policy);
            assert_eq!(reasons(&verdict), want, "case {i}");
            assert_eq!(verdict.reserialize, reserialize, "case {i}");
        }
    }

    #[test]
    fn strip_and_cap_rewrite_the_body() {
        let policy = ParamPolicy {
            logit_bias_with_logprobs: ProbeAction::Strip,
            ..ParamPolicy::default()
        };
        let (fields, verdict) = run(
            json!({"logprobs": true, "top_logprobs": 20, "logit_bias": {"1": 5}, "extra_body": {"n_probs": 9}}),
            &policy,
        );
        assert!(verdict.refusal().is_none());
        assert!(!fields.contains_key("logit_bias"));
        assert_eq!(fields["top_logprobs"], 5);
        assert_eq!(fields["extra_body"], json!({}));
    }

    #[test]
    fn the_responses_api_asks_for_logprobs_by_include() {
        // `include` asks for log-probabilities: logit bias beside it is the probe.
        let (fields, verdict) = run(
            json!({"include": ["message.output_text.logprobs"], "top_logprobs": 20, "logit_bias": {"1": 5}}),
            &ParamPolicy::default(),
        );
        assert_eq!(
            verdict.refusal().unwrap().reason,
            ProbeReason::LogitBiasWithLogprobs
        );
        assert_eq!(fields["top_logprobs"], 5);
        // Other inclusions ask for nothing of the kind.
        let (_, verdict) = run(
            json!({"include": ["reasoning.encrypted_content"], "logit_bias": {"1": 5}}),
            &ParamPolicy::default(),
        );
        assert!(verdict.refusal().is_none());
    }

    #[test]
    fn escaped_and_duplicate_keys_are_judged_as_serde_reads_them() {
        // The gateway parses with serde_json: escapes decode, the last duplicate wins.
        let raw = br#"{"logprobs": true, "logit\u005fbias": {"1": 100}}"#;
        let Value::Object(mut fields) = serde_json::from_slice(raw).unwrap() else {
            panic!()
        };
        let verdict = harden(&mut fields, &ParamPolicy::default());
        assert_eq!(
            verdict.refusal().unwrap().reason,
            ProbeReason::LogitBiasWithLogprobs
        );

        // A harmless last duplicate still forces re-encoding, so an upstream
        // that keeps the first one never sees `true`.
        let raw = br#"{"logprobs": true, "logit_bias": {"1": 100}, "logprobs": false}"#;
        let Value::Object(mut fields) = serde_json::from_slice(raw).unwrap() else {
            panic!()
        };
        let verdict = harden(&mut fields, &ParamPolicy::default());
        assert!(verdict.refusal().is_none());
        assert!(verdict.reserialize);
    }
}
