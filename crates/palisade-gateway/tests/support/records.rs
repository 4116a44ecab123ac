//! Reading back what a gateway stored (ledger rows, audit records) from its
//! SQLite stores, polling with a bound because both are written behind the
//! response. Reads only: it never writes or deletes a record.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// How many times the record readers below look (every 50 ms: 5 s in
/// all). Records are written behind the response, so a test that asserts
/// on them must wait; a bound keeps a missing record a failure, not a hang.
const RECORD_TRIES: usize = 100;

async fn open_sqlite(db: &Path) -> palisade_ledger::Ledger {
    palisade_ledger::Ledger::open(
        &format!("sqlite:{}", db.display()),
        palisade_ledger::WriteOptions::default(),
    )
    .await
    .expect("the sqlite store opens")
}

/// The ledger rows in the SQLite ledger at `db`, read again until `done`
/// holds of them (bounded); the last read either way.
pub async fn ledger_rows(db: &Path, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let ledger = open_sqlite(db).await;
    let mut rows = Vec::new();
    for _ in 0..RECORD_TRIES {
        let mut out = Vec::new();
        ledger.export_jsonl(&mut out).await.expect("ledger exports");
        rows = String::from_utf8(out)
            .expect("the export is UTF-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each export line is JSON"))
            .collect();
        if done(&rows) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rows
}

/// The audit records kept by `keep` among the last `limit` of the SQLite
/// audit store at `db`, read again until `done` holds of them (bounded);
/// the last read either way.
pub async fn audit_records(
    db: &Path,
    limit: usize,
    keep: impl Fn(&Value) -> bool,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let audit = open_sqlite(db).await;
    let mut records = Vec::new();
    for _ in 0..RECORD_TRIES {
        records = audit
            .audit_tail(limit, &palisade_ledger::AuditFilter::default())
            .await
            .expect("audit tail reads")
            .iter()
            .map(|r| serde_json::from_str::<Value>(r).expect("each audit record is JSON"))
            .filter(|r| keep(r))
            .collect();
        if done(&records) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    records
}
