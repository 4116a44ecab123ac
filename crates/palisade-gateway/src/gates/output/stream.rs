//! The output gate over a streamed completion: every text field of every
//! delta (`content`, `refusal`, `reasoning_content`, vendor fields, the
//! arguments of tool calls the tool gate does not hold) runs through its own
//! `StreamGuard`, so a secret split across events is never emitted in part;
//! everything else in an event is judged event by event.
//!
//! Fail closed: an event that does not parse ends the stream with an in-band
//! `upstream_invalid_response` error; a second choice index (a client
//! reassembles choices, the guards judge each alone) ends it too; `logprobs`
//! are withheld (their tokens cannot be held back with the text they spell)
//! and the first chunk that loses them says so.
//!
//! Must not: forward a string it did not judge, or re-emit released text.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use palisade_openai::ApiError;
use palisade_output::{Class, GuardOptions, JsonStreamGuard, Released, StreamGuard};
use palisade_policy::{Evidence, Gate};
use serde_json::{json, Map, Value};

use super::body::invalid_upstream;
use super::fields::judge_tree;
use super::{absorb, canary_alert, merge_repeated, observe_unsanitized, OutputPolicy};
use crate::gates::GatePlan;
use crate::gates::ResponseShape;

/// Text of a streamed completion kept for the evidence of classes the
/// sanitizer does not handle (flag-only rules, shadow policies); beyond this
/// the rest is judged only by the sanitizer.
const EVIDENCE_TEXT_CAP: usize = 256 * 1024;

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
    /// The event cannot be judged: end the stream with this error.
    Fail(ApiError),
}

/// Which text of a choice a guard holds: a top-level string field of the
/// delta (`content`, `refusal`, …), or a tool call's name or arguments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Delta(String),
    ToolCall(u64, &'static str),
    FunctionCall(&'static str),
    /// A Responses stream's `*.delta` event: its type, `output_index` and
    /// part index (`content_index` or `summary_index`).
    Event(String, u64, Option<(&'static str, u64)>),
}

mod fast;
mod joined;
mod responses;
pub(crate) use responses::frame_payload;

/// One field's guard: plain text, or JSON mode for content the request
/// asked to match a JSON schema (string values judged decoded).
#[derive(Debug)]
enum Guard {
    Text(StreamGuard),
    Json(JsonStreamGuard),
}

impl Guard {
    fn push_at(&mut self, text: &str, now: Duration) -> Released {
        match self {
            Self::Text(g) => g.push_at(text, now),
            Self::Json(g) => g.push_at(text, now),
        }
    }

    fn release_due(&mut self, now: Duration) -> Released {
        match self {
            Self::Text(g) => g.release_due(now),
            Self::Json(g) => g.release_due(now),
        }
    }

    fn next_due(&self) -> Option<Duration> {
        match self {
            Self::Text(g) => g.next_due(),
            Self::Json(g) => g.next_due(),
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

/// The output gate over one streamed completion.
#[derive(Debug)]
pub(crate) struct StreamGate {
    plan: GatePlan,
    /// Shared, so an event borrows it at the cost of a count, not a copy.
    policy: Arc<OutputPolicy>,
    options: GuardOptions,
    guards: BTreeMap<Field, Guard>,
    /// The stream's start: the guards' clock (text held longer than the hold
    /// time is released on the next event or on the relay's timer).
    opened: Instant,
    evidence: Evidence,
    /// Time spent in the gate, for the audit record.
    spent: Duration,
    /// A template chunk (id, model, created) for chunks the gate writes.
    template: Option<Value>,
    /// The one choice index this stream may carry.
    choice: Option<u64>,
    done: bool,
    /// Released text (up to [`EVIDENCE_TEXT_CAP`]) for the evidence of
    /// classes the sanitizer leaves alone.
    released: String,
    /// Since when text has been held back (the oldest unreleased delta).
    held_since: Option<Instant>,
    /// `logprobs` were withheld and the client was told.
    logprobs_noted: bool,
    /// Top-level fields of earlier events that passed unchanged (`id`,
    /// `model`, … repeat in every chunk): judged once, not once per event.
    passed: Map<String, Value>,
    /// The same members as their bytes, for the fast path (`fast.rs`).
    passed_raw: Vec<(String, String)>,
    /// Events the fast path judged (its tests read it).
    fast_events: u64,
    /// The next `sequence_number` of a Responses stream's events.
    sequence: u64,
    /// Findings in a Responses stream's events judged whole (`.done`,
    /// `response.completed`, …), which repeat the deltas' text: merged with
    /// the guards' findings once, when the stream ends.
    repeated: Evidence,
    /// A Responses stream's output text as a client joins its parts.
    joined: Option<joined::JoinedText>,
}

fn sse(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// The chunk a delta's `content` may be given as an array of parts (some
/// servers do): its text, which is what a client renders.
fn flatten_content(delta: &mut Map<String, Value>) {
    if let Some(Value::Array(parts)) = delta.get("content") {
        let text: String = parts
            .iter()
            .filter_map(|p| p.get("text").or_else(|| p.get("refusal")))
            .filter_map(Value::as_str)
            .collect();
        delta.insert("content".to_owned(), Value::String(text));
    }
}

impl StreamGate {
    /// A gate for a stream under `plan`; `None` when there is nothing to do.
    pub(crate) fn new(plan: &GatePlan) -> Option<Self> {
        let policy = OutputPolicy::of(plan)?;
        let options = GuardOptions {
            sanitize: policy.sanitize.clone(),
            block: policy.block,
            max_hold_bytes: plan.stream_hold_bytes,
            ..GuardOptions::default()
        };
        Some(Self {
            plan: plan.clone(),
            policy: Arc::new(policy),
            options,
            guards: BTreeMap::new(),
            opened: Instant::now(),
            evidence: Evidence::default(),
            spent: Duration::ZERO,
            template: None,
            choice: None,
            done: false,
            released: String::new(),
            held_since: None,
            logprobs_noted: false,
            passed: Map::new(),
            passed_raw: Vec::new(),
            fast_events: 0,
            sequence: 0,
            repeated: Evidence::default(),
            joined: None,
        })
    }

    fn push(&mut self, field: Field, text: &str) -> Released {
        if !self.guards.contains_key(&field) {
            let json = self.plan.json_mode
                && matches!(&field, Field::Delta(k) if k == "content" || k == "text");
            let made = if json {
                JsonStreamGuard::new(self.options.clone()).map(Guard::Json)
            } else {
                StreamGuard::new(self.options.clone()).map(Guard::Text)
            };
            match made {
                Ok(g) => {
                    self.guards.insert(field.clone(), g);
                }
                // Options were validated when the gate was built; if a guard
                // still cannot be made, nothing of the field goes out.
                Err(_) => {
                    return Released {
                        stop: true,
                        ..Released::default()
                    }
                }
            }
        }
        let Some(guard) = self.guards.get_mut(&field) else {
            return Released::default();
        };
        let released = guard.push_at(text, self.opened.elapsed());
        self.account(&released);
        released
    }

    /// [`Self::push`] for a top-level string of a delta, without making a
    /// key for a guard that exists already.
    fn push_delta(&mut self, key: &str, text: &str) -> Released {
        let now = self.opened.elapsed();
        let found = self
            .guards
            .iter_mut()
            .find(|(f, _)| matches!(f, Field::Delta(k) if k == key));
        match found {
            Some((_, guard)) => {
                let released = guard.push_at(text, now);
                self.account(&released);
                released
            }
            None => self.push(Field::Delta(key.to_owned()), text),
        }
    }

    fn account(&mut self, released: &Released) {
        absorb(&mut self.evidence, &released.violations, false);
        if released.violations.iter().any(|a| a.class == Class::Canary) {
            self.evidence.canary_leaked = true;
        }
        if self.released.len() + released.text.len() <= EVIDENCE_TEXT_CAP {
            self.released.push_str(&released.text);
        }
        let held = self.guards.values().any(|g| g.held_bytes() > 0);
        if !released.text.is_empty() {
            if let Some(since) = self.held_since.take() {
                metrics::histogram!(crate::metrics::STREAM_HOLDBACK)
                    .record(since.elapsed().as_secs_f64());
            }
        }
        if held && self.held_since.is_none() {
            self.held_since = Some(Instant::now());
        }
    }

    /// Everything the guards still hold, released: each field's tail.
    fn drain(&mut self) -> (Vec<(Field, String)>, bool) {
        let mut tails = Vec::new();
        let mut stop = false;
        let fields: Vec<Field> = self.guards.keys().cloned().collect();
        for field in fields {
            let Some(released) = self.guards.get_mut(&field).map(Guard::finish) else {
                continue;
            };
            self.account(&released);
            stop |= released.stop;
            if !released.text.is_empty() {
                tails.push((field, released.text));
            }
        }
        (tails, stop)
    }

    /// A chunk for choice `index` carrying `fields` (and `finish_reason`).
    fn chunk(&mut self, index: u64, fields: &[(Field, String)], finish: Option<&str>) -> String {
        if self.plan.shape == ResponseShape::Responses {
            return self.response_events(fields, finish);
        }
        let mut v = self
            .template
            .clone()
            .unwrap_or_else(|| serde_json::json!({}));
        let mut delta = Map::new();
        for (field, text) in fields {
            put(&mut delta, field, text);
        }
        v["choices"] = match self.plan.shape {
            ResponseShape::Chat => {
                json!([{"index": index, "delta": delta, "finish_reason": finish}])
            }
            ResponseShape::Completion | ResponseShape::Responses => {
                let text = delta
                    .get("text")
                    .or_else(|| delta.get("content"))
                    .cloned()
                    .unwrap_or_else(|| json!(""));
                json!([{"index": index, "text": text, "finish_reason": finish}])
            }
        };
        sse(&v)
    }

    /// Judges one `data:` payload.
    pub(crate) fn on_data(&mut self, data: &str) -> EventAction {
        self.on_data_parsed(data, None)
    }

    /// [`Self::on_data`] with `data` already parsed by the relay (`parsed`
    /// must be `serde_json::from_str(data)`; `None`: parse it here).
    pub(crate) fn on_data_parsed(&mut self, data: &str, parsed: Option<Value>) -> EventAction {
        if self.done {
            return EventAction::Hold;
        }
        let started = Instant::now();
        let action = match self.judge_fast(data) {
            Some(action) => {
                self.fast_events += 1;
                action
            }
            None => {
                let parsed = parsed.or_else(|| serde_json::from_str::<Value>(data).ok());
                self.judge(parsed)
            }
        };
        self.spent += started.elapsed();
        action
    }

    fn judge(&mut self, parsed: Option<Value>) -> EventAction {
        let mut value = match parsed {
            Some(v @ Value::Object(_)) => v,
            _ => {
                self.done = true;
                return EventAction::Fail(invalid_upstream("a stream event"));
            }
        };
        if self.plan.shape == ResponseShape::Responses {
            return self.judge_event(value);
        }
        if self.template.is_none() {
            let mut t = value.clone();
            if let Some(obj) = t.as_object_mut() {
                obj.retain(|k, _| matches!(k.as_str(), "id" | "object" | "created" | "model"));
            }
            self.template = Some(t);
        }
        let policy = Arc::clone(&self.policy);
        let mut changed = false;
        // Token ids spell the text before the guards hold or redact it, and
        // the prompt's spell the planted system prompt and canary: never
        // relayed in a stream (the gateway never asks for them; an upstream
        // sending them unasked loses them).
        if let Some(obj) = value.as_object_mut() {
            changed |= obj.remove("prompt_token_ids").is_some();
            if let Some(Value::Array(choices)) = obj.get_mut("choices") {
                for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
                    changed |= choice.remove("token_ids").is_some();
                }
            }
        }
        // Everything outside the choices (an in-band error's message, ids,
        // vendor fields), event by event; the gate's own report is left alone.
        if let Some(obj) = value.as_object_mut() {
            for (key, field) in obj.iter_mut() {
                if key == "palisade"
                    || (key == "choices" && field.is_array())
                    || self.passed.get(key) == Some(field)
                {
                    continue;
                }
                let outcome = judge_tree(field, &policy, &mut self.evidence, &|_| false);
                if !outcome.changed && !outcome.blocked && self.passed.len() < 16 {
                    self.passed.insert(key.clone(), field.clone());
                }
                changed |= outcome.changed;
                if outcome.blocked {
                    *field = if key == "error" {
                        json!({"message": "the upstream's error message was withheld by the output gate", "type": "upstream_error"})
                    } else {
                        Value::Null
                    };
                    changed = true;
                }
            }
        }
        let tool_gate = self.plan.tools.is_some();
        let text_key = match self.plan.shape {
            ResponseShape::Chat => "delta",
            ResponseShape::Completion | ResponseShape::Responses => "",
        };
        let mut empty = true;
        let mut stop: Option<(u64, Vec<(Field, String)>)> = None;
        let mut note_logprobs = false;
        if let Some(Value::Array(choices)) = value.get_mut("choices") {
            for choice in choices.iter_mut() {
                let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                if *self.choice.get_or_insert(index) != index {
                    self.done = true;
                    return EventAction::Fail(invalid_upstream(
                        "several choices in one stream, which",
                    ));
                }
                let finishing = choice.get("finish_reason").is_some_and(|f| !f.is_null());
                if choice.get("logprobs").is_some_and(|l| !l.is_null()) {
                    choice["logprobs"] = Value::Null;
                    note_logprobs |= !self.logprobs_noted;
                    changed = true;
                }
                // The choice's other strings (finish_reason, vendor fields).
                let outcome = judge_tree(choice, &policy, &mut self.evidence, &|path| {
                    path == [text_key] || path == ["text"] || path == ["logprobs"]
                });
                changed |= outcome.changed;
                let mut released_fields = Vec::new();
                let mut stopped = outcome.blocked;
                // The texts, through their guards.
                let mut pieces: Vec<(Field, String)> = Vec::new();
                match self.plan.shape {
                    ResponseShape::Completion | ResponseShape::Responses => {
                        if let Some(Value::String(t)) = choice.get("text") {
                            pieces.push((Field::Delta("text".to_owned()), t.clone()));
                        }
                    }
                    ResponseShape::Chat => {
                        if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut)
                        {
                            flatten_content(delta);
                            pieces.extend(self.take_texts(delta, tool_gate, &policy, &mut changed));
                        }
                    }
                }
                for (field, text) in pieces {
                    let released = self.push(field.clone(), &text);
                    stopped |= released.stop;
                    if released.text != text {
                        changed = true;
                    }
                    released_fields.push((field, released.text));
                }
                if finishing && !stopped {
                    let (tails, tail_stop) = self.drain();
                    stopped |= tail_stop;
                    for (field, tail) in tails {
                        changed = true;
                        match released_fields.iter_mut().find(|(f, _)| *f == field) {
                            Some((_, text)) => text.push_str(&tail),
                            None => released_fields.push((field, tail)),
                        }
                    }
                }
                if stopped {
                    stop = Some((index, released_fields));
                    break;
                }
                // Write the released texts back.
                match self.plan.shape {
                    ResponseShape::Completion | ResponseShape::Responses => {
                        let text: String = released_fields
                            .into_iter()
                            .map(|(_, t)| t)
                            .collect::<String>();
                        if let Some(obj) = choice.as_object_mut() {
                            obj.insert("text".to_owned(), Value::String(text));
                        }
                    }
                    ResponseShape::Chat => {
                        if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut)
                        {
                            for (field, text) in &released_fields {
                                put(delta, field, text);
                            }
                            prune(delta);
                        }
                    }
                }
                let has_more = match self.plan.shape {
                    ResponseShape::Chat => choice
                        .get("delta")
                        .and_then(Value::as_object)
                        .is_some_and(|d| !d.is_empty()),
                    ResponseShape::Completion | ResponseShape::Responses => {
                        choice.get("text").is_some_and(|t| t != "")
                    }
                };
                if has_more || finishing {
                    empty = false;
                }
            }
        }
        if let Some((index, fields)) = stop {
            return self.stop_with(index, fields);
        }
        if note_logprobs {
            self.logprobs_noted = true;
            if let Some(obj) = value.as_object_mut() {
                obj.insert(
                    "palisade".to_owned(),
                    json!({"output": {"logprobs_withheld": true, "reason": "streamed tokens cannot be held back with the text they spell"}}),
                );
            }
        }
        let carries_other = value.get("usage").is_some_and(|u| !u.is_null())
            || value.get("palisade").is_some()
            || value.get("error").is_some()
            || value
                .get("choices")
                .is_none_or(|c| c.as_array().is_none_or(Vec::is_empty));
        if empty && !carries_other {
            return EventAction::Hold;
        }
        if changed {
            EventAction::Replace(Bytes::from(sse(&value)))
        } else {
            EventAction::Forward
        }
    }

    /// A blocking finding: the released `fields`, then a `content_filter`
    /// chunk and `[DONE]`; the stream ends.
    fn stop_with(&mut self, index: u64, fields: Vec<(Field, String)>) -> EventAction {
        self.done = true;
        let mut out = String::new();
        if fields.iter().any(|(_, t)| !t.is_empty()) {
            out.push_str(&self.chunk(index, &fields, None));
        }
        out.push_str(&self.chunk(index, &[], Some("content_filter")));
        out.push_str("data: [DONE]\n\n");
        EventAction::Stop(Bytes::from(out))
    }

    /// Takes the guarded texts out of a delta (they are put back released):
    /// top-level strings, and the names and arguments of tool calls unless
    /// the tool gate holds those. Other strings are judged here, event by
    /// event.
    fn take_texts(
        &mut self,
        delta: &mut Map<String, Value>,
        tool_gate: bool,
        policy: &OutputPolicy,
        changed: &mut bool,
    ) -> Vec<(Field, String)> {
        let mut out = Vec::new();
        let keys: Vec<String> = delta.keys().cloned().collect();
        for key in keys {
            let Some(value) = delta.get_mut(&key) else {
                continue;
            };
            match (key.as_str(), value) {
                // Judged whole by the tool gate, which released it (an
                // array; any other shape the tool gate did not read and is
                // judged below like any other value).
                ("tool_calls", Value::Array(_)) if tool_gate => {}
                // A role is a word the client may print: any other one is
                // judged like any other value.
                ("role", Value::String(r)) if r == "assistant" => {}
                ("role", other) => {
                    let outcome = judge_tree(other, policy, &mut self.evidence, &|_| false);
                    *changed |= outcome.changed;
                    if outcome.blocked {
                        *other = Value::Null;
                        *changed = true;
                    }
                }
                (_, Value::String(s)) => {
                    out.push((Field::Delta(key.clone()), std::mem::take(s)));
                }
                ("tool_calls", Value::Array(calls)) => {
                    for call in calls.iter_mut() {
                        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                        for part in ["name", "arguments"] {
                            if let Some(Value::String(s)) =
                                call.pointer_mut(&format!("/function/{part}"))
                            {
                                out.push((Field::ToolCall(index, part), std::mem::take(s)));
                            }
                        }
                        let outcome =
                            judge_tree(call, policy, &mut self.evidence, &|p| p == ["function"]);
                        *changed |= outcome.changed;
                    }
                }
                ("function_call", Value::Object(call)) => {
                    for part in ["name", "arguments"] {
                        if let Some(Value::String(s)) = call.get_mut(part) {
                            out.push((Field::FunctionCall(part), std::mem::take(s)));
                        }
                    }
                }
                (_, other) => {
                    let outcome = judge_tree(other, policy, &mut self.evidence, &|_| false);
                    *changed |= outcome.changed;
                    if outcome.blocked {
                        *other = Value::Null;
                        *changed = true;
                    }
                }
            }
        }
        out
    }

    /// When held text will have waited its time bound (by the relay's
    /// clock: time since the stream opened), if any is held.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let due = self.guards.values().filter_map(Guard::next_due).min()?;
        Some(self.opened + due)
    }

    /// Releases what has waited past its time bound while the upstream is
    /// silent, as a chunk (or the stop, on a blocking finding).
    pub(crate) fn release_due(&mut self) -> EventAction {
        if self.done {
            return EventAction::Hold;
        }
        let now = self.opened.elapsed();
        let index = self.choice.unwrap_or(0);
        let fields: Vec<Field> = self.guards.keys().cloned().collect();
        if self.joined_release_due(now) {
            self.done = true;
            let mut bytes = self.chunk(index, &[], Some("content_filter"));
            bytes.push_str("data: [DONE]\n\n");
            return EventAction::Stop(Bytes::from(bytes));
        }
        let mut out = Vec::new();
        let mut stop = false;
        for field in fields {
            let Some(released) = self.guards.get_mut(&field).map(|g| g.release_due(now)) else {
                continue;
            };
            self.account(&released);
            stop |= released.stop;
            if !released.text.is_empty() {
                out.push((field, released.text));
            }
        }
        if stop {
            self.done = true;
            let mut bytes = String::new();
            if !out.is_empty() {
                bytes.push_str(&self.chunk(index, &out, None));
            }
            bytes.push_str(&self.chunk(index, &[], Some("content_filter")));
            bytes.push_str("data: [DONE]\n\n");
            return EventAction::Stop(Bytes::from(bytes));
        }
        if out.is_empty() {
            return EventAction::Hold;
        }
        EventAction::Replace(Bytes::from(self.chunk(index, &out, None)))
    }

    /// The upstream ended: anything still held (a stream without a
    /// `finish_reason`), as chunks to send before `[DONE]`.
    pub(crate) fn finish(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        self.done = true;
        let index = self.choice.unwrap_or(0);
        let joined_stop = self.joined_finish();
        let (tails, stop) = self.drain();
        let stop = stop || joined_stop;
        let mut out = String::new();
        if stop {
            out.push_str(&self.chunk(index, &[], Some("content_filter")));
        } else if !tails.is_empty() {
            out.push_str(&self.chunk(index, &tails, None));
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

/// Puts a released text into a delta at its field (an empty text removes a
/// top-level string; tool-call parts stay, possibly empty, since clients
/// concatenate them).
fn put(delta: &mut Map<String, Value>, field: &Field, text: &str) {
    match field {
        // Written as events of their own (`responses::event`).
        Field::Event(..) => {}
        Field::Delta(key) => {
            if text.is_empty() {
                delta.remove(key);
            } else {
                delta.insert(key.clone(), Value::String(text.to_owned()));
            }
        }
        Field::FunctionCall(part) => {
            let call = delta.entry("function_call").or_insert_with(|| json!({}));
            if let Some(call) = call.as_object_mut() {
                call.insert((*part).to_owned(), Value::String(text.to_owned()));
            }
        }
        Field::ToolCall(index, part) => {
            let calls = delta.entry("tool_calls").or_insert_with(|| json!([]));
            let Some(calls) = calls.as_array_mut() else {
                return;
            };
            let position = calls
                .iter()
                .position(|c| c.get("index").and_then(Value::as_u64) == Some(*index));
            let call = match position {
                Some(p) => &mut calls[p],
                None => {
                    calls.push(json!({"index": index, "function": {}}));
                    let last = calls.len() - 1;
                    &mut calls[last]
                }
            };
            if !call.get("function").is_some_and(Value::is_object) {
                call["function"] = json!({});
            }
            call["function"][*part] = Value::String(text.to_owned());
        }
    }
}

/// Removes what a delta no longer carries (emptied strings).
fn prune(delta: &mut Map<String, Value>) {
    delta.retain(|_, v| !matches!(v, Value::String(s) if s.is_empty()));
}

impl Drop for StreamGate {
    /// One audit record per streamed completion, however it ended.
    fn drop(&mut self) {
        let mut evidence = std::mem::take(&mut self.evidence);
        merge_repeated(&mut evidence, std::mem::take(&mut self.repeated));
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
