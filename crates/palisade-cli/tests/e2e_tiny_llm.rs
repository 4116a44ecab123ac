//! End to end against a real inference server: llama.cpp (through
//! llama-cpp-python) serving a tiny random-weight model, started from
//! `tools/tiny-llm/serve`. Its output is gibberish, but its HTTP,
//! tokenizer, streaming and usage behaviour are those of a real server.
//!
//! Set `PALISADE_TINY_LLM_URL` (e.g. `http://127.0.0.1:18081/v1`) to use a
//! server that is already running instead of starting one.

mod support;

use std::process::Command;

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::{free_port, Palisade};

/// The tiny model server, stopped on drop if we started it.
struct TinyLlm {
    base_url: String,
    pid: Option<u32>,
}

impl TinyLlm {
    fn start() -> Self {
        if let Ok(url) = std::env::var("PALISADE_TINY_LLM_URL") {
            return Self {
                base_url: url,
                pid: None,
            };
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/tiny-llm/serve");
        let port = free_port();
        let out = Command::new(script)
            .arg(port.to_string())
            .output()
            .expect("tiny-llm serve script runs");
        assert!(
            out.status.success(),
            "tiny-llm did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .expect("serve prints the server pid");
        Self {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            pid: Some(pid),
        }
    }
}

impl Drop for TinyLlm {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_llama_cpp_server_through_palisade() {
    let llm = TinyLlm::start();
    let gw = Palisade::serve(&["--upstream", &llm.base_url], &[]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    // The wildcard route lists the real server's model.
    let models: Value = client
        .get(gw.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let model = models["data"][0]["id"]
        .as_str()
        .expect("a model is listed")
        .to_owned();

    // Non-streaming, with usage.
    let resp = client
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": model, "max_tokens": 8, "temperature": 0,
                      "messages": [{"role": "user", "content": "Say hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["choices"][0]["message"]["content"].is_string());
    let usage = &body["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );

    // Streaming: chunks arrive through the gateway in the OpenAI wire format.
    let resp = client
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": model, "max_tokens": 8, "stream": true,
                      "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "Count to three"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = String::new();
    let mut reads = 0;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        reads += 1;
    }
    let events: Vec<&str> = body
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("each event is a JSON chunk"))
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let finish = chunks
        .iter()
        .rev()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert!(finish.is_some(), "a chunk carries finish_reason: {body}");
    assert!(
        reads > 1,
        "the stream arrived in several reads, not one buffered body"
    );
    // llama-cpp-python ignores stream_options.include_usage; when a server
    // does send usage, it must have come through intact.
    if let Some(u) = chunks.iter().find(|c| c["usage"].is_object()) {
        assert!(u["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    }

    // A mistyped completion limit never reaches the server: the token
    // budget reads it, so the gateway refuses it itself.
    let counted = json!({"model": model, "max_tokens": "many", "messages": [{"role": "user", "content": "x"}]});
    let via = client
        .post(gw.url("/v1/chat/completions"))
        .json(&counted)
        .send()
        .await
        .unwrap();
    assert_eq!(via.status(), 400);
    let body: Value = via.json().await.unwrap();
    assert_eq!(body["error"]["param"], "max_tokens", "{body}");

    // The real server answers a mistyped field with HTTP 500 and a Python
    // traceback; the client gets a stable 502 without the traceback.
    let bad = json!({"model": model, "max_tokens": 2, "top_p": "many", "messages": [{"role": "user", "content": "x"}]});
    let direct = client
        .post(format!("{}/chat/completions", llm.base_url))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert!(direct.status().is_server_error(), "{}", direct.status());
    let via = client
        .post(gw.url("/v1/chat/completions"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(via.status(), 502);
    let body: Value = via.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_error");
    assert!(
        !body.to_string().contains(".py"),
        "no traceback leaks: {body}"
    );
}

/// The tiny model's `tokenizer.json`, written from its GGUF by
/// `tools/watermark/tiny_tokenizer.py` with the tiny-llm virtualenv.
fn tiny_tokenizer(dir: &std::path::Path) -> std::path::PathBuf {
    let home = std::env::var("TINY_LLM_HOME")
        .unwrap_or_else(|_| format!("{}/.cache/tiny-llm", std::env::var("HOME").unwrap()));
    let out = dir.join("tokenizer.json");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tools/watermark/tiny_tokenizer.py"
    );
    let status = Command::new(format!("{home}/venv/bin/python"))
        .arg(script)
        .arg(format!("{home}/tiny.gguf"))
        .arg(&out)
        .status()
        .expect("the tiny-llm python runs");
    assert!(status.success(), "tiny_tokenizer.py failed");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarked_generations_of_the_real_server_are_detected_and_plain_ones_are_not() {
    let llm = TinyLlm::start();
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = tiny_tokenizer(dir.path());
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[backends.tiny]\nbase_url = \"{}\"\n\
             [[routes]]\nmodel = \"tiny\"\nbackend = \"tiny\"\ntokenizer = \"{}\"\n\
             [[routes]]\nmodel = \"plain\"\nbackend = \"tiny\"\nupstream_model = \"tiny\"\n\
             [watermark]\nenabled = true\nmodels = [\"tiny\"]\n",
            llm.base_url,
            tokenizer.display()
        ),
    )
    .unwrap();
    let key = "cd".repeat(32);
    let gw = Palisade::serve(
        &["--config", config.to_str().unwrap()],
        &[("PALISADE_WATERMARK_KEY", &key)],
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for (model, marked) in [("tiny", true), ("plain", false)] {
        for seed in 0..3 {
            let body: Value = client
                .post(gw.url("/v1/completions"))
                .json(&json!({"model": model, "prompt": "the water of people",
                              "max_tokens": 200, "temperature": 1.0, "seed": seed}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let text = body["choices"][0]["text"].as_str().expect("a completion");
            // Open mode: the caller is tenant `local` and an admin.
            let verdict: Value = client
                .post(gw.url("/v1/watermark/detect"))
                .json(&json!({"model": "tiny", "text": text, "tenant": "local"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(verdict["detected"], marked, "{model} {seed}: {verdict}");
        }
    }
    // The real server refuses nothing of the map, and logprobs are refused.
    let resp = client
        .post(gw.url("/v1/completions"))
        .json(&json!({"model": "tiny", "prompt": "the", "max_tokens": 4, "logprobs": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
