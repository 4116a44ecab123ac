//! The request path over real HTTP: a gateway on a loopback port in front of
//! the scripted upstream from `palisade-testkit`.

use std::time::Duration;

use futures_util::StreamExt;
use palisade_config::{Config, Sources};
use palisade_gateway::{Gateway, RunningGateway};
use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};

struct Harness {
    gateway: RunningGateway,
    upstream: ScriptedUpstream,
    client: reqwest::Client,
}

impl Harness {
    /// Starts an upstream and a gateway configured by `toml`, in which
    /// `@UPSTREAM@` is replaced by the upstream's base URL.
    async fn start(toml: &str) -> Self {
        let upstream = ScriptedUpstream::start().await;
        let toml = toml.replace("@UPSTREAM@", &upstream.base_url());
        let config = Config::load(&Sources {
            toml: Some(&toml),
            default_upstream: Some(&upstream.base_url()),
            ..Sources::default()
        })
        .expect("test config is valid");
        let gateway = Gateway::with_env(config, |var| {
            (var == "TEST_UPSTREAM_KEY").then(|| "sk-upstream-secret".to_owned())
        })
        .expect("gateway builds")
        .start(Some("127.0.0.1:0".parse().unwrap()))
        .await
        .expect("gateway starts");
        Self {
            gateway,
            upstream,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.gateway.local_addr(), path)
    }

    /// POSTs and reads the error: status, `error.code` and the whole body.
    async fn post_error(&self, path: &str, body: Value) -> (u16, String, Value) {
        error_code(self.post(path, body).await).await
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("gateway answers")
    }
}

/// The config form of an API key (its SHA-256).
fn key(k: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(k.as_bytes()))
}

/// Waits up to 2 s for `cond`, failing with `what` if it never holds.
async fn eventually(cond: impl Fn() -> bool, what: &str) {
    for _ in 0..100 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}");
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

async fn error_code(resp: reqwest::Response) -> (u16, String, Value) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("error body is JSON");
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
        body,
    )
}

/// Reads an SSE body to the end and returns its events' data fields.
async fn sse_data(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.expect("stream body");
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// Proxy mechanics, gates off: the output gate holds streamed text back to
/// sentence boundaries, which the scripted `endless` stream never has (the
/// gates are tested with streams in `tests/gates.rs`).
const NAMED_ROUTES: &str = r#"
    [policy]
    disabled = true
    [backends.main]
    base_url = "@UPSTREAM@"
    api_key_env = "TEST_UPSTREAM_KEY"
    first_byte_timeout_ms = 500
    idle_timeout_ms = 400
    [backends.dead]
    base_url = "http://127.0.0.1:9/v1"
    connect_timeout_ms = 500
    [[routes]]
    model = "llama"
    backend = "main"
    upstream_model = "upstream-llama"
    aliases = ["fast"]
    [[routes]]
    model = "slow-head"
    backend = "main"
    [[routes]]
    model = "stall"
    backend = "main"
    [[routes]]
    model = "endless"
    backend = "main"
    [[routes]]
    model = "short-deadline"
    backend = "main"
    upstream_model = "endless"
    deadline_ms = 300
    [[routes]]
    model = "torn"
    backend = "main"
    [[routes]]
    model = "error-400"
    backend = "main"
    [[routes]]
    model = "error-500"
    backend = "main"
    [[routes]]
    model = "gone"
    backend = "dead"
"#;

#[tokio::test]
async fn non_streaming_chat_is_forwarded_with_backend_credentials() {
    let h = Harness::start(NAMED_ROUTES).await;
    let resp = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("authorization", "Bearer client-key-must-not-leak")
        .header("x-request-id", "client-chosen-42")
        .json(&chat("fast", "hello there"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "client-chosen-42");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "hello there");
    assert_eq!(body["usage"]["completion_tokens"], 2);

    let seen = h.upstream.received();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    // The alias resolved to the upstream's own name.
    assert_eq!(seen[0].body["model"], "upstream-llama");
    // The backend key replaced the client's key; the upstream gets the
    // gateway's own request id (a model server keys its engine requests by
    // it, so a client-chosen one could collide with another tenant's).
    assert_eq!(
        seen[0].headers["authorization"],
        "Bearer sk-upstream-secret"
    );
    let upstream_id = seen[0].headers["x-request-id"].to_str().unwrap();
    assert_ne!(upstream_id, "client-chosen-42");
    assert_eq!(upstream_id.len(), 36, "a gateway UUID: {upstream_id}");
}

#[tokio::test]
async fn unsafe_request_ids_are_replaced() {
    let h = Harness::start("").await;
    let resp = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-request-id", "bad id with spaces")
        .json(&chat("m", "hi"))
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "bad id with spaces");
    assert_eq!(id.len(), 36, "a UUID was minted: {id}");
    assert_eq!(
        h.upstream.received()[0].headers["x-request-id"].len(),
        36,
        "the upstream gets the gateway's own id"
    );
}

#[tokio::test]
async fn streaming_relays_every_event_and_usage() {
    let h = Harness::start("").await;
    let mut body = chat("any-model", "one two three four");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = h.post("/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let data = sse_data(resp).await;
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "one two three four");
    let usage = chunks.iter().find(|c| c["usage"].is_object()).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn stream_is_relayed_incrementally_and_disconnect_cancels_upstream() {
    let h = Harness::start(NAMED_ROUTES).await;
    let mut body = chat("endless", "x");
    body["stream"] = json!(true);
    let resp = h.post("/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    // The upstream never finishes: receiving events at all proves they are
    // forwarded as they arrive rather than buffered to the end.
    let mut stream = resp.bytes_stream();
    let mut received = String::new();
    while received.matches("\n\n").count() < 5 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("events arrive while the upstream is still streaming")
            .unwrap()
            .unwrap();
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(h.upstream.streams_cancelled(), 0);
    drop(stream);
    // The dropped client connection must reach the upstream.
    eventually(
        || h.upstream.streams_cancelled() == 1,
        "upstream stream was not cancelled after the client disconnected",
    )
    .await;
}

#[tokio::test]
async fn bad_requests_get_stable_codes() {
    let h = Harness::start(NAMED_ROUTES).await;
    let raw = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["x-should-retry"], "false");
    let request_id = raw.headers()["x-request-id"].to_str().unwrap().to_owned();
    let (status, code, body) = error_code(raw).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["request_id"], request_id.as_str());

    let (status, code, body) = h
        .post_error("/v1/chat/completions", json!({"model": "llama"}))
        .await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    assert_eq!(body["error"]["param"], "messages");

    let (status, code, body) = h
        .post_error("/v1/chat/completions", chat("no-such-model", "hi"))
        .await;
    assert_eq!((status, code.as_str()), (404, "model_not_found"));
    assert_eq!(body["error"]["param"], "model");

    let huge = "x".repeat(5 * 1024 * 1024);
    let (status, code, _) = h
        .post_error("/v1/chat/completions", chat("llama", &huge))
        .await;
    assert_eq!((status, code.as_str()), (413, "request_too_large"));

    let (status, code, _) =
        error_code(h.client.get(h.url("/v1/nothing")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let (status, code, _) = error_code(
        h.client
            .get(h.url("/v1/chat/completions"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));
    assert!(
        h.upstream.received().is_empty(),
        "nothing invalid reached the upstream"
    );
}

#[tokio::test]
async fn upstream_client_errors_pass_through_and_server_errors_become_502() {
    let h = Harness::start(NAMED_ROUTES).await;
    let (status, code, body) = h
        .post_error("/v1/chat/completions", chat("error-400", "hi"))
        .await;
    assert_eq!((status, code.as_str()), (400, "scripted_bad_request"));
    assert_eq!(body["error"]["message"], "scripted scripted_bad_request");
    // Server errors are not relayed verbatim: their bodies leak internals.
    let (status, code, body) = h
        .post_error("/v1/chat/completions", chat("error-500", "hi"))
        .await;
    assert_eq!((status, code.as_str()), (502, "upstream_error"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));
    assert!(!body.to_string().contains("scripted_failure"));
}

#[tokio::test]
async fn unreachable_and_slow_upstreams_map_to_502_and_504() {
    let h = Harness::start(NAMED_ROUTES).await;
    let (status, code, body) = h
        .post_error("/v1/chat/completions", chat("gone", "hi"))
        .await;
    assert_eq!((status, code.as_str()), (502, "upstream_unavailable"));
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "no internal addresses leak"
    );

    let started = std::time::Instant::now();
    let (status, code, _) = h
        .post_error("/v1/chat/completions", chat("slow-head", "hi"))
        .await;
    assert_eq!((status, code.as_str()), (504, "upstream_timeout"));
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "first-byte timeout fired early"
    );
}

#[tokio::test]
async fn stalled_stream_ends_with_an_in_band_timeout_error() {
    let h = Harness::start(NAMED_ROUTES).await;
    let mut body = chat("stall", "x");
    body["stream"] = json!(true);
    let resp = h.post("/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    let data = tokio::time::timeout(Duration::from_secs(5), sse_data(resp))
        .await
        .expect("idle timeout ends the stream");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout");
    assert!(
        data[0].contains("assistant"),
        "events before the stall were relayed"
    );
    // The stalled upstream stream was closed, not leaked.
    eventually(
        || h.upstream.streams_cancelled() == 1,
        "stalled upstream stream was not closed",
    )
    .await;
}

#[tokio::test]
async fn silent_streams_get_heartbeats_until_the_idle_timeout() {
    let h = Harness::start(&format!("[server]\nsse_heartbeat_ms = 100\n{NAMED_ROUTES}")).await;
    let mut body = chat("stall", "x");
    body["stream"] = json!(true);
    let resp = h.post("/v1/chat/completions", body).await;
    let text = tokio::time::timeout(Duration::from_secs(5), resp.text())
        .await
        .expect("the idle timeout still ends the stream")
        .unwrap();
    // 400 ms of silence at one beat per 100 ms: about three beats, and the
    // beats did not keep the stalled upstream alive.
    let beats = text.matches(": keep-alive\n\n").count();
    assert!((2..=4).contains(&beats), "{beats} heartbeats in {text:?}");
    assert!(text.contains("upstream_timeout"), "{text}");
}

#[tokio::test]
async fn route_deadline_cuts_a_stream_that_never_stalls() {
    let h = Harness::start(NAMED_ROUTES).await;
    let mut body = chat("short-deadline", "x");
    body["stream"] = json!(true);
    let started = std::time::Instant::now();
    let data = sse_data(h.post("/v1/chat/completions", body).await).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(data.len() > 3, "events flowed until the deadline");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout");
}

#[tokio::test]
async fn unterminated_tail_is_forwarded_not_dropped() {
    let h = Harness::start(NAMED_ROUTES).await;
    let mut body = chat("torn", "x");
    body["stream"] = json!(true);
    let text = h
        .post("/v1/chat/completions", body)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.ends_with("data: {\"partial"), "{text:?}");
}

#[tokio::test]
async fn completions_and_embeddings_are_forwarded() {
    let h = Harness::start("").await;
    let resp = h
        .post(
            "/v1/completions",
            json!({"model": "m", "prompt": "say this"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let resp = h
        .post(
            "/v1/embeddings",
            json!({"model": "e", "input": "vector me"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 3);
    let paths: Vec<String> = h
        .upstream
        .received()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(paths, ["/v1/completions", "/v1/embeddings"]);
}

#[tokio::test]
async fn api_keys_map_to_tenants() {
    let key_hash = key("pk-tenant-a");
    let h = Harness::start(&format!(
        "[[auth.keys]]\nname = \"a\"\ntenant = \"tenant-a\"\nsha256 = \"{key_hash}\""
    ))
    .await;
    let send = |key: Option<&'static str>| {
        let mut req = h
            .client
            .post(h.url("/v1/chat/completions"))
            .json(&chat("m", "hi"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
    };
    let resp = send(None).await.unwrap();
    assert!(resp.headers().contains_key("x-request-id"));
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (401, "missing_api_key"));
    let (status, code, _) = error_code(send(Some("pk-wrong")).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    assert_eq!(send(Some("pk-tenant-a")).await.unwrap().status(), 200);
    assert_eq!(
        h.upstream.received().len(),
        1,
        "only the authenticated request went upstream"
    );
    let (status, _, _) = error_code(h.client.get(h.url("/v1/models")).send().await.unwrap()).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn models_lists_routes_aliases_and_wildcard_backend_models() {
    let h = Harness::start(
        r#"
        [backends.main]
        base_url = "@UPSTREAM@"
        [[routes]]
        model = "llama"
        backend = "main"
        aliases = ["fast"]
        [[routes]]
        model = "*"
        backend = "main"
    "#,
    )
    .await;
    let body: Value = h
        .client
        .get(h.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["llama", "fast", "scripted-a", "scripted-b"]);
    assert_eq!(body["object"], "list");
    // Retrieval answers from the same listing: routes, aliases and the
    // wildcard backend's own models, in the OpenAI shape.
    for id in ["llama", "fast", "scripted-b"] {
        let one: Value = h
            .client
            .get(h.url(&format!("/v1/models/{id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (one["id"].as_str(), one["object"].as_str()),
            (Some(id), Some("model"))
        );
        assert_eq!(one["owned_by"], "main");
    }
    // A name the wildcard would forward but the listing does not show is not
    // visible by id either; a slash in the id is part of the id.
    for id in ["nope", "org/nope"] {
        let resp = h
            .client
            .get(h.url(&format!("/v1/models/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-should-retry"], "false");
        let (status, code, body) = error_code(resp).await;
        assert_eq!((status, code.as_str()), (404, "model_not_found"));
        assert_eq!(body["error"]["type"], "not_found_error");
        assert!(body["error"]["message"].as_str().unwrap().contains(id));
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let h = Harness::start("").await;
    assert_eq!(
        h.client
            .get(h.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = h.client.get(h.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["conditions"]["routes"], true);
    assert_eq!(ready["conditions"]["listener"], true);

    let mut body = chat("metric-model", "a b c");
    body["stream"] = json!(true);
    let _ = sse_data(h.post("/v1/chat/completions", body).await).await;
    // Words 300 ms apart: each leaves the gateway on its own, so the client
    // sees a cadence too (measured after the output gate's hold-back).
    let mut body = chat("slow-stream-300", "one two three");
    body["stream"] = json!(true);
    let _ = sse_data(h.post("/v1/chat/completions", body).await).await;
    let metrics = h
        .client
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "palisade_http_requests_total{route=\"chat_completions\",model=\"metric-model\",status=\"200\"}",
        "palisade_stream_time_to_first_token_seconds_bucket{model=\"metric-model\"",
        "palisade_stream_inter_chunk_gap_seconds_count{model=\"metric-model\"}",
        "palisade_stream_client_time_to_first_token_seconds_bucket{model=\"metric-model\"",
        "palisade_stream_client_inter_chunk_gap_seconds_count{model=\"slow-stream-300\"}",
        "palisade_upstream_response_head_seconds_bucket",
        "palisade_http_in_flight_requests",
        "# HELP palisade_http_requests_total",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}:\n{metrics}");
    }
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_stops_accepting() {
    let h = Harness::start(
        "[server]\nshutdown_grace_ms = 5000\n[backends.main]\nbase_url = \"@UPSTREAM@\"\nfirst_byte_timeout_ms = 5000",
    )
    .await;
    let url = h.url("/v1/chat/completions");
    let client = h.client.clone();
    let in_flight = tokio::spawn(async move {
        client
            .post(url)
            .json(&chat("slow-head", "finish me"))
            .send()
            .await
    });
    // Let the request reach the upstream's 2 s sleep, then start draining.
    eventually(
        || !h.upstream.received().is_empty(),
        "request reached the upstream",
    )
    .await;
    h.gateway.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = reqwest::Client::new().get(h.url("/healthz")).send().await;
    assert!(
        refused.is_err(),
        "new connections are refused while draining"
    );
    let resp = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "finish me");
    let Harness { gateway, .. } = h;
    tokio::time::timeout(Duration::from_secs(5), gateway.wait())
        .await
        .expect("server stops after draining")
        .unwrap();
}

#[tokio::test]
async fn client_giving_up_before_the_response_head_cancels_the_upstream_request() {
    let h =
        Harness::start("[backends.main]\nbase_url = \"@UPSTREAM@\"\nfirst_byte_timeout_ms = 10000")
            .await;
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let result = impatient
        .post(h.url("/v1/chat/completions"))
        .json(&chat("slow-head", "x"))
        .send()
        .await;
    assert!(result.is_err(), "the client timed out");
    eventually(
        || h.upstream.heads_cancelled() == 1,
        "the upstream kept working for a client that had left",
    )
    .await;
}

#[tokio::test]
async fn request_rate_is_limited_per_tenant_with_retry_after_and_headers() {
    let h = Harness::start(&format!(
        r#"
        [[auth.keys]]
        name = "a1"
        tenant = "small"
        sha256 = "{}"
        [[auth.keys]]
        name = "a2"
        tenant = "small"
        sha256 = "{}"
        [[auth.keys]]
        name = "b"
        tenant = "big"
        sha256 = "{}"
        [limits]
        requests_per_minute = 60
        burst = 2
        [limits.tenants.big]
        burst = 5
        "#,
        key("pk-a1"),
        key("pk-a2"),
        key("pk-b")
    ))
    .await;
    let send = |k: &'static str| {
        h.client
            .post(h.url("/v1/chat/completions"))
            .bearer_auth(k)
            .json(&chat("m", "hi"))
            .send()
    };
    let first = send("pk-a1").await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining-requests"], "1");
    assert!(first.headers().contains_key("x-ratelimit-reset-requests"));
    // The limit is the tenant's: another key of the same tenant shares it.
    assert_eq!(send("pk-a2").await.unwrap().status(), 200);
    let refused = send("pk-a1").await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=2).contains(&retry_after),
        "one request per second refills: {retry_after}"
    );
    assert_eq!(refused.headers()["x-ratelimit-remaining-requests"], "0");
    assert_eq!(refused.headers()["x-should-retry"], "true");
    let (_, code, body) = error_code(refused).await;
    assert_eq!(code, "rate_limited");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    // Another tenant with its own (larger) burst is unaffected.
    for _ in 0..5 {
        assert_eq!(send("pk-b").await.unwrap().status(), 200);
    }
    assert_eq!(send("pk-b").await.unwrap().status(), 429);
    assert_eq!(
        h.upstream.received().len(),
        7,
        "refused requests never reached the upstream"
    );
}

#[tokio::test]
async fn in_flight_and_stream_limits_hold_for_the_whole_stream() {
    let h = Harness::start(
        "[limits]\nmax_in_flight_per_key = 2\nmax_streams_per_key = 1\n[backends.main]\nbase_url = \"@UPSTREAM@\"",
    )
    .await;
    let mut body = chat("endless", "x");
    body["stream"] = json!(true);
    let resp = h.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    stream.next().await.unwrap().unwrap();

    // A second stream exceeds the stream limit...
    let (status, code, _) = h.post_error("/v1/chat/completions", body.clone()).await;
    assert_eq!((status, code.as_str()), (429, "concurrency_limited"));
    // ...a plain request still fits the in-flight limit of 2...
    let slow = tokio::spawn({
        let (client, url) = (h.client.clone(), h.url("/v1/chat/completions"));
        async move { client.post(url).json(&chat("slow-head", "x")).send().await }
    });
    eventually(
        || h.upstream.received().len() == 2,
        "second request in flight",
    )
    .await;
    // ...and a third request in flight does not.
    let (status, code, _) = h.post_error("/v1/chat/completions", chat("m", "hi")).await;
    assert_eq!((status, code.as_str()), (429, "concurrency_limited"));
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);

    drop(stream);
    // Both slots free when the relay notices the client left.
    let mut admitted = false;
    for _ in 0..100 {
        let resp = h.post("/v1/chat/completions", body.clone()).await;
        if resp.status() == 200 {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        admitted,
        "the stream slot was released after the stream ended"
    );
}

fn with_max_tokens(model: &str, text: &str, max_tokens: u64) -> Value {
    let mut body = chat(model, text);
    body["max_tokens"] = json!(max_tokens);
    body
}

#[tokio::test]
async fn token_budget_reserves_then_reconciles_with_upstream_usage() {
    let h = Harness::start(
        "[limits]\ntokens_per_minute = 100\n[policy]\ndisabled = true\n[backends.main]\nbase_url = \"@UPSTREAM@\"",
    )
    .await;
    // (Gates off: the canary they add to the system prompt would count.)
    // Prompt "hi": 1 token by the 4-chars rule + 4 for the message = 5;
    // reservation 5 + 50 = 55 of 100.
    let first = h
        .post("/v1/chat/completions", with_max_tokens("m", "hi", 50))
        .await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-tokens"], "100");
    assert_eq!(first.headers()["x-ratelimit-remaining-tokens"], "45");
    // The scripted upstream reports 4 + 1 = 5 tokens: the other 50 return.
    let second = h
        .post("/v1/chat/completions", with_max_tokens("m", "hi", 50))
        .await;
    assert_eq!(
        second.headers()["x-ratelimit-remaining-tokens"],
        "40",
        "100 - 5 spent - 55 reserved"
    );

    // A request that can never fit says so and names max_tokens.
    let (status, code, body) = h
        .post_error("/v1/chat/completions", with_max_tokens("m", "hi", 500))
        .await;
    assert_eq!((status, code.as_str()), (429, "tokens_exhausted"));
    assert_eq!(body["error"]["param"], "max_tokens");
}

#[tokio::test]
async fn concurrent_streams_cannot_overshoot_the_token_budget() {
    let h = Harness::start(
        "[limits]\ntokens_per_minute = 100\n[backends.main]\nbase_url = \"@UPSTREAM@\"",
    )
    .await;
    let mut open = with_max_tokens("endless", "x", 60);
    open["stream"] = json!(true);
    let resp = h.post("/v1/chat/completions", open.clone()).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    stream.next().await.unwrap().unwrap();
    // 65 tokens are reserved by the open stream: a second one does not fit.
    let refused = h.post("/v1/chat/completions", open).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let (_, code, _) = error_code(refused).await;
    assert_eq!(code, "tokens_exhausted");
    // Ending the stream reconciles it with what was really generated.
    drop(stream);
    let mut admitted = false;
    for _ in 0..100 {
        let resp = h
            .post("/v1/chat/completions", with_max_tokens("m", "hi", 10))
            .await;
        if resp.status() == 200 {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        admitted,
        "the reservation was released when the stream ended"
    );
}

#[tokio::test]
async fn stream_usage_is_requested_upstream_but_hidden_unless_asked() {
    let h = Harness::start(
        "[limits]\ntokens_per_minute = 10000\n[backends.main]\nbase_url = \"@UPSTREAM@\"",
    )
    .await;
    let mut body = chat("m", "a b c");
    body["stream"] = json!(true);
    let data = sse_data(h.post("/v1/chat/completions", body.clone()).await).await;
    assert!(
        data.iter().all(|d| !d.contains("\"usage\"")),
        "the client did not ask for usage: {data:?}"
    );
    assert_eq!(
        h.upstream.received()[0].body["stream_options"]["include_usage"],
        true,
        "the gateway asked the upstream for usage to reconcile the budget"
    );
    body["stream_options"] = json!({"include_usage": true});
    let data = sse_data(h.post("/v1/chat/completions", body).await).await;
    assert!(
        data.iter().any(|d| d.contains("\"usage\"")),
        "asked for, so relayed"
    );
}

/// Fairness: a heavy tenant (12 concurrent clients) and a light one (1
/// client, one request at a time) share a backend limited to 2 in flight,
/// where each request takes 50 ms. With FIFO the light tenant would wait
/// behind the heavy backlog (~6 service times); with VTC fair queueing it is
/// served within about two service times of arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_light_tenant_is_not_starved_by_a_heavy_one() {
    let h = Harness::start(&format!(
        "[[auth.keys]]\nname = \"h\"\ntenant = \"heavy\"\nsha256 = \"{}\"\n[[auth.keys]]\nname = \"l\"\ntenant = \"light\"\nsha256 = \"{}\"\n[backends.main]\nbase_url = \"@UPSTREAM@\"\nmax_in_flight = 2\nqueue_timeout_ms = 20000",
        key("pk-heavy"),
        key("pk-light")
    ))
    .await;
    let run_for = Duration::from_secs(4);
    let started = std::time::Instant::now();
    let worker = |k: &'static str| {
        let (client, url) = (h.client.clone(), h.url("/v1/chat/completions"));
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < run_for {
                let t = std::time::Instant::now();
                let resp = client
                    .post(&url)
                    .bearer_auth(k)
                    .json(&chat("delay-50", "x"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                latencies.push(t.elapsed());
            }
            latencies
        })
    };
    let heavy: Vec<_> = (0..12).map(|_| worker("pk-heavy")).collect();
    let light = worker("pk-light");
    let mut heavy_lat = Vec::new();
    for w in heavy {
        heavy_lat.extend(w.await.unwrap());
    }
    let mut light_lat = light.await.unwrap();
    heavy_lat.sort();
    light_lat.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    let p90 = |v: &[Duration]| v[v.len() * 9 / 10];
    let light_share = light_lat.len() as f64 / (light_lat.len() + heavy_lat.len()) as f64;
    eprintln!(
        "fairness: heavy {} requests, median {:?}, p90 {:?}; light {} requests, median {:?}, p90 {:?}; light share {:.1}%",
        heavy_lat.len(),
        median(&heavy_lat),
        p90(&heavy_lat),
        light_lat.len(),
        median(&light_lat),
        p90(&light_lat),
        light_share * 100.0
    );
    assert!(
        median(&heavy_lat) >= Duration::from_millis(200),
        "the backend really was saturated"
    );
    assert!(
        median(&light_lat) <= Duration::from_millis(150),
        "light tenant waited {:?} (bound: 3 service times)",
        median(&light_lat)
    );
    // One client at a time at ≤150 ms each is ≥ 6.6 requests/s of ~40/s.
    assert!(light_share >= 0.12, "light share {light_share:.3}");
}

#[tokio::test]
async fn repeat_offenders_are_warned_then_slowed_then_blocked() {
    let h = Harness::start(
        "[limits]\nrequests_per_minute = 60\nburst = 1\n[limits.escalation]\nwarn_at = 0.9\nslow_at = 2.5\nblock_at = 3.5\nslow_delay_ms = 300\nblock_secs = 60\n[backends.main]\nbase_url = \"@UPSTREAM@\"",
    )
    .await;
    let send = || h.post("/v1/chat/completions", chat("m", "hi"));
    assert_eq!(send().await.status(), 200);
    // First refusal: one point, the warning rung.
    let r = send().await;
    assert_eq!(r.status(), 429);
    assert!(!r.headers().contains_key("x-palisade-warning"));
    let r = send().await;
    assert_eq!(r.status(), 429);
    assert!(
        r.headers().contains_key("x-palisade-warning"),
        "warned after an offence"
    );
    assert_eq!(send().await.status(), 429); // third point: the slow rung
    let t = std::time::Instant::now();
    let r = send().await; // slowed, then refused: the fourth point blocks
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "slow rung adds its delay"
    );
    assert_eq!(r.status(), 429);
    let blocked = send().await;
    let retry: u64 = blocked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (55..=60).contains(&retry),
        "blocked for the configured minute: {retry}"
    );
    let (_, code, _) = error_code(blocked).await;
    assert_eq!(code, "blocked_offender");
}

#[tokio::test]
async fn adaptive_concurrency_backs_off_when_the_backend_slows_down() {
    let h = Harness::start(
        "[backends.main]\nbase_url = \"@UPSTREAM@\"\nmax_in_flight = 10\nadaptive_concurrency = true\nmin_in_flight = 2\ntarget_latency_ms = 30",
    )
    .await;
    for _ in 0..5 {
        assert_eq!(
            h.post("/v1/chat/completions", chat("delay-60", "x"))
                .await
                .status(),
            200
        );
    }
    let metrics = h
        .client
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let limit: f64 = metrics
        .lines()
        .find(|l| l.starts_with("palisade_backend_concurrency_limit{backend=\"main\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("limit gauge exported");
    // 10 → 9 → 8 → 7 → 6 → 5 after five slow heads.
    assert_eq!(limit, 5.0, "{limit}");
}

#[tokio::test]
async fn rates_per_key_and_per_model_apply_on_top_of_the_tenant() {
    let h = Harness::start(&format!(
        "[[auth.keys]]\nname = \"a1\"\ntenant = \"t\"\nsha256 = \"{}\"\n[[auth.keys]]\nname = \"a2\"\ntenant = \"t\"\nsha256 = \"{}\"\n[limits.keys.a1]\nrequests_per_minute = 60\nburst = 1\n[limits.models.scarce]\nrequests_per_minute = 60\nburst = 2\n[backends.main]\nbase_url = \"@UPSTREAM@\"\n[[routes]]\nmodel = \"scarce\"\nbackend = \"main\"\n[[routes]]\nmodel = \"*\"\nbackend = \"main\"",
        key("pk-a1"),
        key("pk-a2")
    ))
    .await;
    let send = |k: &'static str, model: &'static str| {
        h.client
            .post(h.url("/v1/chat/completions"))
            .bearer_auth(k)
            .json(&chat(model, "hi"))
            .send()
    };
    // Key a1 has its own limit of one at a time; a2 has none.
    assert_eq!(send("pk-a1", "m").await.unwrap().status(), 200);
    let (status, code, body) = error_code(send("pk-a1", "m").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("this key"));
    assert_eq!(send("pk-a2", "m").await.unwrap().status(), 200);
    // The scarce model admits two, whoever asks.
    assert_eq!(send("pk-a2", "scarce").await.unwrap().status(), 200);
    assert_eq!(send("pk-a2", "scarce").await.unwrap().status(), 200);
    let refused = send("pk-a2", "scarce").await.unwrap();
    assert_eq!(refused.headers()["x-ratelimit-remaining-requests"], "0");
    let (status, _, body) = error_code(refused).await;
    assert_eq!(status, 429);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("this model"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_backends_degrade_to_a_cheaper_model_or_fewer_tokens() {
    // With the response cache on: a degraded answer is never cached, so the
    // same request after the backend recovers gets the full answer.
    let h = Harness::start(
        r#"
        [cache]
        enabled = true
        [backends.main]
        base_url = "@UPSTREAM@"
        max_in_flight = 1
        first_byte_timeout_ms = 10000
        [backends.spare]
        base_url = "@UPSTREAM@"
        [[routes]]
        model = "big"
        backend = "main"
        upstream_model = "slow-head"
        overload_model = "small"
        [[routes]]
        model = "capped"
        backend = "main"
        overload_max_tokens = 5
        [[routes]]
        model = "small"
        backend = "spare"
    "#,
    )
    .await;
    // Occupy the only slot of `main` for ~2 s.
    let busy = tokio::spawn({
        let (client, url) = (h.client.clone(), h.url("/v1/chat/completions"));
        async move { client.post(url).json(&chat("big", "x")).send().await }
    });
    eventually(
        || h.upstream.received().len() == 1,
        "first request in flight",
    )
    .await;

    let rerouted = h
        .post("/v1/chat/completions", chat("big", "reroute me"))
        .await;
    assert_eq!(rerouted.status(), 200);
    assert_eq!(rerouted.headers()["x-palisade-degraded"], "routed to small");
    assert_eq!(h.upstream.received()[1].body["model"], "small");

    let capped = h
        .post("/v1/chat/completions", with_max_tokens("capped", "x", 100))
        .await;
    assert_eq!(
        capped.status(),
        200,
        "queued until the slot freed, then served"
    );
    assert_eq!(
        capped.headers()["x-palisade-degraded"],
        "max_tokens capped to 5"
    );
    assert_eq!(h.upstream.received()[2].body["max_tokens"], 5);
    assert_eq!(busy.await.unwrap().unwrap().status(), 200);

    // Not saturated: nothing is degraded, and the degraded answer to the
    // same request was not cached.
    let normal = h
        .post("/v1/chat/completions", with_max_tokens("capped", "x", 100))
        .await;
    assert!(!normal.headers().contains_key("x-palisade-degraded"));
    assert!(!normal.headers().contains_key("x-palisade-replay"));
    assert_eq!(h.upstream.received()[3].body["max_tokens"], 100);
}

#[tokio::test]
async fn a_failing_backend_trips_its_circuit_breaker_and_recovers() {
    let h = Harness::start(
        "[backends.main]\nbase_url = \"@UPSTREAM@\"\n[backends.main.circuit_breaker]\nerror_rate = 0.5\nwindow = 5\nmin_requests = 3\ncooldown_ms = 800",
    )
    .await;
    for _ in 0..3 {
        let (status, code, _) = h
            .post_error("/v1/chat/completions", chat("error-500", "x"))
            .await;
        assert_eq!((status, code.as_str()), (502, "upstream_error"));
    }
    let open = h.post("/v1/chat/completions", chat("m", "x")).await;
    assert_eq!(open.headers()["retry-after"], "1");
    let (status, code, _) = error_code(open).await;
    assert_eq!((status, code.as_str()), (503, "circuit_open"));
    assert_eq!(
        h.upstream.received().len(),
        3,
        "an open circuit spares the upstream"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    // One probe after the cooldown; it succeeds, so the circuit closes.
    assert_eq!(
        h.post("/v1/chat/completions", chat("m", "x"))
            .await
            .status(),
        200
    );
    assert_eq!(
        h.post("/v1/chat/completions", chat("m", "x"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_routes_tokenizer_json_counts_prompts_for_its_budget() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../palisade-openai/tests/fixtures/tiny-bpe.tokenizer.json"
    );
    let h = Harness::start(&format!(
        "[limits]\ntokens_per_minute = 100000\n[policy]\ndisabled = true\n[backends.main]\nbase_url = \"@UPSTREAM@\"\n[[routes]]\nmodel = \"hf\"\nbackend = \"main\"\ntokenizer = \"{fixture}\"\n[[routes]]\nmodel = \"plain\"\nbackend = \"main\""
    ))
    .await;
    let text = "pub fn estimate_prompt_tokens_with(fields: &Map<String, Value>) -> u64 { 0 }";
    let remaining = |resp: reqwest::Response| -> u64 {
        resp.headers()["x-ratelimit-remaining-tokens"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let body = with_max_tokens("hf", text, 10);
    let before = 100_000;
    let after_hf = remaining(h.post("/v1/chat/completions", body.clone()).await);
    let tokenizer =
        palisade_openai::usage::Tokenizer::from_json_bytes(&std::fs::read(fixture).unwrap())
            .unwrap();
    let expected =
        palisade_openai::usage::estimate_prompt_tokens_with(body.as_object().unwrap(), &tokenizer);
    assert_eq!(
        before - after_hf,
        expected + 10,
        "reserved with the route's tokenizer"
    );
    let approx = palisade_openai::usage::estimate_prompt_tokens_with(
        body.as_object().unwrap(),
        &palisade_openai::usage::Tokenizer::Approximate,
    );
    assert_ne!(
        expected, approx,
        "the fixture counts differently from the fallback"
    );
}

#[test]
fn a_bad_tokenizer_file_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("tokenizer.json");
    std::fs::write(&bad, "{\"not\": \"a tokenizer\"}").unwrap();
    let config = Config::load(&Sources {
        toml: Some(&format!(
            "[backends.main]\nbase_url = \"http://127.0.0.1:9/v1\"\n[[routes]]\nmodel = \"m\"\nbackend = \"main\"\ntokenizer = \"{}\"",
            bad.display()
        )),
        ..Sources::default()
    })
    .unwrap();
    let err = Gateway::with_env(config, |_| None).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}
