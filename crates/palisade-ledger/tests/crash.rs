//! Durability under `kill -9`: a child process records entries (and, in
//! the audit variant, audit records too), printing each request id once
//! `record` (`audit`) has returned; the test SIGKILLs it mid-stream, reopens
//! the ledger and checks that every printed id has its row. The child is the
//! crate's `crash_child` test-helper binary.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_ledger::{Ledger, WriteOptions};
use palisade_testkit::PostgresServer;
use support::{audit_export, export, request_id_of};

/// Kill the child once it has reported this many durable entries.
const KILL_AFTER: usize = 1500;

/// What the child reported durable before it was killed.
#[derive(Debug, Default)]
struct Reported {
    recorded: HashSet<String>,
    audited: HashSet<String>,
}

/// Runs the child against `location` (with `args`), kills it with SIGKILL
/// after `KILL_AFTER` durable entries, and returns every id it reported.
fn run_and_kill(location: &str, args: &[&str]) -> Reported {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_child"))
        .arg(location)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reported = Reported::default();
    let printed = &mut reported.recorded;
    let audited = &mut reported.audited;
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("RECORDED ") {
            printed.insert(id.to_owned());
        }
        if let Some(id) = line.strip_prefix("AUDITED ") {
            audited.insert(id.to_owned());
        }
        if !killed && (printed.len() >= KILL_AFTER || Instant::now() > deadline) {
            // `Child::kill` is SIGKILL on Unix. Keep reading: lines already
            // in the pipe were printed before the kill and count too.
            child.kill().unwrap();
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "the child exited on its own ({status}) after {} entries",
        printed.len()
    );
    assert!(
        printed.len() >= KILL_AFTER,
        "the child reported only {} entries",
        printed.len()
    );
    reported
}

async fn check_all_present(location: &str, reported: &Reported) {
    let printed = &reported.recorded;
    let ledger = Ledger::open(location, WriteOptions::default())
        .await
        .unwrap();
    let stored: HashSet<String> = export(&ledger)
        .await
        .into_iter()
        .map(|e| e.request_id)
        .collect();
    let missing: Vec<&String> = printed.difference(&stored).collect();
    println!(
        "crash test {}: {} ids reported durable, {} rows stored, {} missing",
        location.split(':').next().unwrap_or(""),
        printed.len(),
        stored.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "rows lost after kill -9: {missing:?}");
    let audit_rows = audit_export(&ledger).await;
    let stored: HashSet<String> = audit_rows.iter().map(|l| request_id_of(l)).collect();
    let missing: Vec<&String> = reported.audited.difference(&stored).collect();
    println!(
        "crash test audit: {} ids reported durable, {} rows stored, {} missing",
        reported.audited.len(),
        audit_rows.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "audit rows lost after kill -9: {missing:?}"
    );
    // Each audit returned at most once per id, and none was stored twice.
    assert_eq!(
        stored.len(),
        audit_rows.len(),
        "an audit row was stored twice"
    );
    ledger.close().await.unwrap();
}

/// Runs the child with `args` against `location`, kills it, and checks
/// what it reported against the reopened store.
async fn kill_and_check(location: String, args: &'static [&'static str]) {
    let reported = tokio::task::spawn_blocking({
        let location = location.clone();
        move || run_and_kill(&location, args)
    })
    .await
    .unwrap();
    if args.contains(&"audit") {
        assert!(!reported.audited.is_empty(), "the child audited nothing");
    }
    check_all_present(&location, &reported).await;
}

fn sqlite_location(dir: &tempfile::TempDir) -> String {
    format!("sqlite:{}", dir.path().join("ledger.db").display())
}

#[tokio::test]
async fn sqlite_keeps_every_recorded_entry_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    kill_and_check(sqlite_location(&dir), &[]).await;
}

#[tokio::test]
async fn sqlite_keeps_every_audit_record_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    kill_and_check(sqlite_location(&dir), &["audit"]).await;
}

#[tokio::test]
async fn postgres_keeps_every_recorded_entry_after_kill_9() {
    let pg = PostgresServer::start();
    kill_and_check(pg.url(), &[]).await;
}

#[tokio::test]
async fn postgres_keeps_every_audit_record_after_kill_9() {
    let pg = PostgresServer::start();
    kill_and_check(pg.url(), &["audit"]).await;
}
