//! The output gate over a Responses API stream (`POST /v1/responses` with
//! `stream: true`): typed events instead of chat chunks.
//!
//! Every `*.delta` event's `delta` string (output text, function-call
//! arguments, refusals, reasoning, and event types this gate does not know)
//! runs through its own `StreamGuard`, keyed by event type, `output_index`
//! and part index, so a canary or key split across deltas is caught before
//! any of it is sent. Every other string of every event (the `*.done`
//! events, `response.output_item.done`, `response.completed`, which repeat
//! the whole text, and any field a hostile upstream invents) is judged whole,
//! event by event: the sanitizer gives whole text the same result as the
//! streamed pieces. Events are re-encoded from what was judged, never
//! relayed as the upstream wrote them. A blocking finding ends the stream
//! with the released text and a `response.incomplete` event
//! (`incomplete_details.reason: "content_filter"`), the Responses API's
//! counterpart of chat's `finish_reason: "content_filter"`.
//!
//! Must not: forward a string it did not judge, or re-emit released text.

use super::super::fields::judge_string;
use super::super::responses::output_texts;
use super::*;

/// Most guarded fields one stream may open: each holds up to the hold
/// bound, so an upstream inventing output indexes would grow memory.
const MAX_FIELDS: usize = 256;

/// Events that end a Responses stream: held text goes out before them.
fn terminal(kind: &str) -> bool {
    matches!(
        kind,
        "response.completed" | "response.incomplete" | "response.failed"
    )
}

/// `event: <type>` for the SSE frame, when the type is a plain name (an
/// upstream's type never writes a line of its own).
fn frame(value: &Value) -> String {
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
    let plain = !kind.is_empty()
        && kind.len() <= 96
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
    if plain {
        format!("event: {kind}\ndata: {value}\n\n")
    } else {
        sse(value)
    }
}

/// A payload the gateway wrote, framed for the client: with its `event:`
/// line when it is a Responses event of a plain type (as [`frame`] writes
/// them), else as a bare `data:` event.
pub(crate) fn frame_payload(payload: &str) -> String {
    match serde_json::from_str::<Value>(payload) {
        Ok(value) if value.get("type").is_some() => frame(&value),
        _ => format!("data: {payload}\n\n"),
    }
}

impl StreamGate {
    /// Judges one Responses event (already parsed into an object).
    pub(super) fn judge_event(&mut self, mut value: Value) -> EventAction {
        let policy = Arc::clone(&self.policy);
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if self.template.is_none() {
            if let Some(id) = value.pointer("/response/id").cloned() {
                self.template = Some(json!({"id": id}));
            }
        }
        // Arguments the tool gate released come whole in one delta, judged
        // with the call; they are judged whole here too, not held back, so a
        // call's events stay in the order the tool gate wrote them.
        let released_call =
            self.plan.tools.is_some() && kind == "response.function_call_arguments.delta";
        let delta = match value.get_mut("delta") {
            Some(Value::String(s)) if kind.ends_with(".delta") && !released_call => {
                Some(std::mem::take(s))
            }
            _ => None,
        };
        // Tokens cannot be held back with the text they spell.
        if value
            .get("logprobs")
            .is_some_and(|l| !l.is_null() && l.as_array().is_none_or(|a| !a.is_empty()))
        {
            value["logprobs"] = json!([]);
            self.logprobs_noted = true;
        }
        let guarded = delta.is_some();
        // The gateway's own report (the tool gate's, on the last event) is
        // not the model's text.
        // Judged whole, this event repeats text the deltas carried (or will,
        // once their guards release it): its findings are merged with the
        // guards' at the end (`merge_repeated`), not added to them.
        let mut whole = Evidence::default();
        let outcome = judge_tree(&mut value, &policy, &mut whole, &|path| {
            (guarded && path == ["delta"]) || path == ["palisade"]
        });
        merge_repeated(&mut self.repeated, whole);
        let mut stopped = outcome.blocked;
        let mut released_text = None;
        if let Some(text) = delta {
            let output = value
                .get("output_index")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let part = ["content_index", "summary_index"]
                .into_iter()
                .find_map(|k| Some((k, value.get(k)?.as_u64()?)));
            let field = Field::Event(kind.clone(), output, part);
            if !self.guards.contains_key(&field) && self.guards.len() >= MAX_FIELDS {
                self.done = true;
                return EventAction::Fail(invalid_upstream("more output parts than"));
            }
            let released = self.push(field.clone(), &text);
            stopped |= released.stop;
            released_text = Some(released.text);
            if joined::joins(&kind) && !stopped {
                let place = (output, part.map_or(0, |(_, i)| i));
                match self.joined_push(&field, place, &text) {
                    // Nothing of this part goes out: what its guard released
                    // may be the seam's second half.
                    Ok(true) => {
                        stopped = true;
                        released_text = None;
                    }
                    Ok(false) => {}
                    Err(joined::OutOfOrder) => {
                        self.done = true;
                        return EventAction::Fail(invalid_upstream(
                            "output text parts out of order, which",
                        ));
                    }
                }
            }
        }
        // An event repeating whole parts (`response.output_item.done`,
        // `response.completed`) as a client joins them.
        stopped |= self.joined_whole(&value);
        let mut out = String::new();
        if stopped {
            self.done = true;
            // What the guard released before the finding is clean text.
            if let Some(text) = released_text.filter(|t| !t.is_empty()) {
                value["delta"] = Value::String(text);
                out.push_str(&self.frame(&mut value));
            }
            out.push_str(&self.response_events(&[], Some("content_filter")));
            return EventAction::Stop(Bytes::from(out));
        }
        if terminal(&kind) {
            // Text still held goes out before the stream's last event.
            let joined_stop = self.joined_finish();
            let (tails, stop) = self.drain();
            let stop = stop || joined_stop;
            if stop {
                self.done = true;
                return EventAction::Stop(Bytes::from(
                    self.response_events(&[], Some("content_filter")),
                ));
            }
            out.push_str(&self.response_events(&tails, None));
        }
        match released_text {
            Some(text) if text.is_empty() => return EventAction::Hold,
            Some(text) => value["delta"] = Value::String(text),
            None => {}
        }
        out.push_str(&self.frame(&mut value));
        EventAction::Replace(Bytes::from(out))
    }

    /// Feeds a delta to the joined output text; `true`: stop the stream.
    fn joined_push(
        &mut self,
        field: &Field,
        place: (u64, u64),
        text: &str,
    ) -> Result<bool, joined::OutOfOrder> {
        if self.joined.is_none() {
            match joined::JoinedText::new(self.options.clone()) {
                Ok(j) => self.joined = Some(j),
                // Options were validated with the gate; fail closed.
                Err(_) => return Ok(true),
            }
        }
        let now = self.opened.elapsed();
        let Some(joined) = self.joined.as_mut() else {
            return Ok(true);
        };
        let verdict = joined.push(field, place, text, now)?;
        Ok(self.joined_verdict(verdict))
    }

    /// The joined text's timed release, judged; `true`: stop the stream.
    pub(super) fn joined_release_due(&mut self, now: Duration) -> bool {
        let Some(joined) = self.joined.as_mut() else {
            return false;
        };
        let verdict = joined.release_due(now);
        self.joined_verdict(verdict)
    }

    /// The joined text's end, judged; `true`: stop the stream.
    pub(super) fn joined_finish(&mut self) -> bool {
        let Some(joined) = self.joined.as_mut() else {
            return false;
        };
        let verdict = joined.finish();
        self.joined_verdict(verdict)
    }

    fn joined_verdict(&mut self, verdict: joined::Verdict) -> bool {
        if verdict.stop {
            absorb(&mut self.evidence, &verdict.violations, false);
            if verdict.violations.iter().any(|a| a.class == Class::Canary) {
                self.evidence.canary_leaked = true;
            }
        }
        verdict.stop
    }

    /// Whether the parts an event repeats whole (an item's `content`, a
    /// response's `output`), already judged one by one, find anything
    /// joined; `true`: stop the stream.
    fn joined_whole(&mut self, value: &Value) -> bool {
        let texts = match (value.get("item"), value.get("response")) {
            (Some(item), _) => output_texts(&json!({ "output": [item] })),
            (None, Some(response)) => output_texts(response),
            (None, None) => return false,
        };
        if texts.len() < 2 {
            return false;
        }
        let mut whole = Evidence::default();
        let outcome = judge_string(&mut texts.concat(), &self.policy, &mut whole);
        merge_repeated(&mut self.repeated, whole);
        outcome.changed || outcome.blocked
    }

    /// Delta events carrying released `fields`, or (with `finish`) the
    /// `response.incomplete` event that ends a stopped stream.
    pub(super) fn response_events(
        &mut self,
        fields: &[(Field, String)],
        finish: Option<&str>,
    ) -> String {
        let mut out = String::new();
        for (field, text) in fields {
            if let Field::Event(kind, output, part) = field {
                let mut v = json!({"type": kind, "output_index": output, "delta": text});
                if let Some((key, index)) = part {
                    v[*key] = json!(index);
                }
                out.push_str(&self.frame(&mut v));
            }
        }
        if let Some(reason) = finish {
            let id = self
                .template
                .as_ref()
                .and_then(|t| t.get("id"))
                .cloned()
                .unwrap_or(Value::Null);
            out.push_str(&self.frame(&mut json!({
                "type": "response.incomplete",
                "response": {
                    "id": id,
                    "object": "response",
                    "status": "incomplete",
                    "incomplete_details": {"reason": reason},
                    "output": [],
                }
            })));
        }
        out
    }

    /// Frames one event with the gateway's own `sequence_number`: the gate
    /// holds, drops and writes events, so the upstream's numbers would have
    /// gaps and repeats, and SDKs expect them to count up one by one.
    fn frame(&mut self, value: &mut Value) -> String {
        if let Some(obj) = value.as_object_mut() {
            obj.insert("sequence_number".to_owned(), json!(self.sequence));
        }
        self.sequence += 1;
        frame(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client receives for `events`, and whether the stream ended
    /// on a finding (`Stop`) or on a refusal of the upstream (`Fail`).
    fn relay(events: &[Value]) -> (String, &'static str) {
        let mut plan = GatePlan::for_test(palisade_policy::Snapshot::builtin());
        plan.shape = ResponseShape::Responses;
        let mut gate = StreamGate::new(&plan).unwrap();
        let mut out = String::new();
        for event in events {
            match gate.on_data(&event.to_string()) {
                EventAction::Forward => out.push_str(&event.to_string()),
                EventAction::Replace(b) => out.push_str(std::str::from_utf8(&b).unwrap()),
                EventAction::Hold => {}
                EventAction::Stop(b) => {
                    out.push_str(std::str::from_utf8(&b).unwrap());
                    return (out, "stop");
                }
                EventAction::Fail(_) => return (out, "fail"),
            }
        }
        if let Some(b) = gate.finish() {
            out.push_str(std::str::from_utf8(&b).unwrap());
        }
        (out, "end")
    }

    fn text_delta(output: u64, part: u64, delta: &str) -> Value {
        json!({"type": "response.output_text.delta", "output_index": output,
               "content_index": part, "delta": delta})
    }

    fn message(parts: &[&str]) -> Value {
        let content: Vec<Value> = parts
            .iter()
            .map(|t| json!({"type": "output_text", "text": t, "annotations": []}))
            .collect();
        json!({"type": "message", "role": "assistant", "content": content})
    }

    /// SDKs join every output_text part into `output_text`: a key split
    /// across two parts, or two message items, is whole to the client. No
    /// piece of the second half goes out, and the stream ends filtered.
    #[test]
    fn a_key_split_across_parts_or_items_is_caught_at_the_seam() {
        let (a, b) = ("the key is AKIAIOSF", "ODNN7EXAMPLE ok. ");
        for (first, second) in [((0, 0), (0, 1)), ((0, 0), (1, 0))] {
            let (out, end) = relay(&[
                text_delta(first.0, first.1, a),
                text_delta(second.0, second.1, b),
                json!({"type": "response.completed", "response": {"id": "r", "output": []}}),
            ]);
            assert_eq!(end, "stop", "{out}");
            assert!(!out.contains("ODNN7"), "{out}");
            assert!(out.contains("content_filter"), "{out}");
        }
    }

    /// A hostile upstream can skip the deltas: the events that repeat the
    /// parts whole are judged joined too.
    #[test]
    fn a_key_split_across_the_parts_of_a_done_event_is_caught() {
        let item = message(&["the key is AKIAIOSF", "ODNN7EXAMPLE ok."]);
        for event in [
            json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
            json!({"type": "response.completed", "response": {"id": "r", "output": [item]}}),
        ] {
            let (out, end) = relay(&[event]);
            assert_eq!(end, "stop", "{out}");
            assert!(!out.contains("ODNN7"), "{out}");
        }
    }

    /// Arrival order must be rendering order, or the joined text judged
    /// would not be the text shown.
    #[test]
    fn parts_out_of_order_are_refused() {
        let (_, end) = relay(&[
            text_delta(0, 1, "ODNN7EXAMPLE ok. "),
            text_delta(0, 0, "the key is AKIAIOSF"),
        ]);
        assert_eq!(end, "fail");
    }

    /// Clean text in several parts passes whole, and a key inside one part
    /// is redacted by that part's guard, not treated as a seam finding.
    #[test]
    fn clean_parts_and_a_key_inside_one_part_pass_as_before() {
        let item = message(&["Hello there. ", "A second part."]);
        let (out, end) = relay(&[
            text_delta(0, 0, "Hello there. "),
            text_delta(0, 1, "A second part."),
            json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
            json!({"type": "response.completed", "response": {"id": "r", "output": [item]}}),
        ]);
        assert_eq!(end, "end", "{out}");
        assert!(
            out.contains("Hello there. ") && out.contains("A second part."),
            "{out}"
        );
        assert!(!out.contains("content_filter"), "{out}");
    }

    /// A key split across deltas and repeated whole by the `.done` event,
    /// the item-done event and `response.completed` is one finding.
    #[test]
    fn a_secret_repeated_by_the_done_events_is_counted_once() {
        let key = "AKIAIOSFODNN7EXAMPLE";
        let mut plan = GatePlan::for_test(palisade_policy::Snapshot::builtin());
        plan.shape = ResponseShape::Responses;
        let mut gate = StreamGate::new(&plan).unwrap();
        let (a, b) = key.split_at(9);
        let text = format!("the key is {key} ok");
        let item = json!({"type": "message", "id": "m", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]});
        for event in [
            json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "the key is "}),
            json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": a}),
            json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": b}),
            json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": " ok"}),
            json!({"type": "response.output_text.done", "output_index": 0, "content_index": 0, "text": text}),
            json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
            json!({"type": "response.completed", "response": {"id": "r", "output": [item]}}),
        ] {
            let _ = gate.on_data(&event.to_string());
        }
        let mut evidence = gate.evidence.clone();
        merge_repeated(&mut evidence, gate.repeated.clone());
        let found: u32 = evidence.secrets.values().sum();
        assert_eq!(found, 1, "{:?}", evidence.secrets);
    }
}
