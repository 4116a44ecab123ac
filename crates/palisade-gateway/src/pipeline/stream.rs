//! Phase 6 for streams: relay server-sent events as they arrive.
//!
//! The relay is a pull-based stream: hyper polls it only when the client's
//! socket can take more, and it reads the upstream only when polled, so a slow
//! client slows the upstream read (backpressure) instead of growing a buffer.
//! When the client disconnects, hyper drops the relay, which drops the
//! upstream response and closes that connection: the model server stops
//! generating for nobody.
//!
//! Events are forwarded whole, as soon as their terminating blank line has
//! arrived; all events complete in one upstream read go out in one write.
//! Failures after the status line is sent travel in-band as an error event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use metrics::{counter, gauge, histogram};
use palisade_openai::sse::SseFramer;
use palisade_openai::usage::ChunkKind;
use palisade_openai::{ApiError, ErrorCode};

use crate::gates::output::EventAction as OutputAction;
use crate::gates::tools::ToolEvent;
use crate::metrics::{STREAMS_ENDED, STREAMS_OPEN, STREAM_GAP, STREAM_TTFT};
use crate::pipeline::RequestRecord;

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The upstream closed the body normally.
    Completed,
    /// The client went away first (the relay was dropped mid-stream).
    ClientGone,
    /// The upstream broke the connection or sent an oversized event.
    UpstreamError,
    /// Idle timeout or end-to-end deadline.
    Timeout,
    /// The output gate stopped the completion (`finish_reason:
    /// "content_filter"`).
    ContentFilter,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::ClientGone => "client_disconnected",
            Self::UpstreamError => "upstream_error",
            Self::Timeout => "timeout",
            Self::ContentFilter => "content_filter",
        }
    }
}

/// Per-stream limits.
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// Longest upstream silence.
    pub idle_timeout: Duration,
    /// End-to-end deadline.
    pub deadline: Instant,
    /// Largest single event.
    pub max_event_bytes: usize,
    /// Send `: keep-alive` after this much silence; `None`: never.
    pub heartbeat: Option<Duration>,
}

type UpstreamBody = std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct Relay {
    upstream: UpstreamBody,
    framer: SseFramer,
    limits: RelayLimits,
    record: RequestRecord,
    backend: Arc<str>,
    outcome: Outcome,
    finished: bool,
    last_data_at: Option<Instant>,
    /// `data: [DONE]`, held back until the ledger row is committed, so a
    /// client that saw the end of the stream is a client whose usage is on
    /// record.
    held_done: Option<Bytes>,
    gap_histogram: Option<metrics::Histogram>,
    /// The output gate, when the policy has output rules.
    output: Option<crate::gates::output::StreamGate>,
    /// The tool gate, when the tier has one: tool-call deltas are held and
    /// released whole once judged.
    tools: Option<crate::gates::tools::ToolStreamGate>,
    /// The output gate stopped the stream; the ledger row goes first.
    stopping: bool,
    /// An event the gates cannot judge: the stream ends with this error
    /// after what was already judged.
    failing: Option<ApiError>,
    /// The upstream closed its body.
    upstream_done: bool,
    /// When the upstream last sent anything (for the idle timeout, which
    /// heartbeats must not reset).
    upstream_seen: Instant,
}

impl Drop for Relay {
    fn drop(&mut self) {
        gauge!(STREAMS_OPEN).decrement(1.0);
        counter!(STREAMS_ENDED, "outcome" => self.outcome.label()).increment(1);
        // The status line said 200; how the stream ended is in the outcome.
        self.record.finish(200, Some(self.outcome.label()));
    }
}

impl Relay {
    /// Records cadence metrics for one event.
    fn observe(&mut self, is_data: bool) {
        if !is_data {
            return;
        }
        let now = Instant::now();
        match self.last_data_at {
            None => histogram!(STREAM_TTFT, "model" => self.record.model_label().to_string())
                .record(now.duration_since(self.record.started()).as_secs_f64()),
            // The gap histogram is resolved once per stream: looking a
            // labelled metric up per event costs more than the relay itself.
            Some(prev) => self
                .gap_histogram
                .get_or_insert_with(
                    || histogram!(STREAM_GAP, "model" => self.record.model_label().to_string()),
                )
                .record(now.duration_since(prev).as_secs_f64()),
        }
        self.last_data_at = Some(now);
    }

    /// Sends one data payload the tool gate produced through the output
    /// gate. Returns true when the output gate stopped the stream.
    fn emit_payload(
        &mut self,
        payload: &str,
        batch: &mut Option<BytesMut>,
        single: &mut Option<Bytes>,
    ) -> bool {
        let raw = Bytes::from(format!("data: {payload}\n\n"));
        let Some(gate) = &mut self.output else {
            append(batch, single, raw);
            return false;
        };
        match gate.on_data(payload) {
            OutputAction::Forward => append(batch, single, raw),
            OutputAction::Replace(bytes) => append(batch, single, bytes),
            OutputAction::Hold => {}
            OutputAction::Stop(bytes) => {
                append(batch, single, bytes);
                self.finished = true;
                self.stopping = true;
                self.outcome = Outcome::ContentFilter;
                counter!(crate::metrics::STREAMS_FILTERED).increment(1);
                return true;
            }
            OutputAction::Fail(err) => {
                self.failing = Some(err);
                return true;
            }
        }
        false
    }

    /// Whether the gates judge this stream's events (then an event that does
    /// not parse is refused, never relayed).
    fn gated(&self) -> bool {
        self.output.is_some() || self.tools.is_some()
    }

    /// Sends payloads in order; true when the output gate stopped the stream.
    fn emit_payloads(
        &mut self,
        payloads: Vec<String>,
        batch: &mut Option<BytesMut>,
        single: &mut Option<Bytes>,
    ) -> bool {
        payloads
            .iter()
            .any(|payload| self.emit_payload(payload, batch, single))
    }

    /// Takes every complete event out of the framer as one buffer.
    fn drain_events(&mut self) -> Result<Option<Bytes>, ApiError> {
        let mut batch: Option<BytesMut> = None;
        let mut single: Option<Bytes> = None;
        loop {
            match self.framer.next_event() {
                Ok(Some(mut event)) => {
                    self.observe(!event.is_comment());
                    // The `palisade` report is the gateway's to write.
                    if self.gated() {
                        if let Some(clean) = event.data().and_then(|d| {
                            crate::gates::output::without_foreign_report(d.as_bytes())
                        }) {
                            let mut raw = b"data: ".to_vec();
                            raw.extend_from_slice(&clean);
                            raw.extend_from_slice(b"\n\n");
                            event = palisade_openai::sse::SseEvent::from_raw(Bytes::from(raw));
                        }
                    }
                    if let Some(tokens) = &mut self.record.tokens {
                        if let Some(data) = event.data() {
                            let kind = tokens.tally.observe(&data);
                            if kind == ChunkKind::UsageOnly && tokens.strip_usage_chunk {
                                continue; // asked for by the gateway, not the client
                            }
                        }
                    }
                    // Fail closed: with only a tool gate, nothing else parses
                    // every event.
                    if self.tools.is_some() && self.output.is_none() && !event.is_done() {
                        if let Some(data) = event.data() {
                            if !serde_json::from_str::<serde_json::Value>(&data)
                                .is_ok_and(|v| v.is_object())
                            {
                                self.failing =
                                    Some(crate::gates::output::invalid_upstream("a stream event"));
                                break;
                            }
                        }
                    }
                    if let Some(tools) = &mut self.tools {
                        let payloads = if event.is_done() {
                            tools.finish()
                        } else if let Some(data) = event.data() {
                            match tools.on_data(&data) {
                                ToolEvent::Forward => Vec::new(),
                                ToolEvent::Drop => continue,
                                ToolEvent::Replace(payloads) => {
                                    if self.emit_payloads(payloads, &mut batch, &mut single) {
                                        break;
                                    }
                                    continue;
                                }
                            }
                        } else {
                            Vec::new()
                        };
                        // Calls still held when the stream ends go out before it.
                        if self.emit_payloads(payloads, &mut batch, &mut single) {
                            break;
                        }
                    }
                    let mut gated: Option<Bytes> = None;
                    if let Some(gate) = &mut self.output {
                        if event.is_done() {
                            // Text still held goes out before the end.
                            if let Some(tail) = gate.finish() {
                                append(&mut batch, &mut single, tail);
                            }
                        } else if let Some(data) = event.data() {
                            match gate.on_data(&data) {
                                OutputAction::Forward => {}
                                OutputAction::Replace(bytes) => gated = Some(bytes),
                                OutputAction::Hold => continue,
                                OutputAction::Stop(bytes) => {
                                    append(&mut batch, &mut single, bytes);
                                    self.finished = true;
                                    self.stopping = true;
                                    self.outcome = Outcome::ContentFilter;
                                    counter!(crate::metrics::STREAMS_FILTERED).increment(1);
                                    break;
                                }
                                OutputAction::Fail(err) => {
                                    self.failing = Some(err);
                                    break;
                                }
                            }
                        }
                    }
                    if self.record.has_ledger() && event.is_done() {
                        self.held_done = Some(event.into_raw());
                        continue;
                    }
                    let raw = gated.unwrap_or_else(|| event.into_raw());
                    append(&mut batch, &mut single, raw);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(ApiError::new(
                        ErrorCode::UpstreamProtocol,
                        format!("upstream `{}`: {e}", self.backend),
                    ))
                }
            }
        }
        Ok(batch.map(BytesMut::freeze).or(single))
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.finished {
                return None;
            }
            let drained = self.drain_events();
            if let Some(err) = self.failing.take() {
                // What was judged goes out, then the error; nothing after.
                let error = self.fail(Outcome::UpstreamError, &err);
                let mut out = BytesMut::new();
                if let Ok(Some(bytes)) = drained {
                    out.extend_from_slice(&bytes);
                }
                out.extend_from_slice(&error);
                return Some(out.freeze());
            }
            if self.upstream_done {
                return match drained {
                    Ok(Some(bytes)) => Some(bytes),
                    Ok(None) => self.end_of_upstream().await,
                    Err(err) => Some(self.fail(Outcome::UpstreamError, &err)),
                };
            }
            match drained {
                Ok(Some(bytes)) => {
                    if std::mem::take(&mut self.stopping) {
                        // The filtered stream ends here: its row first.
                        self.record
                            .write_ledger_now(200, Some(self.outcome.label()))
                            .await;
                    }
                    return Some(bytes);
                }
                Ok(None) => {}
                Err(err) => return Some(self.fail(Outcome::UpstreamError, &err)),
            }
            let now = Instant::now();
            let remaining = self.limits.deadline.saturating_duration_since(now);
            let idle_left = self
                .limits
                .idle_timeout
                .saturating_sub(now.duration_since(self.upstream_seen));
            let until_timeout = idle_left.min(remaining);
            let beat_wait = match self.limits.heartbeat {
                Some(beat) => until_timeout.min(beat),
                None => until_timeout,
            };
            // Text the output gate holds goes out when its time bound is
            // reached, even while the upstream is silent.
            let hold_due = self.output.as_ref().and_then(|g| g.next_due());
            let hold_wait = hold_due.map(|due| due.saturating_duration_since(now));
            let wait = hold_wait.map_or(beat_wait, |h| h.min(beat_wait));
            match tokio::time::timeout(wait, self.upstream.next()).await {
                Err(_) if hold_wait.is_some_and(|h| h <= wait) && wait < until_timeout => {
                    let action = match self.output.as_mut() {
                        Some(gate) => gate.release_due(),
                        None => OutputAction::Hold,
                    };
                    match action {
                        OutputAction::Replace(bytes) => return Some(bytes),
                        OutputAction::Stop(bytes) => {
                            self.finished = true;
                            self.outcome = Outcome::ContentFilter;
                            counter!(crate::metrics::STREAMS_FILTERED).increment(1);
                            self.record
                                .write_ledger_now(200, Some(self.outcome.label()))
                                .await;
                            return Some(bytes);
                        }
                        _ => continue,
                    }
                }
                Ok(Some(Ok(chunk))) => {
                    self.upstream_seen = Instant::now();
                    self.framer.push(&chunk);
                }
                Err(_) if wait < until_timeout => {
                    // Silent, but not yet past a timeout: keep the client's
                    // connection alive.
                    counter!(crate::metrics::SSE_HEARTBEATS).increment(1);
                    return Some(Bytes::from_static(b": keep-alive\n\n"));
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!(backend = %self.backend, error = %e, "upstream stream broke");
                    let err = ApiError::new(
                        ErrorCode::UpstreamUnavailable,
                        format!("upstream `{}` broke the stream", self.backend),
                    );
                    return Some(self.fail(Outcome::UpstreamError, &err));
                }
                Ok(None) => {
                    self.upstream_done = true;
                    // Under the gates an unterminated last event is judged
                    // like any other (clients deliver it): terminate it and
                    // drain once more.
                    if self.gated() && self.framer.pending() > 0 {
                        self.framer.push(b"\n\n");
                        continue;
                    }
                    return self.end_of_upstream().await;
                }
                Err(_) => {
                    let what = if remaining < idle_left {
                        "exceeded its deadline"
                    } else {
                        "went silent past the idle timeout"
                    };
                    let err = ApiError::new(
                        ErrorCode::UpstreamTimeout,
                        format!("upstream `{}` {what}", self.backend),
                    );
                    return Some(self.fail(Outcome::Timeout, &err));
                }
            }
        }
    }

    /// The upstream closed its body: the ledger row, then what the gates
    /// still hold, then `[DONE]`.
    async fn end_of_upstream(&mut self) -> Option<Bytes> {
        self.finished = true;
        self.outcome = Outcome::Completed;
        self.record
            .write_ledger_now(200, Some(self.outcome.label()))
            .await;
        // Tool calls still held (a stream cut before its finish
        // reason and `[DONE]`) are judged and sent first.
        let mut judged: Option<BytesMut> = None;
        let mut judged_single: Option<Bytes> = None;
        if let Some(payloads) = self.tools.as_mut().map(|t| t.finish()) {
            self.emit_payloads(payloads, &mut judged, &mut judged_single);
        }
        let judged = judged.map(BytesMut::freeze).or(judged_single);
        // Forward an unterminated tail as is rather than drop it,
        // after any text the output gate still holds.
        let held = self.output.as_mut().and_then(|g| g.finish());
        let held = match (judged, held) {
            (Some(j), Some(h)) => {
                let mut b = BytesMut::from(&j[..]);
                b.extend_from_slice(&h);
                Some(b.freeze())
            }
            (j, h) => j.or(h),
        };
        let tail = match (held, self.framer.finish()) {
            (Some(h), Some(t)) => {
                let mut b = BytesMut::from(&h[..]);
                b.extend_from_slice(&t);
                Some(b.freeze())
            }
            (h, t) => h.or(t),
        };
        match (self.held_done.take(), tail) {
            (Some(done), Some(tail)) => {
                let mut out = BytesMut::with_capacity(done.len() + tail.len());
                out.extend_from_slice(&done);
                out.extend_from_slice(&tail);
                Some(out.freeze())
            }
            (done, tail) => done.or(tail),
        }
    }

    fn fail(&mut self, outcome: Outcome, err: &ApiError) -> Bytes {
        self.finished = true;
        self.outcome = outcome;
        crate::metrics::upstream_error(&self.backend, err.code.as_str());
        crate::http::error::error_event(err, Some(self.record.request_id()))
    }
}

/// Adds `raw` to the events going out in one write.
fn append(batch: &mut Option<BytesMut>, single: &mut Option<Bytes>, raw: Bytes) {
    match (batch.as_mut(), single.take()) {
        (Some(b), _) => b.extend_from_slice(&raw),
        (None, Some(first)) => {
            let mut b = BytesMut::with_capacity(first.len() + raw.len());
            b.extend_from_slice(&first);
            b.extend_from_slice(&raw);
            *batch = Some(b);
        }
        (None, None) => *single = Some(raw),
    }
}

/// Turns an upstream SSE response into the client's body stream.
pub fn relay(
    upstream: reqwest::Response,
    backend: Arc<str>,
    limits: RelayLimits,
    record: RequestRecord,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    gauge!(STREAMS_OPEN).increment(1.0);
    let output = record
        .gates
        .as_ref()
        .and_then(crate::gates::output::StreamGate::new);
    let tools = record
        .gates
        .as_ref()
        .and_then(crate::gates::tools::ToolStreamGate::new);
    let relay = Relay {
        upstream: Box::pin(upstream.bytes_stream()),
        framer: SseFramer::new(limits.max_event_bytes),
        limits,
        record,
        backend,
        // Until the upstream finishes, a dropped relay means the client left.
        outcome: Outcome::ClientGone,
        finished: false,
        last_data_at: None,
        held_done: None,
        gap_histogram: None,
        output,
        tools,
        stopping: false,
        failing: None,
        upstream_done: false,
        upstream_seen: Instant::now(),
    };
    futures_util::stream::unfold(relay, |mut relay| async move {
        relay.next_chunk().await.map(|bytes| (Ok(bytes), relay))
    })
}
