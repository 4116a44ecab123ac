//! Bundles distributed through Redis to replicas that poll only once a minute: the
//! publisher's pub/sub announcement is what delivers them, to every replica; a bundle the
//! replicas must refuse (untrusted signer, older serial) is published and ignored; a
//! dropped subscription (Redis restarted) comes back; Redis down keeps the running bundle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_bundle::{BuildInput, Bundle};
use palisade_config::{Config, Sources};
use palisade_gateway::{Gateway, RunningGateway};
use palisade_redis::{RedisBundleStore, RedisConnection};
use palisade_testkit::{RedisServer, ScriptedUpstream};
use sha2::Digest as _;

const SEED: &str = "9f1c2e3d4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const UNTRUSTED: &str = "0000000000000000000000000000000000000000000000000000000000000001";

fn bundle(serial: u64, seed: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Bundle::build(BuildInput {
        serial,
        policy_toml: include_str!("../../palisade-policy/policies/default.toml").to_owned(),
        ..BuildInput::default()
    })
    .unwrap()
    .sign(seed, now)
    .unwrap()
    .encode()
}

struct Replica {
    _gw: RunningGateway,
    bundle: Arc<palisade_gateway::bundle::BundleRuntime>,
}

impl Replica {
    async fn start(upstream: &ScriptedUpstream, redis: &str) -> Replica {
        let toml = format!(
            "[backends.main]\nbase_url = \"{}\"\n\
             [bundle]\nsource = \"{redis}\"\nredis_prefix = \"t:bundle\"\ntrusted_keys = [\"{}\"]\n\
             poll_interval_ms = 60000\nfetch_timeout_ms = 1000\nmax_bytes = 1048576\n",
            upstream.base_url(),
            palisade_policy::signature::public_key_of(SEED).unwrap()
        );
        let config = Config::load(&Sources {
            toml: Some(&toml),
            ..Sources::default()
        })
        .unwrap();
        let gateway = Gateway::with_env(config, |_| None).unwrap();
        let bundle = gateway.bundle().expect("a bundle runtime");
        let gw = gateway
            .start(Some("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        Replica { _gw: gw, bundle }
    }

    fn serial(&self) -> Option<u64> {
        self.bundle.activator().running_serial()
    }
}

async fn publish(redis: &str, bytes: &[u8], serial: u64) {
    let conn = RedisConnection::connect(redis, Duration::from_secs(2), Duration::from_secs(2))
        .await
        .unwrap();
    let digest = hex::encode(sha2::Sha256::digest(bytes));
    RedisBundleStore::new(conn, "t:bundle")
        .publish(bytes, &digest, serial)
        .await
        .unwrap();
}

/// Waits (bounded: 10 s, far below the 60 s poll) until every replica runs `serial`.
async fn all_run(replicas: &[Replica], serial: u64) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if replicas.iter().all(|r| r.serial() == Some(serial)) {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let running: Vec<_> = replicas.iter().map(Replica::serial).collect();
    panic!("serial {serial} did not reach every replica by push: {running:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_bundle_reaches_every_replica_and_a_bad_one_none() {
    let upstream = ScriptedUpstream::start().await;
    let mut redis = RedisServer::start();
    let url = redis.url();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&upstream, &url).await);
    }
    // Nothing published yet: no replica enforces.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(replicas.iter().all(|r| r.serial().is_none()));

    publish(&url, &bundle(1, SEED), 1).await;
    all_run(&replicas, 1).await;
    publish(&url, &bundle(2, SEED), 2).await;
    all_run(&replicas, 2).await;

    // Hostile publishes: an untrusted signer with a higher serial, a replayed older
    // bundle, bytes that are no bundle. Each is fetched (announced) and refused.
    publish(&url, &bundle(9, UNTRUSTED), 9).await;
    publish(&url, &bundle(1, SEED), 1).await;
    publish(&url, b"{\"not\": \"a bundle\"}", 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        replicas.iter().all(|r| r.serial() == Some(2)),
        "the running bundle stays"
    );

    // Redis goes away: replicas keep enforcing serial 2.
    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(replicas.iter().all(|r| r.serial() == Some(2)));
}

/// The subscription is re-established after Redis restarts (on the same port), so
/// announcements keep working without waiting for a poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_resume_after_redis_restarts() {
    let upstream = ScriptedUpstream::start().await;
    let mut redis = RedisServer::start();
    let url = redis.url();
    let replica = Replica::start(&upstream, &url).await;
    publish(&url, &bundle(1, SEED), 1).await;
    all_run(std::slice::from_ref(&replica), 1).await;

    let port: u16 = url
        .trim_start_matches("redis://127.0.0.1:")
        .trim_end_matches("/0")
        .parse()
        .unwrap();
    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _restarted = RedisServer::start_on(port);
    // The subscriber reconnects within its backoff (at most 5 s), then polls once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    loop {
        publish(&url, &bundle(2, SEED), 2).await;
        if replica.serial() == Some(2) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no announcement got through after the restart"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
