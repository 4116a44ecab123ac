//! A hostile bundle store (and a hostile disk): what an attacker who can
//! write where bundles come from can and cannot make a replica enforce.
//!
//! - replay of an older, validly signed bundle: while one runs, and to a
//!   replica restarted with the store compromised (the cached bundle's
//!   serial is the floor);
//! - a bundle signed by an untrusted key, or by a rotated-out key after its
//!   window;
//! - the same replay to a fresh replica with no cache (the operator's
//!   `bundle.min_serial` floor and `bundle.max_age_s` bound);
//! - an admin key rolling a bundle replica back to the policy before;
//! - a store tampered with for a moment under the ETag of the next bundle;
//! - the cache file swapped on disk (forged, or an older signed bundle);
//! - a huge bundle (an endless body, a multi-gigabyte sparse cache file):
//!   read bounded, refused, the replica keeps its state.

use std::sync::Arc;
use std::time::Duration;

use palisade_bundle::{BuildInput, Bundle};
use palisade_config::{Config, Sources};
use palisade_gateway::{Gateway, RunningGateway};
use palisade_testkit::{BundleStore, ScriptedUpstream, StoreMode};
use serde_json::json;

const SEED: &str = "9f1c2e3d4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const ROGUE: &str = "0000000000000000000000000000000000000000000000000000000000000001";
const RETIRED: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const POLICY: &str = include_str!("../../../palisade-policy/policies/default.toml");
const CLOSED: &str = "http://127.0.0.1:1/bundle";

fn public(seed: &str) -> String {
    palisade_policy::signature::public_key_of(seed).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signed_at(serial: u64, seed: &str, at: u64) -> Vec<u8> {
    signed_policy(serial, seed, at, POLICY)
}

fn signed_policy(serial: u64, seed: &str, at: u64, policy: &str) -> Vec<u8> {
    Bundle::build(BuildInput {
        serial,
        policy_toml: policy.to_owned(),
        ..BuildInput::default()
    })
    .unwrap()
    .sign(seed, at)
    .unwrap()
    .encode()
}

fn signed(serial: u64, seed: &str) -> Vec<u8> {
    signed_at(serial, seed, now())
}

struct Replica {
    gw: RunningGateway,
    bundle: Arc<palisade_gateway::bundle::BundleRuntime>,
    upstream: ScriptedUpstream,
}

impl Replica {
    async fn start(source: &str, keys: &[String], cache: Option<&std::path::Path>) -> Replica {
        Replica::start_with(source, keys, cache, "").await
    }

    /// As [`Replica::start`], with more `[bundle]` lines.
    async fn start_with(
        source: &str,
        keys: &[String],
        cache: Option<&std::path::Path>,
        bundle_extra: &str,
    ) -> Replica {
        let upstream = ScriptedUpstream::start().await;
        let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
        let cache = cache
            .map(|d| format!("cache_dir = \"{}\"\n", d.display()))
            .unwrap_or_default();
        let toml = format!(
            "[backends.main]\nbase_url = \"{}\"\n[bundle]\nsource = \"{source}\"\n\
             trusted_keys = [{}]\npoll_interval_ms = 50\nfetch_timeout_ms = 500\nmax_bytes = 1048576\n{cache}{bundle_extra}\n",
            upstream.base_url(),
            keys.join(", ")
        );
        let config = Config::load(&Sources {
            toml: Some(&toml),
            ..Sources::default()
        })
        .unwrap();
        let gateway = Gateway::with_env(config, |_| None).unwrap();
        let bundle = gateway.bundle().unwrap();
        let gw = gateway
            .start(Some("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        Replica {
            gw,
            bundle,
            upstream,
        }
    }

    fn serial(&self) -> Option<u64> {
        self.bundle.activator().running_serial()
    }

    /// Waits (bounded) for the first fetch and cache fallback to have run.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    async fn wait_serial(&self, serial: u64) {
        for _ in 0..200 {
            if self.serial() == Some(serial) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("serial {serial} never active (running {:?})", self.serial());
    }

    async fn chat_status(&self) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!(
                "http://{}/v1/chat/completions",
                self.gw.local_addr()
            ))
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    /// Refuses traffic and nothing reaches the upstream.
    async fn assert_refusing(&self) {
        let (status, body) = self.chat_status().await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("not_ready")),
            "{body}"
        );
        assert!(self.upstream.received().is_empty());
    }
}

/// The finding this closes: a restarted replica took whatever validly
/// signed bundle the store served, so a compromised store could reinstate
/// an old policy fleet-wide by serving it during a rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_older_bundle_is_refused_while_running_and_after_a_restart() {
    let store = BundleStore::start().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = [public(SEED)];
    store.publish(signed(5, SEED));
    let first = Replica::start(&store.url(), &keys, Some(dir.path())).await;
    first.wait_serial(5).await;
    store.publish(signed(4, SEED));
    first.settle().await;
    assert_eq!(first.serial(), Some(5), "replay refused while running");
    first.gw.shutdown();
    // Restart against the compromised store: the cache's serial is the floor.
    let second = Replica::start(&store.url(), &keys, Some(dir.path())).await;
    second.wait_serial(5).await;
    second.settle().await;
    assert_eq!(second.serial(), Some(5));
    assert_eq!(second.chat_status().await.0, 200);
}

/// The finding this closes: a replica with no cache (a new pod of an
/// autoscaled fleet, or one whose volume is ephemeral) took any validly
/// signed bundle, so a compromised store could start new replicas on an old
/// policy however far the fleet had moved on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_replica_refuses_a_bundle_below_its_floor_or_past_its_age() {
    let store = BundleStore::start().await;
    let keys = [public(SEED)];
    store.publish(signed(4, SEED));
    let floored = Replica::start_with(&store.url(), &keys, None, "min_serial = 5").await;
    floored.settle().await;
    assert_eq!(floored.serial(), None, "serial 4 is under min_serial 5");
    floored.assert_refusing().await;
    store.publish(signed(5, SEED));
    floored.wait_serial(5).await;
    assert_eq!(floored.chat_status().await.0, 200);

    // Signed two hours ago, a one-hour bound: refused, even as a higher serial.
    store.publish(signed_at(6, SEED, now() - 7200));
    let aged = Replica::start_with(&store.url(), &keys, None, "max_age_s = 3600").await;
    aged.settle().await;
    assert_eq!(
        aged.serial(),
        None,
        "a two-hour-old signature under a one-hour bound"
    );
    aged.assert_refusing().await;
    // Dated a day ahead (a signer clock set forward to outlive the bound): refused.
    store.publish(signed_at(7, SEED, now() + 86_400));
    aged.settle().await;
    assert_eq!(aged.serial(), None);
    store.publish(signed(8, SEED));
    aged.wait_serial(8).await;
    assert_eq!(aged.chat_status().await.0, 200);
}

/// The finding this closes: `POST /admin/policy/rollback` put the previous
/// bundle's policy back on one replica, while the activator (and the fleet
/// registry) still reported the newer serial, and no later poll restored it:
/// an admin key undid what only the signing key may decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_roll_a_bundle_replica_back() {
    let store = BundleStore::start().await;
    store.publish(signed(1, SEED));
    let replica = Replica::start(&store.url(), &[public(SEED)], None).await;
    replica.wait_serial(1).await;
    let stricter = POLICY.replacen("label = ", "label = \"v2\"\n# was: ", 1);
    store.publish(signed_policy(2, SEED, now(), &stricter));
    replica.wait_serial(2).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let admin = |path: &str| format!("http://{}{path}", replica.gw.local_addr());
    let version = || async {
        let state: serde_json::Value = http
            .get(admin("/admin/policy"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        state["active"]["version"].clone()
    };
    let before = version().await;
    assert!(before.is_string(), "{before}");
    let resp = http
        .post(admin("/admin/policy/rollback"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("policy_from_bundle")),
        "{body}"
    );
    assert_eq!(
        version().await,
        before,
        "the signed serial's policy stays in force"
    );
}

/// The finding this closes: the source recorded an ETag (a Redis digest, a
/// file stamp) as seen before the bytes verified. A store that served junk
/// for one poll under the next bundle's ETag left every replica on the old
/// bundle: from then on the store answered 304 to the real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moment_of_tampering_does_not_pin_the_replica_on_the_old_bundle() {
    let store = BundleStore::start().await;
    store.publish_with_etag(signed(1, SEED), "\"e1\"");
    let replica = Replica::start(&store.url(), &[public(SEED)], None).await;
    replica.wait_serial(1).await;
    let mut junk = signed(2, SEED);
    let at = junk.len() / 2;
    junk[at] ^= 0x01;
    store.publish_with_etag(junk, "\"e2\"");
    replica.settle().await;
    assert_eq!(replica.serial(), Some(1), "the tampered bytes are refused");
    store.publish_with_etag(signed(2, SEED), "\"e2\"");
    replica.wait_serial(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_and_retired_keys_open_nothing() {
    let store = BundleStore::start().await;
    store.publish(signed(1, ROGUE));
    let replica = Replica::start(&store.url(), &[public(SEED)], None).await;
    replica.settle().await;
    assert_eq!(replica.serial(), None);
    replica.assert_refusing().await;

    // A rotated-out key: valid signature, signed after its window.
    let window_end = now() - 60;
    let keys = [
        public(SEED),
        format!("{} not_after={window_end}", public(RETIRED)),
    ];
    store.publish(signed(2, RETIRED));
    let rotated = Replica::start(&store.url(), &keys, None).await;
    rotated.settle().await;
    assert_eq!(rotated.serial(), None);
    rotated.assert_refusing().await;
    // Back-dated into the window: refused too, the window has closed.
    store.publish(signed_at(3, RETIRED, window_end - 10));
    rotated.settle().await;
    assert_eq!(rotated.serial(), None);
    rotated.assert_refusing().await;
    store.publish(signed(4, SEED));
    rotated.wait_serial(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_swapped_on_disk_is_verified_again() {
    let dir = tempfile::tempdir().unwrap();
    let keys = [public(SEED)];
    let cached = dir.path().join("last-verified.bundle");
    // A forged cache with the store down: refused, the replica refuses traffic.
    std::fs::write(&cached, signed(99, ROGUE)).unwrap();
    let forged = Replica::start(CLOSED, &keys, Some(dir.path())).await;
    forged.settle().await;
    assert_eq!(forged.serial(), None);
    forged.assert_refusing().await;
    // A byte of a valid cached bundle flipped: refused.
    let mut tampered = signed(7, SEED);
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    std::fs::write(&cached, &tampered).unwrap();
    let flipped = Replica::start(CLOSED, &keys, Some(dir.path())).await;
    flipped.settle().await;
    assert_eq!(flipped.serial(), None);
    flipped.assert_refusing().await;
    // An older (validly signed) cache does not beat the store's newer bundle.
    std::fs::write(&cached, signed(1, SEED)).unwrap();
    let store = BundleStore::start().await;
    store.publish(signed(8, SEED));
    let newer = Replica::start(&store.url(), &keys, Some(dir.path())).await;
    newer.wait_serial(8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bundles_are_read_bounded_and_refused() {
    let store = BundleStore::start().await;
    store.set_mode(StoreMode::Endless);
    let dir = tempfile::tempdir().unwrap();
    // A 4 GiB sparse cache file: refused after reading max_bytes + 1.
    let cached = std::fs::File::create(dir.path().join("last-verified.bundle")).unwrap();
    cached.set_len(4 << 30).unwrap();
    let started = std::time::Instant::now();
    let replica = Replica::start(&store.url(), &[public(SEED)], Some(dir.path())).await;
    replica.settle().await;
    assert_eq!(replica.serial(), None);
    replica.assert_refusing().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded reads finish promptly"
    );
    store.set_mode(StoreMode::Serve);
    store.publish(signed(1, SEED));
    replica.wait_serial(1).await;
    assert_eq!(replica.chat_status().await.0, 200);
}
