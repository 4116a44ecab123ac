//! The operators' surface under a hostile client: made-up model names cannot
//! blow up metric label cardinality; an admin key's state changes (a config
//! reload, a scaling event that mutes the anomaly detector) are audited with
//! who made them. (That the dashboard and alert rules name
//! only exported metrics is `palisade-gateway/tests/operations.rs`.)

use serde_json::json;
use std::collections::BTreeSet;

use crate::harness::{Client, Scripted};

async fn scrape(c: &Client) -> String {
    c.http
        .get(c.url("/metrics"))
        .send()
        .await
        .expect("metrics answers")
        .text()
        .await
        .expect("metrics body")
}

fn ledger_config(dir: &std::path::Path) -> String {
    format!(
        "[ledger]\nurl = \"sqlite:{}\"\n[ledger.prices.default]\ninput_usd_per_mtok = 1.0\noutput_usd_per_mtok = 2.0\n[[routes]]\nmodel = \"*\"\nbackend = \"main\"\n",
        dir.join("ledger.db").display()
    )
}

#[tokio::test]
async fn many_distinct_model_names_do_not_blow_up_label_cardinality() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Scripted::new(&ledger_config(dir.path())).await;
    let c = &s.client;
    // The scripted upstream answers any model name: the wildcard route forwards
    // them all, so only the label caps stand between the client and the TSDB.
    for i in 0..500 {
        let (status, _) = c
            .chat(&json!({"model": format!("attacker-model-{i}"), "messages": [{"role": "user", "content": "hi"}]}))
            .await;
        assert!(status == 200 || status == 404, "status {status}");
    }
    let text = scrape(c).await;
    let distinct = |family: &str| -> usize {
        text.lines()
            .filter(|l| l.starts_with(family) && l.contains("attacker-model-"))
            .filter_map(|l| l.split("model=\"").nth(1)?.split('"').next())
            .collect::<BTreeSet<_>>()
            .len()
    };
    let requests = distinct("palisade_http_requests_total{");
    let tokens = distinct("palisade_tokens_total{");
    assert!(requests <= 64, "request series by model: {requests}");
    assert!(tokens <= 256, "token series by model: {tokens}");
    // Everything past the caps folds into `other`, it is not dropped.
    assert!(
        text.lines().any(
            |l| l.starts_with("palisade_http_requests_total{") && l.contains("model=\"other\"")
        ),
        "{text}"
    );
    let series = text.lines().filter(|l| l.starts_with("palisade_")).count();
    assert!(series < 1500, "{series} series after 500 model names");
}

/// The finding this closes: a config reload (which can repoint backends)
/// and a scaling event (which holds the anomaly detector's alerts down)
/// left only a log line: an insider or a stolen admin key changed
/// enforcement without a trace in the audit store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_state_changes_are_audited_with_who_made_them() {
    const ADMIN: &str = "sk-ops-audited-admin";
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = palisade_testkit::ScriptedUpstream::start().await;
    let path = dir.path().join("palisade.toml");
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(ADMIN.as_bytes()));
    std::fs::write(
        &path,
        format!(
            "[policy]\naudit_url = \"sqlite:{}\"\n[detection.anomaly]\nwindow_secs = 1\n\
             [[auth.keys]]\nname = \"night-ops\"\ntenant = \"ops\"\nsha256 = \"{hash}\"\nadmin = true\n\
             [backends.main]\nbase_url = \"{}\"\n",
            dir.path().join("audit.db").display(),
            upstream.base_url()
        ),
    )
    .expect("config written");
    let c = Client::new(crate::harness::start_reloadable(&path).await);
    let post = |path: &str, body: serde_json::Value| {
        c.http
            .post(c.url(path))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    assert_eq!(
        post("/admin/config/reload", json!({}))
            .await
            .expect("answers")
            .status(),
        200
    );
    assert_eq!(
        post(
            "/admin/scaling-events",
            json!({"source": "hpa", "replicas": 9})
        )
        .await
        .expect("answers")
        .status(),
        202
    );
    let records = c
        .audit_records(Some(ADMIN), 2, |r| {
            r["gate"] == "admin" && r["actor_key"] == "night-ops"
        })
        .await;
    let actions: BTreeSet<String> = records
        .iter()
        .filter_map(|r| r["action"].as_str().map(str::to_owned))
        .collect();
    let want: BTreeSet<String> = ["config_reload", "scaling_event"].map(String::from).into();
    assert_eq!(actions, want);
}
