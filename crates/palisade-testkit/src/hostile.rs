//! A hostile upstream for the red-team suite: it answers every request with
//! exactly the bytes a test scripted (status, content type, body pieces and
//! the pauses between them), so tests can send what no well-behaved model
//! server would — unparsable JSON, `NaN`, a byte-order mark before the first
//! event, an unterminated last event, side fields full of secrets.
//!
//! The script is the response to every request until it is replaced; what
//! the gateway sent is recorded like [`crate::ScriptedUpstream`] records it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use crate::Received;

/// One scripted response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The `content-type` header, sent exactly as given (`None`: omitted).
    pub content_type: Option<String>,
    /// Body pieces, each sent after its pause.
    pub pieces: Vec<(Duration, Bytes)>,
    /// Further headers (a redirect's `location`), sent as given.
    pub headers: Vec<(String, String)>,
}

impl RawResponse {
    /// A 200 with one JSON body (`application/json`), sent as given.
    pub fn json(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            content_type: Some("application/json".to_owned()),
            pieces: vec![(Duration::ZERO, Bytes::from(body.into()))],
            headers: Vec::new(),
        }
    }

    /// A 200 server-sent-event stream (`text/event-stream`) whose body is
    /// `raw`, sent as one piece.
    pub fn sse(raw: impl Into<String>) -> Self {
        Self::sse_pieces([(Duration::ZERO, raw.into())])
    }

    /// A 200 event stream sent in pieces, each after its pause.
    pub fn sse_pieces(pieces: impl IntoIterator<Item = (Duration, String)>) -> Self {
        Self {
            status: 200,
            content_type: Some("text/event-stream".to_owned()),
            pieces: pieces
                .into_iter()
                .map(|(d, s)| (d, Bytes::from(s)))
                .collect(),
            headers: Vec::new(),
        }
    }

    /// The same response with another status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The same response with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The same response with another content type.
    pub fn with_content_type(mut self, content_type: &str) -> Self {
        self.content_type = Some(content_type.to_owned());
        self
    }
}

#[derive(Debug)]
struct Shared {
    script: Mutex<RawResponse>,
    received: Mutex<Vec<Received>>,
}

/// An upstream on 127.0.0.1 that sends exactly what the test scripted.
#[derive(Debug)]
pub struct HostileUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl HostileUpstream {
    /// Starts the server on an ephemeral loopback port, answering `script`.
    pub async fn start(script: RawResponse) -> Self {
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            received: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(answer))
            .route("/v1/completions", post(answer))
            .route("/v1/embeddings", post(answer))
            .route("/v1/responses", post(answer))
            // Stored responses: answered with the script too.
            .route("/v1/responses/{id}", get(answer_get))
            .route("/v1/models", get(|| async { "{\"data\": []}" }))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// Base URL in the form backends expect, ending in `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Replaces the response sent to every later request.
    pub fn script(&self, script: RawResponse) {
        *self
            .shared
            .script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = script;
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for HostileUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared
        .received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Received {
            path: uri.path().to_owned(),
            headers,
            body,
        });
    let script = shared
        .script
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let pieces = futures_util::stream::unfold(script.pieces.into_iter(), |mut rest| async move {
        let (pause, bytes) = rest.next()?;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        Some((Ok::<_, std::convert::Infallible>(bytes), rest))
    });
    let mut resp = Response::new(Body::from_stream(pieces));
    *resp.status_mut() = StatusCode::from_u16(script.status).unwrap_or(StatusCode::OK);
    if let Some(ct) = script
        .content_type
        .and_then(|c| axum::http::HeaderValue::from_str(&c).ok())
    {
        resp.headers_mut().insert("content-type", ct);
    }
    for (name, value) in &script.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(value),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

/// A `GET` (a stored response) answered like a `POST`.
async fn answer_get(
    state: State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    answer(state, uri, headers, Bytes::new()).await
}
