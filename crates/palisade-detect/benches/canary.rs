//! Canary detection on model output: the output gate runs it on every completion, so its
//! cost on ordinary prose (no canary present: the common case) is on the request path.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use palisade_detect::Canary;

/// A typical assistant reply: prose, a list, a number or two, a colon.
const REPLY: &str = "Sure! Here is a short plan for your trip to Porto:\n\
1. Day one: walk along the Ribeira, visit the Livraria Lello early (tickets cost about 10 EUR).\n\
2. Day two: take tram 1 to Foz do Douro and have lunch by the sea.\n\
3. Day three: the Serralves museum and its gardens, then a port tasting in Gaia.\n\
Let me know if you want restaurant suggestions or a budget breakdown. ";

fn text_of(chars: usize) -> String {
    let mut s = String::new();
    while s.len() < chars {
        s.push_str(REPLY);
    }
    s.truncate(chars);
    s
}

fn bench(c: &mut Criterion) {
    let canary = Canary::short_from_random(&[7; 16], 8);
    let mut g = c.benchmark_group("canary_detect");
    for n in [64usize, 400, 4_000] {
        let text = text_of(n);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new("prose", n), &text, |b, t| {
            b.iter(|| canary.detect(black_box(t)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
