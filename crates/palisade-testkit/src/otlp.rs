//! A loopback OTLP/HTTP traces receiver (`POST /v1/traces`, OTLP/JSON): the
//! gateway's span export is tested against it. It can also play a hung
//! collector that accepts the connection and never answers.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectorMode {
    /// Records the export and answers 200.
    Accept,
    /// Never answers (a hung collector).
    Hang,
}

/// The receiver; it serves until the test process ends.
#[derive(Debug, Clone)]
pub struct OtlpCollector {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl OtlpCollector {
    /// Binds a free loopback port and serves `POST /v1/traces`.
    ///
    /// # Panics
    /// When no loopback port can be bound (a test environment failure).
    pub async fn start(mode: CollectorMode) -> Self {
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = bodies.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: String| {
                let sink = sink.clone();
                async move {
                    if mode == CollectorMode::Hang {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                    }
                    sink.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(body);
                    "{}"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!(
            "http://{}/v1/traces",
            listener.local_addr().expect("local addr")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, bodies }
    }

    /// The URL to configure as `[telemetry] otlp_endpoint`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every export request body received, as text.
    pub fn raw(&self) -> String {
        self.bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n")
    }

    /// Every exported span so far, each with its resource as `resource`.
    ///
    /// # Panics
    /// When an export body is not OTLP/JSON.
    pub fn spans(&self) -> Vec<Value> {
        let bodies = self
            .bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = Vec::new();
        for body in bodies {
            let v: Value = serde_json::from_str(&body).expect("export body is JSON");
            for rs in v["resourceSpans"].as_array().expect("resourceSpans") {
                for ss in rs["scopeSpans"].as_array().expect("scopeSpans") {
                    for span in ss["spans"].as_array().expect("spans") {
                        let mut span = span.clone();
                        span["resource"] = rs["resource"].clone();
                        out.push(span);
                    }
                }
            }
        }
        out
    }

    /// Waits (at most 10 s) for the request span (`palisade.request`) of
    /// `trace`, then returns all of that trace's spans.
    ///
    /// # Panics
    /// When it never arrives.
    pub async fn trace(&self, trace: &str) -> Vec<Value> {
        for _ in 0..500 {
            let spans: Vec<Value> = self
                .spans()
                .into_iter()
                .filter(|s| s["traceId"] == trace)
                .collect();
            if spans.iter().any(|s| s["name"] == "palisade.request") {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no request span for trace {trace}");
    }
}

/// The value of a span's (or resource's) attribute `key`, as plain JSON
/// (`intValue` parsed, arrays of strings as arrays), or `Null`.
pub fn otlp_attr(span: &Value, key: &str) -> Value {
    let Some(kv) = span["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
    else {
        return Value::Null;
    };
    let v = &kv["value"];
    if let Some(s) = v.get("stringValue") {
        s.clone()
    } else if let Some(n) = v.get("intValue") {
        n.as_str()
            .and_then(|n| n.parse::<i64>().ok())
            .map_or(Value::Null, |n| json!(n))
    } else if let Some(b) = v.get("boolValue") {
        b.clone()
    } else {
        let values = v["arrayValue"]["values"]
            .as_array()
            .map(|a| a.iter().map(|x| x["stringValue"].clone()).collect())
            .unwrap_or_default();
        Value::Array(values)
    }
}
