//! The shared tool-call store against a real `redis-server`: a held call is taken once
//! whichever replica asks, listings follow expiry, tokens are single-use, conversation
//! counters add up across replicas.

use std::time::Duration;

use palisade_redis::{HoldLimits, Parked, RedisConnection, RedisToolStore};
use palisade_testkit::RedisServer;

const LIMITS: HoldLimits = HoldLimits {
    per_tenant: 100,
    total: 1_000,
};

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
    a.park("acme", "pc_1", r#"{"n":1}"#, 2_000, 1_000, LIMITS)
        .await
        .unwrap();
    a.park("acme", "pc_2", r#"{"n":2}"#, 1_500, 1_000, LIMITS)
        .await
        .unwrap();
    b.park("globex", "pc_3", r#"{"n":3}"#, 1_800, 1_000, LIMITS)
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

/// The finding: one global FIFO, so one tenant parking calls evicted another's. Now a
/// tenant at its cap loses only its own oldest calls, and a full store refuses new calls
/// instead of dropping anyone's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_evict_another_tenants_held_calls() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let limits = HoldLimits {
        per_tenant: 3,
        total: 5,
    };
    let park = |tenant: &'static str, id: String, expires_at: u64| {
        let s = s.clone();
        async move {
            s.park(tenant, &id, &id, expires_at, 1_000, limits)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        park("victim", "v1".into(), 2_000).await,
        Parked::Held { evicted: 0 }
    );
    assert_eq!(
        park("victim", "v2".into(), 2_001).await,
        Parked::Held { evicted: 0 }
    );
    for i in 0..20 {
        let parked = park("attacker", format!("a{i}"), 2_100 + i).await;
        let expected = if i < 3 { 0 } else { 1 };
        assert_eq!(parked, Parked::Held { evicted: expected }, "a{i}");
    }
    assert_eq!(s.get("v1").await.unwrap().as_deref(), Some("v1"));
    assert_eq!(s.get("v2").await.unwrap().as_deref(), Some("v2"));
    let attacker = s.list(Some("attacker"), 1_000, 100).await.unwrap();
    assert_eq!(attacker, ["a17", "a18", "a19"]);
    // Full (2 + 3 = 5): a third tenant is refused rather than anyone evicted.
    assert_eq!(park("third", "t1".into(), 2_000).await, Parked::Full);
    assert_eq!(s.list(None, 1_000, 100).await.unwrap().len(), 5);
    // Lapsed calls make room.
    let later = s
        .park("third", "t2", "t2", 3_000, 2_050, limits)
        .await
        .unwrap();
    assert_eq!(later, Parked::Held { evicted: 0 });
}

/// The finding: keys joined raw names with `:`, so tenant `a:b`, conversation `c` and
/// tenant `a`, conversation `b:c` shared one counter (and one could stop the other's
/// loops).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_names_with_colons_do_not_share_keys() {
    let redis = RedisServer::start();
    let s = store(&redis).await;
    let ttl = Duration::from_secs(60);
    s.add_round("a", "b:c", 5, 500, ttl).await.unwrap();
    assert_eq!(s.conversation("a:b", "c").await.unwrap(), (0, 0));
    assert_eq!(s.conversation("a", "b:c").await.unwrap(), (5, 500));
    // Held-call indexes by tenant, too.
    s.park("a:b", "x1", "x1", 2_000, 1_000, LIMITS)
        .await
        .unwrap();
    assert!(s.list(Some("a"), 1_000, 10).await.unwrap().is_empty());
    assert_eq!(s.list(Some("a:b"), 1_000, 10).await.unwrap(), ["x1"]);
    // Ids with separators stay one record.
    s.park("a", "p:1", "p1", 2_000, 1_000, LIMITS)
        .await
        .unwrap();
    assert_eq!(s.take("a", "p:1").await.unwrap().as_deref(), Some("p1"));
}
