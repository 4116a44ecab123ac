//! Runtime API keys across replicas: two gateways share one key store (a
//! real SQLite file, or a real PostgreSQL server), a key created, limited,
//! expired, rotated or revoked through replica A takes effect on replica B
//! within the refresh interval, with no restart.

mod support;

use std::time::{Duration, Instant};

use palisade_gateway::RunningGateway;
use palisade_testkit::{PostgresServer, ScriptedUpstream};
use serde_json::{json, Value};
use support::gateway as start;

const ADMIN: &str = "sk-admin-test";
const REFRESH_MS: u64 = 200;
/// How long a change may take to reach the other replica: the refresh
/// interval plus slack for a loaded CI machine.
const BOUND: Duration = Duration::from_millis(REFRESH_MS + 2_800);

fn toml(ledger_url: &str, upstream: &str) -> String {
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(ADMIN.as_bytes()));
    format!(
        "[ledger]\nurl = \"{ledger_url}\"\n\
         [auth.runtime]\nenabled = true\nrefresh_ms = {REFRESH_MS}\nmax_keys_per_tenant = 3\n\
         [[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{hash}\"\nadmin = true\n\
         [backends.main]\nbase_url = \"{upstream}\""
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A chat completion with `key` for `model`: (status, error code).
async fn chat(gw: &RunningGateway, key: &str, model: &str) -> (u16, Option<String>) {
    let resp = client()
        .post(format!("http://{}/v1/chat/completions", gw.local_addr()))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().map(str::to_owned))
}

async fn admin(gw: &RunningGateway, method: &str, path: &str, body: Value) -> (u16, Value) {
    let url = format!("http://{}{path}", gw.local_addr());
    let req = match method {
        "GET" => client().get(url),
        "PATCH" => client().patch(url).json(&body),
        _ => client().post(url).json(&body),
    };
    let resp = req.bearer_auth(ADMIN).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Waits (bounded by [`BOUND`]) until `key` gets `want` from `gw`; returns
/// how long it took.
async fn until(gw: &RunningGateway, key: &str, model: &str, want: u16) -> Duration {
    let start = Instant::now();
    loop {
        let (status, code) = chat(gw, key, model).await;
        if status == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < BOUND,
            "still {status} {code:?} after {:?}, want {want}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn across_replicas(ledger_url: &str) {
    let upstream = ScriptedUpstream::start().await;
    let config = toml(ledger_url, &upstream.base_url());
    let a = start(&config).await;
    let b = start(&config).await;

    // Created on A, with an allowlist: works on B within the interval.
    let (status, created) = admin(
        &a,
        "POST",
        "/admin/keys",
        json!({"tenant": "acme", "name": "ci", "models": ["m"], "reason": "ticket-1"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(chat(&a, &key, "m").await.0, 200, "effective at once on A");
    until(&b, &key, "m", 200).await;
    assert_eq!(
        chat(&b, &key, "other").await,
        (403, Some("model_not_allowed".into()))
    );

    // The list shows it, without secret or hash.
    let (_, list) = admin(&b, "GET", "/admin/keys?tenant=acme", Value::Null).await;
    let text = list.to_string();
    assert_eq!(list["keys"].as_array().unwrap().len(), 1, "{text}");
    assert!(!text.contains(&key) && !text.contains("sha256"), "{text}");

    // Widened on B (PATCH), expired on A: B answers key_expired.
    let (status, _) = admin(
        &b,
        "PATCH",
        &format!("/admin/keys/{id}"),
        json!({"models": null}),
    )
    .await;
    assert_eq!(status, 200);
    until(&a, &key, "other", 200).await;
    let (status, _) = admin(
        &a,
        "POST",
        &format!("/admin/keys/{id}"),
        json!({"expires_at_ms": 1}),
    )
    .await;
    assert_eq!(status, 200);
    until(&b, &key, "m", 401).await;
    assert_eq!(chat(&b, &key, "m").await.1.as_deref(), Some("key_expired"));
    let (status, _) = admin(
        &a,
        "PATCH",
        &format!("/admin/keys/{id}"),
        json!({"expires_at_ms": null}),
    )
    .await;
    assert_eq!(status, 200);
    until(&b, &key, "m", 200).await;

    // Rotated on A with an overlap: both secrets work on B, then the old
    // one stops once the overlap ends.
    let (status, rotated) = admin(
        &a,
        "POST",
        &format!("/admin/keys/{id}/rotate"),
        json!({"overlap_s": 1}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    until(&b, &new_key, "m", 200).await;
    let overlap_started = Instant::now();
    until(&b, &key, "m", 401).await;
    assert!(
        overlap_started.elapsed() < Duration::from_secs(1) + BOUND,
        "the old secret outlived its overlap"
    );
    assert_eq!(
        chat(&b, &key, "m").await.1.as_deref(),
        Some("invalid_api_key")
    );

    // Revoked on A: refused on B within the interval, as an unknown key.
    let (status, _) = admin(
        &a,
        "POST",
        &format!("/admin/keys/{id}/revoke"),
        json!({"reason": "leaked"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(chat(&a, &new_key, "m").await.0, 401, "at once on A");
    let took = until(&b, &new_key, "m", 401).await;
    assert!(took < BOUND, "revocation reached B in {took:?}");
    assert_eq!(
        chat(&b, &new_key, "m").await.1.as_deref(),
        Some("invalid_api_key")
    );
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_shared_by_two_replicas() {
    let dir = tempfile::tempdir().unwrap();
    across_replicas(&format!("sqlite:{}", dir.path().join("keys.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shared_by_two_replicas() {
    let pg = PostgresServer::start();
    across_replicas(&pg.url()).await;
}

/// A replica that starts after keys were created knows them before it
/// takes traffic (the first load happens in `start`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_starts_with_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = ScriptedUpstream::start().await;
    let config = toml(
        &format!("sqlite:{}", dir.path().join("keys.db").display()),
        &upstream.base_url(),
    );
    let a = start(&config).await;
    let (_, created) = admin(
        &a,
        "POST",
        "/admin/keys",
        json!({"tenant": "t", "name": "n"}),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let b = start(&config).await;
    assert_eq!(chat(&b, &key, "m").await.0, 200);
    a.shutdown();
    b.shutdown();
}
