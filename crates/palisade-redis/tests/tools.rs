//! The shared tool-call store against a real `redis-server`: a held call is taken once
//! whichever replica asks, listings follow expiry, tokens are single-use, conversation
//! counters add up across replicas.

use std::time::Duration;

use palisade_redis::{RedisConnection, RedisToolStore};
use palisade_testkit::RedisServer;

async fn store(redis: &RedisServer) -> RedisToolStore {
    let conn =
        RedisConnection::connect(&redis.url(), Duration::from_secs(2), Duration::from_secs(2))
            .await
            .expect("connects to the test redis");
    RedisToolStore::new(conn, "test")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_calls_are_taken_once_across_replicas() {
    let redis = RedisServer::start();
    let (a, b) = (store(&redis).await, store(&redis).await);
    let ttl = Duration::from_secs(60);
    a.park("acme", "pc_1", r#"{"n":1}"#, 2_000, ttl)
        .await
        .unwrap();
    a.park("acme", "pc_2", r#"{"n":2}"#, 1_500, ttl)
        .await
        .unwrap();
    b.park("globex", "pc_3", r#"{"n":3}"#, 1_800, ttl)
        .await
        .unwrap();

    assert_eq!(b.get("pc_1").await.unwrap().as_deref(), Some(r#"{"n":1}"#));
    // By tenant, soonest expiry first; past-expiry entries drop out.
    assert_eq!(
        b.list(Some("acme"), 1_000, 10).await.unwrap(),
        [r#"{"n":2}"#, r#"{"n":1}"#]
    );
    assert_eq!(
        b.list(Some("acme"), 1_600, 10).await.unwrap(),
        [r#"{"n":1}"#]
    );
    assert_eq!(a.list(None, 1_000, 10).await.unwrap().len(), 3);
    assert_eq!(a.list(None, 1_000, 1).await.unwrap().len(), 1);

    // Both replicas race to take the same call: exactly one gets it.
    let (x, y) = tokio::join!(a.take("acme", "pc_1"), b.take("acme", "pc_1"));
    let got: Vec<_> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
    assert_eq!(got, [r#"{"n":1}"#]);
    assert_eq!(a.get("pc_1").await.unwrap(), None);
    assert!(!a
        .list(Some("acme"), 1_000, 10)
        .await
        .unwrap()
        .contains(&r#"{"n":1}"#.to_owned()));
    assert_eq!(a.take("acme", "nope").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_single_use_and_counters_add_up() {
    let redis = RedisServer::start();
    let (a, b) = (store(&redis).await, store(&redis).await);
    let ttl = Duration::from_secs(60);
    assert!(a.consume_once("req/call_1/100", ttl).await.unwrap());
    assert!(!b.consume_once("req/call_1/100", ttl).await.unwrap());
    assert!(b.consume_once("req/call_2/100", ttl).await.unwrap());

    assert_eq!(a.conversation("acme", "c1").await.unwrap(), (0, 0));
    a.add_round("acme", "c1", 1, 70, ttl).await.unwrap();
    b.add_round("acme", "c1", 1, 30, ttl).await.unwrap();
    assert_eq!(
        b.add_round("acme", "c1", 0, 5, ttl).await.unwrap(),
        (2, 105)
    );
    assert_eq!(a.conversation("acme", "c1").await.unwrap(), (2, 105));
    assert_eq!(a.conversation("globex", "c1").await.unwrap(), (0, 0));
}
