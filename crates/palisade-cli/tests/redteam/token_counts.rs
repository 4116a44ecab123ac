//! The counts a tenant writes that the token budget reads: `n`, `best_of`
//! and the completion limits. Spelled as something the budget did not read
//! as a number (`30000.0`, `"30000"`), upstreams that coerce them (vLLM,
//! SGLang) generated what was never reserved; `n` choices each used the
//! whole limit while one was reserved; and a streamed `n: 2.0` passed the
//! one-choice-per-stream rule; and prompts given as token ids (embeddings'
//! `input: [[1, 2, …]]`, completions' `prompt: [1, 2, …]`) were estimated at
//! zero tokens, so any number of them fit in any budget.

use serde_json::{json, Value};

use crate::harness::Scripted;

fn ask(extra: Value) -> Value {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "a b c d e"}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_in_shapes_the_budget_does_not_read_are_refused() {
    let h = Scripted::new("[limits]\ntokens_per_minute = 600\n").await;
    for (extra, param) in [
        (
            json!({"max_tokens": 16, "max_completion_tokens": 30000.0}),
            "max_completion_tokens",
        ),
        (json!({"max_tokens": "30000"}), "max_tokens"),
        (json!({"n": 2.0, "stream": true}), "n"),
        (json!({"n": "64"}), "n"),
        (json!({"n": 100000}), "n"),
    ] {
        let (status, body) = h.client.chat(&ask(extra.clone())).await;
        assert_eq!(status, 400, "{extra}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{body}");
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    assert!(h.upstream.received().is_empty(), "nothing went upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_choice_is_reserved() {
    // 600 tokens a minute: eight choices of 120 (960) cannot be reserved,
    // one can.
    let h = Scripted::new("[limits]\ntokens_per_minute = 600\n").await;
    let (status, body) = h
        .client
        .chat(&ask(json!({"n": 8, "max_tokens": 120})))
        .await;
    assert_eq!(status, 429, "eight choices of 120 on 600 a minute: {body}");
    assert!(
        h.upstream.received().is_empty(),
        "refused before it was sent"
    );
    let (status, body) = h
        .client
        .chat(&ask(json!({"n": 1, "max_tokens": 120})))
        .await;
    assert_eq!(status, 200, "{body}");
}

/// 700 token ids against a budget of 600 a minute: the reservation counts
/// them and the request is refused before it is sent. Before the fix the
/// estimate read no text, reserved nothing, and the upstream embedded it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_given_as_token_ids_are_reserved() {
    let h = Scripted::new("[limits]\ntokens_per_minute = 600\n").await;
    let ids: Vec<u32> = (0..700).collect();
    for (path, body) in [
        (
            "/v1/embeddings",
            json!({"model": "m", "input": [ids.clone()]}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "m", "input": ids.clone()}),
        ),
    ] {
        // (Completions' `prompt` as ids is refused by the input gate, which
        // reads text only; embeddings skip the gates.)
        let (status, v) = h.client.post(path, &body, &[]).await;
        assert_eq!(status, 429, "{path}: {v}");
    }
    assert!(h.upstream.received().is_empty(), "nothing went upstream");
    // A batch that fits is served.
    let (status, v) = h
        .client
        .post(
            "/v1/embeddings",
            &json!({"model": "m", "input": [[1, 2, 3], [4, 5]]}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{v}");
}

/// A tenant asks for a JSON schema the model will break (or anything the
/// output gate withholds): the answer is refused (502 `schema_violation`),
/// but the upstream generated it, and its usage is charged. Before the fix
/// the refusal cancelled the reservation, so such requests were free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_the_output_gate_withholds_is_still_charged() {
    let dir = tempfile::tempdir().unwrap();
    let policy = crate::harness::policy_file(
        &dir,
        "default_tier = \"strict\"\n[tiers.strict.output]\nschema = { action = \"block\" }\n",
    );
    let broken = json!({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "not json at all"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 480, "total_tokens": 500}});
    let h = crate::harness::Hostile::new(
        palisade_testkit::RawResponse::json(broken.to_string()),
        &format!("[limits]\ntokens_per_minute = 1000\n{policy}"),
    )
    .await;
    let schema = json!({"type": "json_schema", "json_schema": {"name": "x", "strict": true,
        "schema": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}}});
    let (status, v) = h
        .client
        .chat(&ask(json!({"max_tokens": 100, "response_format": schema})))
        .await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["code"], "schema_violation", "{v}");
    // 500 of the minute's 1000 tokens are spent: 600 more do not fit.
    let (status, v) = h.client.chat(&ask(json!({"max_tokens": 600}))).await;
    assert_eq!(status, 429, "the withheld completion was not charged: {v}");
}
