//! The Redis GCRA against a real `redis-server`.

use std::time::Duration;

use palisade_limits::{GcraConfig, Nanos};
use palisade_redis::RedisGcra;
use palisade_testkit::RedisServer;

async fn limiter(redis: &RedisServer) -> RedisGcra {
    RedisGcra::connect(
        &redis.url(),
        "test",
        Duration::from_secs(2),
        Duration::from_secs(2),
    )
    .await
    .expect("connects to the test redis")
}

#[tokio::test]
async fn admits_exactly_the_burst_then_says_when_to_retry() {
    let redis = RedisServer::start();
    let gcra = limiter(&redis).await;
    // One per second, burst 5.
    let config = GcraConfig::new(60, Nanos::from_secs(60)).with_burst(5);
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let d = gcra.check("tenant-a", &config, 1).await.unwrap();
        assert!(d.allowed);
        remaining.push(d.remaining);
    }
    assert_eq!(remaining, [4, 3, 2, 1, 0]);
    let refused = gcra.check("tenant-a", &config, 1).await.unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.limit, 5);
    let retry = refused.retry_after.get();
    assert!(
        retry > 900_000_000 && retry <= 1_000_000_000,
        "retry {retry} ns"
    );
    // Another key is independent.
    assert!(gcra.check("tenant-b", &config, 1).await.unwrap().allowed);
}

#[tokio::test]
async fn concurrent_callers_share_one_exact_limit() {
    let redis = RedisServer::start();
    // Two independent connections, like two replicas.
    let (a, b) = (limiter(&redis).await, limiter(&redis).await);
    let config = GcraConfig::new(10, Nanos::from_secs(3600)).with_burst(50);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let gcra = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            gcra.check("shared", &config, 1).await.unwrap().allowed
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    assert_eq!(
        admitted, 50,
        "exactly the burst is admitted across connections"
    );
}

#[tokio::test]
async fn idle_keys_expire_once_their_bucket_is_full() {
    let redis = RedisServer::start();
    let gcra = limiter(&redis).await;
    // 10 per second, burst 1: a key is full again 100 ms after its last use.
    let config = GcraConfig::new(10, Nanos::from_secs(1)).with_burst(1);
    assert!(gcra.check("ephemeral", &config, 1).await.unwrap().allowed);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg("test:gcra:ephemeral")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=100).contains(&ttl), "pttl {ttl}");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg("test:gcra:ephemeral")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    let mut redis = RedisServer::start();
    let gcra = limiter(&redis).await;
    redis.stop();
    let config = GcraConfig::new(60, Nanos::from_secs(60));
    let started = std::time::Instant::now();
    assert!(gcra.check("k", &config, 1).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}
