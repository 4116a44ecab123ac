//! Chaos cold starts: the real `palisade` binary started again and again
//! with its bundle store slow, down, or serving a bundle signed by an
//! untrusted key (and once with the store down and a cached bundle), while
//! a client sends continuous traffic from before the listener binds.
//!
//! Checked on every start: each start either enforces the bundle's policy
//! or refuses (503 `not_ready`); no response is served by the upstream
//! without the verified policy (the bundle's policy blocks a request the
//! built-in one lets through, so a request served under anything else
//! shows); every 200 is one request the upstream received and nothing else
//! reached it; `palisade_requests_without_policy_total` stays 0.
//!
//! The normal suite runs a few starts; `cold_starts_bulk` (ignored) runs up
//! to 1,000 within a time budget and prints provisioning p50/p99
//! (`bench/cold-starts` runs it against the release binary).

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_bundle::{BuildInput, Bundle};
use palisade_testkit::{BundleStore, ScriptedUpstream, StoreMode};
use serde_json::json;

const SEED: &str = "9f1c2e3d4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const ROGUE: &str = "0000000000000000000000000000000000000000000000000000000000000001";
const POLICY: &str = include_str!("../../palisade-policy/policies/default.toml");
/// An AWS key id: the built-in policy only flags it in a user message, the
/// bundle's policy blocks it.
const MARKER: &str = "my key is AKIAIOSFODNN7EXAMPLE, keep it";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Healthy,
    Slow,
    Down,
    BadSignature,
    DownWithCache,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::Healthy,
        Scenario::Slow,
        Scenario::Down,
        Scenario::BadSignature,
        Scenario::DownWithCache,
    ];

    fn enforces(self) -> bool {
        matches!(
            self,
            Scenario::Healthy | Scenario::Slow | Scenario::DownWithCache
        )
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The bundle's policy: the built-in one, with secrets in user input blocked.
fn bundle(serial: u64, seed: &str) -> Vec<u8> {
    let policy = POLICY.replacen(
        "secrets = { action = \"flag\" }",
        "secrets = { action = \"block\" }",
        1,
    );
    assert_ne!(policy, POLICY);
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

fn binary() -> PathBuf {
    std::env::var_os("PALISADE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_palisade")))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one start did.
#[derive(Debug, Default)]
struct Outcome {
    enforced: bool,
    refused: usize,
    served: usize,
    blocked_markers: usize,
    violations: Vec<String>,
    provisioning: Option<f64>,
}

struct Rig {
    upstream: ScriptedUpstream,
    store: BundleStore,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    public_key: String,
}

impl Rig {
    async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cache.join("last-verified.bundle"), bundle(1, SEED)).unwrap();
        Rig {
            upstream: ScriptedUpstream::start().await,
            store: BundleStore::start().await,
            dir,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            public_key: palisade_policy::signature::public_key_of(SEED).unwrap(),
        }
    }

    fn config(&self, scenario: Scenario) -> PathBuf {
        let (source, cache) = match scenario {
            Scenario::DownWithCache => (
                "http://127.0.0.1:1/bundle".to_owned(),
                format!(
                    "cache_dir = \"{}\"\n",
                    self.dir.path().join("cache").display()
                ),
            ),
            _ => (self.store.url(), String::new()),
        };
        let toml = format!(
            "[backends.main]\nbase_url = \"{}\"\n[server]\nshutdown_grace_ms = 0\n\
             [bundle]\nsource = \"{source}\"\ntrusted_keys = [\"{}\"]\npoll_interval_ms = 100\n\
             fetch_timeout_ms = 2000\n{cache}",
            self.upstream.base_url(),
            self.public_key
        );
        let path = self.dir.path().join(format!("{scenario:?}.toml"));
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// One start under `scenario`, with traffic until it enforces or has
    /// been seen refusing after its first fetch (bounded by `deadline`).
    async fn start_once(&self, scenario: Scenario, serial: u64, deadline: Duration) -> Outcome {
        match scenario {
            Scenario::Healthy => {
                self.store.set_mode(StoreMode::Serve);
                self.store.publish(bundle(serial, SEED));
            }
            Scenario::Slow => {
                self.store
                    .set_mode(StoreMode::Slow(Duration::from_millis(300)));
                self.store.publish(bundle(serial, SEED));
            }
            Scenario::Down => self.store.set_mode(StoreMode::Unavailable),
            Scenario::BadSignature => {
                self.store.set_mode(StoreMode::Serve);
                self.store.publish(bundle(serial, ROGUE));
            }
            Scenario::DownWithCache => {}
        }
        let config = self.config(scenario);
        let port = support::free_port();
        let fetches_before = self.store.requests();
        let received_before = self.upstream.received().len();
        let spawned = Instant::now();
        let child = Killed(
            Command::new(binary())
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .env_remove("PALISADE_UPSTREAM")
                .env_remove("PALISADE_CONFIG")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("palisade starts"),
        );
        let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
        let mut out = Outcome::default();
        let mut after_enforcing = 0;
        let mut refused_after_fetch = 0;
        let mut i = 0u64;
        while spawned.elapsed() < deadline {
            i += 1;
            let marker = i.is_multiple_of(2);
            let content = if marker { MARKER } else { "hello there" };
            let sent = self
                .http
                .post(url("/v1/chat/completions"))
                .json(&json!({"model": "m", "messages": [{"role": "user", "content": content}]}))
                .send()
                .await;
            let Ok(resp) = sent else {
                // Not listening yet.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
            match (status, code.as_str()) {
                (503, "not_ready") => {
                    out.refused += 1;
                    if out.enforced {
                        out.violations.push("refused after enforcing".into());
                    }
                    if self.store.requests() > fetches_before || scenario == Scenario::DownWithCache
                    {
                        refused_after_fetch += 1;
                    }
                }
                (200, _) if marker => out
                    .violations
                    .push("a request the bundle blocks was served: no verified policy".into()),
                (200, _) => {
                    out.served += 1;
                    if !out.enforced {
                        out.enforced = true;
                        // The replica's own figure, process start to enforcing.
                        let metrics = self.http.get(url("/metrics")).send().await;
                        if let Ok(m) = metrics {
                            let text = m.text().await.unwrap_or_default();
                            out.provisioning =
                                metric(&text, "palisade_security_provisioning_seconds");
                        }
                    }
                }
                (400, _) if marker && out.enforced => out.blocked_markers += 1,
                (400, _) if marker => {
                    // Blocked before the first benign 200: enforcing already.
                    out.blocked_markers += 1;
                }
                other => out.violations.push(format!("unexpected answer {other:?}")),
            }
            if out.enforced {
                after_enforcing += 1;
                if after_enforcing >= 4 {
                    break;
                }
            } else if !scenario.enforces() && refused_after_fetch >= 3 {
                break;
            }
        }
        if scenario.enforces() && !out.enforced {
            out.violations
                .push(format!("{scenario:?}: never enforced within {deadline:?}"));
        }
        if !scenario.enforces() && (out.enforced || out.refused == 0) {
            out.violations.push(format!(
                "{scenario:?}: should refuse (enforced {}, refused {})",
                out.enforced, out.refused
            ));
        }
        if let Ok(m) = self.http.get(url("/metrics")).send().await {
            let text = m.text().await.unwrap_or_default();
            if metric(&text, "palisade_requests_without_policy_total") != Some(0.0) {
                out.violations
                    .push("the requests-without-policy tripwire is not 0".into());
            }
        } else {
            out.violations.push("no /metrics".into());
        }
        drop(child);
        let reached = self.upstream.received().len() - received_before;
        if reached != out.served {
            out.violations.push(format!(
                "{reached} requests reached the upstream, {} were served",
                out.served
            ));
        }
        out
    }
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(starts: usize, budget: Duration, deadline: Duration) -> (usize, Vec<f64>) {
    let rig = Rig::new().await;
    let began = Instant::now();
    let mut provisioning = Vec::new();
    let mut done = 0;
    let mut by_scenario = [0usize; 5];
    for n in 0..starts {
        if began.elapsed() > budget {
            break;
        }
        let scenario = Scenario::ALL[n % Scenario::ALL.len()];
        // Serials rise across starts, as a fleet's do.
        let out = rig.start_once(scenario, n as u64 + 2, deadline).await;
        assert!(
            out.violations.is_empty(),
            "start {n} ({scenario:?}): {:?}",
            out.violations
        );
        if scenario.enforces() {
            assert!(out.blocked_markers > 0 || out.served > 0);
            provisioning.extend(out.provisioning);
        }
        by_scenario[n % Scenario::ALL.len()] += 1;
        done += 1;
    }
    provisioning.sort_by(f64::total_cmp);
    eprintln!(
        "cold starts: {done} in {:.1} s (per scenario {:?} = {by_scenario:?})",
        began.elapsed().as_secs_f64(),
        Scenario::ALL
    );
    if !provisioning.is_empty() {
        eprintln!(
            "provisioning (process start -> enforcing), {} enforcing starts: p50 {:.3} s, p99 {:.3} s, max {:.3} s",
            provisioning.len(),
            percentile(&provisioning, 0.5),
            percentile(&provisioning, 0.99),
            provisioning[provisioning.len() - 1]
        );
    }
    (done, provisioning)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_starts_enforce_or_refuse() {
    let (done, provisioning) = run(10, Duration::from_secs(240), Duration::from_secs(30)).await;
    assert_eq!(done, 10);
    assert_eq!(
        provisioning.len(),
        6,
        "every enforcing start reports its provisioning time"
    );
}

/// `PALISADE_COLD_STARTS` (default 1000) starts within
/// `PALISADE_COLD_START_SECS` (default 180); `PALISADE_BIN` picks the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "bulk chaos run: bench/cold-starts"]
async fn cold_starts_bulk() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let starts = env("PALISADE_COLD_STARTS", 1000) as usize;
    let budget = Duration::from_secs(env("PALISADE_COLD_START_SECS", 180));
    let (done, _) = run(starts, budget, Duration::from_secs(30)).await;
    assert!(done > 0);
}
