//! A fixed-response OpenAI-compatible upstream for load tests.
//!
//! `palisade-bench-upstream [PORT]` (default 18090, loopback only). Every
//! `POST /v1/chat/completions` gets the same small completion; a body that
//! asks for `"stream": true` gets a 64-event SSE stream. It does as little work
//! as possible (no JSON parsing) so the load test measures what sits in front.

use std::convert::Infallible;
use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":10,"total_tokens":22}}"#;

/// Events per streamed response.
const EVENTS: usize = 64;

/// The stream's events, built once: one `Bytes` per event so each goes out
/// in its own write, as a real model server sends them.
fn stream_events() -> &'static [Bytes] {
    static EVENTS_CACHE: OnceLock<Vec<Bytes>> = OnceLock::new();
    EVENTS_CACHE.get_or_init(|| {
        let mut events: Vec<Bytes> = (0..EVENTS - 1)
            .map(|i| Bytes::from(format!(
                "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"bench\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" tok{i:02}\"}},\"finish_reason\":null}}]}}\n\n"
            )))
            .collect();
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn chat(body: Bytes) -> Response {
    let wants_stream = contains(&body, b"\"stream\":true") || contains(&body, b"\"stream\": true");
    if wants_stream {
        let events = stream_events().iter().cloned().map(Ok::<_, Infallible>);
        (
            [("content-type", "text/event-stream")],
            Body::from_stream(futures_util::stream::iter(events)),
        )
            .into_response()
    } else {
        ([("content-type", "application/json")], COMPLETION).into_response()
    }
}

async fn models() -> &'static str {
    r#"{"object":"list","data":[{"id":"bench","object":"model","created":0,"owned_by":"bench"}]}"#
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(18090);
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(
        axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        app,
    )
    .await
}
