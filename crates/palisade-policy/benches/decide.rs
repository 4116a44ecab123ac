//! One policy decision on the request path, under the built-in policy plus a few tier
//! assignments: nothing triggers (the common case), one rule triggers (one small `Vec`),
//! and several rules trigger at the output gate. Target: well under 1 µs.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_policy::{Evidence, Gate, Snapshot, Subject};

/// The built-in policy with three assignments in front, so tier selection does real glob work.
fn policy() -> Snapshot {
    let text = palisade_policy::BUILTIN_TOML.replace(
        "[links]",
        r#"
[[assign]]
tenant = "bank-*"
tier = "high"
[[assign]]
route = "internal-*"
model = "llama*"
tier = "high"
[[assign]]
tenant = "acme"
model = "gpt-4o*"
tier = "high"

[links]"#,
    );
    match Snapshot::from_toml(&text) {
        Ok(s) => s,
        Err(e) => panic!("bench policy: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    let p = policy();
    let subject = Subject {
        tenant: "tenant-42",
        route: "chat",
        model: "gpt-4o-mini",
    };
    let clean = Evidence {
        injection_score: 0.12,
        ..Evidence::default()
    };
    let attack = Evidence {
        injection_score: 0.99,
        ..Evidence::default()
    };
    let mut output = Evidence {
        canary_leaked: true,
        disallowed_links: 2,
        hidden_markup: true,
        ..Evidence::default()
    };
    output.secrets.insert("aws-access-token".to_owned(), 1);
    output.pii.insert("email".to_owned(), 3);

    let mut g = c.benchmark_group("decide");
    g.bench_function("input_clean", |b| {
        b.iter(|| p.decide(Gate::Input, black_box(&subject), black_box(&clean)))
    });
    g.bench_function("input_block", |b| {
        b.iter(|| p.decide(Gate::Input, black_box(&subject), black_box(&attack)))
    });
    g.bench_function("output_many", |b| {
        b.iter(|| p.decide(Gate::Output, black_box(&subject), black_box(&output)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
