//! The fleet registry through real gateways sharing a real `redis-server`: replicas see
//! each other, events reach the webhook once each (a replica reports its own, the leader
//! reports departures), a crash is told from a clean shutdown, a replica behind the
//! fleet's serial says so, and a registry that is down never stops a replica serving.

mod support;

use std::time::{Duration, Instant};

use palisade_fleet::Replica;
use palisade_gateway::RunningGateway;
use palisade_redis::{RedisConnection, RedisFleet};
use palisade_testkit::{RedisServer, WebhookRecorder};
use serde_json::Value;
use sha2::Digest;
use support::gateway as start;

const KEY_OPS: &str = "sk-operator-0123456789abcdef";

fn config(redis: &str, id: &str, webhook: &str) -> String {
    let hash = hex::encode(sha2::Sha256::digest(KEY_OPS.as_bytes()));
    format!(
        "[[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{hash}\"\nadmin = true\n\
         [fleet]\nredis_url = \"{redis}\"\nreplica_id = \"{id}\"\nheartbeat_ms = 100\nttl_ms = 400\n\
         events_webhook_url = \"{webhook}\"\nkey_prefix = \"t:fleet\"\n"
    )
}

/// `(event, id)` of every fleet event the webhook received.
fn events(hook: &WebhookRecorder) -> Vec<(String, String)> {
    hook.bodies()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("").to_owned(),
                e["id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn fleet_of(gw: &RunningGateway) -> Value {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/admin/fleet", gw.local_addr()))
        .bearer_auth(KEY_OPS)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls (bounded: 10 s) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

fn count(events: &[(String, String)], kind: &str, id: &str) -> usize {
    events.iter().filter(|(k, i)| k == kind && i == id).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_see_each_other_and_each_event_is_reported_once() {
    let redis = RedisServer::start();
    let hook = WebhookRecorder::start().await;
    let a = start(&config(&redis.url(), "a", hook.url())).await;
    let b = start(&config(&redis.url(), "b", hook.url())).await;
    eventually("a sees both replicas", async || {
        fleet_of(&a).await["replicas"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    let view = fleet_of(&a).await;
    assert_eq!(view["replica"], "a");
    assert_eq!(view["registry"], "redis");
    assert_eq!(view["skew"], 0);
    for r in view["replicas"].as_array().unwrap() {
        assert_eq!(r["enforcing"], true, "{r}");
        assert!(r["provisioning_ms"].as_u64().is_some(), "{r}");
        assert!(r["heartbeat_age_ms"].as_u64().unwrap() < 400, "{r}");
    }

    b.shutdown();
    b.wait().await.unwrap();
    eventually("a sees b leave", async || {
        fleet_of(&a).await["replicas"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    eventually("the departure reaches the webhook", async || {
        count(&events(&hook), "left", "b") >= 1
    })
    .await;
    // A few more heartbeats: nothing is reported twice.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let events = events(&hook);
    for (kind, id) in [
        ("joined", "a"),
        ("enforcing", "a"),
        ("joined", "b"),
        ("enforcing", "b"),
        ("left", "b"),
    ] {
        assert_eq!(count(&events, kind, id), 1, "{kind} {id} in {events:?}");
    }
    let left = hook
        .bodies()
        .into_iter()
        .find(|e| e["event"] == "left")
        .unwrap();
    assert_eq!(
        left["because"], "withdrew",
        "a clean shutdown is not a crash"
    );
}

/// A record written by a replica that then dies (no withdrawal), with a higher serial:
/// the live replica reports that it is behind, then — when the dead one's record expires —
/// that it left (expired) and that the live one caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_then_a_crash_expires() {
    let redis = RedisServer::start();
    let hook = WebhookRecorder::start().await;
    let a = start(&config(&redis.url(), "a", hook.url())).await;
    eventually("a is enforcing", async || {
        count(&events(&hook), "enforcing", "a") == 1
    })
    .await;

    let conn =
        RedisConnection::connect(&redis.url(), Duration::from_secs(2), Duration::from_secs(2))
            .await
            .unwrap();
    let ghost = RedisFleet::new(conn, "t:fleet");
    let unix_ms = || {
        u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
    };
    let started = unix_ms();
    // The ghost heartbeats for 1.5 s, then "crashes": no withdrawal, its record expires.
    let heartbeats = tokio::spawn(async move {
        for _ in 0..15 {
            let now = unix_ms();
            ghost
                .announce(
                    &Replica {
                        id: "ghost".into(),
                        serial: 5,
                        version: "p-ghost".into(),
                        started_unix_ms: started - 500,
                        enforcing_since_unix_ms: Some(started - 400),
                        heartbeat_unix_ms: now,
                    },
                    Duration::from_millis(400),
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    eventually("a reports it is behind", async || {
        count(&events(&hook), "behind", "a") == 1
    })
    .await;
    eventually("a's view shows the skew", async || {
        let view = fleet_of(&a).await;
        let me = view["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == "a")
            .cloned();
        view["skew"] == 5 && view["fleet_serial"] == 5 && me.is_some_and(|r| r["behind"] == true)
    })
    .await;
    heartbeats.await.unwrap();
    eventually("the ghost expires", async || {
        count(&events(&hook), "left", "ghost") == 1
    })
    .await;
    eventually("a caught up", async || {
        count(&events(&hook), "caught_up", "a") == 1
    })
    .await;
    let left = hook
        .bodies()
        .into_iter()
        .find(|e| e["event"] == "left")
        .unwrap();
    assert_eq!(left["because"], "expired");
}

/// The registry is observability: with Redis unreachable the replica still becomes
/// ready and serves, and says what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_is_down_never_stops_a_replica() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw = start(&config(
        &format!("redis://127.0.0.1:{port}/0"),
        "lonely",
        "http://127.0.0.1:9/",
    ))
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    eventually("the replica is ready", async || {
        http.get(format!("http://{}/readyz", gw.local_addr()))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    eventually("the registry error is reported", async || {
        fleet_of(&gw).await["registry_error"].is_string()
    })
    .await;
}
