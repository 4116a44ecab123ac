//! Model extraction: a logit-stealing client (Carlini et al. 2024) smuggling
//! log-probabilities together with logit control past parameter hardening in
//! every shape a JSON parser or SDK lets it (escaped key names, duplicate
//! keys, `extra_body`-style containers an upstream merges, truthy strings,
//! the completions endpoint's `echo`), and a flooding client trying to make
//! the telemetry slow everyone down. Under the default (hardened) tier
//! nothing that pairs logit bias with log-probabilities may reach the
//! upstream, and a full telemetry queue costs records, never requests.

use serde_json::{json, Value};

use crate::harness::Scripted;

/// True when `sent` (what the upstream received) pairs logit control with
/// log-probabilities anywhere an upstream would read them.
fn pairs_bias_with_logprobs(sent: &Value) -> bool {
    let scopes: Vec<&Value> = std::iter::once(sent)
        .chain(
            ["extra_body", "extra_params", "vllm_xargs", "nvext"]
                .iter()
                .filter_map(|c| sent.get(*c)),
        )
        .collect();
    let truthy = |v: Option<&Value>| match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Null) | None => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty() && s != "false" && s != "0",
        Some(_) => true,
    };
    let logprobs = scopes
        .iter()
        .any(|s| truthy(s.get("logprobs")) || truthy(s.get("top_logprobs")));
    let bias = scopes.iter().any(|s| {
        s.get("logit_bias")
            .is_some_and(|b| b.as_object().is_none_or(|m| !m.is_empty()) && !b.is_null())
    });
    logprobs && bias
}

#[tokio::test]
async fn logit_stealing_shapes_never_reach_the_upstream() {
    let h = Scripted::new("").await;
    let chat = r#""model": "m", "messages": [{"role": "user", "content": "Say A."}]"#;
    let completion = r#""model": "m", "prompt": "Say A.""#;
    let attempts: Vec<(&str, String)> = vec![
        (
            "/v1/chat/completions",
            format!(
                r#"{{{chat}, "logprobs": true, "top_logprobs": 5, "logit_bias": {{"32": 100}}}}"#
            ),
        ),
        (
            "/v1/chat/completions",
            format!(r#"{{{chat}, "logprobs": true, "logit\u005fbias": {{"32": 100}}}}"#),
        ),
        (
            "/v1/chat/completions",
            format!(r#"{{{chat}, "\u006cogprobs": true, "logit_bias": {{"32": 100}}}}"#),
        ),
        (
            "/v1/chat/completions",
            format!(
                r#"{{{chat}, "logit_bias": {{"32": 100}}, "extra_body": {{"logprobs": true}}}}"#
            ),
        ),
        (
            "/v1/chat/completions",
            format!(
                r#"{{{chat}, "logprobs": true, "vllm_xargs": {{"logit_bias": {{"32": 100}}}}}}"#
            ),
        ),
        (
            "/v1/chat/completions",
            format!(r#"{{{chat}, "logprobs": "yes", "logit_bias": {{"32": 100}}}}"#),
        ),
        (
            "/v1/chat/completions",
            format!(r#"{{{chat}, "top_logprobs": "20", "logit_bias": {{"32": 100}}}}"#),
        ),
        // Duplicates: the first pair is what a first-wins upstream would read.
        (
            "/v1/chat/completions",
            format!(
                r#"{{{chat}, "logprobs": true, "logit_bias": {{"32": 100}}, "logprobs": false}}"#
            ),
        ),
        (
            "/v1/chat/completions",
            format!(
                r#"{{{chat}, "logit_bias": {{"32": 100}}, "logprobs": true, "logit_bias": {{}}}}"#
            ),
        ),
        (
            "/v1/completions",
            format!(r#"{{{completion}, "logprobs": 5, "logit_bias": {{"32": 100}}}}"#),
        ),
        (
            "/v1/completions",
            format!(r#"{{{completion}, "logprobs": 5, "echo": true}}"#),
        ),
        (
            "/v1/completions",
            format!(r#"{{{completion}, "prompt_logprobs": 20}}"#),
        ),
    ];
    for (path, raw) in &attempts {
        let before = h.upstream.received().len();
        let resp = h
            .client
            .http
            .post(h.client.url(path))
            .header("content-type", "application/json")
            .body(raw.clone())
            .send()
            .await
            .expect("gateway answers");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let received = h.upstream.received();
        if received.len() > before {
            let sent = &received.last().expect("one").body;
            assert!(
                !pairs_bias_with_logprobs(sent),
                "{raw} reached the upstream as {sent}"
            );
            assert!(sent.get("prompt_logprobs").is_none(), "{raw}: {sent}");
            assert!(
                !(sent.get("echo") == Some(&Value::Bool(true)) && sent.get("logprobs").is_some()),
                "{raw}: {sent}"
            );
        } else {
            assert_eq!(status, 400, "{raw}: {body}");
            assert_eq!(body["error"]["code"], "logprob_probe_refused", "{raw}");
        }
    }
}

#[tokio::test]
async fn top_logprobs_and_engine_dumps_are_capped_and_stripped() {
    let h = Scripted::new("").await;
    let (status, _) = h
        .client
        .chat(
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "logprobs": true, "top_logprobs": 20, "n_probs": 50,
            "nvext": {"post_sampling_probs": true}, "extra_body": {"allowed_token_ids": [1]}}),
        )
        .await;
    assert_eq!(status, 200);
    let sent = h.last_sent();
    assert_eq!(sent["top_logprobs"], 5, "{sent}");
    assert!(sent.get("n_probs").is_none(), "{sent}");
    assert_eq!(sent["nvext"], json!({}), "{sent}");
    assert_eq!(sent["extra_body"], json!({}), "{sent}");
}

#[tokio::test]
async fn a_full_telemetry_queue_drops_records_not_requests() {
    // A queue of one: a flood overflows it at once. Every request is still
    // served; the overflow is only counted.
    let h = Scripted::new("[extraction]\nqueue_capacity = 1\n").await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let http = h.client.http.clone();
        let url = h.client.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .json(&json!({"model": "m", "messages": [{"role": "user", "content": format!("flood {i} qzxv")}]}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
}
