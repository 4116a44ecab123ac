//! `palisade fleet status` against real `palisade serve` processes sharing a real
//! `redis-server`: both replicas listed as enforcing, `--max-skew` passes, then fails
//! once a replica with a newer serial joins, and `--json` carries the same view.

mod support;

use std::time::{Duration, Instant};

use palisade_fleet::Replica;
use palisade_redis::{RedisConnection, RedisFleet};
use palisade_testkit::RedisServer;
use support::Palisade;

fn status(redis: &str, extra: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["fleet", "status", "--redis", redis])
        .args(extra)
        .env_remove("PALISADE_CONFIG")
        .output()
        .expect("palisade runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_status_lists_replicas_and_checks_the_skew() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Vec::new();
    for id in ["r1", "r2"] {
        let path = dir.path().join(format!("{id}.toml"));
        std::fs::write(
            &path,
            format!(
                "[fleet]\nredis_url = \"{}\"\nreplica_id = \"{id}\"\nheartbeat_ms = 100\nttl_ms = 1000\n",
                redis.url()
            ),
        )
        .unwrap();
        replicas.push(Palisade::serve(
            &[
                "--config",
                path.to_str().unwrap(),
                "--upstream",
                "http://127.0.0.1:9/v1",
            ],
            &[],
        ));
    }
    let until = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < until {
        let (ok, out) = status(&redis.url(), &["--max-skew", "0"]);
        if ok && out.starts_with("2 replicas") {
            break;
        }
        last = out;
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, out) = status(&redis.url(), &["--max-skew", "0"]);
    assert!(ok, "{out}\n(earlier: {last})");
    assert!(
        out.starts_with("2 replicas, fleet serial 0, skew 0"),
        "{out}"
    );
    for id in ["r1", "r2"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} in {out}"));
        assert!(line.contains(" yes "), "{line}");
    }

    // A replica enforcing serial 3 joins: r1 and r2 are now 3 behind.
    let conn =
        RedisConnection::connect(&redis.url(), Duration::from_secs(2), Duration::from_secs(2))
            .await
            .unwrap();
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    RedisFleet::new(conn, "palisade:fleet")
        .announce(
            &Replica {
                id: "r3".into(),
                serial: 3,
                version: "p-new".into(),
                started_unix_ms: now - 300,
                enforcing_since_unix_ms: Some(now - 100),
                heartbeat_unix_ms: now,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let (ok, out) = status(&redis.url(), &["--max-skew", "1"]);
    assert!(!ok, "skew 3 > 1 must fail: {out}");
    assert!(out.contains("version skew 3 exceeds 1"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("r1") && l.contains("behind")),
        "{out}"
    );
    let (ok, json) = status(&redis.url(), &["--json"]);
    assert!(ok, "{json}");
    let view: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(view["fleet_serial"], 3);
    assert_eq!(view["replicas"].as_array().unwrap().len(), 3);
    drop(replicas);
}
