//! A hostile model server's tricks that are not about which field carries
//! the payload:
//!
//! - a `tool_calls` key written with a `\u` escape, which a raw precheck
//!   for the plain spelling missed (the tool gate skipped the body, and the
//!   output gate, which parses, left the calls to the tool gate);
//! - a redirect to another host, which the upstream client followed with
//!   the whole prompt (canary included) and the backend's key headers;
//! - calls in shapes the tool gate did not read: chat's legacy
//!   `function_call` (whole and streamed), and Responses call items other
//!   than `function_call` (`custom_tool_call`, `local_shell_call`, …);
//! - a `Content-Length` of a terabyte, which the gateway reserved in full
//!   before reading (an allocation failure aborts the whole process).

use palisade_testkit::{HostileUpstream, RawResponse};
use serde_json::{json, Value};

use crate::harness::{Hostile, AWS_KEY};

/// A request offering one harmless tool.
fn ask(stream: bool) -> Value {
    json!({"model": "m", "stream": stream,
        "tools": [{"type": "function", "function": {"name": "fetch", "parameters": {"type": "object"}}}],
        "messages": [{"role": "user", "content": "Fetch the weather page."}]})
}

/// A call to a tool the client never offered, with a key in its arguments,
/// under a `tool_calls` key spelled `tool\u005fcalls`.
fn escaped_calls(id: &str) -> String {
    format!(
        r#""tool\u005fcalls":[{{"index":0,"id":"{id}","type":"function","function":{{"name":"delete_everything","arguments":"{{\"token\":\"{AWS_KEY}\"}}"}}}}]"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escaped_tool_calls_key_does_not_skip_the_tool_gate() {
    let whole = format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":null,{}}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}}}"#,
        escaped_calls("call_1")
    );
    // The script is what every parser reads as a real tool call.
    let parsed: Value = serde_json::from_str(&whole).expect("valid JSON");
    assert!(parsed["choices"][0]["message"]["tool_calls"].is_array());
    let h = Hostile::new(RawResponse::json(whole), "").await;
    let (status, v) = h.client.chat(&ask(false)).await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["choices"][0]["message"].get("tool_calls").is_none(),
        "an unoffered call was released: {v}"
    );
    assert_eq!(v["palisade"]["tool_calls"][0]["status"], "withheld", "{v}");
    assert!(!v.to_string().contains(AWS_KEY), "{v}");

    // Streamed: a plain first chunk (always parsed), then the call.
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{{delta}}},\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    h.upstream.script(RawResponse::sse(format!(
        "{}{}{}data: [DONE]\n\n",
        chunk("\"role\":\"assistant\",\"content\":\"\"", "null"),
        chunk(&escaped_calls("call_2"), "null"),
        chunk("", "\"stop\""),
    )));
    let (status, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(true), &[])
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains(AWS_KEY),
        "the call's key reached the client: {text}"
    );
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    assert!(
        events
            .iter()
            .all(|e| e["choices"][0]["delta"].get("tool_calls").is_none()),
        "an unoffered call was released: {text}"
    );
    let report = events
        .iter()
        .find_map(|e| e.get("palisade"))
        .unwrap_or_else(|| panic!("no report: {text}"));
    assert_eq!(report["tool_calls"][0]["status"], "withheld", "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_the_model_server_is_not_followed_nor_passed_on() {
    // The other host: it must never see the prompt.
    let elsewhere = HostileUpstream::start(RawResponse::json(
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]})
            .to_string(),
    ))
    .await;
    let target = format!("{}/chat/completions", elsewhere.base_url());
    let h = Hostile::new(
        RawResponse::json("{}")
            .with_status(307)
            .with_header("location", &target),
        "",
    )
    .await;
    for (status_code, stream) in [(307, false), (308, false), (307, true)] {
        h.upstream.script(
            RawResponse::json("{\"moved\": true}")
                .with_status(status_code)
                .with_header("location", &target),
        );
        let (status, text) = h
            .client
            .post_raw("/v1/chat/completions", &ask(stream), &[])
            .await;
        assert_eq!(status, 502, "{status_code} stream={stream}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(v["error"]["code"], "upstream_error", "{text}");
        assert!(
            !text.contains(&target),
            "the redirect target was passed on: {text}"
        );
    }
    assert!(
        elsewhere.received().is_empty(),
        "the prompt followed the redirect to another host"
    );
    assert_eq!(h.upstream.received().len(), 3, "one attempt per request");
}

fn chat_body(message: Value, finish: &str) -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
           "choices": [{"index": 0, "message": message, "finish_reason": finish}],
           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    .to_string()
}

/// The legacy `function_call` of an answer (the request may not offer
/// `functions`, but nothing stops an upstream answering with one) is
/// judged as one more call: released as a `tool_calls` entry with its
/// capability, or withheld. Before the fix it went out unjudged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_function_call_is_judged_like_any_call() {
    let leaky = json!({"role": "assistant", "content": null,
        "function_call": {"name": "fetch", "arguments": format!("{{\"token\":\"{AWS_KEY}\"}}")}});
    let h = Hostile::new(RawResponse::json(chat_body(leaky, "function_call")), "").await;
    let (status, v) = h.client.chat(&ask(false)).await;
    assert_eq!(status, 200, "{v}");
    let message = &v["choices"][0]["message"];
    assert!(message.get("function_call").is_none(), "{v}");
    assert!(message.get("tool_calls").is_none(), "{v}");
    assert!(!v.to_string().contains(AWS_KEY), "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert_eq!(v["palisade"]["tool_calls"][0]["status"], "withheld", "{v}");

    let clean = json!({"role": "assistant", "content": null,
        "function_call": {"name": "fetch", "arguments": "{\"city\":\"Oslo\"}"}});
    h.upstream
        .script(RawResponse::json(chat_body(clean, "function_call")));
    let (status, v) = h.client.chat(&ask(false)).await;
    assert_eq!(status, 200, "{v}");
    let message = &v["choices"][0]["message"];
    assert!(message.get("function_call").is_none(), "{v}");
    assert_eq!(message["tool_calls"][0]["function"]["name"], "fetch", "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    assert_eq!(v["palisade"]["tool_calls"][0]["status"], "released", "{v}");

    // Streamed, the key split across two argument deltas.
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let (a, b) = AWS_KEY.split_at(9);
    h.upstream.script(RawResponse::sse(
        chunk(
            json!({"role": "assistant", "function_call": {"name": "fetch", "arguments": ""}}),
            Value::Null,
        ) + &chunk(
            json!({"function_call": {"arguments": format!("{{\"token\":\"{a}")}}),
            Value::Null,
        ) + &chunk(
            json!({"function_call": {"arguments": format!("{b}\"}}")}}),
            Value::Null,
        ) + &chunk(json!({}), json!("function_call"))
            + "data: [DONE]\n\n",
    ));
    let (status, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(true), &[])
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("function_call\":{"), "{text}");
    assert!(!text.contains(b), "{text}");
    assert!(text.contains("\"withheld\""), "{text}");
}

/// A Responses answer carrying a call item of a kind no request here may
/// offer (`custom_tool_call`: a shell command for the client to run) loses
/// it, whole or streamed, and the report says it was withheld.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_call_items_the_gate_cannot_judge_are_withheld() {
    let command = "rm -rf --no-preserve-root /";
    let item = json!({"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_1",
                      "name": "shell", "input": command, "status": "completed"});
    let whole = json!({"id": "resp_1", "object": "response", "status": "completed",
                       "output": [item], "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}});
    let h = Hostile::new(RawResponse::json(whole.to_string()), "").await;
    let fetch = json!({"type": "function", "name": "fetch", "parameters": {"type": "object"}});
    let request =
        |stream: bool| json!({"model": "m", "input": "hi", "stream": stream, "tools": [fetch]});
    let (status, v) = h.client.post("/v1/responses", &request(false), &[]).await;
    assert_eq!(status, 200, "{v}");
    assert!(!v.to_string().contains(command), "{v}");
    let report = &v["palisade"]["tool_calls"][0];
    assert_eq!(
        (report["status"].as_str(), report["name"].as_str()),
        (Some("withheld"), Some("custom_tool_call")),
        "{v}"
    );

    let ev = |v: Value| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap());
    let mut added = item.clone();
    added["input"] = json!("");
    h.upstream.script(RawResponse::sse(
        ev(json!({"type": "response.output_item.added", "output_index": 0, "item": added}))
            + &ev(json!({"type": "response.custom_tool_call_input.delta", "output_index": 0, "delta": command}))
            + &ev(json!({"type": "response.output_item.done", "output_index": 0, "item": item}))
            + &ev(json!({"type": "response.completed", "response": {"id": "resp_2", "status": "completed", "output": [item]}})),
    ));
    let (status, text) = h
        .client
        .post_raw("/v1/responses", &request(true), &[])
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(command), "{text}");
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let items = events.iter().flat_map(|e| {
        let output = e["response"]["output"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        output.into_iter().chain(e.get("item").cloned())
    });
    assert!(
        items.into_iter().all(|i| i["type"] != "custom_tool_call"),
        "{text}"
    );
    assert!(text.contains("\"withheld\""), "{text}");
}

/// Deltas serialized from the SDK's types carry `"function_call": null`
/// beside `tool_calls` (LiteLLM and servers built on those types do): no
/// legacy call, and the real call is released as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_function_call_beside_tool_calls_is_no_call() {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let sse = chunk(
        json!({"role": "assistant", "content": null, "function_call": null, "tool_calls": [{"index": 0,
               "id": "call_1", "type": "function", "function": {"name": "fetch", "arguments": ""}}]}),
        Value::Null,
    ) + &chunk(
        json!({"content": null, "function_call": null, "tool_calls": [{"index": 0,
               "function": {"arguments": "{\"city\":\"Oslo\"}"}}]}),
        Value::Null,
    ) + &chunk(json!({"function_call": null}), json!("tool_calls"))
        + "data: [DONE]\n\n";
    let h = Hostile::new(RawResponse::sse(sse), "").await;
    let (status, text) = h
        .client
        .post_raw("/v1/chat/completions", &ask(true), &[])
        .await;
    assert_eq!(status, 200, "{text}");
    let released: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .flat_map(|e| {
            e["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(released.len(), 1, "{text}");
    assert_eq!(
        released[0]["function"]["arguments"], "{\"city\":\"Oslo\"}",
        "{text}"
    );
    assert!(
        text.contains("\"tool_calls\"") && text.contains("\"released\""),
        "{text}"
    );
}

/// The finding this closes: a non-streamed answer announcing a
/// `Content-Length` of 1 TiB made the gateway reserve it on the first chunk;
/// the failed allocation aborts the process (no panic guard catches it),
/// taking every tenant down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terabyte_content_length_is_refused_not_reserved() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = tcp.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            content-length: 1099511627776\r\n\r\n{";
                let _ = tcp.write_all(head.as_bytes()).await;
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            });
        }
    });
    let client = crate::harness::Client::new(
        crate::harness::start(&format!(
            "[backends.main]\nbase_url = \"http://{addr}/v1\"\n"
        ))
        .await,
    );
    let (status, body) = client
        .chat(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_protocol", "{body}");
    let health = client
        .http
        .get(client.url("/healthz"))
        .send()
        .await
        .expect("alive");
    assert_eq!(health.status().as_u16(), 200);
}
