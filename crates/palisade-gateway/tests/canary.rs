//! Model canaries through a running gateway in front of scripted models on
//! loopback: a healthy rollout steps up to full weight; a deliberately
//! degraded deployment is rolled back automatically and gets no user
//! traffic afterwards (counted at the upstream), with the drift in the
//! metrics, the admin view and the audit trail; a reload that adds a
//! deployment triggers its canary run at once.
//!
//! The gateway runs in open mode on loopback (every caller is an admin
//! there). Each test uses its own route name: the metrics recorder is
//! shared by the tests of this binary.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use palisade_gateway::RunningGateway;
use palisade_testkit::{golden_set, CanaryMode as Mode, CanaryModel as Model};
use serde_json::{json, Value};
use support::records::{audit_records, ledger_rows};
use support::{get_json, http, metrics, reloadable as start, url};

async fn user_chat(gw: &RunningGateway, model: &str) -> u16 {
    http()
        .post(url(gw, "/v1/chat/completions"))
        .json(&json!({"model": model, "max_tokens": 5,
                      "messages": [{"role": "user", "content": "hi there"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn canaries(gw: &RunningGateway) -> Value {
    get_json(gw, "/admin/canaries").await
}

/// The admin view's entry for `backend` of `route`.
fn deployment<'a>(view: &'a Value, route: &str, backend: &str) -> &'a Value {
    view["data"]
        .as_array()
        .and_then(|routes| routes.iter().find(|r| r["route"] == route))
        .and_then(|r| r["deployments"].as_array())
        .and_then(|d| d.iter().find(|d| d["backend"] == backend))
        .unwrap_or(&Value::Null)
}

/// Polls `/admin/canaries` (bounded) until `backend` of `route` is in
/// `state`; returns the last view.
async fn wait_state(gw: &RunningGateway, route: &str, backend: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = canaries(gw).await;
        if deployment(&view, route, backend)["state"] == state {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "{backend} of {route} never reached {state}: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The config: `[[routes]] model = route` over `stable` and `new`, the
/// rollout of `new` with `rollout` fields, and the canary with `canary`
/// fields.
fn config(
    golden: &Path,
    stable: &Model,
    new: &Model,
    route: &str,
    canary: &str,
    rollout: &str,
) -> String {
    format!(
        r#"
[reload]
config_poll_ms = 0
[backends.stable]
base_url = "{}"
[backends.new]
base_url = "{}"
[[routes]]
model = "{route}"
deployments = [{{ backend = "stable" }}, {{ backend = "new" }}]
canary = {{ golden_set = "{}", min_samples = 5, hold_down_s = 3600{canary} }}
rollout = {{ deployment = "new"{rollout} }}
"#,
        stable.base_url(),
        new.base_url(),
        golden.display()
    )
}

#[tokio::test]
async fn a_healthy_rollout_steps_up_to_full_weight() {
    let dir = tempfile::tempdir().unwrap();
    let golden = dir.path().join("golden.jsonl");
    std::fs::write(&golden, golden_set(6)).unwrap();
    let (stable, new) = (
        Model::start(Mode::Good).await,
        Model::start(Mode::Good).await,
    );
    let path = dir.path().join("palisade.toml");
    std::fs::write(
        &path,
        config(
            &golden,
            &stable,
            &new,
            "healthy",
            ", interval_s = 3600",
            ", start_weight_pct = 20, step_pct = 40, step_every_s = 1",
        ),
    )
    .unwrap();
    let gw = start(&path).await;
    // 0 → 20 → 60 → 100: promoted, each step after a clean run.
    let view = wait_state(&gw, "healthy", "new", "promoted").await;
    let d = deployment(&view, "healthy", "new");
    assert_eq!(d["traffic_pct"], 100);
    assert_eq!(d["health"], "healthy");
    assert!(d["runs"].as_u64().unwrap() >= 3, "{d}");
    assert_eq!(deployment(&view, "healthy", "stable")["role"], "baseline");
    // Full weight: the configured weights apply, so under load (40
    // concurrent requests of 200 ms) traffic reaches both deployments.
    stable.slow_users(200);
    new.slow_users(200);
    let all = futures_util::future::join_all((0..40).map(|_| user_chat(&gw, "healthy"))).await;
    assert!(all.iter().all(|s| *s == 200), "{all:?}");
    assert!(new.user_requests() >= 5, "new got {}", new.user_requests());
    assert!(stable.user_requests() >= 5);
    let text = metrics(&gw).await;
    for needle in [
        r#"palisade_canary_traffic_pct{route="healthy",backend="new"} 100"#,
        r#"palisade_canary_rollout_transitions_total{route="healthy",action="promote"} 1"#,
        r#"palisade_canary_drift{route="healthy",backend="new"} 0"#,
    ] {
        assert!(text.contains(needle), "metrics lack {needle}");
    }
    gw.shutdown();
}

#[tokio::test]
async fn a_drifted_canary_deployment_gets_no_user_traffic_after_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let golden = dir.path().join("golden.jsonl");
    std::fs::write(&golden, golden_set(6)).unwrap();
    let audit_db = dir.path().join("audit.db");
    let (stable, new) = (
        Model::start(Mode::Good).await,
        Model::start(Mode::Good).await,
    );
    let path = dir.path().join("palisade.toml");
    let mut text = config(
        &golden,
        &stable,
        &new,
        "drifty",
        ", interval_s = 1",
        ", start_weight_pct = 50, step_pct = 10, step_every_s = 3600",
    );
    let ledger_db = dir.path().join("ledger.db");
    let webhook = palisade_testkit::WebhookRecorder::start().await;
    text.push_str(&format!(
        "[policy]\naudit_url = \"sqlite:{}\"\n[ledger]\nurl = \"sqlite:{}\"\n\
         [limits]\nalert_webhook_url = \"{}\"\n",
        audit_db.display(),
        ledger_db.display(),
        webhook.url()
    ));
    std::fs::write(&path, text).unwrap();
    let gw = start(&path).await;
    wait_state(&gw, "drifty", "new", "rolling_out_50_pct").await;
    // At 50 %, users reach it.
    for _ in 0..40 {
        assert_eq!(user_chat(&gw, "drifty").await, 200);
    }
    assert!(new.user_requests() >= 5, "new got {}", new.user_requests());

    // The new deployment degrades (a bad re-quantization): wrong answers,
    // broken JSON, no refusals.
    new.set(Mode::Degraded);
    let degraded_at = Instant::now();
    let view = wait_state(&gw, "drifty", "new", "rolled_back").await;
    let rollback_secs = degraded_at.elapsed().as_secs_f64();
    let d = deployment(&view, "drifty", "new");
    assert_eq!(d["traffic_pct"], 0);
    assert_eq!(d["health"], "drifted");
    assert!(
        d["drift_reasons"].to_string().contains("answer pass rate"),
        "{d}"
    );
    assert!(!d["last_failures"].as_array().unwrap().is_empty());
    assert_eq!(deployment(&view, "drifty", "stable")["health"], "healthy");
    eprintln!("drift to rollback: {rollback_secs:.2} s");

    // No user request reaches it after the rollback, even when it would
    // be the balancer's choice (the stable deployment slow, 40 requests at
    // once); the canary still replays its golden set there.
    let users_before = new.user_requests();
    let golden_before = new.golden_requests();
    stable.slow_users(200);
    let all = futures_util::future::join_all((0..40).map(|_| user_chat(&gw, "drifty"))).await;
    assert!(all.iter().all(|s| *s == 200), "{all:?}");
    for _ in 0..10 {
        assert_eq!(user_chat(&gw, "drifty").await, 200);
    }
    assert_eq!(
        new.user_requests(),
        users_before,
        "user traffic after rollback"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        new.golden_requests() > golden_before,
        "the canary keeps replaying"
    );

    let text = metrics(&gw).await;
    for needle in [
        r#"palisade_canary_drift{route="drifty",backend="new"} 1"#,
        r#"palisade_canary_drift{route="drifty",backend="stable"} 0"#,
        r#"palisade_canary_traffic_pct{route="drifty",backend="new"} 0"#,
        r#"palisade_canary_rollout_transitions_total{route="drifty",action="rollback"} 1"#,
        r#"palisade_canary_checks_total{route="drifty",backend="new",check="answer",result="fail"}"#,
        r#"palisade_canary_score{route="drifty",backend="stable",metric="answer_rate"} 1"#,
    ] {
        assert!(text.contains(needle), "metrics lack {needle}");
    }

    // The rollback is on the audit trail, as canary traffic (no tenant).
    let records = audit_records(
        &audit_db,
        500,
        |r| r["gate"] == "canary",
        |records| records.iter().any(|r| r["action"] == "rollback"),
    )
    .await;
    let rollback = records
        .iter()
        .find(|r| r["action"] == "rollback")
        .unwrap_or_else(|| panic!("no rollback audited: {records:?}"));
    assert_eq!(rollback["reason_code"], "canary_drift");
    assert_eq!(rollback["tenant"], "(canary)");
    assert_eq!(rollback["backend"], "new");
    assert_eq!(rollback["from_pct"], 50);
    assert!(records.iter().any(|r| r["action"] == "drift"));
    assert!(records.iter().any(|r| r["action"] == "run"));

    // The alert webhook heard the drift and the rollback.
    let alerts = webhook.wait_for(2).await;
    let kinds: Vec<&str> = alerts.iter().filter_map(|a| a["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"drift") && kinds.contains(&"rollback"),
        "{alerts:?}"
    );
    assert!(alerts
        .iter()
        .all(|a| a["category"] == "canary" && a["backend"] == "new" && a["route"] == "drifty"));

    // Canary traffic is nobody's: the ledger holds the 90 user requests
    // and not one of the golden requests (none billed to any tenant).
    assert!(new.golden_requests() + stable.golden_requests() > 0);
    let rows = ledger_rows(&ledger_db, |rows| rows.len() >= 90).await.len();
    // Then a while longer: a golden request billed late would show here.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ledger_rows(&ledger_db, |_| true).await.len(), 90, "{rows}");
    gw.shutdown();
}

#[tokio::test]
async fn a_reload_that_adds_a_deployment_triggers_its_canary_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let golden = dir.path().join("golden.jsonl");
    std::fs::write(&golden, golden_set(4)).unwrap();
    let (stable, new) = (
        Model::start(Mode::Good).await,
        Model::start(Mode::Good).await,
    );
    let path = dir.path().join("palisade.toml");
    let one = format!(
        r#"
[reload]
config_poll_ms = 0
[backends.stable]
base_url = "{}"
[[routes]]
model = "grows"
deployments = [{{ backend = "stable" }}]
canary = {{ golden_set = "{}", interval_s = 3600, min_samples = 4 }}
"#,
        stable.base_url(),
        golden.display()
    );
    std::fs::write(&path, &one).unwrap();
    let gw = start(&path).await;
    // Start: the one deployment is replayed at once (first seen).
    let deadline = Instant::now() + Duration::from_secs(20);
    while deployment(&canaries(&gw).await, "grows", "stable")["runs"] != 1 {
        assert!(Instant::now() < deadline, "no first run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stable_golden = stable.golden_requests();
    assert_eq!(new.golden_requests(), 0);
    // The reload adds `new`: it is replayed at once, not an hour later.
    let two = one
        .replace(
            "[[routes]]",
            &format!(
                "[backends.new]\nbase_url = \"{}\"\n[[routes]]",
                new.base_url()
            ),
        )
        .replace(
            "deployments = [{ backend = \"stable\" }]",
            "deployments = [{ backend = \"stable\" }, { backend = \"new\" }]",
        );
    std::fs::write(&path, &two).unwrap();
    let (status, text) = support::reload(&gw).await;
    assert_eq!(status, 200, "{text}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = canaries(&gw).await;
        if deployment(&view, "grows", "new")["runs"] == 1 {
            // The unchanged deployment kept its state and was not replayed.
            assert_eq!(deployment(&view, "grows", "stable")["runs"], 1, "{view:#}");
            assert_eq!(view["tasks_running"], 1, "the old task ended");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no run of the new deployment: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(new.golden_requests(), 4 + 2 + 2);
    assert_eq!(stable.golden_requests(), stable_golden);

    // A reload naming a golden set that does not parse is refused whole.
    std::fs::write(dir.path().join("bad.jsonl"), "{not json").unwrap();
    let bad = two.replace(
        &golden.display().to_string(),
        &dir.path().join("bad.jsonl").display().to_string(),
    );
    std::fs::write(&path, bad).unwrap();
    let (status, text) = support::reload(&gw).await;
    assert_eq!(status, 422);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(body.to_string().contains("golden set"), "{body}");
    assert_eq!(canaries(&gw).await["tasks_running"], 1);
    gw.shutdown();
}
