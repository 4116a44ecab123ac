//! Deployments, failover, fallbacks, safe retries, the retry budget and
//! residency, over real HTTP: a gateway on loopback in front of raw fake
//! deployments (testkit's `Deployment`) that can refuse, fail, drop a
//! request after reading it, or be killed mid-load. Gateway start-up and
//! record reading: `support`.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use palisade_testkit::{last_user_message, Deployment as Fake, DeploymentMode as Mode};
use serde_json::{json, Value};
use support::records::audit_records;
use support::{gateway, key_hash, post};

fn ok() -> Mode {
    Mode::Ok {
        delay: Duration::ZERO,
    }
}

fn status(status: u16, retry_after: Option<u64>) -> Mode {
    Mode::Status {
        status,
        body: json!({"error": {"message": "scripted", "type": "server_error", "code": null}})
            .to_string(),
        retry_after,
    }
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn a_dead_deployment_fails_over_and_the_response_names_the_server() {
    let b = Fake::start("b", ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let gw = gateway(&format!(
        r#"
        [ledger]
        url = "sqlite:{}"
        [backends.a]
        base_url = "{}"
        [backends.b]
        base_url = "{}"
        [[routes]]
        model = "m"
        deployments = [{{ backend = "a" }}, {{ backend = "b" }}]
        "#,
        db.display(),
        Fake::dead_url().await,
        b.base_url()
    ))
    .await;
    let mut via_retry = 0;
    for i in 0..20 {
        let r = post(
            &gw,
            "/v1/chat/completions",
            chat("m", &format!("q{i}")),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.backend.as_deref(), Some("b"));
        if r.attempts.as_deref() == Some("2") {
            via_retry += 1;
        }
    }
    assert!(
        via_retry >= 1,
        "some requests went to the dead deployment first"
    );
    assert_eq!(
        b.hits(),
        20,
        "each request reached the live deployment once"
    );
}

#[tokio::test]
async fn a_failure_after_the_body_was_sent_is_not_resent_unless_idempotent() {
    let a = Fake::start("a", Mode::DropAfterBody).await;
    let b = Fake::start("b", ok()).await;
    let gw = gateway(&format!(
        r#"
        [backends.a]
        base_url = "{}"
        [backends.b]
        base_url = "{}"
        [[routes]]
        model = "m"
        backend = "a"
        fallbacks = {{ default = ["backup"] }}
        [[routes]]
        model = "backup"
        backend = "b"
        "#,
        a.base_url(),
        b.base_url()
    ))
    .await;
    // Chat may act (tools): the dropped request is not sent again.
    let r = post(&gw, "/v1/chat/completions", chat("m", "once"), None).await;
    assert_eq!(r.status, 502, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "upstream_unavailable");
    assert_eq!(a.hits(), 1);
    assert_eq!(b.hits(), 0, "no duplicate at the fallback");
    // Embeddings have no side effect: the same failure falls back.
    let r = post(
        &gw,
        "/v1/embeddings",
        json!({"model": "m", "input": "x"}),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.backend.as_deref(), Some("b"));
    assert_eq!(
        b.received()[0]["model"],
        "backup",
        "the fallback's own name"
    );
}

#[tokio::test]
async fn upstream_refusals_fall_back_per_class_and_retry_after_is_honoured() {
    let a = Fake::start("a", status(503, None)).await;
    let b = Fake::start("b", ok()).await;
    let big = Fake::start("big", ok()).await;
    let gw = gateway(&format!(
        r#"
        [backends.a]
        base_url = "{}"
        [backends.b]
        base_url = "{}"
        [backends.big]
        base_url = "{}"
        [[routes]]
        model = "m"
        backend = "a"
        fallbacks = {{ default = ["backup"], context_length = ["long"] }}
        [[routes]]
        model = "backup"
        backend = "b"
        [[routes]]
        model = "long"
        backend = "big"
        upstream_model = "long-128k"
        [[routes]]
        model = "solo"
        backend = "a"
        retry = {{ max_attempts = 2 }}
        "#,
        a.base_url(),
        b.base_url(),
        big.base_url()
    ))
    .await;
    // 503: refused before any work, so even chat falls back.
    let r = post(&gw, "/v1/chat/completions", chat("m", "x"), None).await;
    assert_eq!((r.status, r.backend.as_deref()), (200, Some("b")));
    assert_eq!(r.attempts.as_deref(), Some("2"));
    // Context too long: the longer-context model, under its upstream name.
    a.set(Mode::Status {
        status: 400,
        body: json!({"error": {"message": "This model's maximum context length is 4096 tokens", "type": "invalid_request_error", "code": "context_length_exceeded"}}).to_string(),
        retry_after: None,
    });
    let r = post(&gw, "/v1/chat/completions", chat("m", "long"), None).await;
    assert_eq!((r.status, r.backend.as_deref()), (200, Some("big")));
    assert_eq!(big.received()[0]["model"], "long-128k");
    // Another 400 is the client's problem: passed through, body intact.
    a.set(Mode::Status {
        status: 400,
        body: json!({"error": {"message": "bad temperature", "type": "invalid_request_error", "code": "invalid_value"}}).to_string(),
        retry_after: None,
    });
    let r = post(&gw, "/v1/chat/completions", chat("m", "bad"), None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["message"], "bad temperature");
    assert_eq!(b.hits() + big.hits(), 2, "no fallback for an ordinary 400");
    // 429 with Retry-After on the only deployment: the retry waits for it.
    a.set(status(429, Some(1)));
    let before = a.hits();
    let r = post(&gw, "/v1/chat/completions", chat("solo", "wait"), None).await;
    assert_eq!(r.status, 429, "still limited: the last answer is relayed");
    let at = a.received_at();
    assert_eq!(at.len(), before + 2, "one retry");
    let gap = at[before + 1] - at[before];
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After honoured: {gap:?}"
    );
}

#[tokio::test]
async fn retries_never_amplify_an_outage_beyond_the_budget() {
    let a = Fake::start("a", status(503, None)).await;
    let b = Fake::start("b", status(503, None)).await;
    let gw = gateway(&format!(
        r#"
        [backends.a]
        base_url = "{}"
        retry_budget = {{ ratio = 0.1, reserve_per_sec = 0.0, cap = 5.0 }}
        passive_health = {{ consecutive_failures = 0 }}
        [backends.b]
        base_url = "{}"
        retry_budget = {{ ratio = 0.1, reserve_per_sec = 0.0, cap = 5.0 }}
        passive_health = {{ consecutive_failures = 0 }}
        [[routes]]
        model = "m"
        deployments = [{{ backend = "a" }}, {{ backend = "b" }}]
        retry = {{ max_attempts = 3, base_backoff_ms = 1, max_backoff_ms = 2 }}
        "#,
        a.base_url(),
        b.base_url()
    ))
    .await;
    let n = 200;
    for i in 0..n {
        let r = post(
            &gw,
            "/v1/chat/completions",
            chat("m", &format!("{i}")),
            None,
        )
        .await;
        // An upstream 5xx is relayed as 502 `upstream_error`.
        assert_eq!(r.status, 502, "{:?}", r.body);
    }
    let total = a.hits() + b.hits();
    // Without a budget: 3 × 200 = 600. With it: ≤ 10 % extra.
    assert!(total >= n, "{total}");
    assert!(total <= n + n / 10, "extra load {} > 10 %", total - n);
    assert!(total > n, "the budget allows some retries");
}

#[tokio::test]
async fn residency_never_sends_to_a_forbidden_healthy_deployment() {
    let eu = Fake::start("eu", status(503, None)).await;
    let us = Fake::start("us", ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let audit_db = dir.path().join("audit.db");
    let gw = gateway(&format!(
        r#"
        [policy]
        audit_url = "sqlite:{}"
        [[auth.keys]]
        name = "k"
        tenant = "acme"
        sha256 = "{}"
        [[auth.keys]]
        name = "other"
        tenant = "free"
        sha256 = "{}"
        [tenants.acme.residency]
        regions = ["eu"]
        [backends.eu]
        base_url = "{}"
        region = "eu"
        passive_health = {{ consecutive_failures = 3, ejection_ms = 60000 }}
        [backends.us]
        base_url = "{}"
        region = "us"
        [[routes]]
        model = "m"
        deployments = [{{ backend = "eu" }}, {{ backend = "us" }}]
        fallbacks = {{ default = ["backup"] }}
        [[routes]]
        model = "backup"
        backend = "us"
        "#,
        audit_db.display(),
        key_hash("pk-acme"),
        key_hash("pk-free"),
        eu.base_url(),
        us.base_url()
    ))
    .await;
    let mut codes = HashMap::new();
    for i in 0..12 {
        let r = post(
            &gw,
            "/v1/chat/completions",
            chat("m", &format!("{i}")),
            Some("pk-acme"),
        )
        .await;
        let code = r.body["error"]["code"].as_str().unwrap_or("ok").to_owned();
        assert_ne!(r.status, 200, "acme's data never reached us");
        *codes.entry(code).or_insert(0) += 1;
    }
    assert_eq!(
        us.hits(),
        0,
        "neither the us deployment nor the us fallback"
    );
    // Once the eu deployment is ejected, the refusal says why.
    assert!(
        codes.get("residency_unavailable").copied().unwrap_or(0) >= 1,
        "{codes:?}"
    );
    let r = post(&gw, "/v1/chat/completions", chat("m", "x"), Some("pk-acme")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["error"]["code"], "residency_unavailable");
    // Another tenant without a rule is served by us.
    let r = post(&gw, "/v1/chat/completions", chat("m", "x"), Some("pk-free")).await;
    assert_eq!((r.status, r.backend.as_deref()), (200, Some("us")));

    // The routing decisions are on the audit trail with the rule that
    // applied: refusals and give-ups for acme, never a move to `us`.
    let routing = audit_records(
        &audit_db,
        200,
        |r| r["gate"] == "routing",
        |routing| routing.iter().any(|r| r["action"] == "refuse"),
    )
    .await;
    let refusal = routing
        .iter()
        .find(|r| r["action"] == "refuse")
        .unwrap_or_else(|| panic!("no residency refusal audited: {routing:?}"));
    assert_eq!(refusal["reason_code"], "residency_unavailable");
    assert_eq!(refusal["tenant"], "acme");
    assert_eq!(refusal["route"], "m");
    assert!(
        refusal["rule"].as_str().unwrap().contains("eu"),
        "{refusal}"
    );
    assert!(refusal["policy_version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    assert!(
        routing
            .iter()
            .filter(|r| r["tenant"] == "acme")
            .all(|r| r["next"] != "us"),
        "{routing:?}"
    );
    assert!(
        routing
            .iter()
            .any(|r| r["action"] == "give_up" && r["failed"] == "eu"),
        "{routing:?}"
    );
}

#[tokio::test]
async fn a_deployment_killed_mid_load_loses_only_unsafe_requests_and_duplicates_none() {
    let slow = Mode::Ok {
        delay: Duration::from_millis(20),
    };
    let mut a = Fake::start("a", slow.clone()).await;
    let b = Fake::start("b", slow).await;
    let gw = gateway(&format!(
        r#"
        [backends.a]
        base_url = "{}"
        [backends.b]
        base_url = "{}"
        [[routes]]
        model = "m"
        deployments = [{{ backend = "a" }}, {{ backend = "b" }}]
        "#,
        a.base_url(),
        b.base_url()
    ))
    .await;
    let gw = std::sync::Arc::new(gw);
    let total = 240;
    let concurrency = 8;
    let (tx, mut rx) = tokio::sync::mpsc::channel(total);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (gw, tx, next) = (gw.clone(), tx.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    return;
                }
                let r = post(
                    &gw,
                    "/v1/chat/completions",
                    chat("m", &format!("req-{i}")),
                    None,
                )
                .await;
                let _ = tx.send((i, r.status)).await;
            }
        }));
    }
    drop(tx);
    let mut statuses = Vec::new();
    while let Some((i, s)) = rx.recv().await {
        statuses.push((i, s));
        if statuses.len() == total / 3 {
            a.kill();
        }
    }
    for w in workers {
        w.await.unwrap();
    }
    // Every request the upstreams received, by its text.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for body in a.received().into_iter().chain(b.received()) {
        let text = last_user_message(&body).unwrap_or("").to_owned();
        *seen.entry(text).or_insert(0) += 1;
    }
    let duplicates = seen.values().filter(|&&n| n > 1).count();
    assert_eq!(duplicates, 0, "no request reached the model twice");
    let failed = statuses.iter().filter(|(_, s)| *s != 200).count();
    // Only requests in flight at `a` when it died may fail: at most one
    // per client connection.
    assert!(failed <= concurrency, "{failed} failed");
    assert_eq!(statuses.len(), total);
    assert!(b.hits() > total / 2, "after the kill, b serves");
    eprintln!(
        "killed mid-load: {failed} of {total} failed, a received {}, b received {}",
        a.hits(),
        b.hits()
    );
}
