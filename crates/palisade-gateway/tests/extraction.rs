//! The extraction defence through the real gateway, against upstreams on
//! loopback: parameter hardening on hostile body shapes (escaped and
//! duplicate keys, probes nested in `extra_body`), what the upstream
//! receives byte for byte, the audit records, and the ladder end to end: a
//! key that sends extractor-shaped traffic is blocked with a stable code and
//! `Retry-After` while a benign key is served, the SQLite telemetry store
//! holds hashes (never text), and a restart keeps the block.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_gateway::RunningGateway;
use serde_json::{json, Value};
use support::extraction::{random_query, FAST_LADDER};
use support::{gateway as start, key_hash};

const KEY_ATTACKER: &str = "sk-extract-attacker-0123456789";
const KEY_BENIGN: &str = "sk-extract-benign-0123456789ab";
const KEY_TRUSTED: &str = "sk-extract-trusted-0123456789a";

fn keys() -> String {
    format!(
        "[[auth.keys]]\nname = \"attacker\"\ntenant = \"shop\"\nsha256 = \"{}\"\n\
         [[auth.keys]]\nname = \"benign\"\ntenant = \"shop\"\nsha256 = \"{}\"\n\
         [[auth.keys]]\nname = \"lab\"\ntenant = \"research\"\nsha256 = \"{}\"\n",
        key_hash(KEY_ATTACKER),
        key_hash(KEY_BENIGN),
        key_hash(KEY_TRUSTED)
    )
}

/// An upstream that records each request body's raw bytes and answers with
/// a fixed chat completion.
struct RawUpstream {
    url: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RawUpstream {
    async fn start() -> Self {
        let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let sink = bodies.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(body.to_vec());
                    axum::Json(json!({
                        "id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                        "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "Sure."}}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
                    }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, bodies }
    }

    fn bodies(&self) -> Vec<Vec<u8>> {
        self.bodies.lock().unwrap().clone()
    }
}

struct Harness {
    upstream: RawUpstream,
    gw: RunningGateway,
    http: reqwest::Client,
}

impl Harness {
    async fn new(extra: &str) -> Self {
        let upstream = RawUpstream::start().await;
        let gw = start(&format!(
            "{}[backends.main]\nbase_url = \"{}\"\n[extraction.tenant_tiers]\nresearch = \"open\"\n{extra}",
            keys(),
            upstream.url
        ))
        .await;
        Self {
            upstream,
            gw,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    /// Posts raw bytes (so hostile JSON shapes reach the gateway unchanged).
    async fn post(&self, key: &str, raw: &str) -> (u16, Option<String>, Value) {
        let resp = self
            .http
            .post(format!(
                "http://{}/v1/chat/completions",
                self.gw.local_addr()
            ))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(raw.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, retry, body)
    }
}

const MSG: &str =
    r#""model": "m", "messages": [{"role": "user", "content": "The capital of France is"}]"#;

#[tokio::test]
async fn hostile_parameter_shapes_are_refused_or_stripped() {
    let h = Harness::new("").await;
    // (body, expected status, refused param)
    let refused = [
        (
            format!(r#"{{{MSG}, "logprobs": true, "logit_bias": {{"42": 100}}}}"#),
            "logit_bias",
        ),
        // The key spelled with a unicode escape decodes to `logit_bias`.
        (
            format!(r#"{{{MSG}, "top_logprobs": 2, "logit\u005fbias": {{"42": 100}}}}"#),
            "logit_bias",
        ),
        // Logprobs asked for inside extra_body, bias at the top.
        (
            format!(
                r#"{{{MSG}, "extra_body": {{"logprobs": true}}, "logit_bias": {{"42": 100}}}}"#
            ),
            "logit_bias",
        ),
        // The bias nested where an SDK would merge it.
        (
            format!(
                r#"{{{MSG}, "logprobs": true, "extra_body": {{"logit_bias": {{"42": 100}}}}}}"#
            ),
            "extra_body.logit_bias",
        ),
        (format!(r#"{{{MSG}, "logprobs": 1, "echo": true}}"#), "echo"),
        (
            format!(r#"{{{MSG}, "prompt_logprobs": 5}}"#),
            "prompt_logprobs",
        ),
    ];
    for (raw, param) in &refused {
        let (status, _, body) = h.post(KEY_BENIGN, raw).await;
        assert_eq!(status, 400, "{raw}: {body}");
        assert_eq!(body["error"]["code"], "logprob_probe_refused", "{raw}");
        assert_eq!(body["error"]["param"], *param, "{raw}");
    }
    assert!(
        h.upstream.bodies().is_empty(),
        "nothing refused went upstream"
    );

    // Stripped and capped: served, and the upstream sees the hardened body.
    let (status, _, _) = h
        .post(
            KEY_BENIGN,
            &format!(r#"{{{MSG}, "logprobs": true, "top_logprobs": 20, "n_probs": 10, "extra_body": {{"allowed_token_ids": [1, 2], "post_sampling_probs": true}}}}"#),
        )
        .await;
    assert_eq!(status, 200);
    let sent: Value = serde_json::from_slice(h.upstream.bodies().last().unwrap()).unwrap();
    assert_eq!(sent["top_logprobs"], 5);
    assert!(sent.get("n_probs").is_none(), "{sent}");
    assert_eq!(sent["extra_body"], json!({}), "{sent}");

    // Duplicate keys: the gateway judged the last `logprobs` (false), so the
    // upstream must receive exactly that, never the client's first `true`.
    let (status, _, _) = h
        .post(
            KEY_BENIGN,
            &format!(
                r#"{{{MSG}, "logprobs": true, "logit_bias": {{"42": 100}}, "logprobs": false}}"#
            ),
        )
        .await;
    assert_eq!(status, 200);
    let raw = String::from_utf8(h.upstream.bodies().last().unwrap().clone()).unwrap();
    assert_eq!(raw.matches("\"logprobs\"").count(), 1, "{raw}");
    assert!(raw.contains("\"logprobs\":false"), "{raw}");

    // The open tier forwards everything.
    let raw =
        format!(r#"{{{MSG}, "logprobs": true, "top_logprobs": 20, "logit_bias": {{"42": 100}}}}"#);
    let (status, _, _) = h.post(KEY_TRUSTED, &raw).await;
    assert_eq!(status, 200);
    let sent: Value = serde_json::from_slice(h.upstream.bodies().last().unwrap()).unwrap();
    assert_eq!(sent["top_logprobs"], 20);
    assert_eq!(sent["logit_bias"], json!({"42": 100}));
}

#[tokio::test]
async fn every_refusal_and_strip_is_audited_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let h = Harness::new(&format!(
        "[policy]\naudit_url = \"sqlite:{}\"\n",
        db.display()
    ))
    .await;
    let (status, _, _) = h
        .post(
            KEY_BENIGN,
            &format!(r#"{{{MSG}, "logprobs": true, "logit_bias": {{"42": 100}}}}"#),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _, _) = h
        .post(
            KEY_BENIGN,
            &format!(r#"{{{MSG}, "logprobs": true, "top_logprobs": 9}}"#),
        )
        .await;
    assert_eq!(status, 200);
    let ledger = palisade_ledger::Ledger::open(
        &format!("sqlite:{}", db.display()),
        palisade_ledger::WriteOptions::default(),
    )
    .await
    .unwrap();
    let mut probes: Vec<Value> = Vec::new();
    for _ in 0..100 {
        let rows = ledger
            .audit_tail(50, &palisade_ledger::AuditFilter::default())
            .await
            .unwrap();
        probes = rows
            .iter()
            .map(|r| serde_json::from_str::<Value>(r).unwrap())
            .filter(|r| r.to_string().contains("logprob_probe_refused:"))
            .collect();
        if probes.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(probes.len(), 2, "{probes:?}");
    let reasons: Vec<String> = probes
        .iter()
        .map(|r| {
            r["evidence"]["detector_reasons"][0]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(reasons.contains(&"logprob_probe_refused:logit_bias_with_logprobs".to_owned()));
    assert!(reasons.contains(&"logprob_probe_refused:top_logprobs_capped".to_owned()));
    let actions: Vec<&str> = probes
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"block") && actions.contains(&"redact"),
        "{actions:?}"
    );
    assert!(probes
        .iter()
        .all(|r| r["tier"] == "hardened" && r["tenant"] == "shop"));
}

const BENIGN: [&str; 8] = [
    "How do I reset my password on the shop's website?",
    "What is your return policy for shoes that do not fit?",
    "Can you recommend a waterproof jacket for hiking in the rain?",
    "Where is my order? It was supposed to arrive on Monday.",
    "Do you ship to Canada and how long does it take?",
    "Is the blue backpack available in a larger size?",
    "How do I apply a discount code at checkout?",
    "What is the difference between the two running shoe models?",
];

fn chat(text: &str) -> String {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]}).to_string()
}

#[tokio::test]
async fn an_extractor_key_climbs_the_ladder_to_a_block_and_a_benign_key_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("extraction.db");
    let extra = format!(
        "{FAST_LADDER}[extraction]\nstore = \"sqlite:{}\"\n",
        store.display()
    );
    let h = Harness::new(&extra).await;
    let mut blocked = None;
    // Bounded: the fast ladder blocks after ~40 requests; allow 300.
    for i in 0..300u64 {
        let (status, retry, body) = h.post(KEY_ATTACKER, &chat(&random_query(i))).await;
        if status != 200 {
            blocked = Some((i, status, retry, body));
            break;
        }
        // The benign key interleaves its own, natural traffic.
        let (status, _, body) = h
            .post(KEY_BENIGN, &chat(BENIGN[i as usize % BENIGN.len()]))
            .await;
        assert_eq!(status, 200, "benign request {i} refused: {body}");
    }
    let (at, status, retry, body) = blocked.expect("the extractor key was never refused");
    assert!(at >= 16, "refused before a window filled: {at}");
    assert!(status == 429 || status == 403, "{status} {body}");
    let code = body["error"]["code"].as_str().unwrap();
    assert!(
        code == "extraction_blocked" || code == "extraction_reverify_required",
        "{body}"
    );
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!(secs >= 1);

    // The store has the key's standing and hashed features, never the text.
    let conn = rusqlite::Connection::open(&store).unwrap();
    let mut action = String::new();
    for _ in 0..100 {
        action = conn
            .query_row(
                "SELECT action FROM extraction_standings WHERE key = 'shop/attacker'",
                [],
                |r| r.get(0),
            )
            .unwrap_or_default();
        if action == "block" || action == "reverify" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(action == "block" || action == "reverify", "{action}");
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM extraction_requests", [], |r| r.get(0))
        .unwrap();
    assert!(rows >= 16, "{rows}");
    let dump: Vec<u8> = std::fs::read(&store).unwrap();
    let needle = random_query(0);
    assert!(
        !dump.windows(12).any(|w| w == &needle.as_bytes()[..12]),
        "prompt text reached the store"
    );
    drop(h);

    // A restart on the same store keeps the key refused from its first request.
    let h = Harness::new(&extra).await;
    let (status, _, body) = h.post(KEY_ATTACKER, &chat("hello there")).await;
    assert!(status == 429 || status == 403, "{status} {body}");
    let (status, _, _) = h.post(KEY_BENIGN, &chat(BENIGN[0])).await;
    assert_eq!(status, 200);
}
