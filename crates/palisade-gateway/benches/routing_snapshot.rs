//! The routing snapshot's costs (issue #20, routes hot-reloaded): applying a
//! reload's routing part with N routes — when every backend is unchanged
//! (state carried over: the common edit) and when every backend is new
//! (each gets its own HTTP client) — and the request path's share, one
//! load of the snapshot in force, next to a plain `Arc` clone (same run).

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use palisade_config::{Config, Sources};
use palisade_gateway::routing_bench::Snapshots;

/// `routes` routes over `backends` backends; `salt` changes every
/// backend's settings (a new timeout) so none can be carried.
fn config(routes: usize, backends: usize, salt: u64) -> Config {
    let mut text = String::new();
    for b in 0..backends {
        text.push_str(&format!(
            "[backends.b{b}]\nbase_url = \"http://127.0.0.1:{}/v1\"\nconnect_timeout_ms = {}\n",
            10_000 + b,
            1_000 + salt
        ));
    }
    for r in 0..routes {
        text.push_str(&format!(
            "[[routes]]\nmodel = \"model-{r}\"\nbackend = \"b{}\"\naliases = [\"alias-{r}\"]\n",
            r % backends
        ));
    }
    Config::load(&Sources {
        toml: Some(&text),
        ..Sources::default()
    })
    .expect("bench config loads")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing_reload");
    group.sample_size(20);
    for routes in [10usize, 100, 1_000] {
        let backends = (routes / 10).max(1);
        let snapshots = Snapshots::new(&config(routes, backends, 0)).expect("builds");
        let same = config(routes, backends, 0);
        group.bench_with_input(
            BenchmarkId::new("backends_carried", routes),
            &same,
            |b, cfg| b.iter(|| snapshots.reload(black_box(cfg)).expect("reload")),
        );
        let fresh = [config(routes, backends, 1), config(routes, backends, 2)];
        let mut n = 0;
        group.bench_function(BenchmarkId::new("backends_new", routes), |b| {
            b.iter(|| {
                n += 1;
                snapshots.reload(black_box(&fresh[n % 2])).expect("reload")
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("routing_load");
    let snapshots = Snapshots::new(&config(100, 10, 0)).expect("builds");
    group.bench_function("snapshot_load", |b| b.iter(|| black_box(snapshots.load())));
    let plain = Arc::new(7u64);
    group.bench_function("arc_clone", |b| {
        b.iter(|| black_box(*Arc::clone(black_box(&plain))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
