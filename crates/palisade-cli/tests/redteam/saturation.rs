//! Saturating the detectors, and blinding the anomaly detector (issue 15):
//!
//! - flood the detection pool with long texts, then hide an injection in one
//!   more: it must be judged (first stage, audited degraded) or refused
//!   (`503 detector_saturated`), never forwarded unjudged;
//! - post scale events non-stop so the detector "expects" anomalies: a scale
//!   event holds down capacity signals only, so an injection burst still
//!   alerts;
//! - hostile scaling-event bodies (absurd replica counts, wrong shapes, too
//!   large, a tenant's key) are refused and change nothing.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{Client, Scripted, JAILBREAK};

const ADMIN: &str = "sk-ops-0123456789";
const TENANT: &str = "sk-eve-0123456789";

fn hash(key: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()))
}

/// Keys for an admin and for tenant `eve`.
fn keys() -> String {
    format!(
        "[[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{}\"\nadmin = true\n\
         [[auth.keys]]\nname = \"eve\"\ntenant = \"eve\"\nsha256 = \"{}\"\n",
        hash(ADMIN),
        hash(TENANT)
    )
}

/// Over the inline threshold (16 KiB), so it takes the pool. (Diluted in
/// 24 KiB of prose, this injection scores under the built-in `standard`
/// tier's block threshold even at rest, a detector matter; the test tier
/// below blocks from the flag threshold, like `high`.)
fn long_text(i: usize, injection: bool) -> String {
    let mut text = if injection {
        format!("{JAILBREAK} Note {i}. ")
    } else {
        format!("Note {i}. ")
    };
    while text.len() < 24 * 1024 {
        text.push_str("Minutes of the weekly planning meeting: nothing unusual to report. ");
    }
    text
}

async fn chat(client: &Client, key: &str, text: String) -> (u16, Value) {
    let resp = client
        .http
        .post(client.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .expect("gateway answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_never_forwards_an_injection_unjudged() {
    // Tenant eve on `high`, made to degrade rather than refuse: the attack
    // is to saturate the pool and hope the scan is skipped. One slot, no
    // queue.
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.toml");
    let degrading_high = palisade_policy::BUILTIN_TOML.replacen(
        "on_detector_saturated = \"closed\"",
        "on_detector_saturated = \"degrade\"",
        1,
    );
    assert_ne!(degrading_high, palisade_policy::BUILTIN_TOML);
    std::fs::write(
        &policy,
        format!("{degrading_high}\n[[assign]]\ntenant = \"eve\"\ntier = \"high\"\n"),
    )
    .expect("write policy");
    let s = Scripted::new(&format!(
        "{}[server]\ncpu_workers = 16\ncpu_queue_timeout_ms = 60000\n\
         [detection]\npool_workers = 1\npool_queue = 0\npool_wait_ms = 0\n\
         [policy]\nfile = \"{}\"\n",
        keys(),
        policy.display()
    ))
    .await;
    let mut statuses = Vec::new();
    for round in 0..4 {
        // Decoys fill the slot; every third request carries the injection.
        let sends = (0..9).map(|i| {
            let injection = i % 3 == 2;
            let text = long_text(round * 100 + i, injection);
            let client = &s.client;
            async move { (injection, chat(client, TENANT, text).await) }
        });
        for (injection, (status, body)) in futures_util::future::join_all(sends).await {
            if injection {
                let head: String = body.to_string().chars().take(200).collect();
                assert_eq!(status, 400, "an injection under saturation: {head}");
            }
            statuses.push(status);
        }
    }
    // The same injection at rest: blocked too (the precondition that makes
    // the check above mean something).
    let (status, _) = chat(&s.client, TENANT, long_text(999, true)).await;
    assert_eq!(status, 400, "blocked at rest");
    for r in s.upstream.received() {
        assert!(
            !r.body.to_string().contains(JAILBREAK),
            "forwarded unjudged"
        );
    }
    assert!(
        !statuses.contains(&503),
        "the tier degrades, it does not refuse"
    );
}

/// The alerts the gateway has raised (`GET /admin/anomaly`).
async fn alerts(client: &Client) -> Vec<Value> {
    let report: Value = client
        .http
        .get(client.url("/admin/anomaly"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    report["recent_alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn scale(client: &Client, key: &str, body: &Value) -> u16 {
    client
        .http
        .post(client.url("/admin/scaling-events"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_events_posted_nonstop_do_not_hide_an_injection_burst() {
    let s = Scripted::new(&format!(
        "{}[detection.anomaly]\nwindow_secs = 1\nmin_requests = 8\n",
        keys()
    ))
    .await;
    let client = &s.client;
    // Two seconds of ordinary traffic, then a burst, with a scale event
    // (claiming a huge fleet change) every 200 ms throughout.
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(5) {
        let replicas = 1 + (sent % 50) as u64;
        assert_eq!(
            scale(client, ADMIN, &json!({"replicas": replicas})).await,
            202
        );
        let hostile = started.elapsed() > Duration::from_secs(2);
        let sends = (0..6).map(|i| {
            let text = if hostile && i % 2 == 0 {
                format!("{JAILBREAK} ({sent}-{i})")
            } else {
                format!("What is the capital of country number {sent}-{i}?")
            };
            chat(client, TENANT, text)
        });
        futures_util::future::join_all(sends).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let until = Instant::now() + Duration::from_secs(3);
    let mut raised = Vec::new();
    while Instant::now() < until {
        raised = alerts(client).await;
        if raised.iter().any(|a| a["kind"] == "injection_burst") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let burst = raised
        .iter()
        .find(|a| a["kind"] == "injection_burst")
        .unwrap_or_else(|| panic!("the burst was hidden by scale events: {raised:?}"));
    assert_eq!(burst["tenant"], "eve");
    assert_eq!(burst["scaling"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scaling_events_are_refused_and_change_nothing() {
    let s = Scripted::new(&keys()).await;
    let client = &s.client;
    let huge = "x".repeat(100 * 1024);
    for (key, body, status) in [
        (ADMIN, json!({"replicas": 1_000_000_000u64}), 400),
        (ADMIN, json!({"replicas": -1}), 400),
        (
            ADMIN,
            json!({"kind": "HorizontalPodAutoscaler", "status": {"desiredReplicas": "4"}}),
            400,
        ),
        (
            ADMIN,
            json!({"specversion": "1.0", "type": "com.example.other"}),
            400,
        ),
        (ADMIN, json!({"replicas": 2, "pad": huge}), 413),
        // A tenant cannot tell the detector a scale event is under way.
        (TENANT, json!({"replicas": 4}), 403),
    ] {
        assert_eq!(
            scale(client, key, &body).await,
            status,
            "{}",
            &body.to_string()[..60.min(body.to_string().len())]
        );
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after: Value = client
        .http
        .get(client.url("/admin/anomaly"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_ne!(after["status"]["scaling"], true, "{after}");
    assert_eq!(after["status"]["replicas"], 1, "{after}");
}
