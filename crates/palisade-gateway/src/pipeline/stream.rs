//! **Respond**, for streams: relay server-sent events as they arrive, each
//! through the response filters ([`super::filters`]).
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

use super::filters::{Outgoing, Step, StreamFilters};
use crate::context::RequestCtx;
use crate::gates::output::EventAction as OutputAction;
use crate::metrics::{
    CLIENT_GAP, CLIENT_TTFT, STREAMS_ENDED, STREAMS_OPEN, STREAM_GAP, STREAM_TTFT,
};

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
    record: RequestCtx,
    backend: Arc<str>,
    outcome: Outcome,
    finished: bool,
    last_data_at: Option<Instant>,
    /// `data: [DONE]` (a Responses stream's `response.completed`), held
    /// back until the ledger row is committed, so a client that saw the end
    /// of the stream is a client whose usage is on record.
    held_done: Option<Bytes>,
    /// The upstream ended its stream as finished (`[DONE]`, or a Responses
    /// stream's `response.completed`): only such a stream is cached. One
    /// that was cut off cleanly mid-answer is the client's to keep, never a
    /// cache entry replayed to the tenant's other keys.
    terminated: bool,
    gap_histogram: Option<metrics::Histogram>,
    /// When the client last received data, and the gap histogram of what
    /// it receives (resolved once per stream).
    client_last_at: Option<Instant>,
    client_gap_histogram: Option<metrics::Histogram>,
    /// The response filters (tool gate, then output gate).
    filters: StreamFilters,
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
    /// A Responses id seen in the stream, its owner not yet recorded (it is,
    /// before the event naming it goes out).
    pending_owner: Option<String>,
    /// Plain `event:` names may pass (a Responses stream's types); a chat
    /// or completion stream carries none.
    event_names: bool,
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

    /// Records the cadence the client sees: a chunk carrying data (not a
    /// heartbeat comment alone) after the filters, hold-back included.
    fn observe_client(&mut self, chunk: &Bytes) {
        if !chunk.windows(5).any(|w| w == b"data:") {
            return;
        }
        let now = Instant::now();
        match self.client_last_at {
            None => histogram!(CLIENT_TTFT, "model" => self.record.model_label().to_string())
                .record(now.duration_since(self.record.started()).as_secs_f64()),
            Some(prev) => self
                .client_gap_histogram
                .get_or_insert_with(
                    || histogram!(CLIENT_GAP, "model" => self.record.model_label().to_string()),
                )
                .record(now.duration_since(prev).as_secs_f64()),
        }
        self.client_last_at = Some(now);
    }

    /// Takes every complete event out of the framer as one buffer, each
    /// through the response filters.
    fn drain_events(&mut self) -> Result<Option<Bytes>, ApiError> {
        let mut out = Outgoing::default();
        loop {
            match self.framer.next_event() {
                Ok(Some(event)) => {
                    self.observe(!event.is_comment());
                    let event = self.filters.without_foreign_report(event);
                    // The tally reads a plain chat chunk borrowed (no `Value`);
                    // any other event it parses once, for the output gate too.
                    let mut parsed = None;
                    // A plain chunk has no `response` member (and so no id)
                    // and is no Responses event.
                    let mut plain = false;
                    if let Some(tokens) = &mut self.record.tokens {
                        if let Some(data) = event.data_ref() {
                            let (kind, value) = tokens.tally.observe_event(&data);
                            if kind == ChunkKind::UsageOnly && tokens.strip_usage_chunk {
                                continue; // asked for by the gateway, not the client
                            }
                            plain = value.is_none() && kind == ChunkKind::Content;
                            parsed = value;
                        }
                    }
                    if self.record.response_owner.is_some()
                        && self.pending_owner.is_none()
                        && !plain
                    {
                        let id_of = |v: &serde_json::Value| {
                            v.pointer("/response/id")
                                .and_then(serde_json::Value::as_str)
                                .map(str::to_owned)
                        };
                        self.pending_owner = match &parsed {
                            Some(v) => id_of(v),
                            None => event
                                .data_ref()
                                .and_then(|d| serde_json::from_str(&d).ok())
                                .and_then(|v| id_of(&v)),
                        };
                    }
                    // A Responses stream's last event plays `[DONE]`'s part.
                    let last = parsed.as_ref().is_some_and(|v| {
                        matches!(
                            v.get("type").and_then(serde_json::Value::as_str),
                            Some("response.completed" | "response.incomplete" | "response.failed")
                        )
                    });
                    let is_done = event.is_done();
                    // (Read from the parsed event: a relay without a token
                    // tally sees `[DONE]` only; see the note in `keep`.)
                    let completed = parsed.as_ref().is_some_and(|v| {
                        matches!(
                            v.get("type").and_then(serde_json::Value::as_str),
                            Some("response.completed" | "response.incomplete")
                        )
                    });
                    self.terminated |= is_done || completed;
                    let gated = match self.filters.on_event(&event, parsed, &mut out) {
                        Step::Pass(gated) => gated,
                        Step::Skip => continue,
                        Step::Stop => {
                            self.stop_filtered();
                            break;
                        }
                        Step::Fail(err) => {
                            self.failing = Some(err);
                            break;
                        }
                    };
                    // An event passed unchanged keeps only what was judged
                    // (its data) and plain fields: see `SseEvent::into_client`.
                    let Some(sent) = gated.or_else(|| event.into_client(self.event_names)) else {
                        continue;
                    };
                    if self.record.has_ledger() && (is_done || last) {
                        self.held_done = Some(sent);
                        continue;
                    }
                    out.push(sent);
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
        Ok(out.take())
    }

    /// The output gate stopped the stream; its ledger row goes first.
    fn stop_filtered(&mut self) {
        self.finished = true;
        self.stopping = true;
        self.outcome = Outcome::ContentFilter;
        counter!(crate::metrics::STREAMS_FILTERED).increment(1);
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.finished {
                return None;
            }
            let drained = self.drain_events();
            // The owner of the stream's response id is on record before the
            // client reads the id.
            if let Some(id) = self.pending_owner.take() {
                if let Some(stamp) = self.record.response_owner.take() {
                    stamp.record(&id).await;
                }
            }
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
            // Checked before the read: `timeout` polls the read first, so an
            // upstream that always has data ready would never time out.
            if remaining.is_zero() {
                let err = ApiError::new(
                    ErrorCode::UpstreamTimeout,
                    format!("upstream `{}` exceeded its deadline", self.backend),
                );
                return Some(self.fail(Outcome::Timeout, &err));
            }
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
            let hold_due = self.filters.output_mut().and_then(|g| g.next_due());
            let hold_wait = hold_due.map(|due| due.saturating_duration_since(now));
            let wait = hold_wait.map_or(beat_wait, |h| h.min(beat_wait));
            match tokio::time::timeout(wait, self.upstream.next()).await {
                Err(_) if hold_wait.is_some_and(|h| h <= wait) && wait < until_timeout => {
                    let action = match self.filters.output_mut() {
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
                    if self.filters.is_active() && self.framer.pending() > 0 {
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
        // Tool calls still held (a stream cut before its finish reason and
        // `[DONE]`) are judged and sent first, then text the output gate
        // holds; an unterminated tail is forwarded as is rather than dropped.
        let mut judged = Outgoing::default();
        self.filters.finish(&mut judged);
        let held = judged.take();
        // Its data is what a client would read; nothing else of it goes out.
        let event_names = self.event_names;
        // It stays unterminated, as it came (a client decides what an event
        // cut short is worth).
        let tail = self.framer.finish().and_then(|t| {
            let newlines = t.iter().rev().take_while(|b| **b == b'\n').count().min(1);
            let clean = palisade_openai::SseEvent::from_raw(t).into_client(event_names)?;
            let body = clean.len() - clean.iter().rev().take_while(|b| **b == b'\n').count();
            let mut out = BytesMut::from(&clean[..body]);
            out.extend_from_slice(&b"\n"[..newlines]);
            Some(out.freeze())
        });
        let tail = match (held, tail) {
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

    /// Records what goes to the client for the replay tables, and stores it
    /// once the stream ended as judged (completed, or stopped by the output
    /// gate: that is the outcome too, but it is never cached). Any other end
    /// drops the recorder with the context, releasing the idempotency key.
    fn keep(&mut self, sent: Option<&Bytes>) {
        let Some(recorder) = &mut self.record.replay else {
            return;
        };
        if let Some(bytes) = sent {
            recorder.push(bytes);
        }
        // A stream cut short (no terminator) releases the key, as the
        // replay tables promise: the retry runs again.
        let judged = match self.outcome {
            Outcome::Completed => self.terminated,
            Outcome::ContentFilter => true,
            _ => false,
        };
        if self.finished && judged {
            if let Some(recorder) = self.record.replay.take() {
                let version = crate::replay::policy_version(&self.record);
                // A degraded answer (a cheaper model, fewer tokens) is not
                // what the request asks for once the backend recovers.
                let cacheable =
                    self.outcome == Outcome::Completed && self.record.degraded.is_none();
                recorder.finish_stream(&self.record.internal_id, version, cacheable);
            }
        }
    }

    fn fail(&mut self, outcome: Outcome, err: &ApiError) -> Bytes {
        self.finished = true;
        self.outcome = outcome;
        crate::metrics::upstream_error(&self.backend, err.code.as_str());
        crate::http::error::error_event(err, Some(self.record.request_id()))
    }
}

/// Turns an upstream SSE response into the client's body stream.
pub(crate) fn relay(
    upstream: reqwest::Response,
    backend: Arc<str>,
    limits: RelayLimits,
    record: RequestCtx,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    gauge!(STREAMS_OPEN).increment(1.0);
    let filters = StreamFilters::new(record.gates.as_ref());
    let event_names = record.endpoint == palisade_openai::request::Endpoint::Responses;
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
        terminated: false,
        gap_histogram: None,
        client_last_at: None,
        client_gap_histogram: None,
        filters,
        stopping: false,
        failing: None,
        upstream_done: false,
        upstream_seen: Instant::now(),
        event_names,
        pending_owner: None,
    };
    futures_util::stream::unfold(relay, |mut relay| async move {
        let next = relay.next_chunk().await;
        if let Some(chunk) = &next {
            relay.observe_client(chunk);
        }
        relay.keep(next.as_ref());
        next.map(|bytes| (Ok(bytes), relay))
    })
}
