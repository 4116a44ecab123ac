//! The model-canary figures behind `docs/benchmarks.md`: in-process
//! gateways on loopback in front of two scripted models (testkit's
//! `CanaryModel`), a route rolling out `new` at 50 % with a canary every
//! `interval_s`; user traffic runs at a steady rate while `new` is made to
//! drift (wrong answers, broken JSON, no refusals). Per run: the time from
//! the drift's start to the rollback (`/admin/canaries` says `rolled_back`,
//! polled every 10 ms), and how many user requests the drifted deployment
//! served in between. Then the canary's own load: golden requests per
//! deployment over a measured span, per hour.
//!
//! ```text
//! cargo run -p palisade-gateway --example canary_rollback -- [runs] [interval_s] [exact_items]
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use palisade_gateway::RunningGateway;
use palisade_testkit::{golden_set, CanaryMode, CanaryModel};
use serde_json::{json, Value};
use support::gateway;

async fn state(client: &reqwest::Client, gw: &RunningGateway) -> String {
    let v: Value = client
        .get(format!("http://{}/admin/canaries", gw.local_addr()))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    v["data"][0]["deployments"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["backend"] == "new"))
        .and_then(|d| d["state"].as_str())
        .unwrap_or("")
        .to_owned()
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let runs = args.first().copied().unwrap_or(5);
    let interval = args.get(1).copied().unwrap_or(1);
    let exact = args.get(2).copied().unwrap_or(10) as usize;
    let items = exact + exact / 2 + 2;
    let dir = tempfile::tempdir().expect("tempdir");
    let golden = dir.path().join("golden.jsonl");
    std::fs::write(&golden, golden_set(exact)).expect("golden");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut times = Vec::new();
    println!("golden set: {items} items; interval_s = {interval}; user traffic 50 req/s");
    for run in 1..=runs {
        let stable = CanaryModel::start(CanaryMode::Good).await;
        let new = CanaryModel::start(CanaryMode::Good).await;
        let gw = gateway(&format!(
            r#"
[backends.stable]
base_url = "{}"
[backends.new]
base_url = "{}"
[[routes]]
model = "m"
deployments = [{{ backend = "stable" }}, {{ backend = "new" }}]
canary = {{ golden_set = "{}", interval_s = {interval}, min_samples = 10, hold_down_s = 3600 }}
rollout = {{ deployment = "new", start_weight_pct = 50, step_every_s = 3600 }}
"#,
            stable.base_url(),
            new.base_url(),
            golden.display()
        ))
        .await;
        while state(&client, &gw).await != "rolling_out_50_pct" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Steady user traffic: 50 requests per second.
        let url = format!("http://{}/v1/chat/completions", gw.local_addr());
        let (users_client, stop) = (client.clone(), tokio::sync::watch::channel(false));
        let mut stop_rx = stop.1.clone();
        let traffic = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_rx.wait_for(|s| *s) => return,
                }
                let _ = users_client
                    .post(&url)
                    .json(
                        &json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]}),
                    )
                    .send()
                    .await;
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        new.set(CanaryMode::Degraded);
        let users_at_drift = new.user_requests();
        let drift = Instant::now();
        while state(&client, &gw).await != "rolled_back" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = drift.elapsed().as_secs_f64();
        let leaked = new.user_requests() - users_at_drift;
        let users_at_rollback = new.user_requests();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = new.user_requests() - users_at_rollback;
        let _ = stop.0.send(true);
        let _ = traffic.await;
        println!(
            "run {run}: drift -> rollback {took:.3} s; user requests served by the drifted deployment before rollback {leaked}, in the 1 s after {after}"
        );
        times.push(took);
        gw.shutdown();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "drift -> rollback: median {:.3} s, max {:.3} s over {runs} runs",
        times[times.len() / 2],
        times[times.len() - 1]
    );

    // The canary's own load, measured on one deployment over 20 s.
    let model = CanaryModel::start(CanaryMode::Good).await;
    let gw = gateway(&format!(
        r#"
[backends.only]
base_url = "{}"
[[routes]]
model = "m"
backend = "only"
canary = {{ golden_set = "{}", interval_s = {interval} }}
"#,
        model.base_url(),
        golden.display()
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (start, t0) = (model.golden_requests(), Instant::now());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let n = model.golden_requests() - start;
    let per_hour = n as f64 * 3600.0 / t0.elapsed().as_secs_f64();
    println!(
        "canary load: {n} golden requests in {:.1} s on one deployment = {per_hour:.0}/hour (expected {items} x 3600 / {interval} = {})",
        t0.elapsed().as_secs_f64(),
        items as u64 * 3600 / interval
    );
    gw.shutdown();
}
