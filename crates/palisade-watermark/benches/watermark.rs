//! The watermark's costs on the request path for a 128k vocabulary (Llama 3
//! size): building a tenant's green list (once per tenant and period, on the
//! CPU pool), putting the map into a request body and encoding it, and
//! scoring 1,000 tokens.

use criterion::{criterion_group, criterion_main, Criterion};
use palisade_watermark::{
    apply, derive_key, score, ClientBias, GreenList, LogprobsAction, Marking,
};
use serde_json::json;

const VOCAB: u32 = 128_256;

fn bench(c: &mut Criterion) {
    let key = derive_key(&[7; 32], "acme", 2970);
    c.bench_function("green_list_build_128k", |b| {
        b.iter(|| GreenList::new(&key, VOCAB, 0.25))
    });
    let Ok(list) = GreenList::new(&key, VOCAB, 0.25) else {
        return;
    };
    let marking = Marking {
        delta: 2.0,
        client_bias: ClientBias::Strip,
        logprobs: LogprobsAction::Refuse,
    };
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "Write a haiku about rain."}]});
    let plain = serde_json::to_vec(&body).unwrap_or_default();
    c.bench_function("request_encode_plain", |b| {
        b.iter(|| serde_json::to_vec(&body).map(|v| v.len()))
    });
    c.bench_function("request_mark_and_encode_128k", |b| {
        b.iter(|| {
            let mut fields = body.as_object().cloned().unwrap_or_default();
            let _ = apply(&mut fields, &list, marking);
            serde_json::to_vec(&fields).map(|v| v.len())
        })
    });
    let mut fields = body.as_object().cloned().unwrap_or_default();
    let _ = apply(&mut fields, &list, marking);
    let marked = serde_json::to_vec(&fields).unwrap_or_default();
    println!(
        "request bytes: plain {}, marked {}",
        plain.len(),
        marked.len()
    );
    let tokens: Vec<u32> = (0..1000u32)
        .map(|i| i.wrapping_mul(2_654_435_761) % VOCAB)
        .collect();
    c.bench_function("score_1000_tokens", |b| b.iter(|| score(&list, &tokens)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
