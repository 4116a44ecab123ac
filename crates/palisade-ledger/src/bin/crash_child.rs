//! Test helper for the ledger's `kill -9` tests (`tests/crash.rs`), not a
//! tool: records entries into the ledger at `argv[1]` from eight tasks
//! forever, printing `RECORDED <id>` after each `record` returns, until it is
//! killed. The test SIGKILLs it and checks every printed id was stored.
//!
//! With `audit` as `argv[2]`, each task also appends an audit record per
//! entry (so batches mix both kinds) and prints `AUDITED <id>` once `audit`
//! has returned.

use std::sync::Arc;

use palisade_ledger::{AuditEntry, Ledger, LedgerEntry, Outcome, UsageSource, WriteOptions};

fn entry(id: &str) -> LedgerEntry {
    LedgerEntry {
        request_id: id.to_owned(),
        ts: 1_772_323_200_000,
        tenant: "acme".to_owned(),
        key_name: "acme-key".to_owned(),
        model: "m".to_owned(),
        backend: "local".to_owned(),
        endpoint: "/v1/chat/completions".to_owned(),
        status: 200,
        outcome: Outcome::Completed,
        prompt_tokens: 10,
        completion_tokens: 10,
        cached_tokens: None,
        reasoning_tokens: None,
        tool_loop_tokens: None,
        estimated_tokens: 266,
        usage_source: UsageSource::Upstream,
        cost_micros: 30,
        latency_ms: 42,
        attempts: 1,
    }
}

fn audit_entry(id: &str) -> AuditEntry {
    AuditEntry {
        ts_ms: 1_772_323_200_000,
        request_id: id.to_owned(),
        tenant: "acme".to_owned(),
        route: "chat".to_owned(),
        model: "m".to_owned(),
        gate: "input".to_owned(),
        action: "allow".to_owned(),
        policy_version: "sha256:00112233aabbccdd".to_owned(),
        json: format!(r#"{{"request_id":"{id}","gate":"input","action":"allow"}}"#),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let location = std::env::args()
        .nth(1)
        .ok_or("usage: crash_child LEDGER_LOCATION [audit]")?;
    let audit = std::env::args().nth(2).as_deref() == Some("audit");
    let ledger = Arc::new(Ledger::open(&location, WriteOptions::default()).await?);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let ledger = Arc::clone(&ledger);
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                let id = format!("crash-{t}-{i}");
                if ledger.record(&entry(&id)).await.is_err() {
                    return;
                }
                // Stdout is line-buffered: the line leaves the process as
                // soon as it is printed.
                println!("RECORDED {id}");
                if audit {
                    if ledger.audit(audit_entry(&id)).await.is_err() {
                        return;
                    }
                    println!("AUDITED {id}");
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}
