//! Helpers shared by the integration tests. Each test binary uses a
//! different subset, hence the `dead_code` allowance.
#![allow(dead_code)] // not every test binary uses every helper

pub mod scenarios;

use palisade_ledger::{LedgerEntry, Outcome, UsageSource};

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
