//! Real local upstreams for Palisade's tests and benchmarks.
//!
//! [`ScriptedUpstream`] is an OpenAI-compatible HTTP server on a loopback port
//! whose behaviour is chosen by the request's `model` name, so one server can
//! play a healthy model, a slow one, a failing one and a stalled stream. It
//! records what it received (headers and bodies) and counts streams whose
//! client went away, so tests can assert what crossed the wire.
//!
//! The behaviours, by model name:
//! - anything else: a normal completion echoing the last user message; with
//!   `stream: true`, one SSE event per word, a usage event when
//!   `stream_options.include_usage` is set, then `[DONE]`.
//! - `error-400` / `error-500`: an OpenAI-shaped error with that status.
//! - `slow-head`: waits 2 s before sending the response head.
//! - `stall`: streams two events, then goes silent forever.
//! - `endless`: streams an event every 10 ms until the client disconnects.
//! - `slow-stream-N`: streams the echo one word every N milliseconds, then
//!   ends normally (a long stream in flight).
//! - `torn`: sends one event, then half an event, then ends the body.
//! - `delay-N`: a normal completion after N milliseconds (a busy model).
//! - `chunks-N`: streams the echo in N-byte pieces (cut on character
//!   boundaries), so a secret or link arrives split across events.
//! - `leak-system`: answers with the system prompt (a model talked into
//!   revealing it).
//! - `tool-calls`: an agent's model. The last user message is a script,
//!   `CALLS [{"name": "send_email", "arguments": {...}}, ...]` (arguments an
//!   object or a raw string, so malformed JSON can be scripted too); the
//!   answer is an assistant message with those `tool_calls` and
//!   `finish_reason: "tool_calls"`. Streamed, each call starts with its id
//!   and name, and the arguments follow in 7-byte pieces, the calls
//!   interleaved, as real servers do.
//!
//! `POST /v1/responses` answers in the Responses API's shape (see
//! `responses`): the echo, or the prompt for `leak-system`, streamed in
//! 5-byte `response.output_text.delta` events.
//!
//! [`Deployment`] is a raw HTTP/1.1 fake deployment scripted per test
//! ([`DeploymentMode`]): a delay, a status, a dropped connection after the
//! body, an exact answer with log-probabilities, a long tail; it can be
//! killed mid-load and counts requests whose client gave up (hedging).
//!
//! For the stores behind the gateway it starts real servers from Debian's
//! packages on loopback ports: [`RedisServer`] and [`PostgresServer`]
//! (which can be restarted in place).
//!
//! Test-only crate: it is never linked into the gateway binary.

#![forbid(unsafe_code)]

mod bundle_store;
pub use bundle_store::{BundleStore, StoreMode};
mod canary;
mod deployment;
pub use canary::{golden_set, CanaryMode, CanaryModel};
pub use deployment::{Deployment, DeploymentMode};
mod hostile;
pub use hostile::{HostileUpstream, RawResponse};
mod otlp;
mod responses;
pub use otlp::{otlp_attr, CollectorMode, OtlpCollector};
#[cfg(unix)]
mod postgres;
mod webhook;
#[cfg(unix)]
pub use postgres::PostgresServer;
pub use webhook::WebhookRecorder;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// The parsed JSON body (or `Null`).
    pub body: Value,
}

#[derive(Debug, Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    streams_cancelled: AtomicUsize,
    heads_cancelled: AtomicUsize,
    models_listed: AtomicUsize,
    /// Mints Responses API ids (`resp_1`, `resp_2`, …).
    responses_minted: AtomicUsize,
    /// Whole answers of the model `leak-system`, by id, for `GET
    /// /v1/responses/{id}` (as a real server stores them).
    stored_responses: Mutex<std::collections::HashMap<String, String>>,
}

/// A scripted OpenAI-compatible upstream on 127.0.0.1.
#[derive(Debug)]
pub struct ScriptedUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedUpstream {
    /// Starts the server on an ephemeral loopback port.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/responses", post(responses::responses))
            .route(
                "/v1/responses/{id}",
                get(responses::retrieve).delete(responses::delete),
            )
            .route("/v1/responses/{id}/cancel", post(responses::retrieve))
            .route("/v1/models", get(models))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                app,
            )
            .await;
        });
        Self { addr, shared, task }
    }

    /// Base URL in the form backends expect, ending in `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `GET /v1/models` requests served (health probes hit it).
    pub fn models_listed(&self) -> usize {
        self.shared.models_listed.load(Ordering::SeqCst)
    }

    /// Streams whose client disconnected before the stream ended.
    pub fn streams_cancelled(&self) -> usize {
        self.shared.streams_cancelled.load(Ordering::SeqCst)
    }

    /// `slow-head` requests whose client disconnected while we were waiting
    /// to send the response head.
    pub fn heads_cancelled(&self) -> usize {
        self.shared.heads_cancelled.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record(shared: &Shared, path: &str, headers: &HeaderMap, body: &Value) {
    shared
        .received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Received {
            path: path.to_owned(),
            headers: headers.clone(),
            body: body.clone(),
        });
}

fn system_text(body: &Value) -> String {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().find(|m| m["role"] == "system"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned()
}

fn last_user_text(body: &Value) -> String {
    if let Some(prompt) = body.get("prompt").and_then(Value::as_str) {
        return prompt.to_owned();
    }
    last_user_message(body).unwrap_or("hello").to_owned()
}

/// The text of the last `user` message of a chat request (the gateway may
/// have put a system message first), `None` when there is none or it is
/// not plain text. Every fake upstream here scripts on it.
pub fn last_user_message(body: &Value) -> Option<&str> {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
}

fn error(status: StatusCode, code: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"error": {"message": format!("scripted {code}"), "type": "invalid_request_error", "code": code, "param": null}}).to_string(),
    )
        .into_response()
}

fn sse(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0, "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

/// Decrements nothing; counts a cancellation when dropped before `done`.
struct CancelWatch {
    shared: Arc<Shared>,
    done: bool,
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        if !self.done {
            self.shared.streams_cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&shared, uri.path(), &headers, &body);
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let stream = body["stream"].as_bool().unwrap_or(false);
    let include_usage = body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    match model.as_str() {
        "error-400" => return error(StatusCode::BAD_REQUEST, "scripted_bad_request"),
        "error-500" => return error(StatusCode::INTERNAL_SERVER_ERROR, "scripted_failure"),
        "slow-head" => {
            // Dropped mid-sleep (the client went away): count it.
            struct HeadWatch(Arc<Shared>, bool);
            impl Drop for HeadWatch {
                fn drop(&mut self) {
                    if !self.1 {
                        self.0.heads_cancelled.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            let mut watch = HeadWatch(shared.clone(), false);
            tokio::time::sleep(Duration::from_secs(2)).await;
            watch.1 = true;
        }
        m => {
            if let Some(ms) = m.strip_prefix("delay-").and_then(|n| n.parse::<u64>().ok()) {
                tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
            }
        }
    }
    // `leak-system` answers with the system prompt, like a model talked
    // into revealing it (for canary tests); the rest echo the user.
    let text = if model == "leak-system" {
        system_text(&body)
    } else {
        last_user_text(&body)
    };
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    let (prompt_tokens, completion_tokens) = (words.len() + 3, words.len());
    if model == "tool-calls" {
        if let Some(calls) = scripted_calls(&text) {
            return tool_call_response(&model, calls, stream, include_usage);
        }
    }
    // `/v1/completions` answers in the legacy shape: `choices[].text`.
    let completion = uri.path() == "/v1/completions";
    if !stream && completion {
        return (
            [("content-type", "application/json")],
            json!({"id": "cmpl-scripted", "object": "text_completion", "created": 0, "model": model,
                   "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}})
            .to_string(),
        )
            .into_response();
    }
    if !stream {
        return (
            [("content-type", "application/json")],
            json!({"id": "chatcmpl-scripted", "object": "chat.completion", "created": 0, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}})
            .to_string(),
        )
            .into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(4);
    let watch_shared = shared.clone();
    tokio::spawn(async move {
        let mut watch = CancelWatch {
            shared: watch_shared,
            done: false,
        };
        let send = |b: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(b)).await.is_ok() }
        };
        // Chat chunks; a completion stream carries `choices[].text` instead.
        let chunk = |model: &str, delta: Value, finish: Option<&str>| {
            if completion {
                let text = delta["content"].as_str().unwrap_or("");
                json!({"id": "cmpl-scripted", "object": "text_completion", "created": 0, "model": model,
                       "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}]})
            } else {
                chunk(model, delta, finish)
            }
        };
        if !completion {
            let role = chunk(&model, json!({"role": "assistant", "content": ""}), None);
            if !send(sse(&role)).await {
                return;
            }
        }
        match model.as_str() {
            "stall" => {
                let _ = send(sse(&chunk(&model, json!({"content": "one"}), None))).await;
                // Silent until the client gives up; closed channel = cancelled.
                tx.closed().await;
                return;
            }
            "endless" => {
                for i in 0..100_000u32 {
                    let piece = chunk(&model, json!({"content": format!(" w{i}")}), None);
                    if !send(sse(&piece)).await {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            "torn" => {
                let _ = send(sse(&chunk(&model, json!({"content": "one"}), None))).await;
                let _ = send(Bytes::from_static(b"data: {\"partial")).await;
                watch.done = true;
                return;
            }
            m if m.starts_with("slow-stream-") => {
                let pause = m["slow-stream-".len()..].parse::<u64>().unwrap_or(100);
                for (i, word) in words.iter().enumerate() {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    let content = if i == 0 {
                        word.clone()
                    } else {
                        format!(" {word}")
                    };
                    if !send(sse(&chunk(&model, json!({"content": content}), None))).await {
                        return;
                    }
                }
            }
            m if m.starts_with("chunks-") => {
                let size = m["chunks-".len()..].parse::<usize>().unwrap_or(4).max(1);
                let mut rest = text.as_str();
                while !rest.is_empty() {
                    let mut cut = size.min(rest.len());
                    while !rest.is_char_boundary(cut) {
                        cut += 1;
                    }
                    let (piece, tail) = rest.split_at(cut);
                    rest = tail;
                    if !send(sse(&chunk(&model, json!({"content": piece}), None))).await {
                        return;
                    }
                }
            }
            _ => {
                for (i, word) in words.iter().enumerate() {
                    let content = if i == 0 {
                        word.clone()
                    } else {
                        format!(" {word}")
                    };
                    if !send(sse(&chunk(&model, json!({"content": content}), None))).await {
                        return;
                    }
                }
            }
        }
        let _ = send(sse(&chunk(&model, json!({}), Some("stop")))).await;
        if include_usage {
            let usage = json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}});
            let _ = send(sse(&usage)).await;
        }
        let _ = send(Bytes::from_static(b"data: [DONE]\n\n")).await;
        watch.done = true;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The calls of a `CALLS [...]` script: `(id, name, arguments string)`.
pub(crate) fn scripted_calls(text: &str) -> Option<Vec<(String, String, String)>> {
    let script: Value = serde_json::from_str(text.trim().strip_prefix("CALLS")?.trim()).ok()?;
    Some(
        script
            .as_array()?
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let args = match &c["arguments"] {
                    Value::String(s) => s.clone(),
                    Value::Null => "{}".to_owned(),
                    other => other.to_string(),
                };
                (
                    format!("call_{i}"),
                    c["name"].as_str().unwrap_or("").to_owned(),
                    args,
                )
            })
            .collect(),
    )
}

fn tool_call_response(
    model: &str,
    calls: Vec<(String, String, String)>,
    stream: bool,
    include_usage: bool,
) -> Response {
    let usage = json!({"prompt_tokens": 20, "completion_tokens": 10 * calls.len(),
                       "total_tokens": 20 + 10 * calls.len()});
    if !stream {
        let entries: Vec<Value> = calls
            .iter()
            .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
            .collect();
        return (
            [("content-type", "application/json")],
            json!({"id": "chatcmpl-scripted", "object": "chat.completion", "created": 0, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": entries},
                                "finish_reason": "tool_calls"}],
                   "usage": usage})
            .to_string(),
        )
            .into_response();
    }
    let mut events = vec![sse(&chunk(
        model,
        json!({"role": "assistant", "content": null}),
        None,
    ))];
    for (i, (id, name, _)) in calls.iter().enumerate() {
        events.push(sse(&chunk(
            model,
            json!({"tool_calls": [{"index": i, "id": id, "type": "function",
            "function": {"name": name, "arguments": ""}}]}),
            None,
        )));
    }
    // Argument pieces, round-robin across calls.
    let pieces: Vec<Vec<String>> = calls
        .iter()
        .map(|(_, _, args)| {
            let mut out = Vec::new();
            let mut rest = args.as_str();
            while !rest.is_empty() {
                let mut cut = 7.min(rest.len());
                while !rest.is_char_boundary(cut) {
                    cut += 1;
                }
                out.push(rest[..cut].to_owned());
                rest = &rest[cut..];
            }
            out
        })
        .collect();
    let longest = pieces.iter().map(Vec::len).max().unwrap_or(0);
    for round in 0..longest {
        for (i, p) in pieces.iter().enumerate() {
            if let Some(piece) = p.get(round) {
                events.push(sse(&chunk(
                    model,
                    json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                    None,
                )));
            }
        }
    }
    events.push(sse(&chunk(model, json!({}), Some("tool_calls"))));
    if include_usage {
        events.push(sse(
            &json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
                                "model": model, "choices": [], "usage": usage}),
        ));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let stream = futures_util::stream::iter(events.into_iter().map(Ok::<Bytes, Infallible>));
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&shared, "/v1/embeddings", &headers, &body);
    // One vector per input, as real servers answer a batch.
    let inputs = body["input"].as_array().map_or(1, Vec::len);
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}))
        .collect();
    (
        [("content-type", "application/json")],
        json!({"object": "list", "model": body["model"],
               "data": data,
               "usage": {"prompt_tokens": 2, "total_tokens": 2}})
        .to_string(),
    )
        .into_response()
}

async fn models(State(shared): State<Arc<Shared>>) -> Response {
    shared.models_listed.fetch_add(1, Ordering::SeqCst);
    (
        [("content-type", "application/json")],
        json!({"object": "list", "data": [
            {"id": "scripted-a", "object": "model", "created": 0, "owned_by": "testkit"},
            {"id": "scripted-b", "object": "model", "created": 0, "owned_by": "testkit"}]})
        .to_string(),
    )
        .into_response()
}

/// A real `redis-server` (Debian's package) on a free loopback port, with
/// persistence off; killed on drop. Panics with a clear message when
/// `redis-server` is not installed (`scripts/test` installs it).
#[derive(Debug)]
pub struct RedisServer {
    child: std::process::Child,
    port: u16,
}

impl RedisServer {
    /// Starts the server and waits (at most 5 s) until it accepts connections.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        Self::start_on(port)
    }

    /// Starts the server on `port` (e.g. to restart one that was stopped).
    pub fn start_on(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect(
                "redis-server is installed (apt-get install redis-server; scripts/test does it)",
            );
        // Owned from here on, so every path (including the panic) reaps it.
        let server = Self { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {port}");
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (to test what happens when Redis goes away).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
