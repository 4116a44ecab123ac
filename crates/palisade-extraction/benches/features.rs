//! The off-path cost of one request's features (sketch) and of a window
//! evaluation, as a same-run reference for the gateway's recording bench.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_extraction::{
    sketch, GateOutcome, RequestFeatures, SamplingSignature, Tracker, TrackerConfig,
};

fn bench(c: &mut Criterion) {
    let text = "Summarize the following customer review in two sentences and list the product \
                features it mentions: the headphones are comfortable, the battery lasts two days, \
                but the case feels cheap and the app keeps asking me to log in.";
    c.bench_function("sketch_300_chars", |b| b.iter(|| sketch(black_box(text))));
    let mut tracker = Tracker::new(TrackerConfig::default());
    let features = RequestFeatures {
        at_ms: 0,
        sketch: sketch(text),
        sampling: SamplingSignature::default(),
        outcome: GateOutcome::Passed,
    };
    let mut i = 0i64;
    c.bench_function("tracker_observe", |b| {
        b.iter(|| {
            i += 1;
            tracker.observe("key", "tenant", black_box(&features), i)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
