//! The output gate: a completion is sanitized (secrets, PII, exfiltration
//! links, hidden markup, leaked canaries) and checked against the request's
//! `response_format` schema before the client sees it — whole for ordinary
//! responses, and per semantic chunk for streams, where
//! `palisade_output::StreamGuard` holds text back until it can be judged so a
//! secret or link split across upstream events is never emitted in part.
//!
//! A blocking finding ends the completion with `finish_reason:
//! "content_filter"` (a stream also stops reading the upstream); a schema
//! violation the policy blocks is a 502 `schema_violation`. Every completion
//! gets one audit record for the output gate.

use std::collections::BTreeMap;
use std::sync::Arc;

use palisade_output::{Applied, Class, ClassSet, LinkAllow, SanitizeOptions};
use palisade_policy::{Action, DetectorKind, Effect, Evidence, Gate};
use serde_json::Value;

use crate::gates::GatePlan;

mod body;
mod fields;
mod responses;
mod stream;
mod tool_args;

pub(crate) use body::{gate_body, gate_error_body, invalid_upstream};
pub(crate) use stream::{frame_payload, EventAction, StreamGate};
pub(crate) use tool_args::{tool_call_leaks, Echo};

/// What the tier's output rules ask of the sanitizer.
#[derive(Debug, Clone)]
pub(crate) struct OutputPolicy {
    sanitize: SanitizeOptions,
    block: ClassSet,
}

/// Secrets and PII the sanitizer was not asked to remove (the rule only
/// flags, or only a shadow policy acts on them) still belong in the
/// evidence, so the audit log and shadow decisions see them.
fn observe_unsanitized(evidence: &mut Evidence, text: &str, opts: &SanitizeOptions) {
    let bump = |map: &mut BTreeMap<String, u32>, rule: &str| {
        let n = map.entry(rule.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
    };
    if !opts.secrets {
        for f in palisade_detect::find_secrets(text) {
            bump(&mut evidence.secrets, f.rule);
        }
    }
    if !opts.pii {
        for f in palisade_detect::find_pii(text) {
            bump(&mut evidence.pii, f.rule);
        }
    }
}

/// The rule's enforced action at the output gate, if any.
fn enforced(plan: &GatePlan, detector: DetectorKind) -> Option<Action> {
    let tier = plan.snapshot.tier_for(&plan.subject_ref());
    match tier.gate(Gate::Output).rule(detector)?.effect {
        Effect::Enforce(a) => Some(a),
        Effect::Shadow(_) => None,
    }
}

impl OutputPolicy {
    /// The sanitizer settings for `plan`'s tier; `None` when the output gate
    /// has nothing to do.
    pub(crate) fn of(plan: &GatePlan) -> Option<Self> {
        let mut block = ClassSet::EMPTY;
        let mut on = |detector: DetectorKind, class: Class| match enforced(plan, detector) {
            Some(Action::Block) => {
                block = block.with(class);
                true
            }
            Some(Action::Redact) => true,
            _ => false,
        };
        let secrets = on(DetectorKind::Secrets, Class::Secret);
        let pii = on(DetectorKind::Pii, Class::Pii);
        let links = on(DetectorKind::Links, Class::Link);
        let hidden = on(DetectorKind::HiddenMarkup, Class::Hidden);
        let canaries = match enforced(plan, DetectorKind::Canary) {
            Some(a) if a >= Action::Flag => plan.canaries.clone(),
            _ => Vec::new(),
        };
        let schema = plan.response_schema.is_some();
        if !(secrets || pii || links || hidden || !canaries.is_empty() || schema) {
            return None;
        }
        let snapshot = plan.snapshot.clone();
        Some(Self {
            sanitize: SanitizeOptions {
                secrets,
                pii,
                links,
                hidden,
                allow: LinkAllow::predicate(move |host| snapshot.link_allowed(host)),
                canaries,
                ..SanitizeOptions::default()
            },
            block,
        })
    }
}

/// Adds what the sanitizer did to the gate's evidence.
fn absorb(evidence: &mut Evidence, actions: &[Applied], canary_leaked: bool) {
    let bump = |map: &mut BTreeMap<String, u32>, rule: &str| {
        let n = map.entry(rule.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
    };
    for a in actions {
        match a.class {
            Class::Secret => bump(&mut evidence.secrets, a.rule),
            Class::Pii => bump(&mut evidence.pii, a.rule),
            Class::Link => evidence.disallowed_links = evidence.disallowed_links.saturating_add(1),
            Class::Hidden | Class::Overflow => evidence.hidden_markup = true,
            Class::Canary => evidence.canary_leaked = true,
            _ => {}
        }
    }
    evidence.canary_leaked |= canary_leaked;
}

/// Adds the findings of a text judged whole that repeats text already
/// judged (a Responses stream's `.done` events and `response.completed`
/// repeat every delta): per rule the larger count, not the sum, so one
/// secret is one finding in the audit record however often the stream
/// repeats it.
fn merge_repeated(into: &mut Evidence, from: Evidence) {
    let most = |into: &mut BTreeMap<String, u32>, from: BTreeMap<String, u32>| {
        for (rule, n) in from {
            let e = into.entry(rule).or_insert(0);
            *e = (*e).max(n);
        }
    };
    most(&mut into.secrets, from.secrets);
    most(&mut into.pii, from.pii);
    into.disallowed_links = into.disallowed_links.max(from.disallowed_links);
    into.hidden_markup |= from.hidden_markup;
    into.canary_leaked |= from.canary_leaked;
}

/// The first way `text` fails `schema`, as `pointer: keyword` (never the
/// value, which may be anything the model wrote).
fn schema_violation(schema: &Value, text: &str) -> Option<String> {
    palisade_policy::first_schema_violation(schema, text)
}

/// A canary in a completion means the system prompt leaked: beyond the
/// audit record, an alert for operators (log target `palisade::alert`, and
/// `palisade_canary_leaks_total`).
fn canary_alert(plan: &GatePlan) {
    metrics::counter!(crate::metrics::CANARY_LEAKS).increment(1);
    tracing::error!(
        target: "palisade::alert",
        request_id = %plan.subject.request_id,
        tenant = %plan.subject.tenant,
        model = %plan.subject.model,
        "canary leaked: the system prompt appeared in a completion; the completion was withheld"
    );
}

/// The body (or event payload) without a top-level `palisade` object the
/// upstream sent: that name is the gateway's own report, which the output
/// gate leaves alone, so an upstream must not be able to fill it. `None`
/// when there is none (the common case costs one substring search).
///
/// A key can spell `palisade` only literally or with a `\u` escape (JSON has
/// no other escape for a letter), so text with neither cannot carry one;
/// anything else is parsed, whatever its key order, duplicates or spacing.
pub(crate) fn without_foreign_report(data: &[u8]) -> Option<Vec<u8>> {
    if !may_name_report(data) {
        return None;
    }
    let mut value: Value = serde_json::from_slice(data).ok()?;
    value.as_object_mut()?.remove("palisade")?;
    serde_json::to_vec(&value).ok()
}

/// Whether `data` may hold a key that decodes to `palisade`: it holds the
/// name literally, or a `\u` escape that may spell part of it.
pub(crate) fn may_name_report(data: &[u8]) -> bool {
    // One pass that stops only at the bytes either pattern starts with (it
    // runs on every event).
    data.iter().enumerate().any(|(i, &b)| match b {
        b'p' => data[i..].starts_with(b"palisade"),
        b'\\' => data.get(i + 1) == Some(&b'u'),
        _ => false,
    })
}

/// The schema of a request's `response_format`, when it asks for one.
pub(crate) fn response_schema(fields: &serde_json::Map<String, Value>) -> Option<Arc<Value>> {
    let format = fields.get("response_format")?;
    match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => format.pointer("/json_schema/schema").cloned().map(Arc::new),
        _ => None,
    }
}

#[cfg(test)]
mod report_tests {
    use super::without_foreign_report;

    fn check(data: &str, expected: Option<&str>) {
        let got = without_foreign_report(data.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(got.as_deref(), expected, "{data}");
    }

    #[test]
    fn an_upstream_report_is_removed_however_its_key_is_spelled() {
        check(r#"{"a":1}"#, None);
        check(r#"{"a":"caf\u00e9"}"#, None);
        check(r#"{"palisade":{"x":"s"},"a":1}"#, Some(r#"{"a":1}"#));
        check(r#"{"a":1 , "palisade" :{"x":"s"}}"#, Some(r#"{"a":1}"#));
        check(r#"{"p\u0061lisade":{"x":"s"},"a":1}"#, Some(r#"{"a":1}"#));
        check(
            r#"{"\u0070\u0061\u006c\u0069\u0073\u0061\u0064\u0065":1,"a":1}"#,
            Some(r#"{"a":1}"#),
        );
        check(
            r#"{"palisade":1,"a":1,"pal\u0069sade":2}"#,
            Some(r#"{"a":1}"#),
        );
    }
}
