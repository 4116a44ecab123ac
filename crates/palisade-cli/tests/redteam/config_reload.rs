//! Config hot reload under attack: whoever can trigger reloads (touch the
//! file, send `SIGHUP`, call the admin endpoint) must not get a fresh burst
//! from them, drop requests in flight with them, or get a half-written file
//! applied.

use std::io::Write;
use std::time::{Duration, Instant};

use palisade_gateway::RunningGateway;
use palisade_testkit::ScriptedUpstream;
use serde_json::json;

use crate::harness::{load, start_reloadable as start};

async fn chat(http: &reqwest::Client, gw: &RunningGateway, model: &str) -> u16 {
    http.post(format!("http://{}/v1/chat/completions", gw.local_addr()))
        .json(&json!({"model": model, "max_tokens": 5,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// The file rewritten in a loop (each version a valid, hot-only edit), with
/// the poller and explicit reloads racing: the tenant's burst of 5 at 6/min
/// is never refilled, and requests in flight across the storm finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_storm_neither_refills_limits_nor_drops_requests_in_flight() {
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("palisade.toml");
    let version = |n: usize| {
        format!(
            "[reload]\nconfig_poll_ms = 100\n[backends.main]\nbase_url = \"{}\"\n\
             [limits]\nrequests_per_minute = 6\nburst = 5\n# edit {n}\n\
             [limits.models.unused-{n}]\nrequests_per_minute = 100\n",
            upstream.base_url()
        )
    };
    std::fs::write(&path, version(0)).expect("write");
    let gw = std::sync::Arc::new(start(&path).await);
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    // Two slow requests (1.5 s at the model) in flight through the storm.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let (http, gw) = (http.clone(), gw.clone());
            tokio::spawn(async move { chat(&http, &gw, "delay-1500").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut admitted = 2;
    for n in 1..=40 {
        std::fs::write(&path, version(n)).expect("write");
        if n % 4 == 0 {
            let _ = gw.reload_config().await;
        }
        if chat(&http, &gw, "m").await == 200 {
            admitted += 1;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for task in slow {
        assert_eq!(
            task.await.expect("joins"),
            200,
            "a reload dropped a request in flight"
        );
    }
    // Burst 5 plus one per 10 s elapsed, whatever the number of reloads.
    let allowed = 5 + started.elapsed().as_secs() / 10 + 1;
    assert!(
        admitted <= allowed,
        "{admitted} requests admitted across a reload storm; the limit allows {allowed}"
    );
    gw.shutdown();
}

/// A file caught mid-write (a prefix that is itself a valid config, which
/// would lift the tenant's limit) is never applied: an edit is applied only
/// once two polls, a full interval apart, read the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_config_file_never_becomes_active() {
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("palisade.toml");
    let head = format!(
        "[reload]\nconfig_poll_ms = 1000\n[backends.main]\nbase_url = \"{}\"\n",
        upstream.base_url()
    );
    let tail = "[limits]\nrequests_per_minute = 6\nburst = 2\n";
    let full = |n: usize| format!("{head}# version {n}\n{tail}");
    std::fs::write(&path, full(0)).expect("write");
    // The prefix validates on its own: applied, it would drop every limit.
    assert!(load(&head).is_ok());
    let gw = start(&path).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    // The burst is spent first: were the limit-less prefix ever applied, the
    // complete file after it would start from fresh counters.
    let spent = Instant::now();
    assert_eq!(chat(&http, &gw, "m").await, 200);
    assert_eq!(chat(&http, &gw, "m").await, 200);
    for n in 1..=4 {
        // Truncated and half written, left so for 0.7 of a poll interval (a
        // slow writer), then completed; rounds 1.75 intervals apart, so the
        // polls fall in the half-written window in most rounds.
        let mut file = std::fs::File::create(&path).expect("truncate");
        file.write_all(head.as_bytes()).expect("write head");
        file.flush().expect("flush");
        tokio::time::sleep(Duration::from_millis(700)).await;
        file.write_all(format!("# version {n}\n{tail}").as_bytes())
            .expect("write tail");
        drop(file);
        tokio::time::sleep(Duration::from_millis(1_050)).await;
    }
    // The counters held: one more request per 10 s elapsed at most.
    let mut admitted = 0;
    for _ in 0..6 {
        if chat(&http, &gw, "m").await == 200 {
            admitted += 1;
        }
    }
    let allowed = spent.elapsed().as_secs() / 10;
    assert!(
        admitted <= allowed,
        "{admitted} admitted (limit allows {allowed}): a half-written file was applied"
    );
    // Each complete version was applied at most once, and nothing else was.
    let status: serde_json::Value = http
        .get(format!("http://{}/admin/config", gw.local_addr()))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let applied = status["config"]["reloads_applied"].as_u64().expect("count");
    assert!(
        applied <= 4,
        "{applied} reloads applied for 4 complete edits: {status}"
    );
    gw.shutdown();
}
