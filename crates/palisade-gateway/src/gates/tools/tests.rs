//! Unit and property tests of the tool gate's stream handling.

use super::*;
use proptest::prelude::*;

const POLICY: &str = r#"
default_tier = "t"
[tools.search]
effect = "read_only"
schema = { type = "object", properties = { q = { type = "string" } }, required = ["q"] }
[tools.send]
effect = "irreversible"
[tiers.t.tool]
allow = ["search", "send"]
"#;

fn plan() -> GatePlan {
    let service = ToolService::from_config(&palisade_config::Config::default(), &|_| None)
        .expect("a tool service with a drawn key");
    GatePlan {
        tools: Some(ToolPlan {
            service: Arc::new(service),
            declared: Arc::new(HashMap::new()),
            conversation: None,
            rounds_before: 0,
            loop_tokens_before: 0,
            in_loop: false,
            redis: None,
            strip_usage_chunk: false,
            source: TokenSource::Proxy,
        }),
        ..GatePlan::for_test(palisade_policy::Snapshot::from_toml(POLICY).unwrap())
    }
}

fn chunk(delta: Value, finish: Value) -> String {
    json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

/// The stream an upstream would send for `calls`, arguments cut into
/// `cut`-byte pieces, calls interleaved.
fn stream_of(calls: &[(String, String)], cut: usize) -> Vec<String> {
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": null}),
        Value::Null,
    )];
    for (i, (name, _)) in calls.iter().enumerate() {
        out.push(chunk(
            json!({"tool_calls": [{"index": i, "id": format!("c{i}"), "type": "function",
            "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
    }
    let pieces: Vec<Vec<String>> = calls
        .iter()
        .map(|(_, a)| {
            a.as_bytes()
                .chunks(cut)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect()
        })
        .collect();
    for round in 0..pieces.iter().map(Vec::len).max().unwrap_or(0) {
        for (i, p) in pieces.iter().enumerate() {
            if let Some(piece) = p.get(round) {
                out.push(chunk(
                    json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                    Value::Null,
                ));
            }
        }
    }
    out.push(chunk(json!({}), json!("tool_calls")));
    out
}

fn statuses(report: &[Value]) -> Vec<(String, String)> {
    report
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn arb_calls() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["search", "send", "nope"]),
            "[a-z ]{0,24}",
            0u8..4,
        ),
        1..4,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (name, text, shape))| {
                let marker = format!("mk{i}z{text}");
                let args = match shape {
                    0 => json!({"q": marker}).to_string(),
                    1 => json!({"other": marker}).to_string(),
                    2 => format!("{{\"q\": \"{marker}"),
                    _ => json!({"q": marker, "n": 3}).to_string(),
                };
                (name.to_owned(), args)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However the upstream cuts a stream of tool calls, the client gets
    /// the same verdicts as for the whole response, each released call
    /// whole and unchanged, and no byte of a call that was not released.
    #[test]
    fn streamed_calls_are_judged_as_whole_ones(calls in arb_calls(), cut in 1usize..16) {
        let plan = plan();
        let whole = json!({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": calls.iter().enumerate().map(|(i, (n, a))| json!({"id": format!("c{i}"), "type": "function",
            "function": {"name": n, "arguments": a}})).collect::<Vec<_>>()}}]});
        let gated: Value = serde_json::from_slice(&gate_body(&plan, whole.to_string().as_bytes()).unwrap()).unwrap();
        let expected = statuses(gated["palisade"]["tool_calls"].as_array().unwrap());

        let mut gate = ToolStreamGate::new(&plan).unwrap();
        let mut sent = Vec::new();
        for data in stream_of(&calls, cut) {
            match gate.on_data(&data) {
                ToolEvent::Forward => sent.push(data),
                ToolEvent::Drop => {}
                ToolEvent::Replace(list) => sent.extend(list),
                ToolEvent::Fail(e) => panic!("a chat stream never fails here: {e:?}"),
            }
        }
        sent.extend(gate.finish());
        let events: Vec<Value> = sent.iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        let report = events.iter().find_map(|e| e["palisade"]["tool_calls"].as_array()).unwrap();
        prop_assert_eq!(statuses(report), expected.clone());
        let released: Vec<(String, String)> = events
            .iter()
            .filter_map(|e| e.pointer("/choices/0/delta/tool_calls").and_then(Value::as_array))
            .flatten()
            .map(|c| (c["function"]["name"].as_str().unwrap().to_owned(),
                      c["function"]["arguments"].as_str().unwrap().to_owned()))
            .collect();
        let want: Vec<(String, String)> = calls
            .iter()
            .zip(&expected)
            .filter(|(_, (_, status))| status == "released")
            .map(|(c, _)| c.clone())
            .collect();
        prop_assert_eq!(released, want);
        let text = sent.join("\n");
        for (i, ((_, _), (_, status))) in calls.iter().zip(&expected).enumerate() {
            if status != "released" {
                prop_assert!(!text.contains(&format!("mk{i}z")), "call {} leaked: {}", i, text);
            }
        }
    }
}

#[test]
fn chunks_with_only_held_deltas_carry_nothing() {
    assert!(carries_nothing(
        &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": null}]})
    ));
    assert!(carries_nothing(
        &json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    ));
    assert!(!carries_nothing(
        &json!({"choices": [{"index": 0, "delta": {"content": "hi"}}]})
    ));
    assert!(!carries_nothing(
        &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    ));
    assert!(!carries_nothing(
        &json!({"choices": [], "usage": {"total_tokens": 3}})
    ));
}
