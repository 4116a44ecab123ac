//! The operators' surface under a hostile client: made-up model names cannot
//! blow up metric label cardinality. (That the dashboard and alert rules name
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
