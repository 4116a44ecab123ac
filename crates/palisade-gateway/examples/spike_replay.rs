//! The spike replay behind the figures in `docs/benchmarks.md`: a fleet of
//! in-process gateways on loopback in front of a scripted upstream, fed
//! `train/` benign rows (never `eval/`) from several tenants; then a 10x
//! spike across all tenants, with three replicas added and an HPA-shaped
//! scale event posted to every replica one window into it; optionally one
//! tenant's injection burst (train/ injection rows, half its requests)
//! inside the spike. Alerts are collected from a webhook receiver.
//!
//! Reports, per run: alerts during the benign spike (by kind and replica),
//! the burst alert's latency from the burst's start, and the gates' verdict
//! on the burst requests under load versus the same requests at rest.
//!
//! ```text
//! cargo run -p palisade-gateway --example spike_replay -- [runs] [base_rate] [tenants]
//! ```
//! `PALISADE_DATASETS` (default `/work/shared/datasets`) locates `train/`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_gateway::RunningGateway;
use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};

const WINDOW_SECS: u64 = 2;
const SPIKE: usize = 10;

fn hash(key: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()))
}

fn rows(file: &str) -> Vec<Value> {
    let dir = std::env::var("PALISADE_DATASETS").unwrap_or_else(|_| "/work/shared/datasets".into());
    let path = std::path::Path::new(&dir).join("train").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["text"].as_str().is_some_and(|t| t.len() < 8_000))
        .map(|v| {
            let mut m = Vec::new();
            if let Some(sp) = v["system_prompt"].as_str() {
                m.push(json!({"role": "system", "content": sp}));
            }
            m.push(json!({"role": "user", "content": v["text"]}));
            Value::Array(m)
        })
        .collect()
}

struct Fleet {
    replicas: Vec<RunningGateway>,
    toml: String,
}

impl Fleet {
    async fn start(toml: String, n: usize) -> Self {
        let mut fleet = Self {
            replicas: Vec::new(),
            toml,
        };
        for _ in 0..n {
            fleet.add().await;
        }
        fleet
    }

    /// Starts one more replica; `REPLICA` in the config becomes `r<index>`.
    async fn add(&mut self) {
        let toml = self
            .toml
            .replace("REPLICA", &format!("r{}", self.replicas.len()));
        let gw = support::gateway(&toml).await;
        self.replicas.push(gw);
    }
}

type Alerts = Arc<Mutex<Vec<(Instant, String, Value)>>>;

/// A webhook receiver; each replica posts to its own path so alerts say
/// which replica raised them.
async fn webhook() -> (String, Alerts) {
    let received: Alerts = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/alerts/{replica}",
        axum::routing::post(
            move |axum::extract::Path(replica): axum::extract::Path<String>,
                  axum::Json(body): axum::Json<Value>| {
                let sink = sink.clone();
                async move {
                    sink.lock()
                        .expect("lock")
                        .push((Instant::now(), replica, body));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/alerts", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

struct Load {
    http: reqwest::Client,
    tenants: usize,
    benign: Vec<Value>,
    attacks: Vec<Value>,
    next: usize,
}

impl Load {
    /// One second: `rate` requests per tenant, round-robin over replicas;
    /// with `burst`, half of tenant 0's are injections. Returns the burst
    /// requests' (index into `attacks`, status).
    async fn second(
        &mut self,
        fleet: &Fleet,
        rate: usize,
        burst: bool,
    ) -> (usize, Vec<(usize, u16)>) {
        let started = Instant::now();
        let mut sends = Vec::new();
        for t in 0..self.tenants {
            for i in 0..rate {
                self.next += 1;
                // Runs of four, so the burst reaches every replica (round-robin).
                let attack = burst && t == 0 && i % 8 < 4;
                let (idx, messages) = if attack {
                    let idx = self.next % self.attacks.len();
                    (Some(idx), self.attacks[idx].clone())
                } else {
                    (None, self.benign[self.next % self.benign.len()].clone())
                };
                let gw = &fleet.replicas[self.next % fleet.replicas.len()];
                let req = self
                    .http
                    .post(format!("http://{}/v1/chat/completions", gw.local_addr()))
                    .bearer_auth(format!("sk-t{t}-0123456789"))
                    .json(&json!({"model": "m", "messages": messages}));
                sends.push(async move {
                    let status = match req.send().await {
                        Ok(r) => r.status().as_u16(),
                        Err(_) => 0,
                    };
                    (idx, status)
                });
            }
        }
        let out = futures_util::future::join_all(sends).await;
        let sent = out.len();
        if let Some(rest) = Duration::from_secs(1).checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        (
            sent,
            out.into_iter()
                .filter_map(|(idx, s)| idx.map(|i| (i, s)))
                .collect(),
        )
    }
}

async fn scale_event(http: &reqwest::Client, fleet: &Fleet, replicas: usize) {
    let body = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "palisade"},
        "status": {"currentReplicas": 1, "desiredReplicas": replicas}});
    for gw in &fleet.replicas {
        let status = http
            .post(format!("http://{}/admin/scaling-events", gw.local_addr()))
            .bearer_auth("sk-ops-0123456789")
            .json(&body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert_eq!(status, 202, "scale event refused");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let runs = args.first().copied().unwrap_or(3);
    let base_rate = args.get(1).copied().unwrap_or(4);
    let tenants = args.get(2).copied().unwrap_or(5);
    let benign = rows("benign.jsonl");
    let attacks = rows("injection.jsonl");
    let upstream = ScriptedUpstream::start().await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    println!(
        "spike replay: {runs} runs x 2 scenarios, {tenants} tenants, {base_rate} req/s each at rest, {SPIKE}x spike, window {WINDOW_SECS} s; {} benign and {} injection rows from train/",
        benign.len(),
        attacks.len()
    );
    let mut load = Load {
        http: http.clone(),
        tenants,
        benign,
        attacks,
        next: 0,
    };
    for run in 0..runs {
        for with_burst in [false, true] {
            let (url, alerts) = webhook().await;
            let mut toml = format!(
                "[backends.main]\nbase_url = \"{}\"\n\
                 [[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{}\"\nadmin = true\n",
                upstream.base_url(),
                hash("sk-ops-0123456789")
            );
            for t in 0..tenants {
                toml.push_str(&format!(
                    "[[auth.keys]]\nname = \"t{t}\"\ntenant = \"t{t}\"\nsha256 = \"{}\"\n",
                    hash(&format!("sk-t{t}-0123456789"))
                ));
            }
            toml.push_str(&format!(
                "[detection.anomaly]\nwindow_secs = {WINDOW_SECS}\nmin_requests = 10\n[limits]\nalert_webhook_url = \"{url}/REPLICA\"\n"
            ));
            // Each replica posts to its own path.
            let mut fleet = Fleet::start(toml.clone(), 1).await;
            // Warm-up: 5 windows at rest on one replica.
            for _ in 0..(5 * WINDOW_SECS) {
                load.second(&fleet, base_rate, false).await;
            }
            let calm = alerts.lock().expect("lock").len();
            let spike_at = Instant::now();
            let mut burst_at = None;
            let mut burst = Vec::new();
            let mut spike_requests = 0;
            for s in 0..(6 * WINDOW_SECS) {
                if s == WINDOW_SECS {
                    // One window in: the autoscaler adds three replicas and
                    // says so to every replica.
                    for _ in 1..4 {
                        fleet.add().await;
                    }
                    scale_event(&http, &fleet, 4).await;
                }
                let bursting = with_burst && s >= 3 * WINDOW_SECS;
                if bursting && burst_at.is_none() {
                    burst_at = Some(Instant::now());
                }
                let (sent, b) = load.second(&fleet, base_rate * SPIKE, bursting).await;
                spike_requests += sent;
                burst.extend(b);
            }
            tokio::time::sleep(Duration::from_secs(WINDOW_SECS + 1)).await;
            let raised: Vec<_> = alerts.lock().expect("lock").clone();
            let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
            for (_, replica, a) in &raised[calm..] {
                *by_kind
                    .entry(format!("{}@{replica}", a["kind"].as_str().unwrap_or("?")))
                    .or_default() += 1;
            }
            let spike_secs = spike_at.elapsed().as_secs_f64();
            print!(
                "run {run} {}: calm alerts {calm}; spike {spike_requests} requests in {spike_secs:.1} s ({:.0} req/s); alerts {by_kind:?}",
                if with_burst { "spike+burst" } else { "benign spike" },
                spike_requests as f64 / spike_secs,
            );
            if let Some(at) = burst_at {
                let first = raised
                    .iter()
                    .filter(|(_, _, a)| a["kind"] == "injection_burst" && a["tenant"] == "t0")
                    .map(|(t, _, _)| t.duration_since(at))
                    .min();
                let caught = burst.iter().filter(|(_, s)| *s == 400).count();
                // The same requests at rest, one at a time, on a fresh replica.
                let rest = Fleet::start(toml.replace("REPLICA", "rest"), 1).await;
                let mut agree = 0;
                for (idx, status) in &burst {
                    let at_rest = http
                        .post(format!(
                            "http://{}/v1/chat/completions",
                            rest.replicas[0].local_addr()
                        ))
                        .bearer_auth("sk-t0-0123456789")
                        .json(&json!({"model": "m", "messages": load.attacks[*idx]}))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    agree += usize::from(at_rest == *status);
                }
                print!(
                    "; burst alert after {first:?}; burst requests refused under load {caught}/{} ({:.1}%), verdicts equal to at-rest {agree}/{}",
                    burst.len(),
                    100.0 * caught as f64 / burst.len().max(1) as f64,
                    burst.len()
                );
            }
            println!();
        }
    }
}
