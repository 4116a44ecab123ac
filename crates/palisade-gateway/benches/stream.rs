//! The streaming output gate's cost per relayed event (issue #17: ≤ 2 µs with
//! the output gate on): a realistic chat-completion stream (a role chunk, a few
//! hundred one-word `delta.content` chunks of markdown prose with a link, a
//! `tool_calls` chunk, the finish chunk, a usage chunk and `[DONE]`), one
//! upstream read per event, relayed through the same framer and response
//! filters the gateway runs for streams: under the built-in policy, and with
//! the gates off (the relay alone), in the same run. Criterion's element
//! throughput is per event; the per-event cost of the gate is the difference.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use palisade_gateway::stream_bench::{relay, sample_stream, Plan};

fn bench_stream(c: &mut Criterion) {
    let plan = Plan::builtin();
    let reads = sample_stream(300);
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
