//! Signed bundles through the gateway, with a real bundle store (HTTP, on
//! loopback) and a real upstream: no traffic before a verified bundle, the
//! ETag/304 path, a bad signature served while a bundle runs, the store
//! down at start (the disk cache), and a cache swapped on disk.

use std::time::Duration;

use palisade_bundle::{BuildInput, Bundle};
use palisade_config::{Config, Sources};
use palisade_gateway::{Gateway, RunningGateway};
use palisade_testkit::{BundleStore, ScriptedUpstream, StoreMode};
use serde_json::{json, Value};

const SEED: &str = "9f1c2e3d4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const UNTRUSTED: &str = "0000000000000000000000000000000000000000000000000000000000000001";
const DEFAULT_POLICY: &str = include_str!("../../palisade-policy/policies/default.toml");

fn public(seed: &str) -> String {
    palisade_policy::signature::public_key_of(seed).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A bundle of the default policy labelled `serial-N`, signed by `seed`.
fn bundle(serial: u64, seed: &str) -> Vec<u8> {
    labelled(serial, seed, &format!("serial-{serial}"))
}

fn labelled(serial: u64, seed: &str, label: &str) -> Vec<u8> {
    let policy = DEFAULT_POLICY.replace(
        "label = \"builtin default\"",
        &format!("label = \"{label}\""),
    );
    Bundle::build(BuildInput {
        serial,
        policy_toml: policy,
        ..BuildInput::default()
    })
    .unwrap()
    .sign(seed, now())
    .unwrap()
    .encode()
}

struct Replica {
    gw: RunningGateway,
    bundle: std::sync::Arc<palisade_gateway::bundle::BundleRuntime>,
    http: reqwest::Client,
}

impl Replica {
    async fn start(
        upstream: &ScriptedUpstream,
        source: &str,
        cache_dir: Option<&std::path::Path>,
    ) -> Replica {
        let cache = cache_dir
            .map(|d| format!("cache_dir = \"{}\"\n", d.display()))
            .unwrap_or_default();
        let toml = format!(
            "[backends.main]\nbase_url = \"{}\"\n\
             [bundle]\nsource = \"{source}\"\ntrusted_keys = [\"{}\"]\npoll_interval_ms = 50\nfetch_timeout_ms = 500\nmax_bytes = 1048576\n{cache}",
            upstream.base_url(),
            public(SEED)
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
        Replica {
            gw,
            bundle,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw.local_addr())
    }

    async fn chat(&self) -> (u16, Option<String>, Value) {
        let resp = self
            .http
            .post(self.url("/v1/chat/completions"))
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, retry, resp.json().await.unwrap_or(Value::Null))
    }

    async fn ready(&self) -> (u16, Value) {
        let resp = self.http.get(self.url("/readyz")).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    fn serial(&self) -> Option<u64> {
        self.bundle.activator().running_serial()
    }

    /// Waits (bounded) until the running serial is `serial`.
    async fn wait_serial(&self, serial: u64) {
        for _ in 0..200 {
            if self.serial() == Some(serial) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "serial {serial} never became active (running {:?})",
            self.serial()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_traffic_before_a_verified_bundle_then_enforcing() {
    let upstream = ScriptedUpstream::start().await;
    let store = BundleStore::start().await; // empty: 404
    let replica = Replica::start(&upstream, &store.url(), None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = replica.ready().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["conditions"]["bundle"], false, "{body}");
    for _ in 0..5 {
        let (status, retry, body) = replica.chat().await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "not_ready", "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
    }
    let models = replica
        .http
        .get(replica.url("/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status().as_u16(), 503, "every /v1/* path is refused");
    let health = replica
        .http
        .get(replica.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200, "probes pass");
    assert!(
        upstream.received().is_empty(),
        "nothing reached the upstream"
    );

    // An unsigned (then untrusted) bundle does not open the gate either.
    store.publish(
        Bundle::build(BuildInput {
            serial: 1,
            policy_toml: DEFAULT_POLICY.to_owned(),
            ..BuildInput::default()
        })
        .unwrap()
        .encode(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    store.publish(bundle(1, UNTRUSTED));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(replica.chat().await.0, 503);
    assert_eq!(replica.serial(), None);

    store.publish(bundle(1, SEED));
    replica.wait_serial(1).await;
    // The serial is recorded a moment before readiness flips: poll (bounded).
    let mut ready = replica.ready().await;
    for _ in 0..100 {
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        ready = replica.ready().await;
    }
    assert_eq!(ready.0, 200, "{}", ready.1);
    let (status, _, body) = replica.chat().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_use_etags_and_a_bad_bundle_keeps_the_running_one() {
    let upstream = ScriptedUpstream::start().await;
    let store = BundleStore::start().await;
    store.publish(bundle(1, SEED));
    let replica = Replica::start(&upstream, &store.url(), None).await;
    replica.wait_serial(1).await;
    // Unchanged bundle: the store answers 304 and sends no body.
    for _ in 0..100 {
        if store.not_modified() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.not_modified() >= 3, "{} 304s", store.not_modified());

    // Hostile store: a forged key, a tampered bundle, a replayed older one,
    // the same serial with other content. The running bundle stays.
    let tampered = String::from_utf8(bundle(5, SEED))
        .unwrap()
        .replace("serial-5", "serial-X");
    let older = bundle(0, SEED);
    let reused = labelled(1, SEED, "serial-1 with other content");
    for hostile in [
        bundle(6, UNTRUSTED),
        tampered.into_bytes(),
        older,
        reused,
        b"{\"manifest\":".to_vec(),
    ] {
        store.publish(hostile);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(replica.serial(), Some(1));
        assert_eq!(replica.chat().await.0, 200, "still enforcing serial 1");
    }
    // An endless body is cut off at max_bytes; the replica keeps serving.
    store.set_mode(StoreMode::Endless);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replica.serial(), Some(1));
    assert_eq!(replica.chat().await.0, 200);
    store.set_mode(StoreMode::Serve);
    store.publish(bundle(2, SEED));
    replica.wait_serial(2).await;
    assert_eq!(replica.chat().await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_store_down_enforces_the_cached_bundle_and_a_swapped_cache_is_refused() {
    let upstream = ScriptedUpstream::start().await;
    let store = BundleStore::start().await;
    let dir = tempfile::tempdir().unwrap();
    store.publish(bundle(3, SEED));
    let first = Replica::start(&upstream, &store.url(), Some(dir.path())).await;
    first.wait_serial(3).await;
    first.gw.shutdown();
    let cached = dir.path().join("last-verified.bundle");
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        bundle_bytes_of(&store).await
    );

    // The store is down (a 503, then a closed port): the cache is used.
    store.set_mode(StoreMode::Unavailable);
    let second = Replica::start(&upstream, &store.url(), Some(dir.path())).await;
    second.wait_serial(3).await;
    assert_eq!(second.chat().await.0, 200);
    second.gw.shutdown();

    // Whoever can write the cache cannot make a replica enforce their bundle.
    let closed = "http://127.0.0.1:1/bundle";
    std::fs::write(&cached, bundle(9, UNTRUSTED)).unwrap();
    let third = Replica::start(&upstream, closed, Some(dir.path())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(third.serial(), None);
    let (status, _, body) = third.chat().await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("not_ready"))
    );
    assert_eq!(third.ready().await.0, 503);
}

/// The bytes the store serves now (read as a client would).
async fn bundle_bytes_of(store: &BundleStore) -> Vec<u8> {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(store.url())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_source_is_polled_for_newer_serials() {
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, bundle(1, SEED)).unwrap();
    let replica = Replica::start(&upstream, &format!("file:{}", path.display()), None).await;
    replica.wait_serial(1).await;
    // Written through a rename, as `palisade bundle sign` does.
    let tmp = dir.path().join("bundle.json.tmp");
    std::fs::write(&tmp, bundle(2, SEED)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    replica.wait_serial(2).await;
    assert_eq!(replica.chat().await.0, 200);
}

/// A bundle of the default policy with a detector part.
fn with_detector(
    serial: u64,
    artifact: Option<Vec<u8>>,
    named: Option<palisade_bundle::ArtifactRef>,
    thresholds: Option<palisade_bundle::ThresholdOverrides>,
) -> Vec<u8> {
    Bundle::build(BuildInput {
        serial,
        policy_toml: DEFAULT_POLICY.to_owned(),
        detector_artifact: artifact,
        detector_ref: named,
        thresholds,
        ..BuildInput::default()
    })
    .unwrap()
    .sign(SEED, now())
    .unwrap()
    .encode()
}

impl Replica {
    /// The guard API's verdict and detector version for `text`.
    async fn guard(&self, text: &str) -> (String, String) {
        let body: Value = self
            .http
            .post(self.url("/v1/guard/scan"))
            .json(&json!({ "text": text }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            body["verdict"].as_str().unwrap_or_default().to_owned(),
            body["detector_version"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }
}

/// Writes `bytes` to the file source through a rename (as `bundle sign` does).
fn publish_file(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_detector_and_thresholds_are_enforced_and_an_unknown_one_is_refused() {
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    let benign = "What is a good recipe for banana bread?";
    // A threshold of 0 blocks every text: the override is what the guard API answers by.
    let everything = palisade_bundle::ThresholdOverrides {
        flag: 0.0,
        block: 0.0,
    };
    publish_file(&path, &with_detector(1, None, None, Some(everything)));
    let replica = Replica::start(&upstream, &format!("file:{}", path.display()), None).await;
    replica.wait_serial(1).await;
    let embedded = palisade_detect::Detector::embedded().unwrap();
    let (verdict, version) = replica.guard(benign).await;
    assert_eq!(verdict, "block", "the bundle's thresholds are in force");
    assert_eq!(version, embedded.version());

    // A carried artifact replaces the first stage: the rules-only model here.
    let untrained = palisade_detect::model::Model::untrained()
        .to_bytes()
        .unwrap();
    let expected = palisade_detect::Detector::from_model_bytes(&untrained)
        .unwrap()
        .version()
        .to_owned();
    assert_ne!(expected, embedded.version());
    publish_file(&path, &with_detector(2, Some(untrained), None, None));
    replica.wait_serial(2).await;
    let (verdict, version) = replica.guard(benign).await;
    assert_eq!(version, expected, "the carried artifact judges");
    assert_eq!(verdict, "allow", "its own calibrated thresholds are back");

    // No detector part: the build's own detector again.
    publish_file(&path, &bundle(3, SEED));
    replica.wait_serial(3).await;
    assert_eq!(
        replica.guard(benign).await,
        ("allow".to_owned(), embedded.version().to_owned())
    );

    // Named by a digest this replica does not have, and not carried: refused,
    // the running bundle (policy and detector) stays.
    let unknown = palisade_bundle::ArtifactRef {
        sha256: "ab".repeat(32),
        size: 1234,
    };
    publish_file(&path, &with_detector(4, None, Some(unknown), None));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(replica.serial(), Some(3));
    assert_eq!(replica.guard(benign).await.1, embedded.version());
    assert_eq!(replica.chat().await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_whose_detector_cannot_be_enforced_never_opens_the_gate() {
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    let unknown = palisade_bundle::ArtifactRef {
        sha256: "cd".repeat(32),
        size: 99,
    };
    publish_file(&path, &with_detector(1, None, Some(unknown), None));
    let replica = Replica::start(&upstream, &format!("file:{}", path.display()), None).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(replica.serial(), None);
    let (status, _, body) = replica.chat().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(upstream.received().is_empty());
    // The embedded model named by its digest is this build's own: enforced.
    let embedded = palisade_detect::Detector::embedded_artifact();
    let named = palisade_bundle::ArtifactRef {
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(embedded)),
        size: embedded.len() as u64,
    };
    publish_file(&path, &with_detector(2, None, Some(named), None));
    replica.wait_serial(2).await;
    assert_eq!(replica.chat().await.0, 200);
}
