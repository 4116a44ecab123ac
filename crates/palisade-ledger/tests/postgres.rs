//! The PostgreSQL store against a real server started by the test
//! (`palisade_testkit::PostgresServer`; needs Debian's `postgresql` package).

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use palisade_ledger::schema::latest_version;
use palisade_ledger::{Ledger, LedgerError, LedgerStore, PostgresLedger, Recorded, WriteOptions};
use palisade_testkit::PostgresServer;
use support::{entry, export, scenarios, DAY0};

async fn connect(pg: &PostgresServer) -> Ledger {
    Ledger::open(&pg.url(), WriteOptions::default())
        .await
        .unwrap()
}

/// Each shared scenario on its own fresh server (from `scenarios` unless a
/// module is named).
macro_rules! scenario {
    ($module:ident :: $name:ident) => {
        scenario!($module::$name, WriteOptions::default());
    };
    ($module:ident :: $name:ident, $options:expr) => {
        #[tokio::test]
        async fn $name() {
            let pg = PostgresServer::start();
            let ledger = Ledger::open(&pg.url(), $options).await.unwrap();
            $module::$name(&ledger).await;
            ledger.close().await.unwrap();
        }
    };
    ($name:ident) => {
        scenario!(scenarios::$name);
    };
    ($name:ident, $options:expr) => {
        scenario!(scenarios::$name, $options);
    };
}

scenario!(idempotent_on_request_id);
scenario!(usage_groups_and_filters);
scenario!(nowait_entries_are_durable_after_flush);
scenario!(export_round_trips);
scenario!(key_budgets_round_trip_and_key_spend_is_by_name);
scenario!(invalid_entries_are_refused);
scenario!(small_batches_with_linger, support::tiny_batches());
scenario!(
    a_full_queue_is_reported_not_waited_on,
    support::tiny_queue()
);

async fn client(pg: &PostgresServer) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg.conninfo(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_count_each_request_once() {
    let pg = PostgresServer::start();
    scenarios::concurrent_tasks_count_each_request_once(Arc::new(connect(&pg).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_migrate_together_and_share_idempotency() {
    let pg = PostgresServer::start();
    // Four "replicas" start at once against an empty database: the advisory
    // lock makes exactly one of them migrate.
    let url = pg.url();
    let mut starts = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        starts.push(tokio::spawn(async move {
            PostgresLedger::connect(&url, WriteOptions::default())
                .await
                .unwrap()
        }));
    }
    let mut replicas = Vec::new();
    for s in starts {
        replicas.push(s.await.unwrap());
    }
    // The same request id written by every replica counts once.
    let e = entry("shared-id", "acme", "m", DAY0, 10, 10);
    let mut inserted = 0;
    for r in &replicas {
        if r.record(&e).await.unwrap() == Recorded::Inserted {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 1);
    assert_eq!(replicas[0].spent("acme", 0).await.unwrap().requests, 1);
    let versions: Vec<i32> = client(&pg)
        .await
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        (1..=i32::try_from(latest_version()).unwrap()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn reconnecting_is_a_no_op_and_keeps_rows() {
    let pg = PostgresServer::start();
    let ledger = connect(&pg).await;
    let e = entry("kept", "acme", "m", DAY0, 5, 5);
    assert_eq!(ledger.record(&e).await.unwrap(), Recorded::Inserted);
    drop(ledger);
    let before: Vec<(i32, i64)> = client(&pg)
        .await
        .query(
            "SELECT version, applied_at_ms FROM schema_version ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let ledger = connect(&pg).await;
    assert_eq!(ledger.schema_version().await.unwrap(), latest_version());
    assert_eq!(export(&ledger).await, vec![e]);
    let after: Vec<(i32, i64)> = client(&pg)
        .await
        .query(
            "SELECT version, applied_at_ms FROM schema_version ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(before, after, "reconnecting changed schema_version");
}

#[tokio::test]
async fn a_database_newer_than_the_code_is_refused() {
    let pg = PostgresServer::start();
    connect(&pg).await.close().await.unwrap();
    client(&pg)
        .await
        .batch_execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
        .await
        .unwrap();
    match PostgresLedger::connect(&pg.conninfo(), WriteOptions::default()).await {
        Err(LedgerError::SchemaTooNew {
            found: 99,
            supported,
        }) => {
            assert_eq!(supported, latest_version());
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

/// Throughput of batched writes; printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_batched_write_speed() {
    let pg = PostgresServer::start();
    let ledger = Arc::new(connect(&pg).await);
    scenarios::measure("postgres", Arc::clone(&ledger), 64, 100).await;
    scenarios::measure("postgres, sequential", ledger, 1, 1000).await;
}

/// Runs a blocking server operation (stop, restart) without stalling the
/// runtime's other worker, which drives the ledger's connection.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Bound on any one write in the restart tests: generous for a loaded
/// machine, far below "hangs forever".
const WRITE_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

async fn record_within_bound(ledger: &Ledger, id: &str) -> Result<Recorded, LedgerError> {
    let e = entry(id, "acme", "m", DAY0, 3, 4);
    tokio::time::timeout(WRITE_BOUND, ledger.record(&e))
        .await
        .unwrap_or_else(|_| panic!("record({id}) took over {WRITE_BOUND:?}"))
}

fn ids(entries: &[palisade_ledger::LedgerEntry]) -> Vec<String> {
    entries.iter().map(|e| e.request_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_after_the_server_restarts() {
    let mut pg = PostgresServer::start();
    let ledger = connect(&pg).await;
    let mut written = Vec::new();
    for i in 0..20 {
        let id = format!("before-{i}");
        assert_eq!(
            record_within_bound(&ledger, &id).await.unwrap(),
            Recorded::Inserted
        );
        written.push(id);
    }

    // Same port, same data: the ledger's connection is cut by the fast
    // shutdown, and the next write must reconnect on its own.
    blocking(|| pg.restart());
    for i in 0..20 {
        let id = format!("after-{i}");
        assert_eq!(
            record_within_bound(&ledger, &id).await.unwrap(),
            Recorded::Inserted
        );
        written.push(id);
    }
    // Queued entries ride through a restart too.
    blocking(|| pg.restart());
    for i in 0..20 {
        let id = format!("queued-{i}");
        ledger
            .record_nowait(entry(&id, "acme", "m", DAY0, 3, 4))
            .unwrap();
        written.push(id);
    }
    tokio::time::timeout(WRITE_BOUND, ledger.flush())
        .await
        .expect("flush within the bound")
        .unwrap();

    // A read first after a restart reconnects as well.
    blocking(|| pg.restart());
    let spent = ledger.spent("acme", 0).await.unwrap();
    assert_eq!(spent.requests, 60);
    assert_eq!(ids(&export(&ledger).await), written);
    ledger.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fail_typed_while_the_server_is_down_then_resume() {
    let mut pg = PostgresServer::start();
    let reconnect_timeout = std::time::Duration::from_secs(1);
    let options = WriteOptions {
        reconnect_timeout,
        ..WriteOptions::default()
    };
    let ledger = Ledger::open(&pg.url(), options).await.unwrap();
    assert_eq!(
        record_within_bound(&ledger, "up").await.unwrap(),
        Recorded::Inserted
    );

    blocking(|| pg.stop());
    let started = std::time::Instant::now();
    match record_within_bound(&ledger, "while-down").await {
        Err(LedgerError::WriteFailed(cause)) => {
            assert!(matches!(*cause, LedgerError::Postgres(_)), "{cause:?}");
        }
        other => panic!("expected WriteFailed, got {other:?}"),
    }
    // It retried (backoff 50 + 100 + 200 ms at least) and then gave up
    // near its timeout rather than waiting for the server.
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(350),
        "gave up after {waited:?} without retrying"
    );
    assert!(waited < reconnect_timeout * 5, "waited {waited:?}");

    blocking(|| pg.restart());
    assert_eq!(
        record_within_bound(&ledger, "back").await.unwrap(),
        Recorded::Inserted
    );
    // The failed entry was reported, not stored; the others are there.
    assert_eq!(ids(&export(&ledger).await), ["up", "back"]);
    ledger.close().await.unwrap();
}

mod audit {
    use super::*;
    use support::audit_scenarios;

    scenario!(audit_scenarios::audit_appends_and_exports_in_order);
    scenario!(audit_scenarios::audit_tail_filters_newest_last);
    scenario!(audit_scenarios::audit_nowait_is_durable_after_flush);
    scenario!(audit_scenarios::invalid_audit_entries_are_refused);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_audit_and_ledger_writes() {
        let pg = PostgresServer::start();
        let ledger = Ledger::open(&pg.url(), support::tiny_batches())
            .await
            .unwrap();
        audit_scenarios::concurrent_audit_and_ledger_writes(Arc::new(ledger)).await;
    }

    /// Two replicas append to one log: each gets its own `seq`s, and the
    /// database refuses to rewrite a stored decision.
    #[tokio::test]
    async fn replicas_share_the_log_and_rows_cannot_be_updated() {
        let pg = PostgresServer::start();
        let a = connect(&pg).await;
        let b = connect(&pg).await;
        let mut seqs = HashSet::new();
        for i in 0..20_u64 {
            let writer = if i % 2 == 0 { &a } else { &b };
            let e = support::audit_entry(&format!("r{i}"), "acme", "input", "allow", i);
            assert!(seqs.insert(writer.audit(e).await.unwrap()));
        }
        assert_eq!(support::audit_export(&a).await.len(), 20);
        let err = client(&pg)
            .await
            .batch_execute("UPDATE audit SET action = 'block'")
            .await
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("append-only"),
            "update was not refused: {err:?}"
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
    }

    /// Audit writes ride through a server restart like ledger writes, and
    /// none is stored twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn audit_writes_resume_after_the_server_restarts() {
        let mut pg = PostgresServer::start();
        let ledger = connect(&pg).await;
        let mut written = Vec::new();
        let mut audit = |id: String| {
            written.push(id.clone());
            support::audit_entry(&id, "acme", "output", "redact", DAY0 as u64)
        };
        // Awaited writes before the first restart and after it, then
        // queued ones after the second.
        for phase in ["before", "after"] {
            for i in 0..10 {
                let e = audit(format!("{phase}-{i}"));
                tokio::time::timeout(WRITE_BOUND, ledger.audit(e))
                    .await
                    .unwrap()
                    .unwrap();
            }
            blocking(|| pg.restart());
        }
        for i in 0..10 {
            ledger.audit_nowait(audit(format!("queued-{i}"))).unwrap();
        }
        tokio::time::timeout(WRITE_BOUND, ledger.flush())
            .await
            .expect("flush within the bound")
            .unwrap();
        let stored: Vec<String> = support::audit_export(&ledger)
            .await
            .iter()
            .map(|l| support::request_id_of(l))
            .collect();
        assert_eq!(stored, written);
        ledger.close().await.unwrap();
    }
}
