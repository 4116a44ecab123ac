//! Model canaries under attack (issue #19): a hostile upstream answering
//! the golden prompts with a 50 MiB body, a body that is not JSON, or no
//! answer at all must not crash or stall the canary task — each is judged
//! failing, and the healthy deployment of the same route keeps its own
//! schedule — and a deployment that recognises the canary (right answers
//! to golden prompts, garbage to users) is the known limit: what we do to
//! make golden prompts look like user traffic is checked here, and what a
//! cheating upstream still gets away with is written down in the test.

use std::time::{Duration, Instant};

use palisade_testkit::{golden_set, CanaryMode, CanaryModel};
use serde_json::{json, Value};

use crate::harness::start;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

async fn view(gw: &palisade_gateway::RunningGateway) -> Value {
    http()
        .get(format!("http://{}/admin/canaries", gw.local_addr()))
        .send()
        .await
        .expect("admin answers")
        .json()
        .await
        .expect("json")
}

fn deployment<'a>(view: &'a Value, backend: &str) -> &'a Value {
    view["data"][0]["deployments"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["backend"] == backend))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn hostile_upstreams_are_judged_failing_without_stalling_the_canary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let golden = dir.path().join("golden.jsonl");
    std::fs::write(&golden, golden_set(4)).expect("write golden set");
    let good = CanaryModel::start(CanaryMode::Good).await;
    let huge = CanaryModel::start(CanaryMode::Huge).await;
    let garbage = CanaryModel::start(CanaryMode::Garbage).await;
    let stall = CanaryModel::start(CanaryMode::Stall).await;
    let gw = start(&format!(
        r#"
[backends.good]
base_url = "{}"
[backends.huge]
base_url = "{}"
[backends.garbage]
base_url = "{}"
[backends.stall]
base_url = "{}"
[[routes]]
model = "hostile"
deployments = [{{ backend = "good" }}, {{ backend = "huge" }}, {{ backend = "garbage" }}, {{ backend = "stall" }}]
canary = {{ golden_set = "{}", interval_s = 1, timeout_ms = 800, max_body_bytes = 65536, min_samples = 4 }}
"#,
        good.base_url(),
        huge.base_url(),
        garbage.base_url(),
        stall.base_url(),
        golden.display()
    ))
    .await;
    // 8 items × 0.8 s: the stalled deployment's first run takes ~6.4 s.
    // Meanwhile the good one keeps its 1 s schedule.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(40);
    let last = loop {
        let v = view(&gw).await;
        let done = ["huge", "garbage", "stall"]
            .iter()
            .all(|b| deployment(&v, b)["health"] == "drifted");
        if done {
            break v;
        }
        assert!(Instant::now() < deadline, "not all judged: {v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let good_runs = deployment(&last, "good")["runs"].as_u64().unwrap_or(0);
    assert!(
        good_runs >= 3,
        "the stalled deployment held up the good one: {good_runs} runs in {:?}",
        started.elapsed()
    );
    assert_eq!(deployment(&last, "good")["health"], "healthy");
    let failures = |b: &str| deployment(&last, b)["last_failures"].to_string();
    assert!(
        failures("huge").contains("body over 65536 bytes"),
        "{}",
        failures("huge")
    );
    assert!(
        failures("garbage").contains("not JSON"),
        "{}",
        failures("garbage")
    );
    // The backend's deadline or the canary's own timeout, whichever fires.
    assert!(
        failures("stall").contains(" within 799 ms")
            || failures("stall").contains(" within 800 ms"),
        "{}",
        failures("stall")
    );
    for b in ["huge", "garbage", "stall"] {
        let rates = &deployment(&last, b)["scores"]["rates"];
        assert_eq!(rates[0]["passed"], 0, "{b}: {rates}");
    }
    // The gateway still serves users and its canary task is one task.
    assert_eq!(last["tasks_running"], 1);
    let r = http()
        .get(format!("http://{}/readyz", gw.local_addr()))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 200);
    gw.shutdown();
}

/// The known limit, written down as a test: an upstream that tells golden
/// prompts from user prompts can pass the canary and still serve users
/// badly. What the gateway does against it: golden requests go to the same
/// endpoint with the same model name and the same header names as user
/// requests (no marker header; a UUID request id like a user's), checked
/// below. What remains: the golden prompts' text is fixed and replayed on a
/// schedule, so an upstream that memorises them (or sees `temperature` 0
/// at a steady interval) can still cheat; a rotating or generated golden
/// set and sampled shadow grading of user traffic would narrow it.
#[tokio::test]
async fn an_upstream_that_recognises_golden_prompts_is_a_known_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let golden = dir.path().join("golden.jsonl");
    std::fs::write(&golden, golden_set(4)).expect("write golden set");
    let stable = CanaryModel::start(CanaryMode::Good).await;
    let cheat = CanaryModel::start(CanaryMode::Cheating).await;
    let gw = start(&format!(
        r#"
[backends.stable]
base_url = "{}"
[backends.cheat]
base_url = "{}"
[[routes]]
model = "public-name"
upstream_model = "served-name"
deployments = [{{ backend = "stable" }}, {{ backend = "cheat" }}]
canary = {{ golden_set = "{}", interval_s = 3600, min_samples = 4 }}
rollout = {{ deployment = "cheat", start_weight_pct = 100 }}
"#,
        stable.base_url(),
        cheat.base_url(),
        golden.display()
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while deployment(&view(&gw).await, "cheat")["state"] != "promoted" {
        assert!(Instant::now() < deadline, "never promoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut garbled = 0;
    for i in 0..30 {
        let resp: Value = http()
            .post(format!("http://{}/v1/chat/completions", gw.local_addr()))
            .json(&json!({"model": "public-name", "messages": [{"role": "user", "content": format!("question {i}")}]}))
            .send()
            .await
            .expect("chat")
            .json()
            .await
            .expect("json");
        if resp["choices"][0]["message"]["content"] == "garbled" {
            garbled += 1;
        }
    }
    // The limit: the cheat was promoted, and users reached it.
    assert!(garbled > 0, "the cheat served no user");
    // What the gateway controls: golden requests look like user requests.
    let (user, golden_seen) = cheat.seen();
    assert_eq!(user.models, golden_seen.models, "same upstream model name");
    assert!(golden_seen.models.contains("served-name"));
    assert_eq!(user.headers, golden_seen.headers, "same header names");
    gw.shutdown();
}
