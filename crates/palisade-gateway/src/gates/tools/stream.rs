//! The tool gate over a stream: call deltas held and assembled, judged when
//! their choice finishes, released whole in one delta.
//!
//! Must not: forward any byte of a call before it is judged.

use super::*;

/// What the stream relay should do with one event.
#[derive(Debug)]
pub(crate) enum ToolEvent {
    /// Send it unchanged.
    Forward,
    /// Drop it (it carried only tool-call deltas, now held).
    Drop,
    /// Send these data payloads instead, in order.
    Replace(Vec<String>),
    /// The upstream's events cannot be judged (a Responses stream past its
    /// bounds, or contradicting itself): end the stream with this error.
    Fail(ApiError),
}

/// The tool gate over a stream: tool-call deltas are held and assembled;
/// when a choice finishes, its calls are judged and the released ones sent
/// whole in one delta, followed by the `palisade` report event.
#[derive(Debug)]
pub(crate) struct ToolStreamGate {
    pub(crate) plan: GatePlan,
    pub(crate) assembler: CallAssembler,
    pub(crate) oversize: std::collections::BTreeSet<u32>,
    /// `id`, `object`, `created`, `model` of the stream's chunks.
    pub(crate) template: Option<Value>,
    pub(crate) usage_tokens: u64,
    pub(crate) had_calls: bool,
    pub(crate) report: Vec<Value>,
    pub(crate) recorded: bool,
    /// Choices whose `role` went with a dropped chunk (its only other
    /// content was held call deltas): the first delta sent for them carries it.
    pub(crate) role_owed: std::collections::BTreeSet<u32>,
    /// A Responses stream's calls (typed events instead of chunks).
    pub(crate) responses: Option<stream_responses::ResponsesCalls>,
    /// Per choice: calls judged and released by earlier batches.
    pub(crate) batches: std::collections::BTreeMap<u32, (usize, u32)>,
}

impl ToolStreamGate {
    /// The gate for a request whose plan has a tool plan.
    pub(crate) fn new(plan: &GatePlan) -> Option<ToolStreamGate> {
        let tools = plan.tools.as_ref()?;
        Some(ToolStreamGate {
            assembler: CallAssembler::new(tools.service.max_call_bytes),
            plan: plan.clone(),
            oversize: Default::default(),
            template: None,
            usage_tokens: 0,
            had_calls: false,
            report: Vec::new(),
            recorded: false,
            role_owed: Default::default(),
            batches: Default::default(),
            responses: (plan.shape == crate::gates::ResponseShape::Responses)
                .then(|| stream_responses::ResponsesCalls::new(tools.service.max_call_bytes)),
        })
    }

    pub(crate) fn chunk(&self, choices: Value) -> Value {
        let mut c = self.template.clone().unwrap_or_else(|| json!({}));
        if let Some(obj) = c.as_object_mut() {
            obj.insert("object".into(), json!("chat.completion.chunk"));
            obj.insert("choices".into(), choices);
        }
        c
    }

    /// Judges the held calls of `choice`: the payload releasing them (if
    /// any), and whether any was released.
    pub(crate) fn release(&mut self, choice: u32) -> (Option<String>, bool) {
        let calls = self.assembler.take(choice);
        let oversize = self.oversize.remove(&choice);
        if calls.is_empty() {
            return (None, false);
        }
        self.had_calls = true;
        let Some(tools) = self.plan.tools.clone() else {
            return (None, false);
        };
        // A choice may finish more than once (a hostile upstream sends calls
        // after its `finish_reason`): later batches count on from the earlier
        // ones, for the per-response cap and for the indexes the client
        // merges deltas by (a second batch at index 0 would append to the
        // call already released there).
        let (judged_before, released_before) = self.batches.get(&choice).copied().unwrap_or((0, 0));
        let count = calls.len();
        let judged = judge(&self.plan, &tools, calls, oversize, judged_before);
        self.report.extend(judged.report());
        let released: Vec<Value> = judged
            .released()
            .enumerate()
            .map(|(i, c)| {
                let index = released_before.saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
                c.to_delta_entry(index)
            })
            .collect();
        self.batches.insert(
            choice,
            (
                judged_before.saturating_add(count),
                released_before.saturating_add(u32::try_from(released.len()).unwrap_or(u32::MAX)),
            ),
        );
        let any_released = !released.is_empty();
        let mut delta = if any_released {
            json!({"tool_calls": released})
        } else {
            json!({"content": judged.note()})
        };
        if self.role_owed.remove(&choice) {
            delta["role"] = json!("assistant");
        }
        let payload = self.chunk(json!([{"index": choice, "delta": delta, "finish_reason": null}]));
        (Some(payload.to_string()), any_released)
    }

    pub(crate) fn report_event(&mut self) -> Option<String> {
        if self.report.is_empty() {
            return None;
        }
        let mut c = self.chunk(json!([]));
        if let Some(obj) = c.as_object_mut() {
            obj.insert(
                "palisade".into(),
                json!({"policy_version": self.plan.snapshot.version(), "tool_calls": std::mem::take(&mut self.report)}),
            );
        }
        Some(c.to_string())
    }

    /// Handles one data payload.
    pub(crate) fn on_data(&mut self, data: &str) -> ToolEvent {
        if let Some(calls) = &mut self.responses {
            return calls.on_data(&self.plan, data);
        }
        // Plain text deltas with no call held need no parse here (the output
        // gate parses them anyway).
        let quiet = self.template.is_some()
            && self.assembler.is_empty()
            && self.oversize.is_empty()
            && !crate::gates::json_keys::may_hold_key(data.as_bytes(), b"\"tool_calls\"")
            && !crate::gates::json_keys::may_hold_key(data.as_bytes(), b"\"function_call\"")
            && !crate::gates::json_keys::may_hold_key(data.as_bytes(), b"\"usage\"");
        if quiet {
            return ToolEvent::Forward;
        }
        let Ok(mut value) = serde_json::from_str::<Value>(data) else {
            return ToolEvent::Forward;
        };
        if self.template.is_none() {
            let mut t = value.clone();
            if let Some(obj) = t.as_object_mut() {
                obj.retain(|k, _| matches!(k.as_str(), "id" | "created" | "model"));
            }
            self.template = Some(t);
        }
        self.usage_tokens = self.usage_tokens.max(total_tokens(&value));
        let usage_only = value
            .get("choices")
            .is_none_or(|c| c.as_array().is_some_and(Vec::is_empty))
            && value.get("usage").is_some_and(|u| !u.is_null());
        if usage_only
            && self
                .plan
                .tools
                .as_ref()
                .is_some_and(|t| t.strip_usage_chunk)
        {
            return ToolEvent::Drop;
        }
        let mut changed = false;
        let mut finishing = Vec::new();
        if let Some(Value::Array(choices)) = value.get_mut("choices") {
            for choice in choices.iter_mut() {
                let index = choice
                    .get("index")
                    .and_then(Value::as_u64)
                    .map_or(0, |i| u32::try_from(i).unwrap_or(u32::MAX));
                // Choices the gate keeps state for are bounded as `n` is: a
                // hostile upstream inventing indexes would grow that state.
                if index >= MAX_STREAM_CHOICES {
                    return ToolEvent::Fail(crate::gates::output::invalid_upstream(&format!(
                        "a choice index of {MAX_STREAM_CHOICES} or more, which"
                    )));
                }
                if let Some(Value::Array(deltas)) = choice
                    .get_mut("delta")
                    .and_then(|d| d.as_object_mut())
                    .and_then(|d| d.remove("tool_calls"))
                {
                    changed = true;
                    for d in &deltas {
                        if self.assembler.push(index, d).is_err() {
                            self.oversize.insert(index);
                        }
                    }
                }
                // A legacy `function_call` delta: held and judged as one
                // more call of the choice, released as a `tool_calls` entry.
                // (`"function_call": null`, which SDK-serialized deltas carry
                // beside `tool_calls`, is no call.)
                if let Some(call) = choice
                    .get_mut("delta")
                    .and_then(|d| d.as_object_mut())
                    .and_then(|d| d.remove("function_call"))
                    .filter(|c| !c.is_null())
                {
                    changed = true;
                    let mut entry = json!({"index": LEGACY_CALL_INDEX, "function": call});
                    // Its id is the gateway's, given once: the assembler
                    // counts every id it is handed.
                    if !self.assembler.has_call(index, LEGACY_CALL_INDEX) {
                        entry["id"] = json!(format!("call_{}", uuid::Uuid::new_v4().simple()));
                    }
                    if !entry["function"].is_object() || self.assembler.push(index, &entry).is_err()
                    {
                        self.oversize.insert(index);
                    }
                }
                let finish = choice.get("finish_reason").is_some_and(|f| !f.is_null());
                if finish && (self.assembler.has(index) || self.oversize.contains(&index)) {
                    finishing.push(index);
                }
            }
        }
        if finishing.is_empty() {
            if !changed {
                return ToolEvent::Forward;
            }
            return if carries_nothing(&value) {
                for choice in value["choices"].as_array().into_iter().flatten() {
                    if choice.pointer("/delta/role").is_some_and(|r| !r.is_null()) {
                        let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                        self.role_owed
                            .insert(u32::try_from(index).unwrap_or(u32::MAX));
                    }
                }
                ToolEvent::Drop
            } else {
                ToolEvent::Replace(vec![value.to_string()])
            };
        }
        let mut out = Vec::new();
        for index in finishing {
            let (payload, any_released) = self.release(index);
            out.extend(payload);
            // The client acts on `tool_calls` (a legacy call is released as
            // one), or on nothing when no call was released.
            if let Some(Value::Array(choices)) = value.get_mut("choices") {
                for choice in choices.iter_mut() {
                    let same =
                        choice.get("index").and_then(Value::as_u64) == Some(u64::from(index));
                    let finish = choice.get("finish_reason").and_then(Value::as_str);
                    if same && matches!(finish, Some("tool_calls" | "function_call")) {
                        choice["finish_reason"] =
                            json!(if any_released { "tool_calls" } else { "stop" });
                    }
                }
            }
        }
        out.push(value.to_string());
        out.extend(self.report_event());
        ToolEvent::Replace(out)
    }

    /// The stream ended (`[DONE]` or the body closed): calls never finished
    /// by a `finish_reason` are judged now. Returns payloads to send first.
    pub(crate) fn finish(&mut self) -> Vec<String> {
        if let Some(calls) = &mut self.responses {
            return calls.finish(&self.plan);
        }
        let mut out = Vec::new();
        for choice in self.assembler.choices() {
            out.extend(self.release(choice).0);
        }
        out.extend(self.report_event());
        if !self.recorded {
            self.recorded = true;
            if let Some(tools) = &self.plan.tools {
                if let Some(conv) = &tools.conversation {
                    let tokens = if tools.in_loop || self.had_calls {
                        self.usage_tokens
                    } else {
                        0
                    };
                    tools.service.record_round_shared(
                        tools.redis.as_ref(),
                        &self.plan.subject.tenant,
                        conv,
                        self.had_calls,
                        tokens,
                    );
                }
            }
        }
        out
    }
}

/// Choice indexes a stream may use (requests may ask for `n` up to 128).
const MAX_STREAM_CHOICES: u32 = 128;

/// Where a choice's legacy `function_call` is assembled: the last index the
/// assembler takes, after any `tool_calls` entry a server numbers in order.
const LEGACY_CALL_INDEX: u32 = 127;

/// True when a chunk has nothing left for the client: no usage, and every
/// choice has an empty delta and no finish reason.
pub(crate) fn carries_nothing(value: &Value) -> bool {
    if value.get("usage").is_some_and(|u| !u.is_null()) {
        return false;
    }
    value
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|choices| {
            choices.iter().all(|c| {
                c.get("finish_reason").is_none_or(Value::is_null)
                    && c.get("delta").and_then(Value::as_object).is_none_or(|d| {
                        d.iter().all(|(k, v)| {
                            v.is_null() || (k == "content" && v.as_str() == Some("")) || k == "role"
                        })
                    })
            })
        })
}

// ---------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------
