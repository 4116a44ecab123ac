//! Hedged requests over real HTTP: a gateway on loopback in front of raw
//! fake deployments (testkit's `Deployment`) that answer after a scripted
//! delay and notice when the gateway closes the connection (a cancelled
//! attempt). Gateway start-up and record reading: `support`.

mod support;

use std::time::Duration;

use palisade_testkit::{Deployment as Fake, DeploymentMode as Mode};
use serde_json::{json, Value};
use support::records::audit_records;
use support::{eventually, gateway, key_hash, metrics, post};

const SLOW: Duration = Duration::from_millis(1_500);

fn after(ms: u64) -> Mode {
    Mode::Ok {
        delay: Duration::from_millis(ms),
    }
}

fn chat(text: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]})
}

/// A route over a slow and a fast deployment, hedged after 50 ms.
fn two_deployments(slow: &Fake, fast: &Fake, route_extra: &str, backend_extra: &str) -> String {
    format!(
        r#"
        [backends.slow]
        base_url = "{}"
        {backend_extra}
        [backends.fast]
        base_url = "{}"
        {backend_extra}
        [[routes]]
        model = "m"
        deployments = [{{ backend = "slow" }}, {{ backend = "fast" }}]
        hedge = {{ after_ms = 50 }}
        {route_extra}
        "#,
        slow.base_url(),
        fast.base_url()
    )
}

#[tokio::test]
async fn a_slow_deployment_is_hedged_the_fast_one_wins_and_the_loser_is_cancelled() {
    let slow = Fake::start("slow", after(SLOW.as_millis() as u64)).await;
    let fast = Fake::start("fast", after(0)).await;
    let gw = gateway(&two_deployments(&slow, &fast, "idempotent = true", "")).await;
    let n = 12;
    let mut hedged = 0;
    for i in 0..n {
        let r = post(&gw, "/v1/chat/completions", chat(&format!("q{i}")), None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.backend.as_deref(), Some("fast"), "the winner is named");
        assert!(
            r.body["choices"][0]["message"]["content"]
                .as_str()
                .is_some_and(|c| c.starts_with("fast:")),
            "{:?}",
            r.body
        );
        // Liveness only (a shared machine): never the slow deployment's time.
        assert!(r.took < SLOW, "took {:?}", r.took);
        if r.hedged {
            hedged += 1;
            assert_eq!(r.attempts.as_deref(), Some("2"), "the hedge is an attempt");
        }
    }
    assert!(
        hedged >= 1,
        "some requests went to the slow deployment first"
    );
    assert_eq!(
        fast.hits(),
        n,
        "each request reached the fast deployment once"
    );
    assert_eq!(
        slow.hits(),
        hedged,
        "only hedged requests reached the slow one"
    );
    // Every attempt at the slow deployment was cancelled: its connection
    // closed before it answered.
    eventually("the losers' connections close", || {
        slow.cancelled() == slow.hits()
    })
    .await;
    let m = metrics(&gw).await;
    assert!(
        m.contains(r#"palisade_hedge_total{route="m",outcome="lost"}"#)
            || m.contains(r#"palisade_hedge_total{route="m",outcome="won"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"palisade_routing_attempts_total{backend="slow",outcome="hedge_lost"}"#),
        "the loser is counted"
    );
}

#[tokio::test]
async fn a_route_that_is_not_idempotent_never_hedges_chat_but_hedges_embeddings() {
    let slow = Fake::start("slow", after(400)).await;
    let fast = Fake::start("fast", after(400)).await;
    let gw = gateway(&two_deployments(&slow, &fast, "", "")).await;
    let n = 4;
    for i in 0..n {
        let r = post(&gw, "/v1/chat/completions", chat(&format!("q{i}")), None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert!(!r.hedged);
    }
    assert_eq!(slow.hits() + fast.hits(), n, "chat may act: sent once each");
    // Embeddings have no side effect: hedged on the same route.
    let r = post(
        &gw,
        "/v1/embeddings",
        json!({"model": "m", "input": "x"}),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.hedged, "an embedding past the delay is hedged");
    assert_eq!(slow.hits() + fast.hits(), n + 2);
    let m = metrics(&gw).await;
    assert!(
        m.contains(r#"palisade_hedge_total{route="m",outcome="ineligible"}"#),
        "{m}"
    );
}

#[tokio::test]
async fn streamed_requests_are_not_hedged() {
    let slow = Fake::start("slow", after(400)).await;
    let fast = Fake::start("fast", after(400)).await;
    let gw = gateway(&two_deployments(&slow, &fast, "idempotent = true", "")).await;
    let n = 4;
    for i in 0..n {
        let mut body = chat(&format!("q{i}"));
        body["stream"] = json!(true);
        let r = post(&gw, "/v1/chat/completions", body, None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert!(!r.hedged);
    }
    assert_eq!(
        slow.hits() + fast.hits(),
        n,
        "a stream goes to one deployment"
    );
}

#[tokio::test]
async fn no_hedge_once_the_retry_budget_is_spent() {
    let slow = Fake::start("slow", after(300)).await;
    let fast = Fake::start("fast", after(300)).await;
    // No reserve, no cap: the budget never holds a whole token.
    let gw = gateway(&two_deployments(
        &slow,
        &fast,
        "idempotent = true",
        "retry_budget = { ratio = 0.0, reserve_per_sec = 0.0, cap = 0.0 }",
    ))
    .await;
    let n = 4;
    for i in 0..n {
        let r = post(&gw, "/v1/chat/completions", chat(&format!("q{i}")), None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert!(!r.hedged);
    }
    assert_eq!(slow.hits() + fast.hits(), n, "no extra load");
    let m = metrics(&gw).await;
    assert!(
        m.contains(r#"palisade_hedge_total{route="m",outcome="skipped_budget"} 4"#),
        "{m}"
    );
}

#[tokio::test]
async fn residency_that_forbids_the_other_deployment_means_no_hedge() {
    let eu = Fake::start("eu", after(300)).await;
    let us = Fake::start("us", after(0)).await;
    let gw = gateway(&format!(
        r#"
        [[auth.keys]]
        name = "k"
        tenant = "acme"
        sha256 = "{}"
        [tenants.acme.residency]
        regions = ["eu"]
        [backends.eu]
        base_url = "{}"
        region = "eu"
        [backends.us]
        base_url = "{}"
        region = "us"
        [[routes]]
        model = "m"
        idempotent = true
        deployments = [{{ backend = "eu" }}, {{ backend = "us" }}]
        hedge = {{ after_ms = 20 }}
        "#,
        key_hash("pk-acme"),
        eu.base_url(),
        us.base_url()
    ))
    .await;
    for i in 0..4 {
        let r = post(
            &gw,
            "/v1/chat/completions",
            chat(&format!("q{i}")),
            Some("pk-acme"),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.backend.as_deref(), Some("eu"));
        assert!(!r.hedged);
    }
    assert_eq!(
        us.hits(),
        0,
        "acme's data never reached us, hedges included"
    );
    let m = metrics(&gw).await;
    assert!(
        m.contains(r#"palisade_hedge_total{route="m",outcome="skipped_no_deployment"} 4"#),
        "{m}"
    );
}

/// `hedge` reloads with the routes: a reload that adds it hedges the next
/// requests, one that removes it stops hedging, and each hedged request's
/// audit record names the cancelled deployment and the winner.
#[tokio::test]
async fn a_reload_turns_hedging_on_and_off_and_hedges_are_audited() {
    let slow = Fake::start("slow", after(300)).await;
    let fast = Fake::start("fast", after(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let audit_db = dir.path().join("audit.db");
    let path = dir.path().join("palisade.toml");
    let write = |hedge: &str| {
        let text = format!(
            r#"
            [reload]
            config_poll_ms = 0
            [policy]
            audit_url = "sqlite:{}"
            [backends.slow]
            base_url = "{}"
            retry_budget = {{ ratio = 0.1, reserve_per_sec = 50.0, cap = 10.0 }}
            [backends.fast]
            base_url = "{}"
            retry_budget = {{ ratio = 0.1, reserve_per_sec = 50.0, cap = 10.0 }}
            [[routes]]
            model = "m"
            idempotent = true
            deployments = [{{ backend = "slow" }}, {{ backend = "fast" }}]
            {hedge}
            "#,
            audit_db.display(),
            slow.base_url(),
            fast.base_url()
        );
        std::fs::write(&path, text).unwrap();
    };
    write("");
    let gw = support::reloadable(&path).await;
    let reload = || async {
        let (status, text) = support::reload(&gw).await;
        assert_eq!(status, 200, "{text}");
    };
    let round = |label: &'static str| {
        let gw = &gw;
        async move {
            let mut hedged = 0;
            for i in 0..3 {
                let r = post(
                    gw,
                    "/v1/chat/completions",
                    chat(&format!("{label}{i}")),
                    None,
                )
                .await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                hedged += usize::from(r.hedged);
            }
            hedged
        }
    };
    assert_eq!(round("off").await, 0, "no hedge before the reload");
    write("hedge = { after_ms = 30 }");
    reload().await;
    assert_eq!(round("on").await, 3, "every request past 30 ms is hedged");
    write("");
    reload().await;
    assert_eq!(round("off-again").await, 0, "removed: no hedge");
    assert_eq!(slow.hits() + fast.hits(), 3 + 6 + 3);

    let hedges = audit_records(
        &audit_db,
        200,
        |r| r["gate"] == "routing" && r["action"] == "hedge",
        |hedges| hedges.len() == 3,
    )
    .await;
    assert_eq!(hedges.len(), 3, "one record per hedged request: {hedges:?}");
    for h in &hedges {
        let text = h.to_string();
        assert!(
            text.contains("\"won\"") || text.contains("\"lost\""),
            "{text}"
        );
        assert!(text.contains("slow") && text.contains("fast"), "{text}");
    }
}
