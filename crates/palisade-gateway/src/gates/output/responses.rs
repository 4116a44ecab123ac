//! The output gate over a whole Responses API body (`POST /v1/responses`,
//! not streamed): every string of it is judged (the `output` items'
//! `output_text` parts, `function_call` arguments, `reasoning` summaries,
//! the echoed `instructions` and `metadata`, fields an upstream invents),
//! the output texts also together (a key split across two messages is whole
//! to a client printing them in order), and `logprobs` are relayed only when
//! every token sequence in them passes.
//!
//! A blocking finding withholds the whole output: `output: []`, `status:
//! "incomplete"`, `incomplete_details.reason: "content_filter"`.
//!
//! Must not: relay any byte of a body it did not parse and judge.

use std::time::Instant;

use bytes::Bytes;
use palisade_openai::ApiError;
use palisade_policy::{Action, Evidence, Gate};
use serde_json::{json, Value};

use super::fields::{finds_anything, judge_string, judge_tree, logprob_texts};
use super::{canary_alert, observe_unsanitized, OutputPolicy};
use crate::gates::GatePlan;

/// The text parts of the `output` items, in order.
pub(super) fn output_texts(value: &Value) -> Vec<String> {
    let Some(Value::Array(items)) = value.get("output") else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| i.get("content").and_then(Value::as_array))
        .flatten()
        .filter_map(|p| p.get("text").or_else(|| p.get("refusal")))
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// The gate over a parsed Responses body. Returns the body to send
/// (`None`: unchanged).
pub(super) fn gate_responses_body(
    plan: &GatePlan,
    policy: &OutputPolicy,
    mut value: Value,
) -> Result<Option<Bytes>, ApiError> {
    let started = Instant::now();
    let mut evidence = Evidence::default();
    let before = output_texts(&value).concat();
    observe_unsanitized(&mut evidence, &before, &policy.sanitize);
    // Everything but the gateway's own report and the logprobs (below).
    let mut outcome = judge_tree(&mut value, policy, &mut evidence, &|path| {
        path == ["palisade"] || path == ["output", "content", "logprobs"]
    });
    let mut logprobs_withheld = false;
    if let Some(Value::Array(items)) = value.get_mut("output") {
        let parts = items
            .iter_mut()
            .filter_map(|i| i.get_mut("content").and_then(Value::as_array_mut))
            .flatten();
        for part in parts {
            let Some(lp) = part.get("logprobs").filter(|l| !l.is_null()) else {
                continue;
            };
            let leaks = outcome.changed
                || outcome.blocked
                || logprob_texts(&json!({ "content": lp }))
                    .iter()
                    .any(|t| finds_anything(t, policy, &mut evidence));
            if leaks {
                part["logprobs"] = json!([]);
                logprobs_withheld = true;
            }
        }
    }
    let texts = output_texts(&value);
    if texts.len() > 1 {
        let mut joined = texts.concat();
        let together = judge_string(&mut joined, policy, &mut evidence);
        outcome.blocked |= together.changed || together.blocked;
    }
    let decision = crate::gates::decide(plan, Gate::Output, evidence.clone(), started);
    if evidence.canary_leaked {
        canary_alert(plan);
    }
    let mut changed = outcome.changed || logprobs_withheld;
    if decision.enforced_action == Action::Block || outcome.blocked {
        if let Some(obj) = value.as_object_mut() {
            obj.insert("output".to_owned(), json!([]));
            obj.remove("output_text");
            obj.insert("status".to_owned(), json!("incomplete"));
            obj.insert(
                "incomplete_details".to_owned(),
                json!({"reason": "content_filter"}),
            );
        }
        changed = true;
    }
    if logprobs_withheld {
        if let Some(obj) = value.as_object_mut() {
            obj.insert(
                "palisade".to_owned(),
                json!({"output": {"logprobs_withheld": true,
                       "reason": "the output gate changed or withheld text these tokens spell"}}),
            );
        }
    }
    Ok(changed.then(|| Bytes::from(value.to_string())))
}
