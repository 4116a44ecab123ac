//! The tool gate over a Responses API stream (`POST /v1/responses` with
//! `stream: true`): a `function_call` item's events are held from its
//! `response.output_item.added` through its
//! `response.function_call_arguments.delta`/`.done` to its
//! `response.output_item.done`, judged whole there (as a chat call is when
//! its choice finishes), and then either released as one complete event
//! sequence (added, one delta with the whole arguments, done, item done) or
//! never sent at all.
//!
//! What the client sees stays one consistent story, which SDKs check:
//!
//! - **Output indexes are the gateway's.** A client's accumulator appends an
//!   item per `response.output_item.added` and addresses it by
//!   `output_index`, so a withheld call would shift every later index and a
//!   call released after a later item would land at the wrong place. Items
//!   are numbered in the order they are sent; every event's `output_index`
//!   is mapped.
//! - **The last event agrees with the stream.** `response.completed` (and
//!   `.incomplete`, `.failed`, and any other event carrying a `response`)
//!   repeats the output: its `function_call` items are replaced by the calls
//!   as released (so a withheld call, or one the upstream rewrites there,
//!   never reappears), in the order sent. A call that shows up only there,
//!   never streamed, is judged there and streamed before the last event.
//! - **`sequence_number` counts up one by one** (the output gate renumbers
//!   again when it holds or writes events of its own).
//!
//! Bounds: arguments held count against `tools.max_call_bytes` for all the
//! stream's calls together (as chat's assembler does), and at most
//! [`MAX_CALLS`] calls; a hostile upstream streaming endless arguments or
//! calls gets its stream cut with an in-band `upstream_invalid_response`
//! error, never buffered past the bound. An event that contradicts the
//! items (arguments for an index that carries text, a call announced twice)
//! ends the stream the same way: fail closed.
//!
//! Must not: send any byte of a call before it is judged, or speak HTTP.

use std::collections::{BTreeMap, BTreeSet};

use super::responses::is_foreign;
use super::*;
use crate::gates::output::invalid_upstream;

/// Most `function_call` items one stream may carry (chat's assembler allows
/// as many per choice).
pub(crate) const MAX_CALLS: usize = 128;

/// Most output items one stream may number: each takes an entry of the
/// index map, so an upstream inventing indexes would grow memory.
pub(crate) const MAX_ITEMS: usize = 1024;

/// Events that end a Responses stream.
fn terminal(kind: &str) -> bool {
    matches!(
        kind,
        "response.completed" | "response.incomplete" | "response.failed"
    )
}

fn is_call(item: &Value) -> bool {
    item.get("type").and_then(Value::as_str) == Some("function_call")
}

/// An event of a call item the gate does not read
/// (`response.custom_tool_call_input.delta`, `response.mcp_call.completed`,
/// `response.web_search_call.searching`, …): see `responses::is_foreign`.
fn foreign_event(kind: &str) -> bool {
    let Some(rest) = kind.strip_prefix("response.") else {
        return false;
    };
    let segment = rest.split('.').next().unwrap_or("");
    !segment.starts_with("function_call")
        && (segment.contains("_call")
            || segment.ends_with("_request")
            || segment.starts_with("mcp_"))
}

/// A call being held: what the upstream said of it so far.
#[derive(Debug, Default)]
struct Held {
    /// The item as last announced (`added`, then `done`): id, call_id, name.
    item: Map<String, Value>,
    arguments: String,
    /// Bytes this call counts against the bound.
    bytes: usize,
}

/// The tool gate over one Responses stream.
#[derive(Debug)]
pub(crate) struct ResponsesCalls {
    max_bytes: usize,
    /// Call bytes seen in this stream, all calls together.
    bytes: usize,
    /// Calls seen (held or judged).
    calls: usize,
    /// Held calls by the upstream's `output_index`.
    held: BTreeMap<u64, Held>,
    /// Upstream indexes whose call was judged (released or not).
    judged: BTreeSet<u64>,
    /// Upstream `output_index` → the client's, for items sent.
    slots: BTreeMap<u64, u64>,
    next_slot: u64,
    /// The items the gateway wrote (released calls, its note), by the
    /// client's index: what the last event's `output` says of them.
    written: BTreeMap<u64, Value>,
    sequence: u64,
    report: Vec<Value>,
    had_calls: bool,
    any_released: bool,
    /// A `message` item was sent (no note needed when nothing is released).
    message_sent: bool,
    usage_tokens: u64,
    recorded: bool,
    judged_count: u32,
    /// Call items of kinds the gate does not read, by the upstream's
    /// `output_index`: their type and call id. None of their events is
    /// sent; they are judged (withheld) when the stream ends.
    foreign: BTreeMap<u64, (String, String)>,
}

impl ResponsesCalls {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            bytes: 0,
            calls: 0,
            held: BTreeMap::new(),
            judged: BTreeSet::new(),
            slots: BTreeMap::new(),
            next_slot: 0,
            written: BTreeMap::new(),
            sequence: 0,
            report: Vec::new(),
            had_calls: false,
            any_released: false,
            message_sent: false,
            usage_tokens: 0,
            recorded: false,
            judged_count: 0,
            foreign: BTreeMap::new(),
        }
    }

    /// One event's payload out: numbered in order.
    fn emit(&mut self, out: &mut Vec<String>, mut value: Value) {
        if let Some(obj) = value.as_object_mut() {
            obj.insert("sequence_number".into(), json!(self.sequence));
        }
        self.sequence += 1;
        out.push(value.to_string());
    }

    /// Judges one data payload of the stream.
    pub(crate) fn on_data(&mut self, plan: &GatePlan, data: &str) -> ToolEvent {
        let Ok(mut value) = serde_json::from_str::<Value>(data) else {
            // The output gate (or the filter chain) refuses it.
            return ToolEvent::Forward;
        };
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let index = value.get("output_index").and_then(Value::as_u64);
        let item_is_call = value.get("item").is_some_and(is_call);
        let call_event = matches!(
            kind.as_str(),
            "response.function_call_arguments.delta" | "response.function_call_arguments.done"
        ) || (item_is_call
            && matches!(
                kind.as_str(),
                "response.output_item.added" | "response.output_item.done"
            ));
        let mut out = Vec::new();
        let foreign_item = value.get("item").is_some_and(is_foreign);
        if foreign_item
            || foreign_event(&kind)
            || index.is_some_and(|i| self.foreign.contains_key(&i))
        {
            return match index {
                Some(i) => self.drop_foreign(i, &kind, &value),
                None => ToolEvent::Drop,
            };
        }
        if call_event {
            let Some(index) = index else {
                return ToolEvent::Fail(invalid_upstream(
                    "a function call event without `output_index`,",
                ));
            };
            if let Err(e) = self.hold(plan, &kind, index, &mut value, &mut out) {
                return ToolEvent::Fail(e);
            }
            return if out.is_empty() {
                ToolEvent::Drop
            } else {
                ToolEvent::Replace(out)
            };
        }
        if let Some(index) = index {
            // Text (or anything else) at an index that carries a call: the
            // upstream contradicts itself; nothing of it is sent.
            if self.held.contains_key(&index) || self.judged.contains(&index) {
                return ToolEvent::Fail(invalid_upstream(
                    "an event for a function call's output index that is not a call event,",
                ));
            }
            if !self.slots.contains_key(&index) && self.slots.len() >= MAX_ITEMS {
                return ToolEvent::Fail(invalid_upstream(&format!(
                    "more than {MAX_ITEMS} output items, which"
                )));
            }
            let slot = self.slot(index);
            value["output_index"] = json!(slot);
            if kind == "response.output_item.added"
                && value.pointer("/item/type").and_then(Value::as_str) == Some("message")
            {
                self.message_sent = true;
            }
        }
        if terminal(&kind) {
            self.usage_tokens = self.usage_tokens.max(
                value
                    .pointer("/response/usage/total_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            );
            // Calls only the last event names are judged and streamed first.
            let late: Vec<(u64, Value)> = value
                .pointer("/response/output")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .filter(|(_, item)| is_call(item))
                .map(|(i, item)| (u64::try_from(i).unwrap_or(u64::MAX), item.clone()))
                .filter(|(i, _)| !self.judged.contains(i))
                .collect();
            let unread: Vec<(u64, Value)> = value
                .pointer("/response/output")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .filter(|(_, item)| is_foreign(item))
                .map(|(i, item)| (u64::try_from(i).unwrap_or(u64::MAX), item.clone()))
                .collect();
            for (i, item) in unread {
                if !self.foreign.contains_key(&i) && !self.slots.contains_key(&i) {
                    if let ToolEvent::Fail(e) = self.drop_foreign(i, "", &json!({ "item": item })) {
                        return ToolEvent::Fail(e);
                    }
                }
            }
            self.judge_foreign(plan);
            for (i, item) in late {
                if !self.held.contains_key(&i) {
                    if self.calls >= MAX_CALLS {
                        return ToolEvent::Fail(invalid_upstream(&format!(
                            "more than {MAX_CALLS} function calls, which"
                        )));
                    }
                    self.calls += 1;
                }
                let held = self.held.entry(i).or_default();
                if let Value::Object(fields) = item {
                    for (k, v) in fields {
                        if k == "arguments" {
                            if held.arguments.is_empty() {
                                if let Value::String(a) = v {
                                    held.arguments = a;
                                }
                            }
                        } else {
                            held.item.entry(k).or_insert(v);
                        }
                    }
                }
                let bytes = held_bytes(held);
                if let Err(e) = self.count(i, bytes) {
                    return ToolEvent::Fail(e);
                }
            }
            self.release_all(plan, &mut out);
            self.note(&mut out);
            self.record(plan);
        }
        if let Some(response) = value.get_mut("response") {
            self.rewrite_output(response);
        }
        if terminal(&kind) && self.had_calls {
            if let Some(obj) = value.as_object_mut() {
                obj.insert(
                    "palisade".into(),
                    json!({"policy_version": plan.snapshot.version(),
                           "tool_calls": std::mem::take(&mut self.report)}),
                );
            }
        }
        self.emit(&mut out, value);
        ToolEvent::Replace(out)
    }

    /// The client's index for the upstream's `index` (the next one when
    /// first seen).
    fn slot(&mut self, index: u64) -> u64 {
        if let Some(s) = self.slots.get(&index) {
            return *s;
        }
        let s = self.next_slot;
        self.next_slot += 1;
        self.slots.insert(index, s);
        s
    }

    /// Counts `index`'s call at `bytes` against the stream's bounds.
    fn count(&mut self, index: u64, bytes: usize) -> Result<(), ApiError> {
        let Some(held) = self.held.get_mut(&index) else {
            return Ok(());
        };
        let grown = bytes.saturating_sub(held.bytes);
        held.bytes = bytes;
        self.bytes = self.bytes.saturating_add(grown);
        if self.bytes > self.max_bytes {
            return Err(too_large(self.max_bytes));
        }
        Ok(())
    }

    /// One event of a call: held (and judged when the call is done).
    fn hold(
        &mut self,
        plan: &GatePlan,
        kind: &str,
        index: u64,
        value: &mut Value,
        out: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if self.slots.contains_key(&index) || self.judged.contains(&index) {
            return Err(invalid_upstream(
                "a function call event for an output index already used, which",
            ));
        }
        if !self.held.contains_key(&index) {
            if self.calls >= MAX_CALLS {
                return Err(invalid_upstream(&format!(
                    "more than {MAX_CALLS} function calls, which"
                )));
            }
            self.calls += 1;
            self.held.insert(index, Held::default());
        } else if kind == "response.output_item.added" {
            return Err(invalid_upstream("a function call announced twice, which"));
        }
        let Some(held) = self.held.get_mut(&index) else {
            return Ok(());
        };
        match kind {
            "response.function_call_arguments.delta" => {
                if let Some(d) = value.get("delta").and_then(Value::as_str) {
                    // Bounded before it grows: the check below runs on the
                    // length it would reach.
                    if self.bytes.saturating_add(d.len()) > self.max_bytes {
                        return Err(too_large(self.max_bytes));
                    }
                    held.arguments.push_str(d);
                }
            }
            "response.function_call_arguments.done" => {
                if let Some(a) = value.get("arguments").and_then(Value::as_str) {
                    held.arguments = a.to_owned();
                }
            }
            _ => {
                if let Some(Value::Object(item)) = value.get_mut("item").map(std::mem::take) {
                    for (k, v) in item {
                        if k == "arguments" {
                            // The item's whole arguments, when it states them.
                            if let Value::String(a) = v {
                                if !a.is_empty() || held.arguments.is_empty() {
                                    held.arguments = a;
                                }
                            }
                        } else {
                            held.item.insert(k, v);
                        }
                    }
                }
            }
        }
        let bytes = held_bytes(held);
        self.count(index, bytes)?;
        if kind == "response.output_item.done" {
            self.release(plan, index, out);
        }
        Ok(())
    }

    /// Judges the call held at `index`; a released one goes out whole.
    fn release(&mut self, plan: &GatePlan, index: u64, out: &mut Vec<String>) {
        let Some(held) = self.held.remove(&index) else {
            return;
        };
        self.judged.insert(index);
        self.had_calls = true;
        let Some(tools) = plan.tools.clone() else {
            return;
        };
        let text = |k: &str| {
            held.item
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let position = usize::try_from(self.judged_count).unwrap_or(usize::MAX);
        let call = ToolCall {
            index: self.judged_count,
            id: text("call_id"),
            name: text("name"),
            arguments: held.arguments.clone(),
        };
        self.judged_count = self.judged_count.saturating_add(1);
        // Within the bound by construction (the stream is cut past it).
        let judged = judge(plan, &tools, vec![call], false, position);
        self.report.extend(judged.report());
        if judged.released().next().is_none() {
            return;
        }
        self.any_released = true;
        let slot = self.next_slot;
        self.next_slot += 1;
        let mut item = held.item;
        item.insert("type".into(), json!("function_call"));
        let item_id = item.get("id").cloned().unwrap_or(Value::Null);
        item.insert("arguments".into(), json!(""));
        item.insert("status".into(), json!("in_progress"));
        self.emit(
            out,
            json!({"type": "response.output_item.added", "output_index": slot, "item": item}),
        );
        self.emit(
            out,
            json!({"type": "response.function_call_arguments.delta", "item_id": item_id,
                   "output_index": slot, "delta": held.arguments}),
        );
        self.emit(
            out,
            json!({"type": "response.function_call_arguments.done", "item_id": item_id,
                   "output_index": slot, "arguments": held.arguments}),
        );
        item.insert("arguments".into(), json!(held.arguments));
        item.insert("status".into(), json!("completed"));
        let item = Value::Object(item);
        self.written.insert(slot, item.clone());
        self.emit(
            out,
            json!({"type": "response.output_item.done", "output_index": slot, "item": item}),
        );
    }

    /// Judges every call still held, in the upstream's order.
    fn release_all(&mut self, plan: &GatePlan, out: &mut Vec<String>) {
        let open: Vec<u64> = self.held.keys().copied().collect();
        for index in open {
            self.release(plan, index, out);
        }
    }

    /// When calls were made, none released and no message sent: a message
    /// saying so, as a client would have read it in a whole response.
    fn note(&mut self, out: &mut Vec<String>) {
        if !self.had_calls || self.any_released || self.message_sent {
            return;
        }
        self.message_sent = true;
        let entries = &self.report;
        let names: Vec<String> = entries
            .iter()
            .map(|r| {
                let name = r.get("name").and_then(Value::as_str).unwrap_or("");
                let status = r.get("status").and_then(Value::as_str).unwrap_or("");
                let reasons: Vec<&str> = r
                    .get("reasons")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                format!("`{name}` {status} ({})", reasons.join(", "))
            })
            .collect();
        let text = format!("[Palisade] Tool calls not released: {}.", names.join("; "));
        let slot = self.next_slot;
        self.next_slot += 1;
        let id = "msg_palisade";
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        self.emit(
            out,
            json!({"type": "response.output_item.added", "output_index": slot,
                   "item": {"type": "message", "id": id, "status": "in_progress",
                            "role": "assistant", "content": []}}),
        );
        self.emit(
            out,
            json!({"type": "response.content_part.added", "item_id": id, "output_index": slot,
                   "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        );
        self.emit(
            out,
            json!({"type": "response.output_text.delta", "item_id": id, "output_index": slot,
                   "content_index": 0, "delta": text, "logprobs": []}),
        );
        self.emit(
            out,
            json!({"type": "response.output_text.done", "item_id": id, "output_index": slot,
                   "content_index": 0, "text": text, "logprobs": []}),
        );
        self.emit(
            out,
            json!({"type": "response.content_part.done", "item_id": id, "output_index": slot,
                   "content_index": 0, "part": part}),
        );
        let item = json!({"type": "message", "id": id, "status": "completed",
                          "role": "assistant", "content": [part]});
        self.written.insert(slot, item.clone());
        self.emit(
            out,
            json!({"type": "response.output_item.done", "output_index": slot, "item": item}),
        );
    }

    /// A `response` object's `output` as the client was told it: the items
    /// sent, in the order sent (calls as released, never the upstream's
    /// version), then items never streamed that are not calls.
    fn rewrite_output(&self, response: &mut Value) {
        let Some(Value::Array(items)) = response.get_mut("output") else {
            return;
        };
        let upstream = std::mem::take(items);
        let mut by_slot = self.written.clone();
        let mut extra = Vec::new();
        for (i, item) in upstream.into_iter().enumerate() {
            if is_call(&item) || is_foreign(&item) {
                continue;
            }
            match self.slots.get(&u64::try_from(i).unwrap_or(u64::MAX)) {
                Some(slot) => {
                    by_slot.insert(*slot, item);
                }
                None => extra.push(item),
            }
        }
        items.extend(by_slot.into_values());
        items.extend(extra);
    }

    /// Counts the round in the conversation's loop counters (once).
    fn record(&mut self, plan: &GatePlan) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let Some(tools) = &plan.tools else {
            return;
        };
        if let Some(conv) = &tools.conversation {
            let tokens = if tools.in_loop || self.had_calls {
                self.usage_tokens
            } else {
                0
            };
            tools.service.record_round_shared(
                tools.redis.as_ref(),
                &plan.subject.tenant,
                conv,
                self.had_calls,
                tokens,
            );
        }
    }

    /// The stream ended without its last event: calls still held are judged
    /// and the released ones sent.
    pub(crate) fn finish(&mut self, plan: &GatePlan) -> Vec<String> {
        let mut out = Vec::new();
        self.judge_foreign(plan);
        self.release_all(plan, &mut out);
        self.record(plan);
        out
    }
}

impl ResponsesCalls {
    /// An event of a call item the gate does not read, at the upstream's
    /// `index`: noted, never sent.
    fn drop_foreign(&mut self, index: u64, kind: &str, value: &Value) -> ToolEvent {
        if self.slots.contains_key(&index)
            || self.held.contains_key(&index)
            || self.judged.contains(&index)
        {
            return ToolEvent::Fail(invalid_upstream(
                "a call item at an output index already used, which",
            ));
        }
        if !self.foreign.contains_key(&index) && self.foreign.len() >= MAX_ITEMS {
            return ToolEvent::Fail(invalid_upstream(&format!(
                "more than {MAX_ITEMS} output items, which"
            )));
        }
        let noted = self.foreign.entry(index).or_insert_with(|| {
            let segment = kind.strip_prefix("response.").unwrap_or(kind);
            (
                segment.split('.').next().unwrap_or("").to_owned(),
                String::new(),
            )
        });
        if let Some(item) = value.get("item") {
            let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
            if let Some(kind) = text("type") {
                noted.0 = kind;
            }
            if let Some(id) = text("call_id").or_else(|| text("id")) {
                noted.1 = id;
            }
        }
        ToolEvent::Drop
    }

    /// Judges (withholds, audits, reports) the call items the gate does not
    /// read, once.
    fn judge_foreign(&mut self, plan: &GatePlan) {
        let Some(tools) = plan.tools.clone() else {
            return;
        };
        let calls: Vec<ToolCall> = std::mem::take(&mut self.foreign)
            .into_values()
            .enumerate()
            .map(|(n, (name, id))| ToolCall {
                index: u32::try_from(n).unwrap_or(u32::MAX),
                id,
                name,
                arguments: String::new(),
            })
            .collect();
        if calls.is_empty() {
            return;
        }
        self.had_calls = true;
        let judged = judge_foreign(plan, &tools, calls);
        self.report.extend(judged.report());
    }
}

/// The error that cuts a stream whose calls outgrow the bound.
fn too_large(max: usize) -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamInvalidResponse,
        format!(
            "the upstream streamed function calls past tools.max_call_bytes ({max} bytes): the \
             stream was cut and the call was not released"
        ),
    )
}

fn held_bytes(held: &Held) -> usize {
    let text = |k: &str| held.item.get(k).and_then(Value::as_str).map_or(0, str::len);
    text("call_id")
        .saturating_add(text("name"))
        .saturating_add(held.arguments.len())
}
