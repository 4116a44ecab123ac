//! The stream gate's fast path (issue #17): chat chunks of the common shape
//! are judged from their raw bytes, everything else by the general path. A
//! hostile upstream mixes the two to get a key past the gate: a key split
//! between an event of each path (both orders), and events that look like
//! the common shape but carry the key somewhere the fast path does not read
//! (an extra top-level, choice or delta member, a changed `model`, the
//! `role`, an escaped or duplicated `content` key).
//!
//! A canary split over common-shape deltas is `output_gate`'s
//! `item12_canary_spread_by_whitespace_runs` and `item14_…` (their upstream
//! streams one- and nine-character deltas of the common shape).

use palisade_testkit::RawResponse;
use serde_json::{json, Value};

use crate::harness::{Hostile, AWS_KEY};

fn chunk(delta: Value) -> Value {
    json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
           "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]})
}

fn event(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// A stream: a role chunk, `middle` (raw events), a finish chunk, `[DONE]`.
fn stream(middle: &[String]) -> String {
    let mut s = event(&chunk(json!({"role": "assistant", "content": ""})));
    s.push_str(&event(&chunk(json!({"content": "Here it is. "}))));
    for e in middle {
        s.push_str(e);
    }
    let mut finish = chunk(json!({}));
    finish["choices"][0]["finish_reason"] = json!("stop");
    s.push_str(&event(&finish));
    s.push_str("data: [DONE]\n\n");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_split_or_hidden_around_the_fast_path_is_still_caught() {
    let (head, tail) = AWS_KEY.split_at(10);
    // The general path's events: the same delta with something the fast
    // path does not take (a vendor member in the choice, in the delta).
    let mut vendor_choice = chunk(json!({"content": tail}));
    vendor_choice["choices"][0]["x_vendor"] = json!(1);
    let mut vendor_delta = chunk(json!({"content": format!("Key {head}")}));
    vendor_delta["choices"][0]["delta"]["annotations"] = json!([]);
    let mut top_level = chunk(json!({"content": "ok. "}));
    top_level["obfuscation"] = json!(AWS_KEY);
    let mut choice_member = chunk(json!({"content": "ok. "}));
    choice_member["choices"][0]["note"] = json!(AWS_KEY);
    let mut model = chunk(json!({"content": "ok. "}));
    model["model"] = json!(format!("m {AWS_KEY}"));
    let mut role = chunk(json!({"content": "ok. "}));
    role["choices"][0]["delta"]["role"] = json!(AWS_KEY);
    let fast_then_slow = [
        event(&chunk(json!({"content": format!("Your key: {head}")}))),
        event(&vendor_choice),
        event(&chunk(json!({"content": ". Done. "}))),
    ];
    let slow_then_fast = [
        event(&vendor_delta),
        event(&chunk(json!({"content": format!("{tail}. Done. ")}))),
    ];
    // Raw JSON the `json!` macro cannot write: an escaped key, a duplicate.
    let escaped = format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"con\\u0074ent\":\"{AWS_KEY}. \"}},\"finish_reason\":null}}]}}\n\n"
    );
    let duplicate = format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"ok \",\"content\":\"{AWS_KEY}. \"}},\"finish_reason\":null}}]}}\n\n"
    );
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("split, fast then general", fast_then_slow.to_vec()),
        ("split, general then fast", slow_then_fast.to_vec()),
        ("extra top-level member", vec![event(&top_level)]),
        ("extra choice member", vec![event(&choice_member)]),
        ("changed model", vec![event(&model)]),
        ("role", vec![event(&role)]),
        ("escaped content key", vec![escaped]),
        ("duplicated content key", vec![duplicate]),
    ];
    let h = Hostile::new(RawResponse::sse(stream(&[])), "").await;
    let ask = json!({"model": "m", "stream": true,
                     "messages": [{"role": "user", "content": "Say something."}]});
    for (name, middle) in cases {
        h.upstream.script(RawResponse::sse(stream(&middle)));
        let (status, text) = h.client.post_raw("/v1/chat/completions", &ask, &[]).await;
        assert_eq!(status, 200, "{name}: {text}");
        assert!(!text.contains(AWS_KEY), "{name}: the key leaked: {text}");
        assert!(
            !text.contains(head) && !text.contains(tail),
            "{name}: half of the key leaked: {text}"
        );
        assert!(
            text.contains("[REDACTED:") || text.contains("content_filter"),
            "{name}: judged, not dropped silently: {text}"
        );
        assert!(text.ends_with("data: [DONE]\n\n"), "{name}: {text}");
    }
}
