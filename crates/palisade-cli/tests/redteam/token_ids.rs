//! Token ids as a way around the output gate: vLLM's `return_token_ids`
//! returns each choice's `token_ids` and the `prompt_token_ids`, which the
//! gate (it judges strings) let through. A choice's ids spell the text the
//! gate redacted; the prompt's spell the system prompt and the canary the
//! gateway planted. Speech (`message.audio.data`) is the same channel for
//! the text of its transcript.

use palisade_testkit::RawResponse;
use serde_json::{json, Value};

use crate::harness::{Hostile, Scripted, AWS_KEY};

const ASKS: [&str; 2] = ["return_token_ids", "return_tokens_as_token_ids"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_engine_is_asked_for_token_ids() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let h = Scripted::new(&format!(
        "[policy]\naudit_url = \"sqlite:{}\"\n",
        db.display()
    ))
    .await;
    for container in [None, Some("extra_body"), Some("vllm_xargs")] {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "Say hi."}]});
        let asks = json!({"return_token_ids": true, "return_tokens_as_token_ids": true});
        match container {
            None => body.as_object_mut().expect("object").extend(
                asks.as_object()
                    .expect("object")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            ),
            Some(c) => body[c] = asks,
        }
        let (status, answer) = h.client.chat(&body).await;
        assert_eq!(status, 200, "{answer}");
        let sent = h.last_sent();
        let scopes = std::iter::once(&sent).chain(container.and_then(|c| sent.get(c)));
        for scope in scopes {
            for ask in ASKS {
                assert!(
                    scope.get(ask).is_none(),
                    "{ask} reached the upstream: {sent}"
                );
            }
        }
    }
    // Each removal is audited (input gate, `redact`, where it was).
    let found = h
        .client
        .audit_records(None, 3, |r| r.to_string().contains("token_ids_withheld"))
        .await;
    assert_eq!(found.len(), 3, "{found:?}");
    let all = Value::Array(found).to_string();
    assert!(all.contains("param:extra_body.return_token_ids"), "{all}");
    assert!(all.contains("\"redact\""), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_ids_never_spell_what_the_text_does_not_show() {
    let body = |content: &str| {
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "prompt_token_ids": [9906, 25, 15465, 3639],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "token_ids": [1, 2, 3, 4, 5], "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}})
        .to_string()
    };
    let h = Hostile::new(
        RawResponse::json(body(&format!("The key is {AWS_KEY}."))),
        "",
    )
    .await;
    let ask = json!({"model": "m", "messages": [{"role": "user", "content": "Say hi."}]});
    let (status, v) = h.client.chat(&ask).await;
    assert_eq!(status, 200, "{v}");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
    assert!(!content.contains(AWS_KEY), "{v}");
    assert!(
        v["choices"][0].get("token_ids").is_none(),
        "ids of the redacted text: {v}"
    );
    assert!(v.get("prompt_token_ids").is_none(), "the prompt's ids: {v}");
    // Clean text keeps its own ids (they spell only what is shown); the
    // prompt's never.
    h.upstream.script(RawResponse::json(body("Hi there.")));
    let (_, v): (u16, Value) = h.client.chat(&ask).await;
    assert_eq!(v["choices"][0]["token_ids"], json!([1, 2, 3, 4, 5]), "{v}");
    assert!(v.get("prompt_token_ids").is_none(), "the prompt's ids: {v}");
}

/// Speech says what its transcript said: a non-streamed answer whose
/// transcript the gate redacted loses its sound, and streamed audio (whose
/// transcript arrives split across events) is refused under an output gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_never_says_what_the_transcript_does_not_show() {
    let spoken = |transcript: &str| {
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                "audio": {"id": "audio_1", "expires_at": 0, "data": "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=",
                          "transcript": transcript}}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}})
        .to_string()
    };
    let h = Hostile::new(
        RawResponse::json(spoken(&format!("The key is {AWS_KEY}."))),
        "",
    )
    .await;
    let ask = |stream: bool| {
        json!({"model": "m", "stream": stream, "modalities": ["text", "audio"],
               "audio": {"voice": "alloy", "format": "wav"},
               "messages": [{"role": "user", "content": "Say hi."}]})
    };
    let (status, v) = h.client.chat(&ask(false)).await;
    assert_eq!(status, 200, "{v}");
    let audio = &v["choices"][0]["message"]["audio"];
    assert!(
        !audio["transcript"].as_str().unwrap_or("").contains(AWS_KEY),
        "{v}"
    );
    assert_eq!(audio["data"], "", "the sound of the redacted key: {v}");
    h.upstream.script(RawResponse::json(spoken("Hi there.")));
    let (_, v): (u16, Value) = h.client.chat(&ask(false)).await;
    assert_ne!(
        v["choices"][0]["message"]["audio"]["data"], "",
        "clean speech stays: {v}"
    );
    let sent = h.upstream.received().len();
    let (status, v) = h.client.post("/v1/chat/completions", &ask(true), &[]).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "modalities", "{v}");
    assert_eq!(
        h.upstream.received().len(),
        sent,
        "refused before it was sent"
    );
}

/// A hostile upstream streams token ids nobody asked for (vLLM's chunk
/// shape with `return_token_ids`): a choice's `token_ids` spell the key the
/// stream guard redacts, the first chunk's `prompt_token_ids` the planted
/// system prompt. Neither reaches the client; the text is still guarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_token_ids_sent_unasked_are_dropped() {
    let chunk = |extra: Value, delta: Value, finish: Value| {
        let mut c = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "token_ids": [71, 72, 73]}]});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        format!("data: {c}\n\n")
    };
    let sse = chunk(
        json!({"prompt_token_ids": [9906, 25, 15465]}),
        json!({"role": "assistant", "content": "The key is "}),
        Value::Null,
    ) + &chunk(
        json!({}),
        json!({"content": format!("{AWS_KEY}. Done.")}),
        Value::Null,
    ) + &chunk(json!({}), json!({}), json!("stop"))
        + "data: [DONE]\n\n";
    let h = Hostile::new(RawResponse::sse(sse), "").await;
    let (status, text) = h
        .client
        .post_raw(
            "/v1/chat/completions",
            &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "key?"}]}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(AWS_KEY), "{text}");
    assert!(!text.contains("token_ids"), "{text}");
    assert!(!text.contains("9906"), "{text}");
}
