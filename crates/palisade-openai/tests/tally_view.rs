//! The stream tally's borrowed reading (`StreamTally::observe_event`) against
//! the `Value` reading (`StreamTally::observe`): the same usage, kind and
//! character count for every event that parses, adversarial ones included
//! (a `usage` key escaped, written twice, hidden in a string; members of
//! unexpected types; arrays where objects belong), and never fewer
//! characters or a lost usage for any input.

use palisade_openai::usage::{ChunkKind, StreamTally};
use proptest::prelude::*;

fn both(data: &str) -> ((ChunkKind, StreamTally), (ChunkKind, StreamTally)) {
    let mut slow = StreamTally::default();
    let k_slow = slow.observe(data);
    let mut fast = StreamTally::default();
    let (k_fast, parsed) = fast.observe_event(data);
    // A parsed value handed back is the event's own.
    if let Some(v) = parsed {
        assert_eq!(Some(v), serde_json::from_str(data).ok());
    }
    ((k_slow, slow), (k_fast, fast))
}

fn assert_same(data: &str) {
    let ((ks, s), (kf, f)) = both(data);
    assert_eq!(ks, kf, "{data}");
    assert_eq!(s.usage, f.usage, "{data}");
    assert_eq!(s.generated_units, f.generated_units, "{data}");
}

#[test]
fn plain_chunks_are_counted_as_the_value_path_counts_them() {
    for data in [
        r#"{"id":"x","choices":[{"index":0,"delta":{"content":"Hé\"llo"},"finish_reason":null}],"usage":null}"#,
        r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
        r#"{"choices":[{"delta":{"reasoning_content":"Let me think","content":null}}]}"#,
        r#"{"choices":[{"delta":{"reasoning":"思考中","refusal":"no"}}]}"#,
        r#"{"choices":[{"delta":{"reasoning":{"text":"an object"}}}]}"#,
        r#"{"choices":[{"delta":{"audio":{"transcript":"spoken words"}}}]}"#,
        r#"{"choices":[{"delta":{"content":null}}]}"#,
        r#"{"choices":[{"delta":null,"text":"abc"}]}"#,
        r#"{"choices":[{"text":"abc\u00e9"}]}"#,
        r#"{"choices":[{"delta":{}}],"type":"chat"}"#,
        r#"{"choices":[]}"#,
        r#"{"object":"chat.completion.chunk"}"#,
    ] {
        assert_same(data);
    }
}

/// Attacks on the tally: each must be read as the `Value` path reads it, so
/// a hostile upstream cannot hide its usage (the reconciliation would then
/// fall back to the gateway's estimate) or its text.
#[test]
fn a_hidden_or_disguised_usage_is_not_missed() {
    let usage = r#"{"prompt_tokens":900,"completion_tokens":700,"total_tokens":1600}"#;
    for data in [
        // Escaped key: the same member to any JSON reader.
        format!(r#"{{"choices":[],"us\u0061ge":{usage}}}"#),
        format!(r#"{{"choices":[{{"delta":{{"content":"x"}}}}],"\u0075sage":{usage}}}"#),
        // Written twice: the last one counts, as in the `Value` path.
        format!(r#"{{"choices":[],"usage":null,"usage":{usage}}}"#),
        format!(r#"{{"choices":[],"usage":{usage},"usage":null}}"#),
        // In a string only: not a member, and not usage.
        format!(
            r#"{{"choices":[{{"delta":{{"content":"\"usage\":{}"}}}}]}}"#,
            usage.replace('"', "\\\"")
        ),
        // A Responses event's usage, on its `response`.
        format!(r#"{{"type":"response.completed","response":{{"id":"r","usage":{usage}}}}}"#),
        // Choices written twice, the second holding the text.
        r#"{"choices":[],"choices":[{"delta":{"content":"secret text"}}]}"#.to_string(),
        // An array where an object belongs.
        r#"{"choices":[["delta",{"content":"x"}]]}"#.to_string(),
        r#"[{"choices":[{"delta":{"content":"x"}}]}]"#.to_string(),
        // Tool-call arguments are counted too.
        r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}]}"#
            .to_string(),
        // `delta` with no content and a `text` beside it.
        r#"{"choices":[{"delta":{"role":"assistant"},"text":"counted"}]}"#.to_string(),
        r#"{"choices":[{"delta":{"content":null},"text":"not counted"}]}"#.to_string(),
    ] {
        assert_same(&data);
    }
    let mut t = StreamTally::default();
    t.observe_event(&format!(r#"{{"choices":[],"us\u0061ge":{usage}}}"#));
    assert_eq!(t.usage.map(|u| u.total()), Some(1600));
}

/// JSON-ish text from pieces an attacker would combine.
fn event_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            "\"",
            "null",
            "1",
            "true",
            "\"x\"",
            "\"choices\"",
            "\"delta\"",
            "\"content\"",
            "\"text\"",
            "\"usage\"",
            "\"us\\u0061ge\"",
            "\"type\"",
            "\"response\"",
            "\"response.completed\"",
            "\"tool_calls\"",
            "\"prompt_tokens\"",
            "\"completion_tokens\"",
            "\"total_tokens\"",
            "5",
            "\"hé\\\"llo\"",
            "\"\\ud83d\\ude00\"",
            "\"\\ud800\"",
            "\"role\"",
            "\"function\"",
            "\"arguments\"",
        ]),
        0..40,
    )
    .prop_map(|v| v.concat())
}

/// A well-formed chunk with members in any order, some twice.
fn chunk() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        Just(r#""choices":[{"delta":{"content":"abc"}}]"#.to_string()),
        Just(r#""choices":[{"delta":{"content":null},"text":"zz"}]"#.to_string()),
        Just(
            r#""choices":[{"delta":{"tool_calls":[{"function":{"arguments":"xy"}}]}}]"#.to_string()
        ),
        Just(r#""choices":[]"#.to_string()),
        Just(r#""choices":null"#.to_string()),
        Just(r#""choices":[{"text":"t"}, 3]"#.to_string()),
        Just(r#""usage":null"#.to_string()),
        Just(r#""usage":{"prompt_tokens":3,"completion_tokens":4}"#.to_string()),
        Just(r#""us\u0061ge":{"prompt_tokens":7,"completion_tokens":8}"#.to_string()),
        Just(r#""usage":"string""#.to_string()),
        Just(r#""type":"response.output_text.delta""#.to_string()),
        Just(r#""type":7"#.to_string()),
        Just(r#""delta":"dd""#.to_string()),
        Just(r#""response":{"id":"r","usage":{"input_tokens":1,"output_tokens":2}}"#.to_string()),
        Just(r#""id":"chatcmpl-1""#.to_string()),
    ];
    proptest::collection::vec(member, 0..6).prop_map(|m| format!("{{{}}}", m.join(",")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn borrowed_reading_equals_value_reading(data in prop_oneof![chunk(), event_text()]) {
        let ((ks, s), (kf, f)) = both(&data);
        if serde_json::from_str::<serde_json::Value>(&data).is_ok() {
            prop_assert_eq!(ks, kf);
            prop_assert_eq!(s.usage, f.usage);
            prop_assert_eq!(s.generated_units, f.generated_units);
        } else {
            // The `Value` path reads nothing from it; the borrowed one may
            // count text beside an invalid escape it does not decode.
            prop_assert!(f.generated_units >= s.generated_units);
            prop_assert_eq!(f.usage, None);
        }
    }
}
