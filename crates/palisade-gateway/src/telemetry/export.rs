//! The OTLP/HTTP exporter: finished spans go into a bounded queue with
//! `try_send` (never awaited on the request path); one background task
//! batches them and POSTs OTLP/JSON to the collector under the export
//! timeout. A full queue drops the span and counts it
//! (`palisade_trace_spans_dropped_total`), and so does a failed or timed-out
//! export: a slow or down collector costs spans, never request latency.
//!
//! Must not: block, await or allocate unboundedly on the request path.
//!
//! Why hand-written over `opentelemetry-otlp`: the wire format is a few
//! dozen lines of JSON, and the crate's HTTP client feature pulls a second
//! reqwest/TLS stack; this reuses the gateway's reqwest.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::w3c::{SpanId, TraceId};

/// Spans sent per export request: the collector's default batch size.
const BATCH: usize = 512;

/// An attribute value (the OTLP `AnyValue` kinds the gateway uses).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Attr {
    Str(String),
    Int(i64),
    Bool(bool),
    Strs(Vec<String>),
}

impl From<&str> for Attr {
    fn from(s: &str) -> Self {
        Attr::Str(s.to_owned())
    }
}
impl From<String> for Attr {
    fn from(s: String) -> Self {
        Attr::Str(s)
    }
}
impl From<u64> for Attr {
    fn from(n: u64) -> Self {
        Attr::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Attr {
    fn from(b: bool) -> Self {
        Attr::Bool(b)
    }
}

/// OTLP span kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// One finished span. Attribute keys are `'static`: only the gateway names
/// attributes, so a client cannot add one.
#[derive(Debug, Clone)]
pub(crate) struct SpanData {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent: Option<SpanId>,
    pub(crate) trace_state: Option<String>,
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) attrs: Vec<(&'static str, Attr)>,
    pub(crate) error: bool,
}

/// The exporter's request-path half: the queue's sender.
#[derive(Debug)]
pub(crate) struct Exporter {
    tx: mpsc::Sender<SpanData>,
    /// The worker's inputs until [`Exporter::spawn`] starts it (the state
    /// is built outside the runtime).
    worker: Mutex<Option<Worker>>,
}

#[derive(Debug)]
struct Worker {
    rx: mpsc::Receiver<SpanData>,
    endpoint: String,
    headers: reqwest::header::HeaderMap,
    timeout: Duration,
    resource: Value,
}

impl Exporter {
    /// An exporter for `config` (whose `otlp_endpoint` is set).
    pub(crate) fn new(config: &palisade_config::TelemetryConfig, endpoint: &str) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_size);
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &config.headers {
            // Validated by the config; a header reqwest still refuses is
            // skipped rather than failing the start.
            if let (Ok(n), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        let resource = json!({"attributes": [
            kv("service.name", &Attr::Str(config.service_name.clone())),
            kv("service.version", &Attr::Str(env!("CARGO_PKG_VERSION").to_owned())),
        ]});
        Self {
            tx,
            worker: Mutex::new(Some(Worker {
                rx,
                endpoint: endpoint.to_owned(),
                headers,
                timeout: Duration::from_millis(config.export_timeout_ms),
                resource,
            })),
        }
    }

    /// Queues `span` for export, or drops and counts it if the queue is full.
    pub(crate) fn push(&self, span: SpanData) {
        if self.tx.try_send(span).is_err() {
            crate::metrics::trace_spans_dropped(1);
        }
    }

    /// Starts the export task (once; later calls do nothing).
    pub(crate) fn spawn(&self) {
        let worker = match self.worker.lock() {
            Ok(mut w) => w.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(worker) = worker {
            tokio::spawn(worker.run());
        }
    }
}

impl Worker {
    /// Batches and exports until every sender is gone.
    async fn run(mut self) {
        let client = match crate::outbound::client_builder()
            .no_proxy()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "trace exporter disabled: cannot build its HTTP client");
                return;
            }
        };
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            batch.clear();
            if self.rx.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
            let n = batch.len() as u64;
            let body = encode(&self.resource, &batch);
            let sent = client
                .post(&self.endpoint)
                .headers(self.headers.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => crate::metrics::trace_spans_exported(n),
                Ok(resp) => {
                    tracing::debug!(status = resp.status().as_u16(), "trace export refused");
                    crate::metrics::trace_spans_dropped(n);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "trace export failed");
                    crate::metrics::trace_spans_dropped(n);
                }
            }
        }
    }
}

/// The OTLP/JSON `ExportTraceServiceRequest` for `spans`: ids in hex,
/// 64-bit integers as strings, as the OTLP/JSON mapping requires.
pub(crate) fn encode(resource: &Value, spans: &[SpanData]) -> Vec<u8> {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": hex::encode(s.trace_id),
                "spanId": hex::encode(s.span_id),
                "name": s.name,
                "kind": s.kind as i32,
                "startTimeUnixNano": s.start_ns.to_string(),
                "endTimeUnixNano": s.end_ns.to_string(),
                "attributes": s.attrs.iter().map(|(k, v)| kv(k, v)).collect::<Vec<_>>(),
                "status": {"code": if s.error { 2 } else { 1 }},
            });
            if let Some(parent) = &s.parent {
                span["parentSpanId"] = Value::String(hex::encode(parent));
            }
            if let Some(state) = &s.trace_state {
                span["traceState"] = Value::String(state.clone());
            }
            span
        })
        .collect();
    let body = json!({"resourceSpans": [{
        "resource": resource,
        "scopeSpans": [{
            "scope": {"name": "palisade-gateway", "version": env!("CARGO_PKG_VERSION")},
            "spans": spans,
        }],
    }]});
    serde_json::to_vec(&body).unwrap_or_default()
}

fn kv(key: &str, value: &Attr) -> Value {
    let value = match value {
        Attr::Str(s) => json!({"stringValue": s}),
        Attr::Int(n) => json!({"intValue": n.to_string()}),
        Attr::Bool(b) => json!({"boolValue": b}),
        Attr::Strs(v) => json!({"arrayValue": {"values":
            v.iter().map(|s| json!({"stringValue": s})).collect::<Vec<_>>()}}),
    };
    json!({"key": key, "value": value})
}
