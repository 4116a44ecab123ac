//! The SQLite store against real files in a temp dir.

mod support;

use std::path::Path;
use std::sync::Arc;

use palisade_ledger::schema::{latest_version, Migration, MIGRATIONS};
use palisade_ledger::{
    Ledger, LedgerError, LedgerStore, Recorded, SqliteLedger, Synchronous, WriteOptions,
};
use support::{entry, export, scenarios, DAY0};

async fn open(path: &Path) -> Ledger {
    Ledger::new(
        SqliteLedger::open(path, WriteOptions::default())
            .await
            .unwrap(),
    )
}

fn temp() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    (dir, path)
}

#[tokio::test]
async fn idempotent_on_request_id() {
    let (_dir, path) = temp();
    scenarios::idempotent_on_request_id(&open(&path).await).await;
}

#[tokio::test]
async fn usage_groups_and_filters() {
    let (_dir, path) = temp();
    scenarios::usage_groups_and_filters(&open(&path).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_count_each_request_once() {
    let (_dir, path) = temp();
    scenarios::concurrent_tasks_count_each_request_once(Arc::new(open(&path).await)).await;
}

#[tokio::test]
async fn nowait_entries_are_durable_after_flush() {
    let (_dir, path) = temp();
    scenarios::nowait_entries_are_durable_after_flush(&open(&path).await).await;
}

#[tokio::test]
async fn export_round_trips() {
    let (_dir, path) = temp();
    scenarios::export_round_trips(&open(&path).await).await;
}

#[tokio::test]
async fn invalid_entries_are_refused() {
    let (_dir, path) = temp();
    scenarios::invalid_entries_are_refused(&open(&path).await).await;
}

#[tokio::test]
async fn small_batches_with_linger() {
    let (_dir, path) = temp();
    let ledger = Ledger::new(
        SqliteLedger::open(&path, support::tiny_batches())
            .await
            .unwrap(),
    );
    scenarios::small_batches_with_linger(&ledger).await;
}

#[tokio::test]
async fn a_full_queue_is_reported_not_waited_on() {
    let (_dir, path) = temp();
    let ledger = Ledger::new(
        SqliteLedger::open(&path, support::tiny_queue())
            .await
            .unwrap(),
    );
    scenarios::a_full_queue_is_reported_not_waited_on(&ledger).await;
}

/// Another process holding the write lock past the busy timeout makes a
/// batch fail: awaited entries get `WriteFailed`, queued ones are reported
/// by the next `flush`, and writing works again once the lock is gone.
#[tokio::test]
async fn a_failed_batch_is_reported_to_every_writer() {
    let (_dir, path) = temp();
    let options = WriteOptions {
        busy_timeout: std::time::Duration::from_millis(50),
        ..WriteOptions::default()
    };
    let ledger = SqliteLedger::open(&path, options).await.unwrap();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let e = entry("blocked", "acme", "m", DAY0, 1, 1);
    match ledger.record(&e).await {
        Err(err @ LedgerError::WriteFailed(_)) => {
            assert!(err.to_string().contains("database is locked"), "{err}");
        }
        other => panic!("expected WriteFailed, got {other:?}"),
    }
    ledger
        .record_nowait(entry("lost-1", "acme", "m", DAY0, 1, 1))
        .unwrap();
    ledger
        .record_nowait(entry("lost-2", "acme", "m", DAY0, 1, 1))
        .unwrap();
    match ledger.flush().await {
        Err(LedgerError::LostWrites { count: 2 }) => {}
        other => panic!("expected LostWrites {{ count: 2 }}, got {other:?}"),
    }
    // The count was reported once.
    ledger.flush().await.unwrap();

    blocker.execute_batch("ROLLBACK").unwrap();
    // The failed entry may be retried with the same id.
    assert_eq!(ledger.record(&e).await.unwrap(), Recorded::Inserted);
    assert_eq!(ledger.spent("acme", 0).await.unwrap().requests, 1);
}

#[tokio::test]
async fn rows_survive_drop_and_reopen() {
    let (_dir, path) = temp();
    let ledger = open(&path).await;
    let e = entry("kept", "acme", "m", DAY0, 5, 5);
    assert_eq!(ledger.record(&e).await.unwrap(), Recorded::Inserted);
    // Dropped without `close`: `record` already made the row durable.
    drop(ledger);
    let ledger = open(&path).await;
    assert_eq!(export(&ledger).await, vec![e.clone()]);
    // And the reopened ledger still knows the id.
    assert_eq!(ledger.record(&e).await.unwrap(), Recorded::Duplicate);
    ledger.close().await.unwrap();
}

fn schema_rows(path: &Path) -> Vec<(i64, String, i64)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT version, name, applied_at_ms FROM schema_version ORDER BY version")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows
}

#[tokio::test]
async fn migrations_apply_once_and_reopening_is_a_no_op() {
    let (_dir, path) = temp();
    let ledger = open(&path).await;
    assert_eq!(ledger.schema_version().await.unwrap(), latest_version());
    ledger.close().await.unwrap();
    let applied = schema_rows(&path);
    let versions: Vec<i64> = applied.iter().map(|r| r.0).collect();
    assert_eq!(
        versions,
        MIGRATIONS
            .iter()
            .map(|m| i64::from(m.version))
            .collect::<Vec<_>>()
    );
    let ledger = open(&path).await;
    ledger.close().await.unwrap();
    assert_eq!(
        schema_rows(&path),
        applied,
        "reopening changed schema_version"
    );
}

/// A database as a build that knew only `migrations` left it.
fn database_at(path: &Path, migrations: &[Migration]) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
         applied_at_ms INTEGER NOT NULL) STRICT;",
    )
    .unwrap();
    for m in migrations {
        conn.execute_batch(m.sqlite).unwrap();
        conn.execute(
            "INSERT INTO schema_version VALUES (?1, ?2, 0)",
            rusqlite::params![m.version, m.name],
        )
        .unwrap();
    }
    conn
}

#[tokio::test]
async fn an_old_database_is_upgraded_in_place() {
    let (_dir, path) = temp();
    {
        // A database left by a build that knew only migration 1, with a row.
        let conn = database_at(&path, &MIGRATIONS[..1]);
        conn.execute(
            "INSERT INTO ledger (request_id, ts, tenant, key_name, model, backend, endpoint,
             status, outcome, prompt_tokens, completion_tokens, estimated_tokens, usage_source,
             cost_micros, latency_ms)
             VALUES ('old', 1, 'acme', 'k', 'm', 'b', '/v1/chat/completions', 200, 'completed',
             3, 4, 10, 'upstream', 11, 5)",
            [],
        )
        .unwrap();
    }
    let ledger = open(&path).await;
    assert_eq!(ledger.schema_version().await.unwrap(), latest_version());
    assert_eq!(ledger.spent("acme", 0).await.unwrap().tokens, 7);
    ledger.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let indexes: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'ledger_%ts'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 2, "migration 2 created its indexes");
}

#[tokio::test]
async fn a_database_newer_than_the_code_is_refused() {
    let (_dir, path) = temp();
    open(&path).await.close().await.unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_version VALUES (99, 'from the future', 0)",
            [],
        )
        .unwrap();
    match SqliteLedger::open(&path, WriteOptions::default()).await {
        Err(e @ LedgerError::SchemaTooNew { found: 99, .. }) => {
            assert_eq!(
                e.to_string(),
                format!(
                    "ledger schema version 99 is newer than this build supports ({})",
                    latest_version()
                )
            );
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn locations_choose_the_store() {
    let (_dir, path) = temp();
    let ledger = Ledger::open(
        &format!("sqlite://{}", path.display()),
        WriteOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(ledger.store_name(), "sqlite");
    for bad in ["mysql://x", "ledger.db", "sqlite:"] {
        assert!(
            matches!(
                Ledger::open(bad, WriteOptions::default()).await,
                Err(LedgerError::BadLocation(_))
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_memory_database_is_refused_for_lacking_wal() {
    match SqliteLedger::open(":memory:", WriteOptions::default()).await {
        Err(LedgerError::NotWal { mode }) => assert_eq!(mode, "memory"),
        other => panic!("expected NotWal, got {other:?}"),
    }
}

/// Throughput of batched writes; printed (run with `--nocapture`), not
/// asserted, because the shared test machine's speed varies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_batched_write_speed() {
    for (label, synchronous) in [
        ("sqlite synchronous=NORMAL", Synchronous::Normal),
        ("sqlite synchronous=FULL", Synchronous::Full),
    ] {
        let (_dir, path) = temp();
        let options = WriteOptions {
            synchronous,
            ..WriteOptions::default()
        };
        let ledger = Arc::new(Ledger::new(
            SqliteLedger::open(&path, options).await.unwrap(),
        ));
        scenarios::measure(label, Arc::clone(&ledger), 64, 300).await;
        // One task at a time: the latency an awaited `record` adds.
        scenarios::measure(&format!("{label}, sequential"), ledger, 1, 2000).await;
    }
}

mod audit {
    use super::*;
    use support::audit_scenarios;

    /// Each shared audit scenario on a fresh file.
    macro_rules! audit_scenario {
        ($name:ident) => {
            #[tokio::test]
            async fn $name() {
                let (_dir, path) = temp();
                audit_scenarios::$name(&open(&path).await).await;
            }
        };
    }

    audit_scenario!(audit_appends_and_exports_in_order);
    audit_scenario!(audit_tail_filters_newest_last);
    audit_scenario!(audit_nowait_is_durable_after_flush);
    audit_scenario!(invalid_audit_entries_are_refused);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_audit_and_ledger_writes() {
        let (_dir, path) = temp();
        let ledger = SqliteLedger::open(&path, support::tiny_batches())
            .await
            .unwrap();
        audit_scenarios::concurrent_audit_and_ledger_writes(Arc::new(Ledger::new(ledger))).await;
    }

    /// The database itself refuses to rewrite a stored decision; retention
    /// may still delete old rows, and `seq` is not reused after that.
    #[tokio::test]
    async fn rows_cannot_be_updated_and_seq_is_never_reused() {
        let (_dir, path) = temp();
        let ledger = open(&path).await;
        let e = support::audit_entry("r", "acme", "input", "block", 1);
        let first = ledger.audit(e.clone()).await.unwrap();
        let second = ledger.audit(e.clone()).await.unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let err = conn
            .execute("UPDATE audit SET action = 'allow'", [])
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let deleted = conn
            .execute("DELETE FROM audit WHERE seq = ?1", [second as i64])
            .unwrap();
        assert_eq!(deleted, 1);
        let third = ledger.audit(e.clone()).await.unwrap();
        assert!(third > second && second > first, "{first} {second} {third}");
        let stored = support::audit_export(&ledger).await;
        assert_eq!(stored, [e.json.clone(), e.json]);
    }

    /// Every row whose `audit` returned is there after the writer is gone
    /// without `close`, and a ledger from before the audit log gains the
    /// table when it is opened.
    #[tokio::test]
    async fn an_old_ledger_gains_the_audit_log_and_rows_survive_reopen() {
        let (_dir, path) = temp();
        drop(database_at(&path, &MIGRATIONS[..2]));
        let ledger = open(&path).await;
        assert_eq!(ledger.schema_version().await.unwrap(), latest_version());
        let e = support::audit_entry("kept", "acme", "output", "redact", DAY0 as u64);
        ledger.audit(e.clone()).await.unwrap();
        drop(ledger);
        let ledger = open(&path).await;
        assert_eq!(support::audit_export(&ledger).await, [e.json]);
        ledger.close().await.unwrap();
    }
}

#[tokio::test]
async fn key_budgets_round_trip_and_key_spend_is_by_name() {
    let (_dir, path) = temp();
    let ledger = open(&path).await;
    scenarios::key_budgets_round_trip_and_key_spend_is_by_name(&ledger).await;
    ledger.close().await.unwrap();
    // Seeding a key's budget reads one index range, never the whole ledger.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT COUNT(*), SUM(prompt_tokens + completion_tokens)
             FROM ledger WHERE tenant = 'acme' AND key_name = 'ci' AND ts >= 5",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        plan.iter().any(|step| step.contains("ledger_by_key")),
        "{plan:?}"
    );
}
