//! A fixed-response OpenAI-compatible upstream for load tests.
//!
//! `palisade-bench-upstream [PORT]` (default 18090, loopback only). Every
//! `POST /v1/chat/completions` gets the same small completion; a body that
//! asks for `"stream": true` gets a 64-event SSE stream. It does as little work
//! as possible (no JSON parsing) so the load test measures what sits in front.
//! The model `bench-tools` answers with two tool calls instead (whole, or
//! streamed as id/name deltas and 8-byte argument pieces), for measuring the
//! tool gate.

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

const TOOL_COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"bench-tools","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_a","type":"function","function":{"name":"search_docs","arguments":"{\"q\":\"quarterly revenue by region 2026\",\"limit\":5}"}},{"id":"call_b","type":"function","function":{"name":"send_email","arguments":"{\"to\":\"bob@example.com\",\"subject\":\"Q3 numbers\",\"body\":\"Hi Bob, revenue grew 4% quarter on quarter; details attached.\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":40,"completion_tokens":30,"total_tokens":70}}"#;

/// The tool-call stream: role, two call heads, argument pieces, finish.
fn tool_stream_events() -> &'static [Bytes] {
    static CACHE: OnceLock<Vec<Bytes>> = OnceLock::new();
    CACHE.get_or_init(|| {
        let event = |delta: &str, finish: &str| {
            Bytes::from(format!(
                "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"bench-tools\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
            ))
        };
        let calls = [
            ("call_a", "search_docs", r#"{"q":"quarterly revenue by region 2026","limit":5}"#),
            ("call_b", "send_email", r#"{"to":"bob@example.com","subject":"Q3 numbers","body":"Hi Bob, revenue grew 4% quarter on quarter; details attached."}"#),
        ];
        let mut events = vec![event(r#"{"role":"assistant","content":null}"#, "null")];
        for (i, (id, name, args)) in calls.iter().enumerate() {
            events.push(event(&format!(r#"{{"tool_calls":[{{"index":{i},"id":"{id}","type":"function","function":{{"name":"{name}","arguments":""}}}}]}}"#), "null"));
            for piece in args.as_bytes().chunks(8) {
                let piece = serde_json::to_string(std::str::from_utf8(piece).unwrap_or("")).unwrap_or_default();
                events.push(event(&format!(r#"{{"tool_calls":[{{"index":{i},"function":{{"arguments":{piece}}}}}]}}"#), "null"));
            }
        }
        events.push(event("{}", "\"tool_calls\""));
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn chat(body: Bytes) -> Response {
    let wants_stream = contains(&body, b"\"stream\":true") || contains(&body, b"\"stream\": true");
    if contains(&body, b"\"bench-tools\"") {
        if wants_stream {
            let events = tool_stream_events()
                .iter()
                .cloned()
                .map(Ok::<_, Infallible>);
            return (
                [("content-type", "text/event-stream")],
                Body::from_stream(futures_util::stream::iter(events)),
            )
                .into_response();
        }
        return ([("content-type", "application/json")], TOOL_COMPLETION).into_response();
    }
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
