//! OpenTelemetry tracing for the request path: the W3C trace context a
//! client sends ([`w3c`]), one span per phase that ran (recorded on the
//! request's [`RequestTrace`] and handed to the exporter when the request
//! ends) and the OTLP/HTTP exporter ([`export`]) that ships them off the
//! request path.
//!
//! Spans carry the gen-ai semantic-convention attributes (models, token
//! counts, finish reasons) and Palisade's own (tenant, policy version,
//! verdict, reason code). Must not: record prompt or completion text, any
//! client-chosen attribute key, or wait on the collector.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

pub(crate) mod export;
mod phases;
pub(crate) mod w3c;

pub(crate) use export::{Attr, Kind};
use export::{Exporter, SpanData};
pub(crate) use phases::{
    attempt_span, bounded, gate_span, operation, output_span, phase, response_attrs,
};
use w3c::{SpanId, TraceId, TraceParent, SAMPLED};

/// Most spans one request records: a retry storm or a long fallback chain
/// must not grow a request's memory without bound.
const MAX_SPANS: usize = 64;

/// The replica's tracing: the exporter (when `[telemetry] otlp_endpoint`
/// is set) and the sampler.
#[derive(Debug)]
pub(crate) struct Telemetry {
    exporter: Option<Arc<Exporter>>,
    /// A new trace is sampled when its id's low 64 bits are below this
    /// (`TraceIdRatioBased`); `u64::MAX` with ratio 1.0 samples all.
    sample_below: u64,
}

impl Telemetry {
    pub(crate) fn from_config(config: &palisade_config::TelemetryConfig) -> Self {
        let exporter = config
            .otlp_endpoint
            .as_deref()
            .map(|endpoint| Arc::new(Exporter::new(config, endpoint)));
        let sample_below = if config.sample_ratio >= 1.0 {
            u64::MAX
        } else {
            (config.sample_ratio * u64::MAX as f64) as u64
        };
        Self {
            exporter,
            sample_below,
        }
    }

    /// Starts the exporter's background task (needs the runtime).
    pub(crate) fn spawn(&self) {
        if let Some(exporter) = &self.exporter {
            exporter.spawn();
        }
    }

    /// The trace a request joins: the client's (a valid `traceparent`, and
    /// its `tracestate` if that is valid too) or a new one.
    pub(crate) fn start(&self, headers: &HeaderMap) -> RequestTrace {
        let incoming = incoming_traceparent(headers);
        let tracestate = incoming.and_then(|_| incoming_tracestate(headers));
        let mut trace = RequestTrace {
            exporter: None,
            trace_id: [0; 16],
            root: [0; 8],
            incoming,
            tracestate,
            anchor: (Instant::now(), unix_nanos()),
            spans: Vec::new(),
            root_attrs: Vec::new(),
            relay: None,
        };
        let Some(exporter) = &self.exporter else {
            return trace;
        };
        let sampled = match &incoming {
            // Parent-based: follow the caller's decision, so a trace it
            // records is never cut here.
            Some(parent) => parent.sampled(),
            None => true,
        };
        trace.trace_id = match &incoming {
            Some(parent) => parent.trace_id,
            None => new_trace_id(),
        };
        let sampled =
            sampled && (incoming.is_some() || low_bits(&trace.trace_id) <= self.sample_below);
        // Unsampled requests still get a span id: the upstream hears the
        // trace (flagged unsampled), as OpenTelemetry's non-recording spans do.
        trace.root = new_span_id();
        if sampled {
            trace.exporter = Some(exporter.clone());
            trace.spans.reserve(12);
        }
        trace
    }
}

/// A span begun and not yet ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Open {
    id: SpanId,
    start_ns: u64,
}

/// One request's trace: its ids, the spans finished so far, and whether it
/// is recorded at all (not recorded: every method is a no-op but the
/// pass-through of the client's own `traceparent`).
#[derive(Debug)]
pub(crate) struct RequestTrace {
    /// Set when this request is recorded (exporting and sampled).
    exporter: Option<Arc<Exporter>>,
    trace_id: TraceId,
    /// The gateway's server span, parent of every phase span.
    root: SpanId,
    incoming: Option<TraceParent>,
    tracestate: Option<String>,
    /// An instant and the wall clock at it: span times are offsets from it,
    /// so a clock step mid-request cannot make a span end before it starts.
    anchor: (Instant, u64),
    spans: Vec<SpanData>,
    root_attrs: Vec<(&'static str, Attr)>,
    /// The relay span, open from the upstream's response head to the end.
    relay: Option<Open>,
}

impl Default for RequestTrace {
    fn default() -> Self {
        Telemetry {
            exporter: None,
            sample_below: 0,
        }
        .start(&HeaderMap::new())
    }
}

impl RequestTrace {
    /// Whether spans are recorded.
    pub(crate) fn recording(&self) -> bool {
        self.exporter.is_some()
    }

    fn now_ns(&self) -> u64 {
        let offset = u64::try_from(self.anchor.0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.anchor.1.saturating_add(offset)
    }

    /// Begins a span (cheap and clock-free when not recording).
    pub(crate) fn begin(&self) -> Open {
        if !self.recording() {
            return Open {
                id: [0; 8],
                start_ns: 0,
            };
        }
        Open {
            id: new_span_id(),
            start_ns: self.now_ns(),
        }
    }

    /// Ends `open` as a child of the request span named `name`.
    pub(crate) fn end(
        &mut self,
        open: Open,
        name: &'static str,
        kind: Kind,
        attrs: Vec<(&'static str, Attr)>,
        error: bool,
    ) {
        if !self.recording() || self.spans.len() >= MAX_SPANS {
            return;
        }
        let end_ns = self.now_ns();
        self.spans.push(SpanData {
            trace_id: self.trace_id,
            span_id: open.id,
            parent: Some(self.root),
            trace_state: self.tracestate.clone(),
            name,
            kind,
            start_ns: open.start_ns,
            end_ns,
            attrs,
            error,
        });
    }

    /// Sets an attribute of the request span (replacing an earlier value).
    pub(crate) fn set(&mut self, key: &'static str, value: impl Into<Attr>) {
        if !self.recording() {
            return;
        }
        let value = value.into();
        match self.root_attrs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.root_attrs.push((key, value)),
        }
    }

    /// Opens the relay span (the upstream's head arrived).
    pub(crate) fn begin_relay(&mut self) {
        if self.recording() && self.relay.is_none() {
            self.relay = Some(self.begin());
        }
    }

    /// The trace-context headers for an upstream call made in `span`: the
    /// gateway's span as the parent when recording; the trace, flagged
    /// unsampled, when exporting but not sampled; with export off, the
    /// client's own context passed through unchanged (so an unrecorded hop
    /// does not break the caller's trace), and nothing if it sent none.
    pub(crate) fn upstream_headers(&self, span: &Open) -> Vec<(HeaderName, HeaderValue)> {
        let parent = if self.recording() {
            let flags = self.incoming.map_or(SAMPLED, |p| p.flags | SAMPLED);
            w3c::format_traceparent(&self.trace_id, &span.id, flags)
        } else if self.root != [0; 8] {
            // Exporting, not sampled: the trace goes on, unsampled.
            let flags = self.incoming.map_or(0, |p| p.flags & !SAMPLED);
            w3c::format_traceparent(&self.trace_id, &self.root, flags)
        } else if let Some(p) = &self.incoming {
            // Not exporting at all: the client's context, unchanged.
            w3c::format_traceparent(&p.trace_id, &p.parent_id, p.flags)
        } else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(2);
        if let Ok(v) = HeaderValue::from_str(&parent) {
            out.push((HeaderName::from_static("traceparent"), v));
        }
        if let Some(state) = &self.tracestate {
            if let Ok(v) = HeaderValue::from_str(state) {
                out.push((HeaderName::from_static("tracestate"), v));
            }
        }
        out
    }

    /// Ends the request: closes the relay span, records the request span
    /// (`status`, `error` when it failed) and queues every span for export.
    pub(crate) fn finish(&mut self, route: &'static str, status: u16) {
        let Some(exporter) = self.exporter.take() else {
            return;
        };
        let end_ns = self.now_ns();
        if let Some(relay) = self.relay.take() {
            self.spans.push(SpanData {
                trace_id: self.trace_id,
                span_id: relay.id,
                parent: Some(self.root),
                trace_state: self.tracestate.clone(),
                name: "palisade.relay",
                kind: Kind::Internal,
                start_ns: relay.start_ns,
                end_ns,
                attrs: vec![("http.response.status_code", Attr::Int(i64::from(status)))],
                error: status >= 500,
            });
        }
        let mut attrs = std::mem::take(&mut self.root_attrs);
        attrs.push(("http.request.method", "POST".into()));
        attrs.push(("http.route", route.into()));
        attrs.push(("http.response.status_code", Attr::Int(i64::from(status))));
        let root = SpanData {
            trace_id: self.trace_id,
            span_id: self.root,
            parent: self.incoming.map(|p| p.parent_id),
            trace_state: self.tracestate.clone(),
            name: "palisade.request",
            kind: Kind::Server,
            start_ns: self.anchor.1,
            end_ns,
            attrs,
            error: status >= 500,
        };
        for span in self.spans.drain(..) {
            exporter.push(span);
        }
        exporter.push(root);
    }
}

/// The request's `traceparent`, if exactly one valid one was sent.
fn incoming_traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    let mut values = headers.get_all("traceparent").iter();
    let first = values.next()?;
    if values.next().is_some() {
        // Two parents: which one is meant is unknowable; start afresh.
        return None;
    }
    w3c::parse_traceparent(first.as_bytes())
}

/// The request's `tracestate` (all its headers joined), if valid.
fn incoming_tracestate(headers: &HeaderMap) -> Option<String> {
    let mut joined = String::new();
    for value in headers.get_all("tracestate") {
        let text = value.to_str().ok()?;
        if joined.len() + text.len() + 1 > w3c::MAX_TRACESTATE_BYTES {
            return None;
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
    }
    w3c::check_tracestate(&joined)
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn low_bits(id: &TraceId) -> u64 {
    let mut low = [0u8; 8];
    low.copy_from_slice(&id[8..]);
    u64::from_be_bytes(low)
}

/// A random, non-zero trace id. Should the OS source fail, the clock and a
/// counter stand in: an id must be unique, not secret.
fn new_trace_id() -> TraceId {
    let mut id = [0u8; 16];
    if getrandom::fill(&mut id).is_err() || id == [0; 16] {
        id[..8].copy_from_slice(&unix_nanos().to_be_bytes());
        id[8..].copy_from_slice(&fallback_counter().to_be_bytes());
    }
    id
}

/// A random, non-zero span id.
fn new_span_id() -> SpanId {
    let mut id = [0u8; 8];
    if getrandom::fill(&mut id).is_err() || id == [0; 8] {
        id = (unix_nanos() ^ fallback_counter()).max(1).to_be_bytes();
    }
    id
}

fn fallback_counter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
