//! The extraction telemetry's cost on the request path (issue #16: ≤ 5 µs
//! per request): building the record (the last user message copied, the
//! sampling signature read) and handing it to the worker's queue, plus the
//! ladder lookup every request makes. The features themselves are computed
//! off the request path (see palisade-extraction's `features` bench for
//! that cost, same run).

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_gateway::extraction_bench::Recorder;
use serde_json::{json, Map, Value};

fn body(prompt: &str) -> Map<String, Value> {
    let v = json!({
        "model": "gpt-4o-mini",
        "temperature": 0.7,
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant for an online shop."},
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": prompt}
        ]
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Times `iters` recordings, draining the queue (untimed) every 10,000 so
/// every timed call takes the enqueue path, never the "queue full" one.
fn timed(recorder: &mut Recorder, fields: &Map<String, Value>, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let chunk = left.min(10_000);
        let started = Instant::now();
        for _ in 0..chunk {
            recorder.record(black_box(fields));
        }
        total += started.elapsed();
        recorder.drain();
        left -= chunk;
    }
    total
}

fn bench(c: &mut Criterion) {
    let short = body("Summarize the following customer review in two sentences: the headphones are comfortable, the battery lasts two days, but the case feels cheap.");
    let long = body(&"Please translate this paragraph into French, keeping the tone. ".repeat(60));
    let mut recorder = Recorder::new();
    c.bench_function("record_short_prompt", |b| {
        b.iter_custom(|iters| timed(&mut recorder, &short, iters))
    });
    c.bench_function("record_4kb_prompt", |b| {
        b.iter_custom(|iters| timed(&mut recorder, &long, iters))
    });
    c.bench_function("ladder_lookup", |b| {
        b.iter(|| black_box(recorder.verdict()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
