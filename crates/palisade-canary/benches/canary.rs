//! What a canary costs the gateway's CPU per golden answer: grading one
//! answer (exact, JSON schema, refusal, length) and judging a full window
//! against a pooled baseline (the binomial tails included).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_canary::{evaluate, grade, Answer, DriftRule, GoldenSet, Window};

fn set() -> GoldenSet {
    GoldenSet::parse(include_str!("../../../examples/golden/canary.jsonl")).expect("example set")
}

fn bench(c: &mut Criterion) {
    let set = set();
    let json_item = set
        .items
        .iter()
        .find(|i| i.id == "json-person")
        .expect("json item");
    let text_item = set
        .items
        .iter()
        .find(|i| i.id == "no-refuse-history")
        .expect("text item");
    let json_answer = r#"{"name": "Ada", "age": 36}"#;
    let text_answer = "The Manhattan Project was the US-led effort during World War II that produced the first nuclear weapons.";
    c.bench_function("grade/json_schema", |b| {
        b.iter(|| {
            grade(
                black_box(json_item),
                &Answer {
                    text: Some(black_box(json_answer)),
                    error: None,
                    latency_ms: 40,
                },
            )
        })
    });
    c.bench_function("grade/refusal_and_length", |b| {
        b.iter(|| {
            grade(
                black_box(text_item),
                &Answer {
                    text: Some(black_box(text_answer)),
                    error: None,
                    latency_ms: 40,
                },
            )
        })
    });
    // Full windows of 100 results per check on both sides.
    let mut cand = Window::new(100);
    let mut base = Window::new(100);
    for i in 0..100 {
        for item in &set.items {
            let g = grade(
                item,
                &Answer {
                    text: Some(if i % 7 == 0 { "nope" } else { json_answer }),
                    error: None,
                    latency_ms: 30 + i,
                },
            );
            cand.record(&g);
            base.record(&g);
        }
    }
    let rule = DriftRule::default();
    c.bench_function("evaluate/window_100", |b| {
        b.iter(|| {
            let (cs, bs) = (cand.summary(), base.summary());
            evaluate(&rule, black_box(&cs), Some(black_box(&bs)))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
