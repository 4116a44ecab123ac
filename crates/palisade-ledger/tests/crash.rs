//! Durability under `kill -9`: a child process records entries, printing
//! each request id once `record` has returned; the test SIGKILLs it
//! mid-stream, reopens the ledger and checks that every printed id has its
//! row. The child is the crate's `crash_child` test-helper binary.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_ledger::{Ledger, WriteOptions};
use palisade_testkit::PostgresServer;
use support::export;

/// Kill the child once it has reported this many durable entries.
const KILL_AFTER: usize = 1500;

/// Runs the child against `location`, kills it with SIGKILL after
/// `KILL_AFTER` durable entries, and returns every id it reported.
fn run_and_kill(location: &str) -> HashSet<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_child"))
        .arg(location)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut printed = HashSet::new();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("RECORDED ") {
            printed.insert(id.to_owned());
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
    printed
}

async fn check_all_present(location: &str, printed: &HashSet<String>) {
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
    ledger.close().await.unwrap();
}

#[tokio::test]
async fn sqlite_keeps_every_recorded_entry_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let location = format!("sqlite:{}", dir.path().join("ledger.db").display());
    let printed = tokio::task::spawn_blocking({
        let location = location.clone();
        move || run_and_kill(&location)
    })
    .await
    .unwrap();
    check_all_present(&location, &printed).await;
}

#[tokio::test]
async fn postgres_keeps_every_recorded_entry_after_kill_9() {
    let pg = PostgresServer::start();
    let location = pg.url();
    let printed = tokio::task::spawn_blocking({
        let location = location.clone();
        move || run_and_kill(&location)
    })
    .await
    .unwrap();
    check_all_present(&location, &printed).await;
}
