//! The stream guard keeps only a short context of released text in front of
//! what it holds (issue #17: `palisade_output::CONTEXT_CHARS` visible
//! characters, not a fixed 512 bytes rescanned at every release). A hostile
//! upstream arranges a construct so that its start lies just before or far
//! before where that context begins, streamed in one-word deltas of the
//! common chat shape, with padding of every length: it is judged as it is
//! whole. A canary split there is `output_gate`'s
//! `item17_canary_split_around_the_kept_context`.

use palisade_testkit::RawResponse;
use serde_json::{json, Value};

use crate::harness::Hostile;

/// A generic credential the built-in policy redacts only with its name.
const VALUE: &str = "q8Zr2LmX91vTb7Kd4Hs0";

fn chunk(content: &str) -> String {
    let v = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                   "choices": [{"index": 0, "delta": {"content": content}, "logprobs": null,
                                "finish_reason": null}]});
    format!("data: {v}\n\n")
}

/// `text` as one-word deltas (each word with the whitespace after it).
fn stream(text: &str) -> String {
    let mut s = chunk("");
    for piece in text.split_inclusive([' ', '\n']) {
        s.push_str(&chunk(piece));
    }
    let finish = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    s.push_str(&format!("data: {finish}\n\n"));
    s.push_str("data: [DONE]\n\n");
    s
}

/// The content the client received (streamed).
fn content(raw: &str) -> String {
    raw.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constructs_reaching_back_past_the_kept_context_are_judged_whole() {
    let mut cases: Vec<(String, &str)> = Vec::new();
    for pad in [0, 10, 40, 80, 90, 95, 100, 120, 200] {
        let filler = "word ".repeat(pad / 5);
        // The key's name, a sentence end, the value.
        cases.push((format!("{filler}My secret. = {VALUE} is here.\n"), VALUE));
        // The name, a line break (a release point), the value.
        cases.push((format!("{filler}api_key:\n{VALUE}\nok. "), VALUE));
        // A link whose text holds sentence ends and a line break. The notice
        // names the host by design; the link's target must not survive.
        cases.push((
            format!("{filler}[see. this!\nand that](https://evil.example/x) ok. "),
            "evil.example/x",
        ));
    }
    // The name pushed back by invisible marks: 900 and 1,800 bytes of them, past the
    // 512-byte lookback the guard used to rescan (it now counts the characters a reader
    // sees, up to 2,048 bytes back).
    for n in [300, 600] {
        cases.push((
            format!("Sure. password{}\n= {VALUE}\nok. ", "\u{200B}".repeat(n)),
            VALUE,
        ));
    }
    let h = Hostile::new(RawResponse::sse(stream("x")), "").await;
    let ask = json!({"model": "m", "stream": true,
                     "messages": [{"role": "user", "content": "Say something."}]});
    for (text, forbidden) in cases {
        h.upstream.script(RawResponse::sse(stream(&text)));
        let (status, raw) = h.client.post_raw("/v1/chat/completions", &ask, &[]).await;
        assert_eq!(status, 200, "{text:?}: {raw}");
        let got = content(&raw);
        assert!(
            !got.contains(forbidden),
            "{text:?}: {forbidden} released: {got:?}"
        );
        assert!(
            got.contains("[REDACTED:")
                || got.contains("link removed")
                || raw.contains("content_filter"),
            "{text:?}: judged, not dropped silently: {got:?}"
        );
        assert!(raw.ends_with("data: [DONE]\n\n"), "{text:?}: {raw}");
    }
}
