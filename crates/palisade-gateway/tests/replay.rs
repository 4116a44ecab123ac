//! Idempotency keys and the response cache through the gateway, against a
//! scripted upstream that counts what reaches it and a real SQLite ledger
//! and audit store.

mod support;

use std::time::Duration;

use palisade_gateway::RunningGateway;
use palisade_ledger::{AuditFilter, Ledger, WriteOptions};
use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};
use sha2::Digest;

const KEY_A: &str = "sk-tenant-a-0123456789abcdef";
const KEY_A2: &str = "sk-tenant-a-second-0123456789";
const KEY_B: &str = "sk-tenant-b-0123456789abcdef";

fn keys() -> String {
    let hash = |k: &str| hex::encode(sha2::Sha256::digest(k.as_bytes()));
    format!(
        "[[auth.keys]]\nname = \"a\"\ntenant = \"a\"\nsha256 = \"{}\"\n\
         [[auth.keys]]\nname = \"a2\"\ntenant = \"a\"\nsha256 = \"{}\"\n\
         [[auth.keys]]\nname = \"b\"\ntenant = \"b\"\nsha256 = \"{}\"\n",
        hash(KEY_A),
        hash(KEY_A2),
        hash(KEY_B)
    )
}

struct H {
    upstream: ScriptedUpstream,
    gw: RunningGateway,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
}

impl H {
    async fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let upstream = ScriptedUpstream::start().await;
        let toml = format!(
            "{}[ledger]\nurl = \"sqlite:{}\"\n[policy]\naudit_url = \"sqlite:{}\"\n{extra}\n[backends.main]\nbase_url = \"{}\"\n",
            keys(),
            db.display(),
            db.display(),
            upstream.base_url()
        );
        let gw = support::gateway(&toml).await;
        Self {
            upstream,
            gw,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            _dir: dir,
            db,
        }
    }

    async fn send(&self, key: &str, idem: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!(
                "http://{}/v1/chat/completions",
                self.gw.local_addr()
            ))
            .bearer_auth(key)
            .json(body);
        if let Some(k) = idem {
            req = req.header("idempotency-key", k);
        }
        req.send().await.unwrap()
    }

    /// Status, `x-palisade-replay`, body bytes.
    async fn call(&self, key: &str, idem: Option<&str>, body: &Value) -> (u16, String, Vec<u8>) {
        let resp = self.send(key, idem, body).await;
        let status = resp.status().as_u16();
        let replay = resp
            .headers()
            .get("x-palisade-replay")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, replay, resp.bytes().await.unwrap().to_vec())
    }

    fn hits(&self) -> usize {
        self.upstream.received().len()
    }

    async fn ledger(&self) -> Ledger {
        Ledger::open(
            &format!("sqlite:{}", self.db.display()),
            WriteOptions::default(),
        )
        .await
        .unwrap()
    }

    async fn ledger_rows(&self) -> usize {
        let mut out = Vec::new();
        self.ledger().await.export_jsonl(&mut out).await.unwrap();
        String::from_utf8(out).unwrap().lines().count()
    }
}

fn chat(text: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]})
}

fn chat_stream(text: &str) -> Value {
    json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_replays_are_byte_identical_reach_the_upstream_once_and_bill_once() {
    let h = H::new("").await;
    // Whole body.
    let (s1, r1, first) = h.call(KEY_A, Some("k-1"), &chat("one two three")).await;
    assert_eq!((s1, r1.as_str()), (200, ""));
    // Key order and spacing do not make another request.
    let reordered: Value = serde_json::from_str(
        r#"{"messages":[{"content":"one two three","role":"user"}],  "model":"m"}"#,
    )
    .unwrap();
    let (s2, r2, again) = h.call(KEY_A, Some("k-1"), &reordered).await;
    assert_eq!((s2, r2.as_str()), (200, "idempotency"));
    assert_eq!(first, again, "byte-identical replay");
    assert_eq!(h.hits(), 1);

    // A stream: the relayed events, replayed with the same framing.
    let (s1, _, first) = h
        .call(KEY_A, Some("k-2"), &chat_stream("four five six"))
        .await;
    assert_eq!(s1, 200);
    assert!(first.ends_with(b"data: [DONE]\n\n"));
    let resp = h
        .send(KEY_A, Some("k-2"), &chat_stream("four five six"))
        .await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-palisade-replay"], "idempotency");
    assert_eq!(
        resp.bytes().await.unwrap().to_vec(),
        first,
        "byte-identical stream"
    );
    assert_eq!(h.hits(), 2);

    // Billed once: one ledger row per original, none for the replays.
    assert_eq!(h.ledger_rows().await, 2);
    // Each replay is audited as one, pointing at its original.
    let ledger = h.ledger().await;
    let mut replays = Vec::new();
    for _ in 0..100 {
        replays = ledger
            .audit_tail(100, &AuditFilter::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.contains("replay:idempotency"))
            .collect();
        if replays.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(replays.len(), 2, "{replays:?}");
    assert!(replays.iter().all(|r| r.contains("replay_of:")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_while_running_is_409_and_another_body_is_422() {
    let h = H::new("").await;
    let slow = json!({"model": "delay-1500", "messages": [{"role": "user", "content": "slow"}]});
    let first = {
        let req = h
            .http
            .post(format!("http://{}/v1/chat/completions", h.gw.local_addr()))
            .bearer_auth(KEY_A)
            .header("idempotency-key", "k")
            .json(&slow);
        tokio::spawn(async move { req.send().await.unwrap().bytes().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = h.send(KEY_A, Some("k"), &slow).await;
    assert_eq!(resp.status(), 409);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "a poll interval: {retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "idempotency_in_flight");
    // Another body under the same key: 422, while running and after.
    let (status, _, body) = h.call(KEY_A, Some("k"), &chat("something else")).await;
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    let first = first.await.unwrap();
    let (status, replay, again) = h.call(KEY_A, Some("k"), &slow).await;
    assert_eq!((status, replay.as_str()), (200, "idempotency"));
    assert_eq!(again, first.to_vec());
    let (status, _, body) = h.call(KEY_A, Some("k"), &chat("something else")).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!(h.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_scoped_to_tenant_and_api_key_and_failures_release_them() {
    let h = H::new("").await;
    let body = chat("same words");
    let (_, _, a) = h.call(KEY_A, Some("shared"), &body).await;
    // Tenant B, same key, same body: its own request, its own outcome.
    let (status, replay, _) = h.call(KEY_B, Some("shared"), &body).await;
    assert_eq!((status, replay.as_str()), (200, ""));
    // Another API key of tenant A does not share it either.
    let (status, replay, _) = h.call(KEY_A2, Some("shared"), &body).await;
    assert_eq!((status, replay.as_str()), (200, ""));
    assert_eq!(h.hits(), 3);
    let (_, replay, again) = h.call(KEY_A, Some("shared"), &body).await;
    assert_eq!((replay.as_str(), again), ("idempotency", a));

    // An upstream failure is not stored: the retry runs again.
    let failing = json!({"model": "error-500", "messages": [{"role": "user", "content": "x"}]});
    let (status, _, _) = h.call(KEY_A, Some("fails"), &failing).await;
    assert_eq!(status, 502);
    let (status, replay, _) = h.call(KEY_A, Some("fails"), &failing).await;
    assert_eq!((status, replay.as_str()), (502, ""));
    assert_eq!(h.hits(), 5);
    // A malformed key is refused before anything runs.
    let (status, _, _) = h.call(KEY_A, Some(&"x".repeat(300)), &body).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unique_keys_stays_within_the_tenants_quota() {
    let h = H::new("[idempotency]\nmax_entries_per_tenant = 8\nmax_bytes_per_tenant = 65536\nmax_entry_bytes = 8192").await;
    let (_, _, b) = h.call(KEY_B, Some("keep"), &chat("b's request")).await;
    for i in 0..40 {
        let (status, _, _) = h.call(KEY_A, Some(&format!("flood-{i}")), &chat("x")).await;
        assert_eq!(status, 200);
    }
    // A's oldest keys were evicted (its repeat runs again) ...
    let before = h.hits();
    let (_, replay, _) = h.call(KEY_A, Some("flood-0"), &chat("x")).await;
    assert_eq!((replay.as_str(), h.hits()), ("", before + 1));
    // ... its newest are kept, and B's entry was never touched.
    let (_, replay, _) = h.call(KEY_A, Some("flood-39"), &chat("x")).await;
    assert_eq!(replay, "idempotency");
    let (_, replay, again) = h.call(KEY_B, Some("keep"), &chat("b's request")).await;
    assert_eq!((replay.as_str(), again), ("idempotency", b));
    assert_eq!(h.hits(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_skip_the_upstream_and_never_cross_tenants_or_policy_versions() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, palisade_policy::BUILTIN_TOML).unwrap();
    let h = H::new(&format!(
        "file = \"{}\"\nreload_interval_ms = 50\n[cache]\nenabled = true",
        policy.display()
    ))
    .await;
    let body = chat("What is the capital of France?");
    let (_, replay, first) = h.call(KEY_A, None, &body).await;
    assert_eq!(replay, "");
    let (_, replay, again) = h.call(KEY_A, None, &body).await;
    assert_eq!((replay.as_str(), &again), ("cache", &first));
    // Another key of the same tenant shares the tenant's cache.
    let (_, replay, _) = h.call(KEY_A2, None, &body).await;
    assert_eq!(replay, "cache");
    assert_eq!(h.hits(), 1);
    // Another tenant never gets A's entry.
    let (_, replay, _) = h.call(KEY_B, None, &body).await;
    assert_eq!(replay, "");
    assert_eq!(h.hits(), 2);
    // Streams are cached as streams, apart from whole bodies.
    let (_, replay, s1) = h
        .call(KEY_A, None, &chat_stream("What is the capital of France?"))
        .await;
    assert_eq!(replay, "");
    let (_, replay, s2) = h
        .call(KEY_A, None, &chat_stream("What is the capital of France?"))
        .await;
    assert_eq!((replay.as_str(), &s2), ("cache", &s1));
    assert_eq!(h.hits(), 3);
    // No ledger row for a hit.
    assert_eq!(h.ledger_rows().await, 3);

    // A new policy version misses.
    std::fs::write(
        &policy,
        palisade_policy::BUILTIN_TOML.replace(
            "injection = { threshold = 0.9703, action = \"block\" }",
            "injection = { threshold = 0.9703, action = \"flag\" }",
        ),
    )
    .unwrap();
    let mut missed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, replay, _) = h.call(KEY_A, None, &body).await;
        if replay.is_empty() {
            missed = true;
            break;
        }
    }
    assert!(
        missed,
        "a new policy version must not be served the old one's entry"
    );
}
