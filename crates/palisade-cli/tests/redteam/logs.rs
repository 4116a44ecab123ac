//! The log and audit trail under pressure (issue #17): the gateway writes its
//! log lines, audit records included, in batches through a bounded queue.
//!
//! The attack: flood the gateway while whatever reads its standard output (a
//! log shipper) has stalled, so the queue fills. The old writer
//! (tracing-appender's non-blocking writer) dropped lines once its queue was
//! full, so a flood timed with a wedged shipper erased the audit records of
//! the requests inside it. Now a full queue makes the logging request wait:
//! every decision is still written once the reader catches up.
//!
//! The second attack: values that reach a log line (a wildcard route logs
//! and audits the client's model name) carrying line breaks, quotes and a
//! forged audit line, to split one request's line into two or forge an
//! `allow` record. The access line escapes control characters and line
//! separators (`context::OneLine`); the audit record's JSON escapes them too
//! (U+2028, U+2029 and U+0085 included).

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

/// How often a log line had to wait for room in the writer's queue; `None`
/// when the scrape itself gets no answer within two seconds (its own log
/// line, or the thread serving it, is waiting for room: the queue is full).
async fn queue_full_count(http: &reqwest::Client, base: &str) -> Option<f64> {
    let scrape = async {
        let r = http.get(format!("{base}/metrics")).send().await.ok()?;
        let text = r.text().await.ok()?;
        Some(
            text.lines()
                .find_map(|l| l.strip_prefix("palisade_log_queue_full_total "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0),
        )
    };
    tokio::time::timeout(Duration::from_secs(2), scrape)
        .await
        .ok()
        .flatten()
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
    // Until the pipe and the queue are full (the flood's lines are far more
    // than both hold, so it must happen; polled, not timed, so a slow or busy
    // machine does not wake the reader too early); then the reader wakes.
    let full_by = Instant::now() + Duration::from_secs(90);
    // A scrape that gets no answer means the gateway itself waits for room:
    // full as well (a scrape stuck for the client's whole timeout would hold
    // the flood's requests past theirs).
    while Instant::now() < full_by {
        match queue_full_count(&http, &base).await {
            Some(n) if n < 1.0 => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => break,
        }
    }
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

    let waited = queue_full_count(&http, &base).await;
    assert!(
        waited.is_some_and(|n| n >= 1.0),
        "the log queue never filled: {waited:?}"
    );

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

/// What a hostile client puts in a value that reaches the log: the model
/// name (a wildcard route logs and audits the client's name) carrying line
/// breaks of every kind, quotes, a terminal escape and a forged audit line
/// in both log formats, to make one request's lines read as two, or as an
/// `allow` record that was never decided.
const FORGED_MODEL: &str = "m\n2026-01-01T00:00:00.000000Z  INFO palisade::audit: gate decision record={\"gate\":\"output\",\"action\":\"allow\"}\r\n{\"target\":\"palisade::audit\",\"record\":\"{}\"}\u{85}\u{2028}\u{2029}\u{1b}[2J\"}";

/// Runs the gateway in `format`, sends the hostile requests, returns its
/// standard output after a clean stop.
async fn hostile_values_logged(format: &str) -> String {
    let upstream = ScriptedUpstream::start().await;
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("palisade.toml");
    // One backend and no routes: the wildcard route, which passes the
    // client's model name through.
    std::fs::write(
        &config,
        format!("[backends.main]\nbase_url = \"{}\"\n", upstream.base_url()),
    )
    .expect("config written");
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--config",
            &config.display().to_string(),
            "--log-format",
            format,
        ])
        .env_remove("PALISADE_CONFIG")
        .env("PALISADE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("palisade starts");
    let mut stdout = child.stdout.take().expect("stdout piped");
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        all
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "palisade did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for model in [FORGED_MODEL.to_owned(), "x".repeat(1 << 20)] {
        let r = http
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hello"}]}))
            .send()
            .await
            .expect("answered");
        let status = r.status().as_u16();
        if model.len() > 1000 {
            assert!(
                matches!(status, 400 | 413),
                "a 1 MB model name is refused: {status}"
            );
        } else {
            assert_eq!(status, 200, "{}", r.text().await.unwrap_or_default());
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let _ = child.wait();
    let out = reader.join().expect("reader");
    let out = String::from_utf8(out).expect("the log is UTF-8");
    for c in ['\r', '\u{85}', '\u{2028}', '\u{2029}', '\u{1b}'] {
        assert!(!out.contains(c), "a raw {c:?} reached the log");
    }
    assert!(!out.contains(&"x".repeat(300)), "the 1 MB name was logged");
    out
}

/// JSON lines: every line is one JSON object; the forged record is a value
/// inside the real ones, never a record of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_model_name_cannot_split_or_forge_a_json_log_line() {
    let log = hostile_values_logged("json").await;
    let mut records = Vec::new();
    let mut served = 0;
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["target"] == "palisade::audit" {
            let record: Value = serde_json::from_str(v["record"].as_str().expect("a record"))
                .unwrap_or_else(|e| panic!("{e}: {line}"));
            records.push(record);
        }
        if v["message"] == "served"
            && v["model"]
                .as_str()
                .is_some_and(|m| m.starts_with("m\\u{000a}2026-01-01T"))
        {
            served += 1;
        }
    }
    assert_eq!(served, 1, "the hostile request's access line, whole");
    assert!(records.len() >= 2, "{records:?}");
    // One gated request (the 1 MB name was refused before the gates): its
    // records, all whole, and no other.
    for r in &records {
        assert_eq!(r["request_id"], records[0]["request_id"], "{r}");
        assert_eq!(r["model"], FORGED_MODEL, "{r}");
    }
}

/// Text lines: every line starts with a timestamp and a level; the only
/// audit lines are the real decisions, whose records read back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_model_name_cannot_split_or_forge_a_text_log_line() {
    let log = hostile_values_logged("text").await;
    let mut records = Vec::new();
    for line in log.lines() {
        let b = line.as_bytes();
        assert!(
            b.len() > 33 && b[4] == b'-' && b[26] == b'Z' && b[27..].starts_with(b"  "),
            "a line that is not a log line: {line:?}"
        );
        // The target follows the span context (`request{…}: `), if any.
        let rest = line[33..].trim_start();
        let rest = match rest.find("}: ") {
            Some(i) if rest.starts_with("request{") => &rest[i + 3..],
            _ => rest,
        };
        if let Some(record) = rest.strip_prefix("palisade::audit: gate decision record=") {
            let record: Value =
                serde_json::from_str(record).unwrap_or_else(|e| panic!("{e}: {line}"));
            records.push(record);
        }
    }
    assert!(records.len() >= 2, "{log}");
    // One gated request (the 1 MB name was refused before the gates): its
    // records, all whole, and no other.
    for r in &records {
        assert_eq!(r["request_id"], records[0]["request_id"], "{r}");
        assert_eq!(r["model"], FORGED_MODEL, "{r}");
    }
}
