//! Starvation and resource bounds (issue 12, items 6 to 8): CPU on the async
//! workers, the unbounded `model` string, and slow clients — including one
//! that never reads its stream (it held the backend's slot) and an upstream
//! whose stream never pauses (it never met its deadline).
//!
//! Probes that must not depend on the gateway's runtime being healthy (the
//! `/healthz` latency, trickled headers and bodies) use blocking sockets on
//! their own threads, so a stalled runtime shows up as a slow answer rather
//! than as a test that cannot measure. Every loop is bounded in time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use palisade_testkit::RawResponse;
use serde_json::{json, Value};

use crate::harness::{Client, Hostile, Scripted};

/// The look-around pattern that stalled `/healthz` for 7.4 s: fancy-regex
/// backtracks exponentially on a run of `a` that does not end the string.
const PATHOLOGICAL: &str = "^(a|aa)+(?!b)$";

/// Sends `head` (and `body`) on a fresh connection, then reads until the
/// peer closes or `limit` passes. Returns what was read and how long it took.
fn raw_exchange(addr: SocketAddr, head: &str, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, limit).expect("connect");
    s.set_read_timeout(Some(limit)).expect("timeout");
    s.write_all(head.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

/// Time until `GET /healthz` answers 200 on a fresh connection; `None` when it
/// does not within `limit`.
fn healthz_latency(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let (resp, took) = raw_exchange(
        addr,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        limit,
    );
    (resp.starts_with("HTTP/1.1 200") && took < limit).then_some(took)
}

/// The error code of a JSON error body.
fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

// ---------------------------------------------------------------------------
// 6. CPU on the async workers
// ---------------------------------------------------------------------------

/// A chat whose completion (the scripted upstream echoes the user) is an array
/// of strings the pathological pattern backtracks on.
fn pathological_schema_chat() -> Value {
    // Distinct strings: the engine memoizes a repeated one. ~0.1 s each.
    let items: Vec<String> = (0..24).map(|i| format!("{}c{i}", "a".repeat(27))).collect();
    json!({
        "model": "m",
        "messages": [{"role": "user", "content": serde_json::to_string(&items).unwrap()}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {
            "type": "array", "items": {"type": "string", "pattern": PATHOLOGICAL}}}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_promptly_while_pathological_schemas_are_judged() {
    let s = Scripted::new("").await;
    let addr = s.client.gw.local_addr();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = s.client.url("/v1/chat/completions");
    // More requests than the runtime has workers: inline, they hold them all.
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let resp = client
                    .post(url)
                    .json(&pathological_schema_chat())
                    .send()
                    .await
                    .ok()?;
                let status = resp.status().as_u16();
                Some((status, resp.json::<Value>().await.unwrap_or(Value::Null)))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let latency =
        tokio::task::spawn_blocking(move || healthz_latency(addr, Duration::from_secs(1)))
            .await
            .unwrap();
    assert!(
        latency.is_some(),
        "/healthz did not answer within 1 s while schemas were judged"
    );
    eprintln!("/healthz under 4 pathological schema requests: {latency:?}");
    // The pattern needs backtracking: refused up front with a clear 400, never
    // relayed with the check skipped.
    for r in requests {
        let outcome = tokio::time::timeout(Duration::from_secs(30), r).await;
        let (status, body) = outcome.expect("bounded").unwrap().expect("answered");
        assert_eq!(status, 400, "{body}");
        assert_eq!(code(&body), "invalid_request", "{body}");
        assert_eq!(body["error"]["param"], "response_format", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("look-around"),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookaround_pattern_in_tool_parameters_is_refused() {
    let s = Scripted::new("").await;
    let body = json!({
        "model": "m",
        "messages": [{"role": "user", "content": "search for aaa"}],
        "tools": [{"type": "function", "function": {"name": "search", "parameters": {
            "type": "object", "properties": {"q": {"type": "string", "pattern": "(a)\\1"}}}}}]
    });
    let (status, body) = s.client.chat(&body).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "tools[0].function.parameters");
    // A linear-time pattern is accepted as before.
    let ok = json!({
        "model": "m",
        "messages": [{"role": "user", "content": "search for aaa"}],
        "tools": [{"type": "function", "function": {"name": "search", "parameters": {
            "type": "object", "properties": {"q": {"type": "string", "pattern": "^(a|aa)+$"}}}}}]
    });
    let (status, body) = s.client.chat(&ok).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_megabytes_of_spaces_are_counted_without_a_panic() {
    // A token budget makes the gateway estimate the prompt with the model's
    // tokenizer (o200k for gpt-4o): 4 MB of spaces panicked tiktoken (500).
    let s = Scripted::new("[limits]\ntokens_per_minute = 1000000000\n").await;
    // 1.5 MB fits the scripted upstream's own body limit (2 MB): answered
    // in full. 4 MB is the issue's case; that upstream refuses it with a
    // plain-text 413, which the output gate will not relay unparsed (502
    // `upstream_invalid_response`): a clean answer either way, never a 500.
    for (len, expected) in [(1_500_000, 200..201), (4_000_000, 200..503)] {
        let body =
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": " ".repeat(len)}]});
        let started = Instant::now();
        let (status, text) = s.client.post_raw("/v1/chat/completions", &body, &[]).await;
        assert!(
            expected.contains(&status) && status != 500,
            "{len} bytes of spaces got {status}: {}",
            &text[..text.len().min(300)]
        );
        eprintln!("{len} bytes of spaces: {status} in {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_cpu_pool_answers_503_overloaded_with_retry_after() {
    // One pool thread and no patience: concurrent heavy scans cannot all run.
    let s = Scripted::new(
        "[server]\ncpu_workers = 1\ncpu_queue_timeout_ms = 1\n[detection]\npool_workers = 1\npool_queue = 0\npool_wait_ms = 0\n",
    )
    .await;
    let text = "please summarise the following report. ".repeat(25_000); // ~1 MB
    let body = json!({"text": text});
    let requests: Vec<_> = (0..6)
        .map(|_| {
            let http = s.client.http.clone();
            let url = s.client.url("/v1/guard/scan");
            let body = body.clone();
            tokio::spawn(async move {
                let resp = http.post(url).json(&body).send().await.unwrap();
                let status = resp.status().as_u16();
                let retry = resp.headers().get("retry-after").cloned();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                (status, retry, body)
            })
        })
        .collect();
    let mut overloaded = 0;
    for r in requests {
        let (status, retry, body) = tokio::time::timeout(Duration::from_secs(60), r)
            .await
            .expect("bounded")
            .unwrap();
        match status {
            200 => assert!(body["verdict"].is_string(), "{body}"),
            503 => {
                // The CPU pool (`overloaded`) or the detection pool in front of it
                // (`detector_saturated`, the guard API has no tier to degrade by).
                assert!(
                    matches!(code(&body), "overloaded" | "detector_saturated"),
                    "{body}"
                );
                assert!(retry.is_some(), "503 without Retry-After");
                overloaded += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(overloaded >= 1, "no request was refused by the full pool");
}

// ---------------------------------------------------------------------------
// 7. The client's `model` string
// ---------------------------------------------------------------------------

async fn metrics(client: &Client) -> String {
    client
        .http
        .get(client.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_model_name_is_refused_everywhere_and_never_labelled() {
    let s = Scripted::new("").await;
    let model = format!("long-model-{}", "x".repeat(290));
    let msg = json!([{"role": "user", "content": "hello"}]);
    let cases = [
        (
            "/v1/chat/completions",
            json!({"model": model, "messages": msg}),
        ),
        (
            "/v1/completions",
            json!({"model": model, "prompt": "hello"}),
        ),
        ("/v1/embeddings", json!({"model": model, "input": "hello"})),
        (
            "/v1/guard/tool_calls",
            json!({"model": model, "messages": msg, "tool_calls": []}),
        ),
    ];
    for (path, body) in cases {
        let (status, body) = s.client.post(path, &body, &[]).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(code(&body), "invalid_request", "{path}: {body}");
        assert_eq!(body["error"]["param"], "model", "{path}: {body}");
        assert!(
            !body.to_string().contains(&model),
            "{path} echoes the name back"
        );
    }
    assert!(s.upstream.received().is_empty(), "nothing went upstream");
    assert!(!metrics(&s.client).await.contains("long-model-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_the_upstream_does_not_serve_do_not_become_metric_labels() {
    // A wildcard route forwards any name; this upstream serves none of them.
    let not_found = RawResponse::json(
        r#"{"error":{"message":"no such model","type":"invalid_request_error","code":"model_not_found"}}"#,
    )
    .with_status(404);
    let h = Hostile::new(not_found, "").await;
    for i in 0..5 {
        let body = json!({"model": format!("spray-{i}-zq"), "messages": [{"role": "user", "content": "hi"}]});
        let (status, _) = h.client.chat(&body).await;
        assert_eq!(status, 404);
    }
    let text = metrics(&h.client).await;
    assert!(!text.contains("spray-"), "client names became labels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_api_takes_its_tier_from_the_route_table() {
    // Explicit routes only: a name the table does not route has no tier.
    let upstream = palisade_testkit::ScriptedUpstream::start().await;
    let gw = crate::harness::start(&format!(
        "[backends.main]\nbase_url = \"{}\"\n[[routes]]\nmodel = \"agent\"\nbackend = \"main\"\n",
        upstream.base_url()
    ))
    .await;
    let client = Client::new(gw);
    let call = json!({"id": "c1", "type": "function",
                      "function": {"name": "search", "arguments": "{\"q\":\"x\"}"}});
    let body = |model: &str| json!({"model": model, "messages": [], "tool_calls": [call]});
    let (status, verdict) = client
        .post("/v1/guard/tool_calls", &body("agent"), &[])
        .await;
    assert_eq!(status, 200, "{verdict}");
    let (status, err) = client
        .post("/v1/guard/tool_calls", &body("made-up-tier-name"), &[])
        .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(code(&err), "model_not_found");
    assert_eq!(err["error"]["param"], "model");
}

// ---------------------------------------------------------------------------
// 8. Slow clients
// ---------------------------------------------------------------------------

const SLOW: &str = "[server]\nheader_read_timeout_ms = 300\nbody_read_timeout_ms = 300\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_header_is_cut_off_after_the_timeout() {
    let s = Scripted::new(SLOW).await;
    let addr = s.client.gw.local_addr();
    let outcome = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            .unwrap();
        // One header line every 100 ms, for at most 3 s, then the end.
        while started.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(100));
            if c.write_all(b"x-slow: 1\r\n").is_err() {
                return (String::new(), started.elapsed());
            }
            let mut buf = [0u8; 512];
            match c.read(&mut buf) {
                Ok(0) => return (String::new(), started.elapsed()),
                Ok(n) => {
                    return (
                        String::from_utf8_lossy(&buf[..n]).into_owned(),
                        started.elapsed(),
                    )
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return (String::new(), started.elapsed()),
            }
        }
        let _ = c.write_all(b"\r\n");
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        (
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )
    })
    .await
    .unwrap();
    let (answer, took) = outcome;
    assert!(
        !answer.contains(" 200 "),
        "a header trickled for {took:?} was answered: {answer}"
    );
    assert!(took < Duration::from_secs(2), "cut off only after {took:?}");

    // A connection that never sends a byte is closed too (it would hold a
    // connection slot forever).
    let (silent, took) =
        tokio::task::spawn_blocking(move || raw_exchange(addr, "", Duration::from_secs(3)))
            .await
            .unwrap();
    assert!(silent.is_empty(), "{silent}");
    assert!(
        took < Duration::from_secs(2),
        "idle connection kept {took:?}"
    );
}

/// Sends a complete head announcing `len` body bytes to `path`, then one body
/// byte every 100 ms (at most 3 s). Returns the response and when it came.
fn trickle_body(addr: SocketAddr, path: &str, len: usize) -> (String, Duration) {
    let started = Instant::now();
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n{{"
    );
    c.write_all(head.as_bytes()).unwrap();
    let mut out = Vec::new();
    while started.elapsed() < Duration::from_secs(3) {
        let mut buf = [0u8; 1024];
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                    break;
                }
                continue;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(50));
        let _ = c.write_all(b" ");
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_request_timeout() {
    let s = Scripted::new(SLOW).await;
    let addr = s.client.gw.local_addr();
    for path in [
        "/v1/chat/completions",
        "/v1/guard/scan",
        "/v1/guard/tool_calls",
        "/v1/tools/verify",
    ] {
        let (resp, took) = tokio::task::spawn_blocking(move || trickle_body(addr, path, 4096))
            .await
            .unwrap();
        assert!(resp.starts_with("HTTP/1.1 408"), "{path}: {resp}");
        assert!(resp.contains("\"request_timeout\""), "{path}: {resp}");
        assert!(took < Duration::from_secs(2), "{path}: 408 after {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused_with_503() {
    let s = Scripted::new("[server]\nmax_connections = 4\nheader_read_timeout_ms = 5000\n").await;
    let addr = s.client.gw.local_addr();
    let answer = tokio::task::spawn_blocking(move || {
        // Four idle connections hold every slot.
        let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(200));
        let (refused, _) = raw_exchange(
            addr,
            "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
            Duration::from_secs(2),
        );
        // A slot frees when a connection closes.
        drop(held);
        std::thread::sleep(Duration::from_millis(200));
        let served = healthz_latency(addr, Duration::from_secs(2));
        (refused, served)
    })
    .await
    .unwrap();
    let (refused, served) = answer;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after"),
        "{refused}"
    );
    assert!(refused.contains("\"overloaded\""), "{refused}");
    assert!(served.is_some(), "no slot came back after the holders left");
}

/// `/v1/models` asks a wildcard backend for its own list: a key past its
/// request rate must not use it to keep hitting the gateway and the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_list_is_behind_the_rate_gate() {
    let s = Scripted::new("[limits]\nrequests_per_minute = 3\nburst = 3\n").await;
    let mut refused = None;
    for _ in 0..10 {
        let resp = s
            .client
            .http
            .get(s.client.url("/v1/models"))
            .send()
            .await
            .expect("gateway answers");
        if resp.status().as_u16() == 429 {
            refused = Some(resp);
            break;
        }
        assert_eq!(resp.status().as_u16(), 200);
    }
    let resp = refused.expect("the fourth listing within a minute is refused");
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.expect("an OpenAI error body");
    assert_eq!(code(&body), "rate_limited", "{body}");
}

/// A client that opens a stream and never reads it: hyper stops pulling the
/// relay once the socket is full, so the stream's deadline never fired and
/// it held the backend's only in-flight slot for as long as the client
/// kept the connection (here the deadline is a minute). After
/// `server.write_stall_timeout_ms` of writes it does not take, the
/// connection is closed and the slot is free for the next tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_stream_does_not_hold_the_backend() {
    // 12 MiB of events, more than the loopback socket buffers hold.
    let content = "word ".repeat(8 * 1024);
    let event = format!(
        "data: {}\n\n",
        json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
               "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    );
    let body = event.repeat(12 * 1024 * 1024 / event.len() + 1) + "data: [DONE]\n\n";
    let h = Hostile::new(
        RawResponse::sse(body),
        "max_in_flight = 1\nqueue_timeout_ms = 500\nrequest_timeout_ms = 60000\nidle_timeout_ms = 60000\n\
         [server]\nwrite_stall_timeout_ms = 1000\n",
    )
    .await;
    let addr = h.client.gw.local_addr();
    let request = json!({"model": "m", "stream": true,
                         "messages": [{"role": "user", "content": "Tell me a long story."}]})
    .to_string();
    // The reader that never reads: it sends its request, then sleeps with
    // the connection open until the test ends.
    let (done, until_done) = std::sync::mpsc::channel::<()>();
    let stalled = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{request}",
                request.len()
            )
            .as_bytes(),
        )
        .expect("request sent");
        let _ = until_done.recv_timeout(Duration::from_secs(15));
        drop(c);
    });
    // The stream is under way before the upstream's script changes.
    let started = Instant::now();
    while h.upstream.received().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the stream never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Until the relay has filled the client's buffers and stalled, the
    // slot is rightly held; after the stall bound it must come free. The
    // next request is answered once the slot is free (bounded polling).
    let started = Instant::now();
    let mut answered = None;
    while started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        h.upstream.script(RawResponse::json(
            json!({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]})
            .to_string(),
        ));
        let (status, _) = h
            .client
            .chat(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .await;
        if status == 200 {
            answered = Some(started.elapsed());
            break;
        }
        assert_eq!(status, 503, "only the held slot may refuse it");
    }
    let _ = done.send(());
    stalled.join().expect("stalled client");
    answered.expect("the backend's slot stayed held by a client that never reads");
}

/// An upstream whose stream always has the next bytes ready: the relay
/// polled the read before its deadline timer, so a stream that never
/// paused never timed out (here: 24 MiB sent at once, a 300 ms deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_never_pauses_still_ends_at_its_deadline() {
    let event = format!(
        "data: {}\n\n",
        json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
               "choices": [{"index": 0, "delta": {"content": "word ".repeat(2048)}, "finish_reason": null}]})
    );
    let body = event.repeat(24 * 1024 * 1024 / event.len() + 1) + "data: [DONE]\n\n";
    let total = body.len();
    let h = Hostile::new(RawResponse::sse(body), "request_timeout_ms = 300\n").await;
    let started = Instant::now();
    let (status, text) = h
        .client
        .post_raw(
            "/v1/chat/completions",
            &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "Go on."}]}),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        text.contains("upstream_timeout"),
        "no deadline error at the end: {} bytes",
        text.len()
    );
    assert!(
        !text.contains("[DONE]"),
        "the stream ran to its end past the deadline"
    );
    assert!(text.len() < total, "{} of {total} bytes", text.len());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// A megabyte system prompt beside thousands of empty texts: the guard and
/// the input gates read the prompt beside every text, so the request was
/// quadratic (minutes of a worker per request; the bound on a scan's work
/// is `palisade-detect`'s `a_long_system_prompt_adds_bounded_work_per_text`).
/// Past 4096 texts a request is refused; below it, it is judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_system_prompt_beside_many_texts_is_bounded() {
    let s = Scripted::new("").await;
    let prompt = "You are a careful assistant. ".repeat(36_000);
    let many = |n: usize| -> Vec<Value> {
        std::iter::once(json!({"role": "system", "content": prompt}))
            .chain((0..n).map(|_| json!({"role": "user", "content": "?"})))
            .collect()
    };
    let (status, v) = s
        .client
        .post("/v1/guard/scan", &json!({"messages": many(5000)}), &[])
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "messages", "{v}");
    let (status, v) = s
        .client
        .chat(&json!({"model": "m", "messages": many(5000)}))
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "messages", "{v}");
    assert!(s.upstream.received().is_empty());
    // Within the bound, judged and answered.
    let (status, v) = s
        .client
        .post("/v1/guard/scan", &json!({"messages": many(500)}), &[])
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(501), "{v}");
}

/// The finding this closes: hyper's HTTP/2 server has no header-read or
/// idle timeout, and the preface was the only thing bounded. A client that
/// opened `max_connections` connections, each sending the preface and an
/// empty SETTINGS frame and then nothing, held every slot with no key and no
/// traffic: everyone else got 503 for as long as it liked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_http2_connections_do_not_hold_the_slots() {
    use tokio::io::AsyncWriteExt;
    let s = Scripted::new(
        "[server]\nmax_connections = 4\nheader_read_timeout_ms = 600\nidle_timeout_ms = 600\n",
    )
    .await;
    let addr = s.client.gw.local_addr();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .expect("preface");
        held.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fresh = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let status = fresh
        .get(s.client.url("/healthz"))
        .send()
        .await
        .expect("answers")
        .status()
        .as_u16();
    assert_eq!(
        status, 200,
        "silent HTTP/2 connections still hold every slot"
    );
    drop(held);
}
