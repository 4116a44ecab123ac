//! The official OpenAI Python SDK against the `palisade` binary, in open mode
//! and with API keys: chat, streaming with usage, models, embeddings, and the
//! SDK's typed errors for our error codes (`tools/sdk-check/check.py`); then
//! what a real client leans on further (`tools/sdk-check/behaviours.py`):
//! `models.retrieve`, parallel tool calls rebuilt by the SDK (whole and
//! streamed), a batch of embeddings, and the SDK's retries following
//! `x-should-retry` (none for a verdict, an unknown model or a malformed
//! upstream answer, which it would otherwise retry as a 502). The SDK runs
//! from a venv that `tools/sdk-check/venv` creates once.

mod support;

use std::collections::HashMap;
use std::process::Command;

use palisade_testkit::{HostileUpstream, RawResponse, ScriptedUpstream};
use serde_json::{json, Value};
use support::Palisade;

fn sdk_python() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/sdk-check/venv");
    let out = Command::new(script).output().expect("venv script runs");
    assert!(
        out.status.success(),
        "cannot prepare the OpenAI SDK venv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn run_check(python: &str, base_url: &str, key: Option<&str>) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tools/sdk-check/check.py"
    );
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(base_url).arg("scripted-model");
    if let Some(k) = key {
        cmd.arg(k);
    }
    let out = cmd.output().expect("python runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "SDK check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_works_through_palisade() {
    let python = sdk_python();
    let upstream = ScriptedUpstream::start().await;

    let open = Palisade::serve(&["--upstream", &upstream.base_url()], &[]);
    let url = open.url("/v1");
    tokio::task::spawn_blocking({
        let python = python.clone();
        move || run_check(&python, &url, None)
    })
    .await
    .unwrap();
    drop(open);

    let dir = std::env::temp_dir().join(format!("palisade-sdk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("keys.toml");
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"pk-sdk-test"))
    };
    std::fs::write(
        &config,
        format!(
            "[[auth.keys]]\nname = \"sdk\"\ntenant = \"t\"\nsha256 = \"{hash}\"\n[backends.main]\nbase_url = \"{}\"\n[[routes]]\nmodel = \"scripted-model\"\nbackend = \"main\"\n",
            upstream.base_url()
        ),
    )
    .unwrap();
    let keyed = Palisade::serve(&["--config", config.to_str().unwrap()], &[]);
    let url = keyed.url("/v1");
    tokio::task::spawn_blocking(move || run_check(&python, &url, Some("pk-sdk-test")))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_rebuilds_parallel_tool_calls_and_obeys_x_should_retry() {
    let python = sdk_python();
    let upstream = ScriptedUpstream::start().await;
    // Answers every request with a body that is not JSON.
    let broken = HostileUpstream::start(RawResponse::json("{\"choices\": [tru")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[backends.main]\nbase_url = \"{main}\"\n[backends.broken]\nbase_url = \"{broken}\"\n\
             [[routes]]\nmodel = \"broken\"\nbackend = \"broken\"\n\
             [[routes]]\nmodel = \"llama\"\nbackend = \"main\"\n\
             [[routes]]\nmodel = \"*\"\nbackend = \"main\"\n",
            main = upstream.base_url(),
            broken = broken.base_url(),
        ),
    )
    .unwrap();
    let gw = Palisade::serve(&["--config", config.to_str().unwrap()], &[]);
    let base = gw.url("/v1");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tools/sdk-check/behaviours.py"
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(script)
            .arg(&base)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .output()
    })
    .await
    .unwrap()
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "script failed:\n{stdout}\n{stderr}"
    );
    let checks: HashMap<String, Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v["check"].as_str()?.to_owned(), v)))
        .collect();
    let check = |name: &str| -> &Value {
        checks
            .get(name)
            .unwrap_or_else(|| panic!("no result for {name}:\n{stdout}\n{stderr}"))
    };
    let ok = |name: &str| -> &Value {
        let v = check(name);
        assert!(v.get("exception").is_none(), "{name} raised: {v}");
        v
    };

    let models = ok("models");
    assert_eq!(models["retrieved"], "llama", "{models}");
    assert_eq!(models["object"], "model", "{models}");

    // The scripted upstream echoes the last user message.
    let chat = ok("chat");
    assert_eq!(chat["content"], "hello from the official sdk", "{chat}");
    assert_eq!(chat["finish"], "stop", "{chat}");
    let stream = ok("chat_stream");
    assert_eq!(stream["content"], chat["content"], "{stream}");
    assert_eq!(stream["finish"], "stop", "{stream}");
    assert!(stream["deltas"].as_u64() >= Some(1), "{stream}");
    assert!(
        stream["completion_tokens"].as_u64() >= Some(1),
        "the usage chunk reached the SDK: {stream}"
    );

    // Parallel tool calls, whole and streamed, arrive as the SDK rebuilds them:
    // ids, type, names and complete JSON arguments, in order.
    let expected = json!([
        {"id": "call_0", "type": "function", "name": "get_weather", "arguments": {"city": "Paris"}},
        {"id": "call_1", "type": "function", "name": "get_time", "arguments": {"tz": "Europe/Paris"}},
    ]);
    for name in ["tool_calls", "tool_calls_stream"] {
        let calls = ok(name);
        assert_eq!(calls["calls"], expected, "{name}: {calls}");
        assert_eq!(calls["finish"], "tool_calls", "{name}: {calls}");
    }

    let embeddings = ok("embeddings");
    assert_eq!(embeddings["vectors"], 2, "{embeddings}");
    assert!(embeddings["dims"].as_u64() >= Some(1), "{embeddings}");

    // Errors arrive as the SDK's typed exceptions with the gateway's codes (a
    // verdict carries its reason code),
    // and its retries follow `x-should-retry`: none for a verdict, an unknown
    // model or a malformed upstream answer (which the SDK would otherwise retry
    // as a 502), two for a failing upstream (SDK `max_retries = 2`).
    let expect_error = |name: &str, exception: &str, status: u64, code: &str, attempts: u64| {
        let v = check(name);
        assert_eq!(v["exception"], exception, "{name}: {v}");
        assert_eq!(v["status"], status, "{name}: {v}");
        assert_eq!(v["code"], code, "{name}: {v}");
        assert_eq!(v["attempts"], attempts, "{name}: {v}");
    };
    expect_error("blocked", "BadRequestError", 400, "prompt_injection", 1);
    expect_error("unknown_model", "NotFoundError", 404, "model_not_found", 1);
    expect_error(
        "malformed_upstream",
        "InternalServerError",
        502,
        "upstream_invalid_response",
        1,
    );
    let failing = check("failing_upstream");
    assert_eq!(failing["attempts"], 3, "retried twice: {failing}");
    assert!(
        failing["status"].as_u64().is_some_and(|s| s >= 500),
        "{failing}"
    );
    let hits = upstream
        .received()
        .iter()
        .filter(|r| r.body["model"] == "error-500")
        .count();
    assert!(hits >= 3, "each SDK attempt reached the upstream: {hits}");
    drop(gw);
}
