//! **Response filters**: one chain, the tool gate and then the output gate,
//! for whole bodies ([`filter_body`]) and streams ([`StreamFilters`]) alike,
//! so a streamed answer is judged exactly as the same answer whole.
//!
//! Order matters: the tool gate first rewrites tool calls (withheld calls
//! removed, the `palisade` report added), and the output gate judges what
//! the client would actually receive, report included. An upstream's own
//! `palisade` object is removed before either: the report is the gateway's.
//!
//! Must not: hold gate logic (that is [`crate::gates`]) or touch the socket.

use bytes::{Bytes, BytesMut};
use palisade_openai::sse::SseEvent;
use palisade_openai::ApiError;

use crate::gates::output::{self, EventAction, StreamGate};
use crate::gates::tools::{self, ToolEvent, ToolStreamGate};
use crate::gates::GatePlan;

/// Filters a whole response body. `success`: the upstream answered 2xx;
/// an error body is judged too (SDKs show its message), but carries no
/// tool calls. `Err` is the output gate's refusal (or an unreadable body).
pub(crate) fn filter_body(plan: &GatePlan, success: bool, body: Bytes) -> Result<Bytes, ApiError> {
    if !success {
        return Ok(output::gate_error_body(plan, &body)?.unwrap_or(body));
    }
    let body = output::without_foreign_report(&body).map_or(body, Bytes::from);
    let body = tools::gate_body(plan, &body).unwrap_or(body);
    Ok(output::gate_body(plan, &body)?.unwrap_or(body))
}

/// Events going out to the client in one write.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    batch: Option<BytesMut>,
    single: Option<Bytes>,
}

impl Outgoing {
    /// Adds `raw` after what is already going out.
    pub(crate) fn push(&mut self, raw: Bytes) {
        match (self.batch.as_mut(), self.single.take()) {
            (Some(b), _) => b.extend_from_slice(&raw),
            (None, Some(first)) => {
                let mut b = BytesMut::with_capacity(first.len() + raw.len());
                b.extend_from_slice(&first);
                b.extend_from_slice(&raw);
                self.batch = Some(b);
            }
            (None, None) => self.single = Some(raw),
        }
    }

    /// Everything pushed, as one buffer; `None` if nothing was.
    pub(crate) fn take(&mut self) -> Option<Bytes> {
        self.batch
            .take()
            .map(BytesMut::freeze)
            .or_else(|| self.single.take())
    }
}

/// What the chain made of one upstream event.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send the event: as it came (`None`) or rewritten.
    Pass(Option<Bytes>),
    /// Send nothing for it (held, or already sent as rewritten payloads).
    Skip,
    /// The output gate stopped the stream (its closing events are pushed).
    Stop,
    /// The event cannot be judged: end the stream with this error.
    Fail(ApiError),
}

/// The response filters of one stream.
pub(crate) struct StreamFilters {
    tools: Option<ToolStreamGate>,
    output: Option<StreamGate>,
}

impl StreamFilters {
    /// The chain for a request's plan; empty without one (gates disabled,
    /// or embeddings).
    pub(crate) fn new(plan: Option<&GatePlan>) -> Self {
        Self {
            tools: plan.and_then(ToolStreamGate::new),
            output: plan.and_then(StreamGate::new),
        }
    }

    /// Whether any gate judges this stream's events (then an event that
    /// does not parse is refused, never relayed).
    pub(crate) fn is_active(&self) -> bool {
        self.output.is_some() || self.tools.is_some()
    }

    /// The event without an upstream's own `palisade` object.
    pub(crate) fn without_foreign_report(&self, event: SseEvent) -> SseEvent {
        // Most events cannot name the report: their data is not decoded here.
        if !self.is_active() || !output::may_name_report(event.raw()) {
            return event;
        }
        match event
            .data_ref()
            .and_then(|d| output::without_foreign_report(d.as_bytes()))
        {
            Some(clean) => {
                let mut raw = b"data: ".to_vec();
                raw.extend_from_slice(&clean);
                raw.extend_from_slice(b"\n\n");
                SseEvent::from_raw(Bytes::from(raw))
            }
            None => event,
        }
    }

    /// The output gate's relay timer: when held text is due out.
    pub(crate) fn output_mut(&mut self) -> Option<&mut StreamGate> {
        self.output.as_mut()
    }

    /// Runs one event (a data event, or `[DONE]`) through the tool gate and
    /// then the output gate; what they emit on the way is pushed to `out`.
    /// `parsed`: the event's data as the relay already parsed it (for token
    /// accounting), so the output gate does not parse it again; `None` if it
    /// was not parsed (or did not parse: then the gate finds out itself).
    pub(crate) fn on_event(
        &mut self,
        event: &SseEvent,
        parsed: Option<serde_json::Value>,
        out: &mut Outgoing,
    ) -> Step {
        // Fail closed: with only a tool gate, nothing else parses every event.
        if self.tools.is_some() && self.output.is_none() && !event.is_done() {
            if let Some(data) = event.data_ref() {
                if !serde_json::from_str::<serde_json::Value>(&data).is_ok_and(|v| v.is_object()) {
                    return Step::Fail(output::invalid_upstream("a stream event"));
                }
            }
        }
        if let Some(tools) = &mut self.tools {
            let payloads = if event.is_done() {
                tools.finish()
            } else if let Some(data) = event.data_ref() {
                match tools.on_data(&data) {
                    ToolEvent::Forward => Vec::new(),
                    ToolEvent::Drop => return Step::Skip,
                    ToolEvent::Fail(err) => return Step::Fail(err),
                    ToolEvent::Replace(mut payloads) => {
                        // The last payload stands for the event (a stream's
                        // last event is held until its ledger row is written).
                        let last = payloads.pop();
                        if let Some(step) = self.emit_payloads(payloads, out) {
                            return step;
                        }
                        let Some(last) = last else {
                            return Step::Skip;
                        };
                        let mut own = Outgoing::default();
                        if let Some(step) = self.emit_payload(&last, &mut own) {
                            if let Some(bytes) = own.take() {
                                out.push(bytes);
                            }
                            return step;
                        }
                        return own.take().map_or(Step::Skip, |b| Step::Pass(Some(b)));
                    }
                }
            } else {
                Vec::new()
            };
            // Calls still held when the stream ends go out before it.
            if let Some(step) = self.emit_payloads(payloads, out) {
                return step;
            }
        }
        let Some(gate) = &mut self.output else {
            return Step::Pass(None);
        };
        if event.is_done() {
            // Text still held goes out before the end.
            if let Some(tail) = gate.finish() {
                out.push(tail);
            }
            return Step::Pass(None);
        }
        let Some(data) = event.data_ref() else {
            return Step::Pass(None);
        };
        match gate.on_data_parsed(&data, parsed) {
            EventAction::Forward => Step::Pass(None),
            EventAction::Replace(bytes) => Step::Pass(Some(bytes)),
            EventAction::Hold => Step::Skip,
            EventAction::Stop(bytes) => {
                out.push(bytes);
                Step::Stop
            }
            EventAction::Fail(err) => Step::Fail(err),
        }
    }

    /// The upstream ended without `[DONE]`: tool calls still held are judged
    /// and sent, then any text the output gate still holds.
    pub(crate) fn finish(&mut self, out: &mut Outgoing) {
        if let Some(payloads) = self.tools.as_mut().map(ToolStreamGate::finish) {
            let _ = self.emit_payloads(payloads, out);
        }
        if let Some(held) = self.output.as_mut().and_then(StreamGate::finish) {
            out.push(held);
        }
    }

    /// Sends payloads the tool gate produced through the output gate, in
    /// order. `Some` when the output gate stopped or failed the stream.
    fn emit_payloads(&mut self, payloads: Vec<String>, out: &mut Outgoing) -> Option<Step> {
        payloads
            .iter()
            .find_map(|payload| self.emit_payload(payload, out))
    }

    fn emit_payload(&mut self, payload: &str, out: &mut Outgoing) -> Option<Step> {
        let raw = Bytes::from(output::frame_payload(payload));
        let Some(gate) = &mut self.output else {
            out.push(raw);
            return None;
        };
        match gate.on_data(payload) {
            EventAction::Forward => out.push(raw),
            EventAction::Replace(bytes) => out.push(bytes),
            EventAction::Hold => {}
            EventAction::Stop(bytes) => {
                out.push(bytes);
                return Some(Step::Stop);
            }
            EventAction::Fail(err) => return Some(Step::Fail(err)),
        }
        None
    }
}

/// The stream relay's per-event work, for the criterion bench
/// (`benches/stream.rs`): framer, foreign-report removal and the response
/// filters under the built-in policy, as `super::stream` runs them, without
/// the socket, the clock-driven releases or the metrics.
#[doc(hidden)]
pub mod bench {

    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use palisade_openai::sse::SseFramer;
    use palisade_policy::Snapshot;

    use super::{Outgoing, Step, StreamFilters};
    use crate::gates::GatePlan;

    /// Assistant prose as a model streams it: markdown, code spans, a link, lists.
    const PROSE: &str = "Sure! Here is a short overview of how the borrow checker works in Rust. \
    Every value has a single owner, and references borrow it either shared (`&T`) or exclusively \
    (`&mut T`). The compiler rejects code where a mutable borrow overlaps any other borrow.\n\n\
    - **Ownership** moves on assignment unless the type is `Copy`.\n\
    - **Lifetimes** name how long a reference stays valid.\n\
    - See [the book](https://doc.rust-lang.org/book/ch04-00-understanding-ownership.html) for more.\n\n\
    In practice, most errors go away once you clone less and restructure loops a little. ";

    const HEAD: &str = r#"{"id":"chatcmpl-AbC123xyz","object":"chat.completion.chunk","created":1733443200,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":["#;

    fn event(choice: &str, usage: &str) -> Bytes {
        Bytes::from(format!("data: {HEAD}{choice}],\"usage\":{usage}}}\n\n"))
    }

    fn json_string(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// A realistic chat-completion stream as the upstream's reads, one event
    /// each: a role chunk, `words` one-word `delta.content` chunks of markdown
    /// prose with a link, a `tool_calls` chunk, the finish chunk, a usage chunk
    /// and `[DONE]`.
    #[must_use]
    pub fn sample_stream(words: usize) -> Vec<Bytes> {
        let mut reads = vec![event(
            r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#,
            "null",
        )];
        let pieces: Vec<&str> = PROSE.split_inclusive(' ').collect();
        for i in 0..words {
            let piece = pieces[i % pieces.len()];
            reads.push(event(
                &format!(
                    r#"{{"index":0,"delta":{{"content":{}}},"logprobs":null,"finish_reason":null}}"#,
                    json_string(piece)
                ),
                "null",
            ));
        }
        reads.push(event(
            r#"{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_Xy12","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]},"logprobs":null,"finish_reason":null}"#,
            "null",
        ));
        reads.push(event(
            r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}"#,
            "null",
        ));
        reads.push(Bytes::from(format!(
            "data: {HEAD}],\"usage\":{{\"prompt_tokens\":412,\"completion_tokens\":{words},\"total_tokens\":{}}}}}\n\n",
            412 + words
        )));
        reads.push(Bytes::from_static(b"data: [DONE]\n\n"));
        reads
    }

    /// A request's plan under the built-in policy, with its canary.
    #[derive(Debug)]
    pub struct Plan(GatePlan);

    impl Plan {
        /// The built-in policy (parsed once), as the input gate leaves it for a
        /// chat completion.
        #[must_use]
        pub fn builtin() -> Self {
            let canary = palisade_detect::Canary::short_from_random(&[7; 16], 8);
            let mut plan = GatePlan::for_test(Snapshot::builtin());
            plan.canaries = vec![canary];
            Self(plan)
        }
    }

    /// A stream whose first sentence ends with its `first`-th content delta
    /// (one word per delta, the last one `end. `), then the sample prose:
    /// for the time-to-first-token bench (`examples/stream_ttft.rs`).
    #[must_use]
    pub fn first_sentence_stream(first: usize) -> Vec<Bytes> {
        let mut reads = sample_stream(40);
        let words = [
            "The ", "borrow ", "checker ", "tracks ", "who ", "owns ", "each ", "value ",
        ];
        let opening: Vec<Bytes> = (0..first.max(1))
            .map(|i| {
                let word = if i + 1 == first.max(1) { "end. " } else { words[i % words.len()] };
                event(
                    &format!(
                        r#"{{"index":0,"delta":{{"content":{}}},"logprobs":null,"finish_reason":null}}"#,
                        json_string(word)
                    ),
                    "null",
                )
            })
            .collect();
        reads.splice(1..1, opening);
        reads
    }

    /// One upstream read through the framer and the filters, as the relay does:
    /// the bytes for the client, and whether the filters stopped the stream.
    fn relay_read(
        filters: &mut StreamFilters,
        framer: &mut SseFramer,
        read: &Bytes,
    ) -> (Option<Bytes>, bool) {
        framer.push(read);
        let mut out = Outgoing::default();
        let mut stopped = false;
        while let Ok(Some(event)) = framer.next_event() {
            let event = filters.without_foreign_report(event);
            match filters.on_event(&event, None, &mut out) {
                Step::Pass(gated) => {
                    if let Some(sent) = gated.or_else(|| event.into_client(false)) {
                        out.push(sent);
                    }
                }
                Step::Skip => {}
                Step::Stop | Step::Fail(_) => {
                    stopped = true;
                    break;
                }
            }
        }
        (out.take(), stopped)
    }

    /// Feeds `reads` one event at a time, timing each through the filters,
    /// until the first event that sends content text to the client. Returns
    /// how many events that took, the time spent on all of them, and the
    /// time of the last one (the one that released the text); `None` if no
    /// content went out.
    pub fn first_content(
        plan: Option<&Plan>,
        reads: &[Bytes],
    ) -> Option<(usize, Duration, Duration)> {
        let mut filters = StreamFilters::new(plan.map(|p| &p.0));
        let mut framer = SseFramer::new(1 << 20);
        let mut total = Duration::ZERO;
        for (n, read) in reads.iter().enumerate() {
            let started = Instant::now();
            let (sent, stopped) = relay_read(&mut filters, &mut framer, read);
            if stopped {
                return None;
            }
            let spent = started.elapsed();
            total += spent;
            let has_text = sent.as_deref().is_some_and(|b| {
                std::str::from_utf8(b)
                    .is_ok_and(|s| s.contains("\"content\":\"") && !s.contains("\"content\":\"\""))
            });
            if has_text {
                return Some((n + 1, total, spent));
            }
        }
        None
    }

    /// Relays one stream (`reads`: the upstream's body as it arrived) through
    /// the filters of `plan` (`None`: gates off); returns the bytes sent.
    pub fn relay(plan: Option<&Plan>, reads: &[Bytes]) -> usize {
        let mut filters = StreamFilters::new(plan.map(|p| &p.0));
        let mut framer = SseFramer::new(1 << 20);
        let mut sent = 0;
        for read in reads {
            sent += relay_read(&mut filters, &mut framer, read)
                .0
                .map_or(0, |b| b.len());
        }
        let mut out = Outgoing::default();
        filters.finish(&mut out);
        sent + out.take().map_or(0, |b| b.len())
    }
}
