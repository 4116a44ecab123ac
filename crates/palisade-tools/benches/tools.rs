//! Cost of the per-call mechanics on the response path: hashing canonical arguments,
//! signing a capability token, verifying one.

use criterion::{criterion_group, criterion_main, Criterion};
use palisade_tools::{arguments_sha256, CapabilityClaims, CapabilitySigner, TokenSource};
use std::hint::black_box;

const ARGS: &str = r#"{"to":"bob@example.com","subject":"Quarterly report","body":"Hi Bob, please find the numbers attached. Revenue grew 4% quarter on quarter.","cc":["carol@example.com"],"priority":"normal"}"#;

fn bench(c: &mut Criterion) {
    let signer = CapabilitySigner::from_seed([3; 32]);
    let verifier = signer.verifier();
    let claims = CapabilityClaims {
        tenant: "acme".into(),
        tool: "send_email".into(),
        args_sha256: arguments_sha256(ARGS).unwrap(),
        request_id: "6f1c0c8e-4a8e-4c55-9d8e-2b0f3c1d2e3f".into(),
        call_id: "call_abc123".into(),
        iat: 1_000,
        exp: 1_300,
        kid: String::new(),
        src: TokenSource::Proxy,
    };
    let token = signer.sign(claims.clone());
    c.bench_function("arguments_sha256", |b| {
        b.iter(|| arguments_sha256(black_box(ARGS)))
    });
    c.bench_function("capability_sign", |b| {
        b.iter(|| signer.sign(black_box(claims.clone())))
    });
    c.bench_function("capability_verify", |b| {
        b.iter(|| verifier.verify(black_box(&token), 1_100))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
