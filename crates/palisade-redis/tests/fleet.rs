//! The fleet registry against a real `redis-server`: records expire with their replica,
//! withdrawals are told apart from crashes, hostile records are skipped, ids with `:`
//! cannot collide.

use std::time::Duration;

use palisade_fleet::Replica;
use palisade_redis::{RedisConnection, RedisFleet};
use palisade_testkit::RedisServer;

async fn registry(redis: &RedisServer) -> RedisFleet {
    let conn =
        RedisConnection::connect(&redis.url(), Duration::from_secs(2), Duration::from_secs(2))
            .await
            .expect("connects to the test redis");
    RedisFleet::new(conn, "test:fleet")
}

fn replica(id: &str, serial: u64, heartbeat: u64) -> Replica {
    Replica {
        id: id.to_owned(),
        serial,
        version: format!("v{serial}"),
        started_unix_ms: 1_000,
        enforcing_since_unix_ms: Some(1_400),
        heartbeat_unix_ms: heartbeat,
    }
}

fn ids(replicas: &[Replica]) -> Vec<&str> {
    let mut v: Vec<&str> = replicas.iter().map(|r| r.id.as_str()).collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_expire_withdrawals_are_marked() {
    let redis = RedisServer::start();
    let (a, b) = (registry(&redis).await, registry(&redis).await);
    a.announce(&replica("a", 3, 5_000), Duration::from_secs(10))
        .await
        .unwrap();
    b.announce(&replica("b", 3, 5_000), Duration::from_millis(150))
        .await
        .unwrap();
    let l = a.list(5_000).await.unwrap();
    assert_eq!(ids(&l.replicas), ["a", "b"]);

    // b stops heartbeating: its record expires and the member set forgets it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let l = a.list(5_300).await.unwrap();
    assert_eq!(ids(&l.replicas), ["a"]);
    assert!(l.withdrawn.is_empty(), "an expiry is not a withdrawal");

    // a withdraws: gone at once, and marked for a minute.
    a.withdraw("a", 6_000).await.unwrap();
    let l = b.list(6_100).await.unwrap();
    assert!(l.replicas.is_empty());
    assert_eq!(l.withdrawn, ["a"]);
    let l = b.list(6_000 + 61_000).await.unwrap();
    assert!(l.withdrawn.is_empty(), "withdrawal marks age out");
    // Announcing again clears the mark.
    a.announce(&replica("a", 4, 70_000), Duration::from_secs(10))
        .await
        .unwrap();
    a.withdraw("a", 70_100).await.unwrap();
    a.announce(&replica("a", 4, 70_200), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(b.list(70_300).await.unwrap().withdrawn.is_empty());
}

/// Anyone who can write to Redis can write a record: a record that does not parse, or
/// claims another id than the key it sits under, is skipped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_are_skipped() {
    let redis = RedisServer::start();
    let fleet = registry(&redis).await;
    fleet
        .announce(&replica("real", 2, 1_000), Duration::from_secs(10))
        .await
        .unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::pipe()
        .cmd("SET")
        .arg("test:fleet:replica:garbage")
        .arg("{not json")
        .ignore()
        .cmd("ZADD")
        .arg("test:fleet:members")
        .arg(1)
        .arg("garbage")
        .ignore()
        // A record stored under "liar" that claims to be "real" with a higher serial.
        .cmd("SET")
        .arg("test:fleet:replica:liar")
        .arg(serde_json::to_string(&replica("real", 99, 1_000)).unwrap())
        .ignore()
        .cmd("ZADD")
        .arg("test:fleet:members")
        .arg(1)
        .arg("liar")
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let l = fleet.list(1_000).await.unwrap();
    assert_eq!(ids(&l.replicas), ["real"]);
    assert_eq!(l.replicas[0].serial, 2);
    assert_eq!(l.malformed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_with_separators_do_not_collide() {
    let redis = RedisServer::start();
    let fleet = registry(&redis).await;
    for id in ["pod:1", "pod%3A1", "pod 1"] {
        fleet
            .announce(&replica(id, 1, 1_000), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let l = fleet.list(1_000).await.unwrap();
    assert_eq!(ids(&l.replicas), ["pod 1", "pod%3A1", "pod:1"]);
    assert_eq!(l.malformed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_has_one_winner_until_it_expires() {
    let redis = RedisServer::start();
    let a = registry(&redis).await;
    let b = registry(&redis).await;
    let ttl = Duration::from_millis(300);
    let (first, second) = tokio::join!(
        a.claim("anomaly:load_surge:-", "a", ttl),
        b.claim("anomaly:load_surge:-", "b", ttl)
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(
        first ^ second,
        "exactly one replica wins ({first}, {second})"
    );
    // The winner claiming again (a retry after a timed-out attempt) still
    // holds it; the loser still does not.
    let (winner, loser) = if first { (&a, "a") } else { (&b, "b") };
    assert!(winner
        .claim("anomaly:load_surge:-", loser, ttl)
        .await
        .unwrap());
    let (other, other_id) = if first { (&b, "b") } else { (&a, "a") };
    assert!(!other
        .claim("anomaly:load_surge:-", other_id, ttl)
        .await
        .unwrap());
    // Another name is another claim.
    assert!(a.claim("anomaly:load_surge:t1", "a", ttl).await.unwrap());
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(
        b.claim("anomaly:load_surge:-", "b", ttl).await.unwrap(),
        "an expired claim can be taken again"
    );
}
