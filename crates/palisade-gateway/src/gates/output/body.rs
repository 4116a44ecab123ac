//! The output gate over a whole (non-streamed) response: every string of the
//! body is judged, the choices also together (a key split across `n`
//! choices is reassembled by a client printing them in order), `logprobs`
//! are relayed only when every token sequence in them passes, and a body the
//! gate cannot parse is refused, never relayed.
//!
//! Must not: relay any byte of a body it did not parse and judge.

use std::time::Instant;

use bytes::Bytes;
use palisade_openai::{ApiError, ErrorCode};
use palisade_policy::{Action, Evidence, Gate};
use serde_json::{json, Value};

use super::fields::{finds_anything, judge_string, judge_tree, logprob_texts, Outcome};
use super::{canary_alert, observe_unsanitized, schema_violation, OutputPolicy};
use crate::gates::GatePlan;
use crate::gates::ResponseShape;

/// A body the gate cannot judge: fail closed.
pub(crate) fn invalid_upstream(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamInvalidResponse,
        format!("the upstream sent {what} the safety gates cannot parse; it was not relayed"),
    )
}

/// The body as a JSON object, or the refusal (`NaN`, `-Infinity`, a
/// truncated or non-object body).
fn parse(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(invalid_upstream("a response body")),
    }
}

/// The main text of a choice after sanitizing: content as a string, or the
/// text and refusal parts of a content array, joined.
fn main_text(choice: &Value, shape: ResponseShape) -> Option<String> {
    match choice.pointer(shape.body_text())? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").or_else(|| p.get("refusal")))
                .filter_map(Value::as_str)
                .collect(),
        ),
        _ => None,
    }
}

/// The output gate over a whole completion body. Returns the body to send
/// (`None`: unchanged), a blocking schema error, or `upstream_invalid_response`
/// for a body the gate cannot parse.
pub(crate) fn gate_body(plan: &GatePlan, body: &[u8]) -> Result<Option<Bytes>, ApiError> {
    let policy = OutputPolicy::of(plan);
    if policy.is_none() && plan.tools.is_none() {
        return Ok(None);
    }
    let mut value = parse(body)?;
    let Some(policy) = policy else {
        return Ok(None);
    };
    if plan.shape == ResponseShape::Responses {
        return super::responses::gate_responses_body(plan, &policy, value);
    }
    let started = Instant::now();
    let mut evidence = Evidence::default();
    let mut changed = false;
    let mut blocked_choices = Vec::new();
    let mut withheld_logprobs = Vec::new();
    let mut texts = Vec::new();
    let tool_gate = plan.tools.is_some();
    // Only a class the sanitizer does not act on is observed separately.
    let observe = !(policy.sanitize.secrets && policy.sanitize.pii);
    if let Some(Value::Array(choices)) = value.get_mut("choices") {
        // The choices' texts are needed again only to check them against a schema or to
        // judge several together; one choice without a schema is not copied.
        let keep_texts = plan.response_schema.is_some() || choices.len() > 1;
        for (i, choice) in choices.iter_mut().enumerate() {
            if observe {
                if let Some(text) = main_text(choice, plan.shape) {
                    observe_unsanitized(&mut evidence, &text, &policy.sanitize);
                }
            }
            // JSON content is judged as a client that parses it sees it: by
            // its decoded string values (`\u0041KIA…` is a key).
            let mut outcome = Outcome::default();
            let json_path: &[&str] = match plan.shape {
                ResponseShape::Chat => &["message", "content"],
                ResponseShape::Completion | ResponseShape::Responses => &["text"],
            };
            let json_mode = match choice.pointer_mut(plan.shape.body_text()) {
                Some(Value::String(content))
                    if plan.response_schema.is_some() || parses_as_json(content) =>
                {
                    let s = palisade_output::sanitize_json(content, &policy.sanitize);
                    super::absorb(&mut evidence, &s.actions, s.canary_leaked);
                    outcome.blocked |= s.blocked_by(policy.block) || s.canary_leaked;
                    if let std::borrow::Cow::Owned(text) = s.text {
                        *content = text;
                        outcome.changed = true;
                    }
                    true
                }
                _ => false,
            };
            // Every string of the choice but its logprobs (judged below) and
            // the calls the tool gate released (judged there, and bound to
            // their capability tokens).
            // Only an array of calls is what the tool gate read.
            let calls_judged = tool_gate
                && choice
                    .pointer("/message/tool_calls")
                    .is_some_and(Value::is_array);
            // Token ids are numbers: `judge_tree` reads strings only.
            // The prompt's spell the system prompt and canary; a choice's
            // spell its text as the upstream wrote it.
            changed |= drop_token_ids(choice, "prompt_token_ids");
            outcome |= judge_tree(choice, &policy, &mut evidence, &|path| {
                path == ["logprobs"]
                    || (calls_judged && path == ["message", "tool_calls"])
                    || (json_mode && path == json_path)
            });
            changed |= outcome.changed;
            if outcome.changed || outcome.blocked {
                changed |= drop_token_ids(choice, "token_ids");
                changed |= silence_audio(choice);
            }
            let mut logprobs_ok = !outcome.changed && !outcome.blocked;
            if let Some(lp) = choice.get("logprobs").filter(|l| !l.is_null()) {
                logprobs_ok &= !logprob_texts(lp)
                    .iter()
                    .any(|t| finds_anything(t, &policy, &mut evidence));
                if !logprobs_ok {
                    // Tokens of a redacted span cannot be redacted consistently
                    // with the text: withheld, and said so.
                    choice["logprobs"] = Value::Null;
                    withheld_logprobs.push(i);
                    changed = true;
                }
            }
            if outcome.blocked {
                blocked_choices.push(i);
            }
            if let Some(text) = keep_texts.then(|| main_text(choice, plan.shape)).flatten() {
                if let (Some(schema), None) = (&plan.response_schema, &evidence.schema_violation) {
                    evidence.schema_violation = schema_violation(schema, &text);
                }
                texts.push(text);
            }
        }
    }
    // What a client printing every choice in order reads: a secret or
    // canary cut across choices is whole here.
    if texts.len() > 1 {
        let mut joined: String = texts.concat();
        let outcome = judge_string(&mut joined, &policy, &mut evidence);
        if outcome.changed || outcome.blocked {
            let n = value["choices"].as_array().map_or(0, Vec::len);
            blocked_choices = (0..n).collect();
        }
    }
    // The rest of the body (id, model, usage, vendor fields, `choices` in a
    // shape the loop above did not read), but not the gateway's own report
    // (an upstream's `palisade` object was removed before the gates).
    changed |= drop_token_ids(&mut value, "prompt_token_ids");
    if let Some(obj) = value.as_object_mut() {
        for (key, field) in obj.iter_mut() {
            if key == "palisade" || (key == "choices" && field.is_array()) {
                continue;
            }
            let outcome: Outcome = judge_tree(field, &policy, &mut evidence, &|_| false);
            changed |= outcome.changed;
            if outcome.blocked {
                *field = Value::Null;
            }
        }
    }
    let decision = crate::gates::decide(plan, Gate::Output, evidence.clone(), started);
    if evidence.canary_leaked {
        canary_alert(plan);
    }
    if decision.enforced_action == Action::Block || !blocked_choices.is_empty() {
        if evidence.schema_violation.is_some()
            && decision
                .reasons
                .iter()
                .any(|r| r.as_str() == "schema_violation")
        {
            return Err(ApiError::policy(
                ErrorCode::OutputRejected,
                "schema_violation",
                format!(
                    "the model's answer does not match the requested response_format schema ({})",
                    evidence.schema_violation.as_deref().unwrap_or("")
                ),
            ));
        }
        let all = decision.enforced_action == Action::Block;
        if let Some(Value::Array(choices)) = value.get_mut("choices") {
            for (i, choice) in choices.iter_mut().enumerate() {
                if all || blocked_choices.contains(&i) {
                    filter_choice(choice);
                }
            }
        }
        changed = true;
    }
    if !withheld_logprobs.is_empty() {
        note(
            &mut value,
            json!({"logprobs_withheld": withheld_logprobs,
                   "reason": "the output gate changed or withheld text these tokens spell"}),
        );
    }
    Ok(changed.then(|| Bytes::from(value.to_string())))
}

/// Removes the member `key` (token ids) from `object`; true if it was there.
/// The request side asks no engine for them under an output gate; an
/// upstream that sends them anyway loses them here.
fn drop_token_ids(object: &mut Value, key: &str) -> bool {
    object
        .as_object_mut()
        .is_some_and(|o| o.remove(key).is_some())
}

/// Empties a choice's speech (`message.audio.data`, base64 sound): it says
/// what its transcript said before the gate redacted it. True if there was
/// any.
fn silence_audio(choice: &mut Value) -> bool {
    match choice.pointer_mut("/message/audio/data") {
        Some(Value::String(data)) if !data.is_empty() => {
            data.clear();
            true
        }
        _ => false,
    }
}

/// True if `text` is a JSON object or array (what a client may `JSON.parse`).
fn parses_as_json(text: &str) -> bool {
    text.trim_start().starts_with(['{', '['])
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// Adds the output gate's note to the body's `palisade` object.
fn note(value: &mut Value, output: Value) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    let report = obj.entry("palisade").or_insert_with(|| json!({}));
    if let Some(report) = report.as_object_mut() {
        report.insert("output".to_owned(), output);
    }
}

/// Withholds a choice: every text in it goes, `finish_reason:
/// "content_filter"`.
pub(super) fn filter_choice(choice: &mut Value) {
    let Some(obj) = choice.as_object_mut() else {
        return;
    };
    if obj.contains_key("message") {
        obj.insert(
            "message".to_owned(),
            json!({"role": "assistant", "content": ""}),
        );
    }
    if obj.contains_key("text") {
        obj.insert("text".to_owned(), Value::String(String::new()));
    }
    if obj.contains_key("logprobs") {
        obj.insert("logprobs".to_owned(), Value::Null);
    }
    obj.remove("token_ids");
    // `message` was replaced above, its audio with it.
    obj.insert(
        "finish_reason".to_owned(),
        Value::String("content_filter".to_owned()),
    );
}

/// The output gate over an upstream error body (4xx): SDKs put its message
/// into the exception an application logs or shows, so its strings are
/// judged like a completion's. A body that is not JSON is refused.
pub(crate) fn gate_error_body(plan: &GatePlan, body: &[u8]) -> Result<Option<Bytes>, ApiError> {
    let Some(policy) = OutputPolicy::of(plan) else {
        return if plan.tools.is_some() {
            parse(body).map(|_| None)
        } else {
            Ok(None)
        };
    };
    let mut value = parse(body)?;
    let started = Instant::now();
    let mut evidence = Evidence::default();
    let outcome = judge_tree(&mut value, &policy, &mut evidence, &|_| false);
    if outcome.blocked {
        value = json!({"error": {"message": "the upstream's error message was withheld by the output gate",
                                 "type": "upstream_error", "code": null, "param": null}});
    }
    if outcome.changed || outcome.blocked {
        let _ = crate::gates::decide(plan, Gate::Output, evidence.clone(), started);
        if evidence.canary_leaked {
            canary_alert(plan);
        }
    }
    Ok((outcome.changed || outcome.blocked).then(|| Bytes::from(value.to_string())))
}
