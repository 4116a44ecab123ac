//! The streaming output gate's cost per relayed event (issue #17: ≤ 2 µs with
//! the output gate on): a realistic chat-completion stream (a role chunk, a few
//! hundred one-word `delta.content` chunks of markdown prose with a link, a
//! `tool_calls` chunk, the finish chunk, a usage chunk and `[DONE]`), one
//! upstream read per event, relayed through the same framer and response
//! filters the gateway runs for streams: under the built-in policy, and with
//! the gates off (the relay alone), in the same run. Criterion's element
//! throughput is per event; the per-event cost of the gate is the difference.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use palisade_gateway::stream_bench::{relay, Plan};

/// Assistant prose as a model streams it: markdown, code spans, a link, lists.
const PROSE: &str = "Sure! Here is a short overview of how the borrow checker works in Rust. \
Every value has a single owner, and references borrow it either shared (`&T`) or exclusively \
(`&mut T`). The compiler rejects code where a mutable borrow overlaps any other borrow.\n\n\
- **Ownership** moves on assignment unless the type is `Copy`.\n\
- **Lifetimes** name how long a reference stays valid.\n\
- See [the book](https://doc.rust-lang.org/book/ch04-00-understanding-ownership.html) for more.\n\n\
In practice, most errors go away once you clone less and restructure loops a little. ";

const HEAD: &str = r#"{"id":"chatcmpl-AbC123xyz","object":"chat.completion.chunk","created":1733443200,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":["#;

fn event(choice: &str, usage: &str) -> Bytes {
    Bytes::from(format!("data: {HEAD}{choice}],\"usage\":{usage}}}\n\n"))
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The upstream's reads: one event each, `words` content deltas.
fn stream(words: usize) -> Vec<Bytes> {
    let mut reads = vec![event(
        r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#,
        "null",
    )];
    let pieces: Vec<&str> = PROSE.split_inclusive(' ').collect();
    for i in 0..words {
        let piece = pieces[i % pieces.len()];
        reads.push(event(
            &format!(
                r#"{{"index":0,"delta":{{"content":{}}},"logprobs":null,"finish_reason":null}}"#,
                json_string(piece)
            ),
            "null",
        ));
    }
    reads.push(event(
        r#"{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_Xy12","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]},"logprobs":null,"finish_reason":null}"#,
        "null",
    ));
    reads.push(event(
        r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}"#,
        "null",
    ));
    reads.push(Bytes::from(format!(
        "data: {HEAD}],\"usage\":{{\"prompt_tokens\":412,\"completion_tokens\":{words},\"total_tokens\":{}}}}}\n\n",
        412 + words
    )));
    reads.push(Bytes::from_static(b"data: [DONE]\n\n"));
    reads
}

fn bench_stream(c: &mut Criterion) {
    let plan = Plan::builtin();
    let reads = stream(300);
    let mut g = c.benchmark_group("stream_relay");
    g.throughput(Throughput::Elements(reads.len() as u64));
    g.bench_function("gates_off", |b| b.iter(|| relay(None, black_box(&reads))));
    g.bench_function("builtin_policy", |b| {
        b.iter(|| relay(Some(&plan), black_box(&reads)))
    });
    g.finish();
}

criterion_group!(benches, bench_stream);
criterion_main!(benches);
