//! One per-key budget round trip in memory, as a request does it: reserve the worst case
//! against the key's own limit (given per call), then reconcile with what was used, on a
//! key drawn from 10,000 live key-period counters.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_limits::{BudgetConfig, Nanos, TokenBudget};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("key_budget");
    g.bench_function("reserve_reconcile_10k_keys", |b| {
        let mut budget = TokenBudget::new(BudgetConfig::quota(1 << 52)).unwrap();
        let keys: Vec<String> = (0..10_000)
            .map(|i| format!("tenant-{}:key-{i}@2026-12", i % 97))
            .collect();
        for k in &keys {
            budget.seed_spent(k, 1_000, Nanos::ZERO);
        }
        let mut i = 0usize;
        let mut n = 0u64;
        b.iter(|| {
            i = (i + 7_919) % keys.len();
            n += 1;
            let id = n.to_string();
            let now = Nanos(n);
            let r = budget
                .reserve_with_limit(black_box(&keys[i]), &id, 1_000, 1 << 40, now)
                .unwrap();
            budget.reconcile(&id, 13, now).unwrap();
            r.granted
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
