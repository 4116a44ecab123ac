//! Tests of the held-call stores: scope, lapse, bounds, the service's clock, and the
//! Redis store against a real `redis-server`, reachable and not.

use super::*;
use palisade_limits::{ManualClock, Nanos};

const START_MS: i64 = 1_700_000_000_000;

fn call(id: &str, tenant: &str, expires_at: u64) -> PendingCall {
    PendingCall {
        confirmation_id: id.into(),
        tenant: tenant.into(),
        call: ToolCall {
            index: 0,
            id: format!("call_{id}"),
            name: "send".into(),
            arguments: "{}".into(),
        },
        evidence: ToolEvidence::default(),
        decision: palisade_policy::Snapshot::from_toml("default_tier = \"t\"\n[tiers.t]")
            .unwrap()
            .decide_tool(&palisade_policy::Subject::default(), &Evidence::default()),
        subject: crate::gates::GateSubject {
            request_id: "r".into(),
            tenant: tenant.into(),
            route: "m".into(),
            model: "m".into(),
        },
        expires_at,
        source: TokenSource::Proxy,
    }
}

fn ids(calls: &[PendingCall]) -> Vec<&str> {
    calls.iter().map(|p| p.confirmation_id.as_str()).collect()
}

#[tokio::test]
async fn a_call_is_taken_once_and_only_by_its_own_tenant() {
    let held = MemoryHeldCalls::new(10, 10);
    assert!(held.park(call("a", "acme", 100), 0));
    let other = held.take("a", Scope::Tenant("globex"), 1).await.unwrap();
    assert!(other.is_none(), "another tenant's approver cannot take it");
    let own = held.take("a", Scope::Tenant("acme"), 1).await.unwrap();
    assert_eq!(own.map(|p| p.confirmation_id), Some("a".to_owned()));
    assert!(held.take("a", Scope::Every, 1).await.unwrap().is_none());
}

#[tokio::test]
async fn a_lapsed_call_is_dropped_not_released() {
    let held = MemoryHeldCalls::new(10, 10);
    held.park(call("a", "acme", 100), 0);
    assert!(held.take("a", Scope::Every, 100).await.unwrap().is_none());
    assert!(held.locked().get("a").is_none(), "taking dropped it");
}

#[tokio::test]
async fn listing_is_scoped_unlapsed_and_soonest_first() {
    let held = MemoryHeldCalls::new(10, 10);
    held.park(call("late", "acme", 300), 0);
    held.park(call("soon", "acme", 200), 0);
    held.park(call("lapsed", "acme", 50), 0);
    held.park(call("theirs", "globex", 100), 0);
    let acme = held.list(Scope::Tenant("acme"), 60, 10).await.unwrap();
    assert_eq!(ids(&acme), ["soon", "late"]);
    let all = held.list(Scope::Every, 60, 2).await.unwrap();
    assert_eq!(ids(&all), ["theirs", "soon"]);
}

#[test]
fn a_full_store_refuses_the_call() {
    let held = MemoryHeldCalls::new(1, 1);
    assert!(held.park(call("a", "acme", 100), 0));
    assert!(!held.park(call("b", "globex", 100), 0));
}

#[tokio::test]
async fn the_service_reads_time_from_its_clock() {
    let manual = Arc::new(ManualClock::new(Nanos::ZERO));
    let service = ToolService::from_config(&palisade_config::Config::default(), &|_| None)
        .unwrap()
        .with_clock(crate::clock::GatewayClock::manual(manual.clone(), START_MS));
    let start = 1_700_000_000;
    assert_eq!(service.now_secs(), start);
    let tool_call = call("x", "acme", 0).call;
    let (_, expires_at) = service.sign("acme", "r", &tool_call, TokenSource::Proxy);
    assert_eq!(expires_at, start + service.token_ttl);

    let held = service.held_calls(None);
    let expires_at = service.now_secs() + service.confirmation_ttl;
    assert!(held.park(call("a", "acme", expires_at), service.now_secs()));
    assert_eq!(
        ids(&held
            .list(Scope::Every, service.now_secs(), 10)
            .await
            .unwrap()),
        ["a"]
    );
    manual.advance(Nanos::from_secs(service.confirmation_ttl));
    assert!(held
        .list(Scope::Every, service.now_secs(), 10)
        .await
        .unwrap()
        .is_empty());
    let taken = held.take("a", Scope::Every, service.now_secs()).await;
    assert!(taken.unwrap().is_none(), "lapsed on the service's clock");
}

/// Waits (at most 5 s) until `ready` holds: Redis parks run in the background.
async fn eventually(mut ready: impl FnMut() -> BoxFuture<'static, bool>) {
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while !ready().await {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_each_call_in_one_store_and_falls_back_here() {
    let mut redis = palisade_testkit::RedisServer::start();
    let timeout = std::time::Duration::from_millis(500);
    let conn = palisade_redis::RedisConnection::connect(&redis.url(), timeout, timeout)
        .await
        .expect("connects to the test redis");
    let local = Arc::new(MemoryHeldCalls::new(10, 10));
    let limits = HoldLimits {
        per_tenant: 10,
        total: 10,
    };
    let held = Arc::new(RedisHeldCalls::new(
        RedisToolStore::new(conn, "test"),
        local.clone(),
        limits,
    ));

    assert!(held.park(call("shared", "acme", 100), 0));
    let h = held.clone();
    eventually(move || {
        let h = h.clone();
        Box::pin(async move { !h.list(Scope::Every, 1, 10).await.unwrap().is_empty() })
    })
    .await;
    assert!(local.locked().get("shared").is_none(), "in Redis only");
    let theirs = held.take("shared", Scope::Tenant("globex"), 1).await;
    assert!(theirs.unwrap().is_none(), "out of scope: left in place");
    let listed = held.list(Scope::Tenant("acme"), 1, 10).await.unwrap();
    assert_eq!(ids(&listed), ["shared"]);
    let own = held.take("shared", Scope::Tenant("acme"), 1).await.unwrap();
    assert_eq!(own.map(|p| p.confirmation_id), Some("shared".to_owned()));
    assert!(held
        .take("shared", Scope::Every, 1)
        .await
        .unwrap()
        .is_none());

    // Redis gone: reads fail (the handlers answer 503), parks stay here.
    redis.stop();
    assert!(matches!(
        held.list(Scope::Every, 1, 10).await,
        Err(HeldCallsError::Unavailable(_))
    ));
    assert!(held.take("unknown", Scope::Every, 1).await.is_err());
    assert!(held.park(call("kept", "acme", 100), 0));
    let l = local.clone();
    eventually(move || {
        let found = l.locked().get("kept").is_some();
        Box::pin(std::future::ready(found))
    })
    .await;
    // A call held here is found here first, whatever Redis says.
    let kept = held.take("kept", Scope::Tenant("acme"), 1).await.unwrap();
    assert_eq!(kept.map(|p| p.confirmation_id), Some("kept".to_owned()));
}
