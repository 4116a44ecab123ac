//! Time-to-first-token added by the streaming output gate (issue #17: ≤ 1 ms
//! p99 on a stream whose first sentence arrives within 64 tokens).
//!
//! ```text
//! cargo run --release -p palisade-gateway --example stream_ttft -- 2000
//! ```
//!
//! For each of `n` streams (the first sentence ending at delta 1, 2, …, 64,
//! in turn), the events are fed one at a time through the real stream
//! filters under the built-in policy with a canary, and with the gates off,
//! until the first content text goes out. Reported, p50/p99/max over the
//! streams: the time of the event that released the first text (what the
//! gate adds after the sentence's last token arrives), and the time of all
//! events up to it (an upper bound: what it adds if every token of the
//! sentence arrived at once). A benchmark, not a test: wall-clock on a
//! shared machine.

use std::time::Duration;

use palisade_gateway::stream_bench::{first_content, first_sentence_stream, Plan};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let k = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(k).copied().unwrap_or_default()
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name:<34} p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>8.1} µs",
        percentile(&v, 0.50).as_secs_f64() * 1e6,
        percentile(&v, 0.99).as_secs_f64() * 1e6,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let plan = Plan::builtin();
    let streams: Vec<_> = (1..=64).map(first_sentence_stream).collect();
    // Warm-up: lazy regexes and allocator.
    for reads in &streams {
        let _ = first_content(Some(&plan), reads);
    }
    for (label, plan) in [("gates off", None), ("built-in policy", Some(&plan))] {
        let mut last = Vec::with_capacity(n);
        let mut all = Vec::with_capacity(n);
        let mut events = 0;
        for i in 0..n {
            let reads = &streams[i % streams.len()];
            if let Some((k, total, releasing)) = first_content(plan, std::hint::black_box(reads)) {
                events += k;
                all.push(total);
                last.push(releasing);
            }
        }
        println!(
            "{label}: {} streams, {events} events up to the first text",
            last.len()
        );
        report("  releasing event", last);
        report("  all events up to first text", all);
    }
}
