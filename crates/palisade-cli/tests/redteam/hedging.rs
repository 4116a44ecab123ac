//! Hedged requests under attack (issue #19): a client flooding slow
//! requests to turn every hedge into double load on an already slow fleet;
//! an upstream sending a fast head and a stalled body to win the race and
//! then hold the request; a tenant whose residency rule forbids the other
//! deployment trying to get its data there through a hedge.

use std::time::{Duration, Instant};

use palisade_testkit::{HostileUpstream, RawResponse, ScriptedUpstream};
use serde_json::json;

use crate::harness::{start, Client};

fn ask(text: &str) -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]})
}

/// Every request is slow at both deployments, so every request is due a
/// hedge after 10 ms; a concurrent flood of them. The retry budget (10 %,
/// a burst of 2, no reserve) caps the extra load: hedges stop when it is
/// spent instead of doubling the load on a fleet that is already slow.
#[tokio::test]
async fn a_flood_of_slow_requests_cannot_double_the_load_through_hedges() {
    let a = ScriptedUpstream::start().await;
    let b = ScriptedUpstream::start().await;
    let budget = "retry_budget = { ratio = 0.1, reserve_per_sec = 0.0, cap = 2.0 }";
    let client = Client::new(
        start(&format!(
            r#"
            [backends.a]
            base_url = "{}"
            {budget}
            [backends.b]
            base_url = "{}"
            {budget}
            [[routes]]
            model = "m"
            upstream_model = "delay-150"
            idempotent = true
            deployments = [{{ backend = "a" }}, {{ backend = "b" }}]
            hedge = {{ after_ms = 10, max_extra = 3 }}
            "#,
            a.base_url(),
            b.base_url()
        ))
        .await,
    );
    let n = 80;
    let mut tasks = tokio::task::JoinSet::new();
    let client = std::sync::Arc::new(client);
    for w in 0..8 {
        let client = client.clone();
        tasks.spawn(async move {
            for i in 0..n / 8 {
                let (status, body) = client.chat(&ask(&format!("{w}-{i}"))).await;
                assert_eq!(status, 200, "{body}");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("worker");
    }
    let total = a.received().len() + b.received().len();
    // Per backend: 0.1 × its first attempts + the burst of 2.
    let bound = n + n / 10 + 2 * 2;
    assert!(total >= n, "{total}");
    assert!(
        total <= bound,
        "hedges added {} (bound {})",
        total - n,
        bound - n
    );
    assert!(total > n, "the budget allows some hedges");
}

/// An upstream that sends its head at once and then stalls its body must
/// not win the race: only a complete answer wins, so the other deployment's
/// answer is served, and in time.
#[tokio::test]
async fn a_fast_head_with_a_stalled_body_does_not_win_the_race() {
    let staller = HostileUpstream::start(
        RawResponse::sse_pieces([
            (Duration::ZERO, "{\"id\":\"x\",".to_owned()),
            (Duration::from_secs(30), "\"choices\":[]}".to_owned()),
        ])
        .with_content_type("application/json"),
    )
    .await;
    let honest = ScriptedUpstream::start().await;
    let client = Client::new(
        start(&format!(
            r#"
            [backends.staller]
            base_url = "{}"
            request_timeout_ms = 20000
            [backends.honest]
            base_url = "{}"
            request_timeout_ms = 20000
            # Room for a hedge per request: hedges are budgeted (a second
            # request within the same second would otherwise find the
            # default reserve of 1/s spent, and wait on the staller).
            retry_budget = {{ ratio = 0.1, reserve_per_sec = 10.0, cap = 10.0 }}
            [[routes]]
            model = "m"
            idempotent = true
            deployments = [{{ backend = "staller", weight = 10000 }}, {{ backend = "honest", weight = 1 }}]
            hedge = {{ after_ms = 50 }}
            "#,
            staller.base_url(),
            honest.base_url()
        ))
        .await,
    );
    for i in 0..3 {
        let started = Instant::now();
        let (status, body) = client.chat(&ask(&format!("q{i}"))).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["choices"][0]["message"]["content"]
                .as_str()
                .is_some_and(|c| c.contains(&format!("q{i}"))),
            "the honest deployment's complete answer: {body}"
        );
        // Liveness bound only: far below the staller's 30 s.
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    assert!(
        !staller.received().is_empty(),
        "the staller was tried first (weight)"
    );
}
