//! A cascade's escalation rate and cost per request (issue #19) on a small
//! scripted mix: a cheap deployment (priced like gpt-4o-mini: $0.15 /
//! $0.60 per million input / output tokens) answers first and a strong one
//! (like gpt-4o: $2.50 / $10) when a gate escalates. The cheap model's
//! answers, by prompt: 70 % good, 10 % refusals, 10 % broken JSON (every
//! request asks for `json_object`), 10 % low-confidence (mean token
//! log-probability −3). Each fake reports 10 prompt + 20 completion tokens.
//! The same mix runs with every gate, without `low_confidence`, and
//! strong-only (no cascade); printed: escalation rate, ledger cost per
//! request (both calls' rows), against the strong model alone.
//!
//!   cargo bench --profile dev -p palisade-gateway --bench cascade_mix -- [REQUESTS]
//!   (default 200)
//!
//! Not timed: the figures are counts and costs from the ledger.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use palisade_testkit::{Deployment as Fake, DeploymentMode as Mode};
use serde_json::{json, Value};

fn prompt(i: usize) -> &'static str {
    match i % 10 {
        0 => "refuse: what is the capital of France?",
        1 => "json: what is the capital of France?",
        2 => "unsure: what is the capital of France?",
        _ => "plain: what is the capital of France?",
    }
}

async fn run(label: &str, cascade: Option<&str>, requests: usize) {
    let cheap = Fake::start("cheap", Mode::ByPrompt).await;
    let strong = Fake::start(
        "strong",
        Mode::Answer {
            content: "{\"answer\": \"Paris\"}".to_owned(),
            logprob: -0.05,
            raw: None,
        },
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("ledger.db");
    let (model, cascade_line) = match cascade {
        Some(gates) => (
            "smart",
            format!("cascade = {{ first = \"small\", escalate_on = {gates} }}"),
        ),
        None => ("smart", String::new()),
    };
    let toml = format!(
        r#"
        [extraction]
        enabled = false
        [ledger]
        url = "sqlite:{}"
        [ledger.prices.default]
        input_usd_per_mtok = 0.0
        output_usd_per_mtok = 0.0
        [ledger.prices."small"]
        input_usd_per_mtok = 0.15
        output_usd_per_mtok = 0.60
        [ledger.prices."smart"]
        input_usd_per_mtok = 2.50
        output_usd_per_mtok = 10.0
        [backends.cheap]
        base_url = "{}"
        [backends.strong]
        base_url = "{}"
        [[routes]]
        model = "smart"
        backend = "strong"
        {cascade_line}
        [[routes]]
        model = "small"
        backend = "cheap"
        "#,
        db.display(),
        cheap.base_url(),
        strong.base_url()
    );
    let gw = support::gateway(&toml).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut escalated = 0;
    let mut first = 0;
    for i in 0..requests {
        let resp = client
            .post(format!("http://{}/v1/chat/completions", gw.local_addr()))
            .json(
                &json!({"model": model, "response_format": {"type": "json_object"},
                          "messages": [{"role": "user", "content": prompt(i)}]}),
            )
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(resp.status(), 200);
        match resp
            .headers()
            .get("x-palisade-cascade")
            .and_then(|v| v.to_str().ok())
        {
            Some("escalated") => escalated += 1,
            Some("first") => first += 1,
            _ => {}
        }
        let _ = resp.bytes().await;
    }
    drop(gw);
    let ledger = palisade_ledger::Ledger::open(
        &format!("sqlite:{}", db.display()),
        palisade_ledger::WriteOptions::default(),
    )
    .await
    .expect("ledger");
    let mut rows: Vec<Value> = Vec::new();
    let expected = requests + escalated;
    for _ in 0..100 {
        let mut out = Vec::new();
        ledger.export_jsonl(&mut out).await.expect("export");
        rows = String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if rows.len() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let micros: i64 = rows.iter().filter_map(|r| r["cost_micros"].as_i64()).sum();
    println!(
        "{label:<28} escalated {escalated:>4} / {requests} ({:>5.1} %), stood {first:>4}; ledger rows {:>4}; cost per request {:>7.2} µ$ (cheap calls {}, strong calls {})",
        escalated as f64 * 100.0 / requests as f64,
        rows.len(),
        micros as f64 / requests as f64,
        cheap.hits(),
        strong.hits(),
    );
}

fn main() {
    let requests = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200usize);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        run(
            "cascade, every gate",
            Some(r#"["refusal", "json_invalid", "low_confidence", "policy_flag"]"#),
            requests,
        )
        .await;
        run(
            "cascade, no low_confidence",
            Some(r#"["refusal", "json_invalid", "policy_flag"]"#),
            requests,
        )
        .await;
        run("strong model only", None, requests).await;
    });
}
