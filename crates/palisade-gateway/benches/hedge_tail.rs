//! Hedging's tail-latency gain and its cost (issue #19): two deployments
//! of one route, real loopback HTTP (testkit's `Deployment`), each
//! answering in 10 ms except every 20th request (5 %), which takes 400 ms.
//! The same load runs without hedging, with a fixed 50 ms hedge and with a
//! hedge at the route's observed p90 and p95 (floor 40 ms); printed: client-side
//! p50 / p95 / p99 / max latency and the extra upstream load (requests the
//! deployments received beyond one per client request, in %).
//!
//!   cargo bench --profile dev -p palisade-gateway --bench hedge_tail -- [REQUESTS] [CONCURRENCY]
//!   (default 1000 requests, 8 at a time; a warm-up of 60 is not measured)
//!
//! A load run, not a criterion benchmark: the figure is a latency
//! distribution and a ratio, measured on one run with the three settings
//! side by side.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_testkit::{Deployment as Fake, DeploymentMode as Mode};

fn tail() -> Mode {
    Mode::Tail {
        every: 20,
        fast: Duration::from_millis(10),
        slow: Duration::from_millis(400),
    }
}

async fn run(label: &str, hedge: &str, requests: usize, concurrency: usize) {
    let a = Fake::start("a", tail()).await;
    let b = Fake::start("b", tail()).await;
    // One client sending one template: not what the extraction defence is
    // for, and not what this measures.
    let toml = format!(
        r#"
        [extraction]
        enabled = false
        [backends.a]
        base_url = "{}"
        [backends.b]
        base_url = "{}"
        [[routes]]
        model = "m"
        idempotent = true
        deployments = [{{ backend = "a" }}, {{ backend = "b" }}]
        {hedge}
        "#,
        a.base_url(),
        b.base_url()
    );
    let gw = support::gateway(&toml).await;
    let url = format!("http://{}/v1/chat/completions", gw.local_addr());
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let send = move |i: usize| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let started = Instant::now();
            let resp = client
                .post(&url)
                .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": format!("Please summarise the gardening note number {i}.")}]}))
                .send()
                .await
                .expect("gateway answers");
            let status = resp.status();
            let body = resp.bytes().await.unwrap_or_default();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            started.elapsed()
        }
    };
    // Warm-up: connections, and the p95 window's first samples.
    for i in 0..60 {
        send(i).await;
    }
    let before = a.hits() + b.hits();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let send = send.clone();
        workers.spawn(async move {
            let mut took = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    return took;
                }
                took.push(send(1_000 + i).await);
            }
        });
    }
    let mut took = Vec::with_capacity(requests);
    while let Some(t) = workers.join_next().await {
        took.extend(t.expect("worker"));
    }
    took.sort();
    let metrics = support::metrics(&gw).await;
    let hedges: Vec<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("palisade_hedge_total{route=\"m\",outcome=\""))
        .map(|l| l.replace("\"} ", "="))
        .collect();
    let at = |q: f64| took[((q * took.len() as f64).ceil() as usize).clamp(1, took.len()) - 1];
    let sent = a.hits() + b.hits() - before;
    println!(
        "{label:<22} p50 {:>6.1} ms  p95 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms  extra load {:>5.1} %",
        at(0.50).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        took[took.len() - 1].as_secs_f64() * 1e3,
        (sent as f64 - requests as f64) * 100.0 / requests as f64,
    );
    if !hedges.is_empty() {
        // Counters are per process: each run's line includes the runs before.
        println!("{:<22} hedges so far: {}", "", hedges.join(" "));
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let requests = args.first().copied().unwrap_or(1_000);
    let concurrency = args.get(1).copied().unwrap_or(8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{requests} requests, {concurrency} at a time; 5 % of answers take 400 ms, the rest 10 ms"
    );
    rt.block_on(async {
        run("no hedging", "", requests, concurrency).await;
        run(
            "hedge after 50 ms",
            "hedge = { after_ms = 50 }",
            requests,
            concurrency,
        )
        .await;
        for p in ["p90", "p95"] {
            run(
                &format!("hedge at {p}"),
                &format!("hedge = {{ after = \"{p}\", min_ms = 40, max_ms = 400 }}"),
                requests,
                concurrency,
            )
            .await;
        }
    });
}
