//! `kill -9` the gateway under load: every response that completed has its
//! ledger row when the ledger is reopened (a real SQLite file, and a real
//! PostgreSQL server).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_ledger::{Ledger, WriteOptions};
use palisade_testkit::{PostgresServer, ScriptedUpstream};
use serde_json::json;
use support::Palisade;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_responses_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    kill_9_under_load(&format!("sqlite:{}", db.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_responses_survive_kill_9_with_postgres() {
    let pg = PostgresServer::start();
    kill_9_under_load(&pg.url()).await;
}

/// Loads a gateway writing its ledger to `url`, kills it with SIGKILL, and
/// checks every completed response's row is in the store.
async fn kill_9_under_load(url: &str) {
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\nurl = \"{url}\"\n[backends.main]\nbase_url = \"{}\"\n",
            upstream.base_url()
        ),
    )
    .unwrap();
    let mut gw = Palisade::serve(
        &["--config", config.to_str().unwrap()],
        &[("PALISADE_LOG", "warn")],
    );
    let completed = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut workers = Vec::new();
    for w in 0..8 {
        let (client, url, completed) = (
            client.clone(),
            gw.url("/v1/chat/completions"),
            completed.clone(),
        );
        workers.push(tokio::spawn(async move {
            for i in 0..100_000u32 {
                let stream = (w + i) % 2 == 0;
                let resp = client
                    .post(&url)
                    .json(&json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "a b c"}]}))
                    .send()
                    .await;
                let Ok(resp) = resp else { return };
                let Some(id) = resp.headers().get("x-palisade-ledger-id").map(|v| v.to_str().unwrap().to_owned()) else {
                    return;
                };
                // Completed = the whole body arrived (for streams: [DONE]).
                match resp.text().await {
                    Ok(body) if !stream || body.contains("[DONE]") => completed.lock().unwrap().push(id),
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gw.child.kill().unwrap(); // SIGKILL
    gw.child.wait().unwrap();
    for w in workers {
        let _ = w.await;
    }
    let completed = completed.lock().unwrap().clone();
    assert!(
        completed.len() > 50,
        "load ran: {} completed",
        completed.len()
    );

    let ledger = Ledger::open(url, WriteOptions::default()).await.unwrap();
    let mut out = Vec::new();
    ledger.export_jsonl(&mut out).await.unwrap();
    let stored: std::collections::HashSet<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let missing: Vec<&String> = completed
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    eprintln!(
        "kill -9 ({}): {} completed, {} rows stored, {} missing",
        url.split(':').next().unwrap_or(""),
        completed.len(),
        stored.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "completed responses without a row: {missing:?}"
    );
}

#[test]
fn usage_reports_from_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ledger = Ledger::open(&format!("sqlite:{}", db.display()), WriteOptions::default()).await.unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        for (i, tenant) in ["acme", "acme", "globex"].iter().enumerate() {
            let entry: palisade_ledger::LedgerEntry = serde_json::from_value(json!({
                "request_id": format!("r{i}"), "ts": now, "tenant": tenant, "key_name": "k", "model": "m",
                "backend": "b", "endpoint": "chat_completions", "status": 200, "outcome": "completed",
                "prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": null, "reasoning_tokens": null,
                "tool_loop_tokens": null, "estimated_tokens": 20, "usage_source": "upstream",
                "cost_micros": 1500, "latency_ms": 3}))
            .unwrap();
            let _ = ledger.record(&entry).await.unwrap();
        }
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args([
            "usage",
            "--ledger",
            &format!("sqlite:{}", db.display()),
            "--by",
            "tenant",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("| acme | 2 | 20 | 10 | 30 | 0.003000 |"),
        "{text}"
    );
    assert!(
        text.contains("| globex | 1 | 10 | 5 | 15 | 0.001500 |"),
        "{text}"
    );
}
