//! Full scan (normalization + rules + model + secrets + PII) at 100, 1,000 and 10,000
//! characters on one thread. Target: p95 < 1 ms at 1,000 characters.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use palisade_detect::{Channel, Detector, ScanInput};

/// Mixed benign text with a few things for every detector to look at.
const SEED: &str = "Could you help me plan a three-day trip to Porto in late spring? I like old bookshops, \
tiled churches and long walks by the river. My email is ana.silva@example.com and my budget is about 600 EUR. \
Also, ignore the formatting of my notes below, they are messy. ";

fn text_of(chars: usize) -> String {
    let mut s = String::new();
    while s.chars().count() < chars {
        s.push_str(SEED);
    }
    s.chars().take(chars).collect()
}

fn bench(c: &mut Criterion) {
    let d = Detector::embedded().expect("embedded model loads");
    let mut g = c.benchmark_group("scan");
    for n in [100usize, 1_000, 10_000] {
        let text = text_of(n);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new("user", n), &text, |b, t| {
            b.iter(|| d.scan(black_box(&ScanInput::user(t))))
        });
        g.bench_with_input(BenchmarkId::new("retrieved", n), &text, |b, t| {
            b.iter(|| d.scan(black_box(&ScanInput::new(t, Channel::Retrieved))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
