//! Helpers shared by the integration tests. Each test binary uses a
//! different subset, hence the `dead_code` allowance.
#![allow(dead_code)] // not every test binary uses every helper

pub mod audit_scenarios;
pub mod scenarios;

use palisade_ledger::{AuditEntry, LedgerEntry, Outcome, UsageSource};

/// 2026-03-01T00:00:00Z in Unix milliseconds.
pub const DAY0: i64 = 1_772_323_200_000;
pub const DAY_MS: i64 = 86_400_000;

/// A completed entry with the given identity and token counts.
pub fn entry(
    id: &str,
    tenant: &str,
    model: &str,
    ts: i64,
    prompt: u64,
    completion: u64,
) -> LedgerEntry {
    LedgerEntry {
        request_id: id.to_owned(),
        ts,
        tenant: tenant.to_owned(),
        key_name: format!("{tenant}-key"),
        model: model.to_owned(),
        backend: "local".to_owned(),
        endpoint: "/v1/chat/completions".to_owned(),
        status: 200,
        outcome: Outcome::Completed,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: None,
        reasoning_tokens: None,
        tool_loop_tokens: None,
        estimated_tokens: prompt + 256,
        usage_source: UsageSource::Upstream,
        cost_micros: i64::try_from(prompt + 2 * completion).unwrap(),
        latency_ms: 42,
        attempts: 1,
    }
}

/// Batches of at most 3 entries, lingering 2 ms for more.
pub fn tiny_batches() -> palisade_ledger::WriteOptions {
    palisade_ledger::WriteOptions {
        max_batch: 3,
        linger: std::time::Duration::from_millis(2),
        ..Default::default()
    }
}

/// A queue that holds one entry.
pub fn tiny_queue() -> palisade_ledger::WriteOptions {
    palisade_ledger::WriteOptions {
        queue_capacity: 1,
        ..Default::default()
    }
}

/// Every entry in the ledger, in insertion order, through `export_jsonl`.
pub async fn export(ledger: &palisade_ledger::Ledger) -> Vec<LedgerEntry> {
    let mut out = Vec::new();
    let n = ledger.export_jsonl(&mut out).await.unwrap();
    let entries: Vec<LedgerEntry> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len() as u64, n);
    entries
}

/// An audit entry whose JSON record carries its identity, so a test can
/// tell records apart in a tail or an export.
pub fn audit_entry(id: &str, tenant: &str, gate: &str, action: &str, ts_ms: u64) -> AuditEntry {
    let json = serde_json::json!({
        "ts_ms": ts_ms,
        "request_id": id,
        "tenant": tenant,
        "route": "chat",
        "model": "m",
        "gate": gate,
        "action": action,
        "policy_version": "sha256:00112233aabbccdd",
        "evidence": {"injection_score": 0.5},
    });
    AuditEntry {
        ts_ms,
        request_id: id.to_owned(),
        tenant: tenant.to_owned(),
        route: "chat".to_owned(),
        model: "m".to_owned(),
        gate: gate.to_owned(),
        action: action.to_owned(),
        policy_version: "sha256:00112233aabbccdd".to_owned(),
        json: json.to_string(),
    }
}

/// Every audit record in the ledger, in `seq` order, through `audit_export`.
pub async fn audit_export(ledger: &palisade_ledger::Ledger) -> Vec<String> {
    let mut out = Vec::new();
    let n = ledger.audit_export(&mut out, 0, i64::MAX).await.unwrap();
    let lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len() as u64, n);
    lines
}

/// The `request_id` field of a record's JSON line.
pub fn request_id_of(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["request_id"].as_str().unwrap().to_owned()
}
