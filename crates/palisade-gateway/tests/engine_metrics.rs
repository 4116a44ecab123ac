//! The serving engine's own metrics through the gateway: a backend with
//! `engine_metrics_url` is scraped on its interval, and what its engine
//! says (vLLM's exposition here, served by a test server on loopback whose
//! counters move between scrapes) becomes `palisade_engine_*{backend}`,
//! speculative decoding's acceptance as a rate between two scrapes. A
//! metrics endpoint that fails or answers garbage costs nothing but its
//! `palisade_engine_scrape_ok` going to 0, and the backend's key is never
//! sent to it.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use palisade_gateway::RunningGateway;
use palisade_testkit::ScriptedUpstream;
use support::{gateway_with_env, metrics};

/// A fake engine: each scrape drafts 40 more tokens and accepts 30 of them
/// in 10 steps (acceptance 0.75, 4 tokens per step); `broken` makes it
/// answer 500.
struct Engine {
    url: String,
    scrapes: Arc<AtomicU64>,
    broken: Arc<AtomicU64>,
    authorization: Arc<Mutex<Vec<String>>>,
}

impl Engine {
    async fn start() -> Self {
        let scrapes = Arc::new(AtomicU64::new(0));
        let broken = Arc::new(AtomicU64::new(0));
        let authorization: Arc<Mutex<Vec<String>>> = Arc::default();
        let (n, b, a) = (scrapes.clone(), broken.clone(), authorization.clone());
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |headers: HeaderMap| {
                let (n, b, a) = (n.clone(), b.clone(), a.clone());
                async move {
                    if let Some(v) = headers.get("authorization") {
                        a.lock().unwrap().push(v.to_str().unwrap_or("?").to_owned());
                    }
                    let k = n.fetch_add(1, Ordering::SeqCst) as f64;
                    if b.load(Ordering::SeqCst) == 1 {
                        return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
                    }
                    (
                        StatusCode::OK,
                        format!(
                            "# TYPE vllm:kv_cache_usage_perc gauge\n\
                             vllm:kv_cache_usage_perc{{engine=\"0\",model_name=\"m\"}} 0.42\n\
                             vllm:num_requests_waiting{{engine=\"0\",model_name=\"m\"}} 3\n\
                             vllm:num_requests_running{{engine=\"0\",model_name=\"m\"}} 5\n\
                             vllm:spec_decode_num_drafts_total{{engine=\"0\",model_name=\"m\"}} {}\n\
                             vllm:spec_decode_num_draft_tokens_total{{engine=\"0\",model_name=\"m\"}} {}\n\
                             vllm:spec_decode_num_accepted_tokens_total{{engine=\"0\",model_name=\"m\"}} {}\n",
                            10.0 * k,
                            40.0 * k,
                            30.0 * k
                        ),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            scrapes,
            broken,
            authorization,
        }
    }
}

/// The backend key comes from the environment, as in production.
async fn start(toml: &str) -> RunningGateway {
    gateway_with_env(toml, |k| {
        (k == "ENGINE_TEST_KEY").then(|| "sk-backend-secret".to_owned())
    })
    .await
}

/// Polls `/metrics` (bounded) until every needle is there.
async fn wait_for(gw: &RunningGateway, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics(gw).await;
        if needles.iter().all(|n| text.contains(n)) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_engines_own_figures_become_gauges_per_backend_and_a_broken_endpoint_costs_nothing() {
    let upstream = ScriptedUpstream::start().await;
    let engine = Engine::start().await;
    let gw = start(&format!(
        "[backends.main]\nbase_url = \"{}\"\napi_key_env = \"ENGINE_TEST_KEY\"\n\
         engine_metrics_url = \"{}\"\nengine_metrics_interval_ms = 100\n",
        upstream.base_url(),
        engine.url
    ))
    .await;
    let needles = [
        "palisade_engine_kv_cache_usage_ratio{backend=\"main\"} 0.42",
        "palisade_engine_requests_waiting{backend=\"main\"} 3",
        "palisade_engine_requests_running{backend=\"main\"} 5",
        "palisade_engine_spec_decode_acceptance_rate{backend=\"main\"} 0.75",
        "palisade_engine_spec_decode_tokens_per_step{backend=\"main\"} 4",
        "palisade_engine_scrape_ok{backend=\"main\"} 1",
    ];
    let text = wait_for(&gw, &needles).await;
    for n in needles {
        assert!(text.contains(n), "metrics lack {n}:\n{text}");
    }
    assert!(engine.scrapes.load(Ordering::SeqCst) >= 2);
    assert!(
        engine.authorization.lock().unwrap().is_empty(),
        "the backend's key went to its metrics endpoint"
    );

    // The endpoint fails: the scrape says so, requests are unaffected.
    engine.broken.store(1, Ordering::SeqCst);
    let text = wait_for(&gw, &["palisade_engine_scrape_ok{backend=\"main\"} 0"]).await;
    assert!(
        text.contains("palisade_engine_scrape_ok{backend=\"main\"} 0"),
        "{text}"
    );
    let status = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{}/v1/chat/completions", gw.local_addr()))
        .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}
