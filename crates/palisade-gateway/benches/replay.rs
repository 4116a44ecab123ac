//! What a cache hit and an idempotent replay cost against going to the
//! upstream, in one run, through the whole gateway on loopback (built-in
//! policy, gates on): a chat request to a scripted upstream that answers at
//! once (the gateway's own path plus one loopback hop: the floor of any real
//! model), the same request answered from the cache, and from an
//! idempotency key; and the table lookup alone. A real model adds its own
//! generation time to the first only.

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_replay::{scope_key, Fingerprint, Limits, Stored, Table};
use palisade_testkit::ScriptedUpstream;
use serde_json::json;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (upstream, gw) = runtime.block_on(async {
        let upstream = ScriptedUpstream::start().await;
        let toml = format!(
            "[cache]\nenabled = true\n[backends.main]\nbase_url = \"{}\"\n",
            upstream.base_url()
        );
        let gw = support::gateway(&toml).await;
        (upstream, gw)
    });
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let url = format!("http://{}/v1/chat/completions", gw.local_addr());
    let text = "Summarize the attached quarterly report in three bullet points, please.";
    let post = |body: serde_json::Value, idem: Option<String>| {
        let mut req = http.post(&url).json(&body);
        if let Some(k) = idem {
            req = req.header("idempotency-key", k);
        }
        async move {
            let resp = req.send().await.expect("answers");
            assert_eq!(resp.status(), 200);
            resp.bytes().await.expect("body").len()
        }
    };

    let mut group = c.benchmark_group("replay");
    let mut n = 0u64;
    group.bench_function("upstream", |b| {
        b.iter(|| {
            n += 1;
            // A unique `user` field: never a cache hit.
            let body = json!({"model": "m", "user": format!("u{n}"),
                              "messages": [{"role": "user", "content": text}]});
            runtime.block_on(post(body, None))
        })
    });
    let cached = json!({"model": "m", "messages": [{"role": "user", "content": text}]});
    runtime.block_on(post(cached.clone(), None));
    group.bench_function("cache_hit", |b| {
        b.iter(|| runtime.block_on(post(cached.clone(), None)))
    });
    let idem =
        json!({"model": "m", "user": "idem", "messages": [{"role": "user", "content": text}]});
    runtime.block_on(post(idem.clone(), Some("bench-key".into())));
    group.bench_function("idempotent_replay", |b| {
        b.iter(|| runtime.block_on(post(idem.clone(), Some("bench-key".into()))))
    });

    let mut table = Table::new(Limits {
        ttl_ms: 60_000,
        max_entries: 10_000,
        max_bytes: 64 << 20,
        max_entry_bytes: 1 << 20,
    });
    let key = scope_key(&[b"t", b"k"]);
    table.put(
        "t",
        key,
        Stored {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: vec![b'x'; 600],
            origin: "r".into(),
            policy_version: "v".into(),
        },
        0,
    );
    group.bench_function("table_get", |b| {
        b.iter(|| black_box(table.get("t", black_box(key), 1)))
    });
    let body = cached.to_string();
    group.bench_function("fingerprint", |b| {
        b.iter(|| black_box(Fingerprint::of_json("chat_completions", body.as_bytes())))
    });
    group.finish();
    drop(gw);
    drop(upstream);
}

criterion_group!(benches, bench);
criterion_main!(benches);
