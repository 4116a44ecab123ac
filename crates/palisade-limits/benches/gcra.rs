//! One uncontended in-memory GCRA decision: the pure arithmetic, a hot key, and a key drawn
//! from 10,000 live keys (hash lookup plus the incremental sweep). Target: < 200 ns.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_limits::{Gcra, GcraConfig, GcraState, MemoryGcra, Nanos};

fn bench(c: &mut Criterion) {
    // 1,000 requests per second, burst 100: time advances one emission interval per call,
    // so every decision is a real admission that writes state.
    let config = GcraConfig::new(1_000, Nanos::from_secs(1)).with_burst(100);
    let step = Gcra::new(config).unwrap().emission_interval().get();
    let mut g = c.benchmark_group("gcra");

    g.bench_function("decide_pure", |b| {
        let gcra = Gcra::new(config).unwrap();
        let mut state = Some(GcraState { tat: Nanos::ZERO });
        let mut now = 0u64;
        b.iter(|| {
            now += step;
            let (d, w) = gcra.decide(state, 1, Nanos(black_box(now))).unwrap();
            state = w.or(state);
            d
        });
    });

    g.bench_function("memory_hot_key", |b| {
        let mut l = MemoryGcra::new(config).unwrap();
        let mut now = 0u64;
        b.iter(|| {
            now += step;
            l.check(
                black_box("tenant-42:key-7:/v1/chat/completions:gpt-4o"),
                Nanos(now),
            )
        });
    });

    g.bench_function("memory_10k_keys", |b| {
        let mut l = MemoryGcra::new(config).unwrap();
        let keys: Vec<String> = (0..10_000)
            .map(|i| format!("tenant-{i}:key-{}:/v1/chat/completions:gpt-4o", i % 7))
            .collect();
        for k in &keys {
            l.check(k, Nanos::ZERO);
        }
        let mut now = 0u64;
        let mut i = 0usize;
        b.iter(|| {
            // Advance slowly, so keys stay live and the sweep examines but keeps them.
            now += 1;
            i = (i + 7_919) % keys.len();
            l.check(black_box(&keys[i]), Nanos(now))
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
