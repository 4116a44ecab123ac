//! The log and audit trail under pressure (issue #17): the gateway writes its
//! log lines, audit records included, in batches through a bounded queue.
//!
//! The attack: flood the gateway while whatever reads its standard output (a
//! log shipper) has stalled, so the queue fills. The old writer
//! (tracing-appender's non-blocking writer) dropped lines once its queue was
//! full, so a flood timed with a wedged shipper erased the audit records of
//! the requests inside it. Now a full queue makes the logging request wait:
//! every decision is still written once the reader catches up.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};

/// Requests sent while nobody reads the log: their lines (an access line and
/// two audit records each, ~1.5 KB) are far more than a pipe (64 KiB) and the
/// writer's queue (1,024 lines) hold together.
const REQUESTS: usize = 600;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_with_a_stalled_log_reader_loses_no_audit_record() {
    let upstream = ScriptedUpstream::start().await;
    let port = free_port();
    // Admission limits high enough that the whole flood is admitted and judged
    // (and the extraction ladder only observes: the flood is repetitive).
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[backends.main]\nbase_url = \"{}\"\n[limits]\nrequests_per_minute = 1000000\nburst = 100000\nmax_in_flight_per_key = 1000\n[extraction]\nenforce = false\n",
            upstream.base_url()
        ),
    )
    .expect("config written");
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--config",
            &config.display().to_string(),
            "--log-format",
            "json",
        ])
        .env_remove("PALISADE_CONFIG")
        .env("PALISADE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("palisade starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "palisade did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The flood, 16 at a time, while the log's reader is stalled.
    let flood = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move {
            let mut ok = 0;
            for batch in 0..REQUESTS / 16 {
                let sends = (0..16).map(|i| {
                    let body = json!({"model": "m", "messages": [{"role": "user",
                        "content": format!("Question {batch}-{i}: what is a borrow checker?")}]});
                    http.post(format!("{base}/v1/chat/completions"))
                        .json(&body)
                        .send()
                });
                for r in futures_util::future::join_all(sends).await {
                    match r {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) => eprintln!("refused: {}", r.status()),
                        Err(e) => eprintln!("failed: {e}"),
                    }
                }
            }
            ok
        })
    };
    // Long enough for the pipe and the queue to fill; then the reader wakes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut stdout = child.stdout.take().expect("stdout piped");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stdout.read_to_string(&mut all);
        all
    });
    let ok = flood.await.expect("flood task");
    assert_eq!(
        ok,
        REQUESTS / 16 * 16,
        "every request of the flood answered"
    );

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    let waited: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("palisade_log_queue_full_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(waited >= 1.0, "the log queue never filled: {waited}");

    // SIGTERM: the gateway drains, then the writer writes what is queued.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let _ = child.wait();
    let log = reader.join().expect("reader");
    let mut served = 0;
    let mut decisions = std::collections::BTreeMap::<String, usize>::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["message"] == "served" && v["status"] == 200 {
            served += 1;
        }
        if v["target"] == "palisade::audit" {
            let record: Value = v["record"]
                .as_str()
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or(Value::Null);
            let gate = record["gate"].as_str().unwrap_or("?").to_owned();
            *decisions.entry(gate).or_default() += 1;
        }
    }
    let n = REQUESTS / 16 * 16;
    // Access lines: the flood's, plus /readyz probes and /metrics.
    assert!(served >= n, "{served} access lines for {n} requests");
    // At least one input and one output decision per request (a few requests
    // carry more than one record of a gate).
    for gate in ["input", "output"] {
        let got = decisions.get(gate).copied().unwrap_or(0);
        assert!(
            got >= n,
            "{got} {gate} records for {n} requests: {decisions:?}"
        );
    }
}
