//! Full scan at 1k, 10k and 100k characters of train-like prose and of each adversarial
//! shape (`tests/shapes`), on one thread. Throughput is reported per byte, so a flat
//! throughput across lengths is the linearity the detector promises (issue 14: at most
//! 1 ms per 1,000 characters).
//!
//! `cargo bench -p palisade-detect --bench scan_length [-- FILTER]`

#[path = "../tests/shapes/mod.rs"]
mod shapes;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use palisade_detect::{Channel, Detector, ScanInput};

fn bench(c: &mut Criterion) {
    let d = Detector::embedded().expect("embedded model loads");
    for (name, build) in shapes::shapes() {
        let mut g = c.benchmark_group(format!("scan_length/{name}"));
        g.sample_size(10);
        for n in [1_000usize, 10_000, 100_000] {
            let text = build(n);
            g.throughput(Throughput::Bytes(text.len() as u64));
            g.bench_with_input(BenchmarkId::new("retrieved", n), &text, |b, t| {
                b.iter(|| d.scan(black_box(&ScanInput::new(t, Channel::Retrieved))))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
