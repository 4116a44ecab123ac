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
use std::time::Instant;

use bytes::Bytes;
use palisade_openai::{ApiError, ErrorCode};
use palisade_output::{
    Applied, Class, ClassSet, GuardOptions, JsonStreamGuard, LinkAllow, Released, SanitizeOptions,
    StreamGuard,
};
use palisade_policy::{Action, DetectorKind, Effect, Evidence, Gate};
use serde_json::Value;

use crate::gates::GatePlan;

/// Which OpenAI response shape the output gate reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseShape {
    /// `/v1/chat/completions`: `choices[].message.content`, streamed as
    /// `choices[].delta.content`.
    Chat,
    /// `/v1/completions`: `choices[].text`, whole or streamed.
    Completion,
}

impl ResponseShape {
    fn body_text(self) -> &'static str {
        match self {
            Self::Chat => "/message/content",
            Self::Completion => "/text",
        }
    }

    fn event_text(self) -> &'static str {
        match self {
            Self::Chat => "/delta/content",
            Self::Completion => "/text",
        }
    }
}

/// What the tier's output rules ask of the sanitizer.
#[derive(Debug, Clone)]
pub(crate) struct OutputPolicy {
    sanitize: SanitizeOptions,
    block: ClassSet,
}

/// Text of a streamed completion kept for the evidence of classes the
/// sanitizer does not handle (flag-only rules, shadow policies); beyond this
/// the rest is judged only by the sanitizer.
const EVIDENCE_TEXT_CAP: usize = 256 * 1024;

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
        let canaries = match (&plan.canary, enforced(plan, DetectorKind::Canary)) {
            (Some(c), Some(a)) if a >= Action::Flag => vec![c.clone()],
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

/// The first way `text` fails `schema`, as `pointer: keyword` (never the
/// value, which may be anything the model wrote).
fn schema_violation(schema: &Value, text: &str) -> Option<String> {
    palisade_policy::first_schema_violation(schema, text)
}

/// The output gate over a whole (non-streamed) chat completion body. Returns
/// the body to send (`None`: unchanged) or a blocking schema error.
pub(crate) fn gate_body(plan: &GatePlan, body: &[u8]) -> Result<Option<Bytes>, ApiError> {
    let Some(policy) = OutputPolicy::of(plan) else {
        return Ok(None);
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return Ok(None);
    };
    let started = Instant::now();
    let mut evidence = Evidence::default();
    let mut changed = false;
    let mut blocked_choices = Vec::new();
    if let Some(Value::Array(choices)) = value.get_mut("choices") {
        for (i, choice) in choices.iter_mut().enumerate() {
            let Some(Value::String(content)) = choice.pointer_mut(plan.shape.body_text()) else {
                continue;
            };
            observe_unsanitized(&mut evidence, content, &policy.sanitize);
            // A client that parses the content as JSON sees its decoded string values.
            let s = if plan.response_schema.is_some() || parses_as_json(content) {
                palisade_output::sanitize_json(content, &policy.sanitize)
            } else {
                palisade_output::sanitize(content, &policy.sanitize)
            };
            absorb(&mut evidence, &s.actions, s.canary_leaked);
            if s.blocked_by(policy.block) {
                blocked_choices.push(i);
            } else if let std::borrow::Cow::Owned(text) = s.text {
                *content = text;
                changed = true;
            }
            if let (Some(schema), Some(Value::String(text))) = (
                &plan.response_schema,
                choice.pointer(plan.shape.body_text()),
            ) {
                if evidence.schema_violation.is_none() {
                    evidence.schema_violation = schema_violation(schema, text);
                }
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
    Ok(changed.then(|| Bytes::from(value.to_string())))
}

/// True if `text` is a JSON object or array (what a client may `JSON.parse`).
fn parses_as_json(text: &str) -> bool {
    text.trim_start().starts_with(['{', '['])
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// One choice's guard: plain text, or JSON mode when the request asked for a JSON
/// schema (string values are judged decoded).
#[derive(Debug)]
enum ChoiceGuard {
    Text(StreamGuard),
    Json(JsonStreamGuard),
}

impl ChoiceGuard {
    fn push_at(&mut self, text: &str, now: std::time::Duration) -> Released {
        match self {
            Self::Text(g) => g.push_at(text, now),
            Self::Json(g) => g.push_at(text, now),
        }
    }

    fn finish(&mut self) -> Released {
        match self {
            Self::Text(g) => g.finish(),
            Self::Json(g) => g.finish(),
        }
    }

    fn held_bytes(&self) -> usize {
        match self {
            Self::Text(g) => g.held_bytes(),
            Self::Json(g) => g.held_bytes(),
        }
    }
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

/// Withholds a choice's content: `finish_reason: "content_filter"`.
fn filter_choice(choice: &mut Value) {
    if let Some(message) = choice.get_mut("message").and_then(Value::as_object_mut) {
        message.insert("content".to_owned(), Value::String(String::new()));
        message.remove("tool_calls");
    }
    if let Some(text) = choice.get_mut("text") {
        *text = Value::String(String::new());
    }
    if let Some(obj) = choice.as_object_mut() {
        obj.insert(
            "finish_reason".to_owned(),
            Value::String("content_filter".to_owned()),
        );
    }
}

/// What to do with one streamed event.
#[derive(Debug)]
pub(crate) enum EventAction {
    /// Forward the event as it came.
    Forward,
    /// Forward this instead.
    Replace(Bytes),
    /// Nothing to forward yet (text held back).
    Hold,
    /// A blocking finding: send this (the released text, then a
    /// `content_filter` chunk) and end the stream.
    Stop(Bytes),
}

/// The output gate over one streamed completion.
#[derive(Debug)]
pub(crate) struct StreamGate {
    plan: GatePlan,
    options: GuardOptions,
    guards: BTreeMap<u64, ChoiceGuard>,
    /// The stream's start: the guards' clock (text held longer than the
    /// hold time is released as later events arrive).
    opened: Instant,
    evidence: Evidence,
    /// Time spent in the gate, for the audit record.
    spent: std::time::Duration,
    /// A template chunk (id, model, created) for chunks the gate writes.
    template: Option<Value>,
    done: bool,
    /// Released text (up to [`EVIDENCE_TEXT_CAP`]) for the evidence of
    /// classes the sanitizer leaves alone.
    released: String,
    /// Since when text has been held back (the oldest unreleased delta).
    held_since: Option<Instant>,
}

fn sse(value: &Value) -> String {
    format!("data: {value}\n\n")
}

impl StreamGate {
    /// A gate for a stream under `plan`; `None` when there is nothing to do.
    pub(crate) fn new(plan: &GatePlan) -> Option<Self> {
        let policy = OutputPolicy::of(plan)?;
        Some(Self {
            plan: plan.clone(),
            options: GuardOptions {
                sanitize: policy.sanitize,
                block: policy.block,
                max_hold_bytes: plan.stream_hold_bytes,
                ..GuardOptions::default()
            },
            guards: BTreeMap::new(),
            opened: Instant::now(),
            evidence: Evidence::default(),
            spent: std::time::Duration::ZERO,
            template: None,
            done: false,
            released: String::new(),
            held_since: None,
        })
    }

    fn guard(&mut self, index: u64) -> Option<&mut ChoiceGuard> {
        if !self.guards.contains_key(&index) {
            let guard = if self.plan.response_schema.is_some() {
                ChoiceGuard::Json(JsonStreamGuard::new(self.options.clone()).ok()?)
            } else {
                ChoiceGuard::Text(StreamGuard::new(self.options.clone()).ok()?)
            };
            self.guards.insert(index, guard);
        }
        self.guards.get_mut(&index)
    }

    /// A chunk carrying `text` for choice `index` (and `finish_reason`).
    fn chunk(&self, index: u64, text: &str, finish: Option<&str>) -> String {
        let mut v = self
            .template
            .clone()
            .unwrap_or_else(|| serde_json::json!({}));
        v["choices"] = match self.plan.shape {
            ResponseShape::Chat => {
                let mut delta = serde_json::Map::new();
                if !text.is_empty() {
                    delta.insert("content".to_owned(), Value::String(text.to_owned()));
                }
                serde_json::json!([{"index": index, "delta": delta, "finish_reason": finish}])
            }
            ResponseShape::Completion => {
                serde_json::json!([{"index": index, "text": text, "finish_reason": finish}])
            }
        };
        sse(&v)
    }

    /// Judges one `data:` payload.
    pub(crate) fn on_data(&mut self, data: &str) -> EventAction {
        if self.done {
            return EventAction::Hold;
        }
        let started = Instant::now();
        let action = self.judge(data);
        self.spent += started.elapsed();
        action
    }

    fn judge(&mut self, data: &str) -> EventAction {
        let Ok(mut value) = serde_json::from_str::<Value>(data) else {
            return EventAction::Forward;
        };
        if self.template.is_none() {
            let mut t = value.clone();
            if let Some(obj) = t.as_object_mut() {
                obj.remove("choices");
                obj.remove("usage");
            }
            self.template = Some(t);
        }
        let Some(Value::Array(choices)) = value.get_mut("choices") else {
            return EventAction::Forward;
        };
        let mut changed = false;
        let mut empty = true;
        let mut stop: Option<(u64, String)> = None;
        for choice in choices.iter_mut() {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let finishing = choice.get("finish_reason").is_some_and(|f| !f.is_null());
            let delta_text = choice
                .pointer(self.plan.shape.event_text())
                .and_then(Value::as_str)
                .map(str::to_owned);
            let now = self.opened.elapsed();
            let Some(guard) = self.guard(index) else {
                continue;
            };
            // Any event (even one without text) releases what waited too long.
            let mut released = guard.push_at(delta_text.as_deref().unwrap_or(""), now);
            if finishing && !released.stop {
                let tail = guard.finish();
                released.text.push_str(&tail.text);
                released.violations.extend(tail.violations);
                released.stop |= tail.stop;
            }
            // Hold-back delay: from the oldest held delta to its release.
            let still_held = guard.held_bytes() > 0;
            if !released.text.is_empty() {
                if let Some(since) = self.held_since.take() {
                    metrics::histogram!(crate::metrics::STREAM_HOLDBACK)
                        .record(since.elapsed().as_secs_f64());
                }
            }
            if still_held && self.held_since.is_none() {
                self.held_since = Some(Instant::now());
            }
            absorb(&mut self.evidence, &released.violations, false);
            if self.released.len() + released.text.len() <= EVIDENCE_TEXT_CAP {
                self.released.push_str(&released.text);
            }
            if released.violations.iter().any(|a| a.class == Class::Canary) {
                self.evidence.canary_leaked = true;
            }
            if released.stop {
                stop = Some((index, released.text));
                break;
            }
            if (delta_text.is_some() || finishing || !released.text.is_empty())
                && delta_text.as_deref() != Some(released.text.as_str())
            {
                changed = true;
                match self.plan.shape {
                    ResponseShape::Chat => {
                        if let Some(obj) = choice.as_object_mut() {
                            obj.entry("delta").or_insert_with(|| serde_json::json!({}));
                        }
                        if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut)
                        {
                            if released.text.is_empty() {
                                delta.remove("content");
                            } else {
                                delta.insert("content".to_owned(), Value::String(released.text));
                            }
                        }
                    }
                    // A completion chunk's text is its whole payload; an
                    // empty one is dropped below unless it finishes.
                    ResponseShape::Completion => {
                        if let Some(obj) = choice.as_object_mut() {
                            obj.insert("text".to_owned(), Value::String(released.text));
                        }
                    }
                }
            }
            let delta_has_more = match self.plan.shape {
                ResponseShape::Chat => choice
                    .get("delta")
                    .and_then(Value::as_object)
                    .is_some_and(|d| d.keys().any(|k| k != "content" || d["content"] != "")),
                ResponseShape::Completion => choice.get("text").is_some_and(|t| t != ""),
            };
            if delta_has_more || finishing {
                empty = false;
            }
        }
        if let Some((index, text)) = stop {
            self.done = true;
            let mut out = String::new();
            if !text.is_empty() {
                out.push_str(&self.chunk(index, &text, None));
            }
            out.push_str(&self.chunk(index, "", Some("content_filter")));
            out.push_str("data: [DONE]\n\n");
            return EventAction::Stop(Bytes::from(out));
        }
        let has_usage = value.get("usage").is_some_and(|u| !u.is_null());
        if empty && !has_usage {
            return EventAction::Hold;
        }
        if changed {
            EventAction::Replace(Bytes::from(sse(&value)))
        } else {
            EventAction::Forward
        }
    }

    /// The upstream ended: anything still held (a stream without a
    /// `finish_reason`), as chunks to send before `[DONE]`.
    pub(crate) fn finish(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        self.done = true;
        let mut out = String::new();
        let indexes: Vec<u64> = self.guards.keys().copied().collect();
        for index in indexes {
            let Some(released) = self.guards.get_mut(&index).map(ChoiceGuard::finish) else {
                continue;
            };
            absorb(&mut self.evidence, &released.violations, false);
            if released.stop {
                out.push_str(&self.chunk(index, "", Some("content_filter")));
            } else if !released.text.is_empty() {
                out.push_str(&self.chunk(index, &released.text, None));
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

impl Drop for StreamGate {
    /// One audit record per streamed completion, however it ended.
    fn drop(&mut self) {
        let mut evidence = std::mem::take(&mut self.evidence);
        let observing = Instant::now();
        observe_unsanitized(&mut evidence, &self.released, &self.options.sanitize);
        let spent = self.spent + observing.elapsed();
        let started = Instant::now()
            .checked_sub(spent)
            .unwrap_or_else(Instant::now);
        let leaked = evidence.canary_leaked;
        let _ = crate::gates::decide(&self.plan, Gate::Output, evidence, started);
        if leaked {
            canary_alert(&self.plan);
        }
    }
}

/// The schema of a request's `response_format`, when it asks for one.
pub(crate) fn response_schema(fields: &serde_json::Map<String, Value>) -> Option<Arc<Value>> {
    let format = fields.get("response_format")?;
    match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => format.pointer("/json_schema/schema").cloned().map(Arc::new),
        _ => None,
    }
}
