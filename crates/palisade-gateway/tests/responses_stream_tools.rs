//! Streamed `function_call` items on `POST /v1/responses` through the tool
//! gate, against a real loopback upstream (the scripted model's parallel
//! calls, or a hostile one): each call held until its item is done, judged
//! whole, released as one complete event sequence or never sent; output
//! indexes and sequence numbers the gateway's own; the last event's `output`
//! agreeing with what was released.

mod support;

use palisade_gateway::RunningGateway;
use palisade_testkit::{HostileUpstream, RawResponse, ScriptedUpstream};
use serde_json::{json, Value};
use support::gateway as start;

async fn stream(gw: &RunningGateway, body: Value) -> (u16, String) {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{}/v1/responses", gw.local_addr()))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// `(event line, data)` of every event.
fn parse_events(stream: &str) -> Vec<(Option<String>, Value)> {
    stream
        .split("\n\n")
        .filter_map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .map(str::to_owned);
            let data = e.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name, serde_json::from_str(data).ok()?))
        })
        .collect()
}

fn lookup_tool() -> Value {
    json!({"type": "function", "name": "lookup", "parameters": {"type": "object",
        "required": ["city"], "properties": {"city": {"type": "string"}}, "additionalProperties": false}})
}

/// What a strict client (the OpenAI SDK's accumulator) checks: sequence
/// numbers count up from 0, every event names its type on its `event:` line,
/// every `output_index` names an item announced before it, announced in
/// order, and the arguments rebuilt from the deltas are the item's.
fn check_consistent(events: &[(Option<String>, Value)]) -> Vec<Value> {
    let mut items: Vec<Value> = Vec::new();
    let mut args: Vec<String> = Vec::new();
    for (n, (name, e)) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], json!(n), "{e}");
        assert_eq!(name.as_deref(), e["type"].as_str(), "{e}");
        let kind = e["type"].as_str().unwrap();
        if let Some(i) = e["output_index"].as_u64() {
            let i = usize::try_from(i).unwrap();
            if kind == "response.output_item.added" {
                assert_eq!(i, items.len(), "announced in order: {e}");
                items.push(e["item"].clone());
                args.push(String::new());
            } else {
                assert!(i < items.len(), "index of an announced item: {e}");
            }
            if kind == "response.function_call_arguments.delta" {
                args[i].push_str(e["delta"].as_str().unwrap());
            }
            if kind == "response.output_item.done" {
                items[i] = e["item"].clone();
                if items[i]["type"] == "function_call" {
                    assert_eq!(items[i]["arguments"], json!(args[i]), "{e}");
                }
            }
        }
    }
    let last = &events.last().unwrap().1;
    assert_eq!(
        last["response"]["output"],
        json!(items),
        "the last event's output is what was streamed"
    );
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_parallel_calls_are_judged_whole_and_released_in_order() {
    let upstream = ScriptedUpstream::start().await;
    let gw = start(&format!(
        "[backends.main]\nbase_url = \"{}\"\n",
        upstream.base_url()
    ))
    .await;
    let script = r#"CALLS [{"name": "lookup", "arguments": {"city": "Paris"}}, {"name": "lookup", "arguments": {"town": 3}}, {"name": "lookup", "arguments": {"city": "Rome"}}]"#;
    let (status, body) = stream(
        &gw,
        json!({"model": "m", "input": script, "stream": true, "tools": [lookup_tool()]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let events = parse_events(&body);
    let items = check_consistent(&events);
    let released: Vec<(&str, &str)> = items
        .iter()
        .map(|i| {
            (
                i["call_id"].as_str().unwrap(),
                i["arguments"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        released,
        [
            ("call_0", r#"{"city":"Paris"}"#),
            ("call_2", r#"{"city":"Rome"}"#)
        ],
        "{body}"
    );
    assert!(
        !body.contains("town"),
        "the withheld call's arguments never went out: {body}"
    );
    let last = &events.last().unwrap().1;
    assert_eq!(last["type"], "response.completed");
    let report = last["palisade"]["tool_calls"].as_array().unwrap();
    let status_of = |id: &str| report.iter().find(|r| r["id"] == id).unwrap()["status"].clone();
    assert_eq!(status_of("call_0"), "released");
    assert_eq!(status_of("call_1"), "withheld");
    assert_eq!(status_of("call_2"), "released");
    assert!(report
        .iter()
        .filter(|r| r["status"] == "released")
        .all(|r| r["capability"]
            .as_str()
            .is_some_and(|c| c.starts_with("pcap1."))));
    // No call held back in part: nothing of a call is sent before the whole
    // of it was judged (its first event follows the upstream's last delta).
    let first_call = events
        .iter()
        .position(|(_, e)| e["type"] == "response.output_item.added")
        .unwrap();
    assert!(events[..first_call]
        .iter()
        .all(|(_, e)| e["type"] == "response.created"));

    // Every call refused: a message says so, and the last event has no call.
    let script = r#"CALLS [{"name": "lookup", "arguments": {"town": 3}}]"#;
    let (status, body) = stream(
        &gw,
        json!({"model": "m", "input": script, "stream": true, "tools": [lookup_tool()]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let events = parse_events(&body);
    let items = check_consistent(&events);
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["type"], "message");
    let note = items[0]["content"][0]["text"].as_str().unwrap();
    assert!(note.contains("`lookup` withheld"), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_stream_cannot_release_a_call_past_the_gate() {
    let ev = |v: Value| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap());
    let call = |id: &str, args: &str| {
        json!({"type": "function_call", "id": format!("fc_{id}"), "call_id": id, "name": "lookup",
               "arguments": args, "status": "completed"})
    };
    // Calls done in reverse order around a message; the completed event
    // repeats a withheld call, rewrites a released one's arguments, and
    // names a call never streamed.
    let mut sse = String::new();
    sse.push_str(&ev(json!({"type": "response.created", "response": {"id": "r", "output": [], "status": "in_progress"}})));
    sse.push_str(&ev(
        json!({"type": "response.output_item.added", "output_index": 0, "item": call("a", "")}),
    ));
    sse.push_str(&ev(
        json!({"type": "response.output_item.added", "output_index": 1, "item": call("b", "")}),
    ));
    sse.push_str(&ev(json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{\"town\":"})));
    sse.push_str(&ev(json!({"type": "response.function_call_arguments.delta", "output_index": 0, "delta": "{\"city\":"})));
    sse.push_str(&ev(json!({"type": "response.function_call_arguments.delta", "output_index": 0, "delta": "\"Oslo\"}"})));
    sse.push_str(&ev(
        json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "3}"}),
    ));
    sse.push_str(&ev(json!({"type": "response.output_item.done", "output_index": 1, "item": call("b", r#"{"town":3}"#)})));
    sse.push_str(&ev(json!({"type": "response.output_item.added", "output_index": 2, "item": {"type": "message", "id": "m", "role": "assistant", "content": []}})));
    sse.push_str(&ev(json!({"type": "response.output_text.delta", "output_index": 2, "content_index": 0, "delta": "done"})));
    let message = json!({"type": "message", "id": "m", "role": "assistant",
        "content": [{"type": "output_text", "text": "done", "annotations": []}]});
    sse.push_str(&ev(
        json!({"type": "response.output_item.done", "output_index": 2, "item": message}),
    ));
    sse.push_str(&ev(json!({"type": "response.output_item.done", "output_index": 0, "item": call("a", r#"{"city":"Oslo"}"#)})));
    sse.push_str(&ev(json!({"type": "response.completed", "response": {"id": "r", "status": "completed",
        "output": [call("a", r#"{"city":"Oslo","then":"rm -rf /"}"#), call("b", r#"{"town":3}"#), message,
                   call("late", r#"{"town":"never streamed"}"#)]}})));
    let upstream = HostileUpstream::start(RawResponse::sse(sse)).await;
    let gw = start(&format!(
        "[backends.main]\nbase_url = \"{}\"\n[tools]\nmax_call_bytes = 1024\n",
        upstream.base_url()
    ))
    .await;
    let request = json!({"model": "m", "input": "hi", "stream": true, "tools": [lookup_tool()]});
    let (status, body) = stream(&gw, request.clone()).await;
    assert_eq!(status, 200, "{body}");
    let events = parse_events(&body);
    let items = check_consistent(&events);
    let ids: Vec<&str> = items
        .iter()
        .map(|i| i["call_id"].as_str().or(i["id"].as_str()).unwrap())
        .collect();
    assert_eq!(ids, ["m", "a"], "{body}");
    assert_eq!(items[1]["arguments"], r#"{"city":"Oslo"}"#, "{body}");
    for never in ["town", "rm -rf", "never streamed"] {
        assert!(!body.contains(never), "{never}: {body}");
    }
    let report = events.last().unwrap().1["palisade"]["tool_calls"].clone();
    let statuses: Vec<(String, String)> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().into(),
                r["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("b".into(), "withheld".into()),
            ("a".into(), "released".into()),
            ("late".into(), "withheld".into())
        ]
    );

    // Endless arguments: cut at the bound with an error, never buffered on.
    let mut endless =
        ev(json!({"type": "response.output_item.added", "output_index": 0, "item": call("e", "")}));
    for _ in 0..200 {
        endless.push_str(&ev(json!({"type": "response.function_call_arguments.delta", "output_index": 0, "delta": "x".repeat(100)})));
    }
    upstream.script(RawResponse::sse(endless));
    let (status, body) = stream(&gw, request.clone()).await;
    assert_eq!(status, 200);
    assert!(body.contains("upstream_invalid_response"), "{body}");
    assert!(body.contains("tools.max_call_bytes (1024 bytes)"), "{body}");
    assert!(!body.contains("xxxx"), "{body}");

    // Text at a call's index, and a call announced twice: fail closed.
    for contradiction in [
        ev(
            json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "{\"city\":\"Oslo\"}"}),
        ),
        ev(json!({"type": "response.output_item.added", "output_index": 0, "item": call("a", "")})),
    ] {
        let mut sse = ev(
            json!({"type": "response.output_item.added", "output_index": 0, "item": call("a", "")}),
        );
        sse.push_str(&contradiction);
        sse.push_str(&ev(json!({"type": "response.output_item.done", "output_index": 0, "item": call("a", r#"{"city":"Oslo"}"#)})));
        upstream.script(RawResponse::sse(sse));
        let (status, body) = stream(&gw, request.clone()).await;
        assert_eq!(status, 200);
        assert!(body.contains("upstream_invalid_response"), "{body}");
        assert!(!body.contains("Oslo"), "{body}");
    }
}
