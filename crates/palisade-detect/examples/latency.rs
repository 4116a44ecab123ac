//! Single-thread latency percentiles of a full scan at 100, 1,000 and 10,000 characters
//! (criterion reports means; the target is on p95).
//! `cargo run --release -p palisade-detect --example latency`
//! (`PALISADE_DETECT_MODEL=ARTIFACT` measures that artifact instead of the embedded one).

use std::time::Instant;

use palisade_detect::{Channel, Detector, ScanInput};

const SEED: &str = "Could you help me plan a three-day trip to Porto in late spring? I like old bookshops, \
tiled churches and long walks by the river. My email is ana.silva@example.com and my budget is about 600 EUR. \
Also, ignore the formatting of my notes below, they are messy. ";

fn main() {
    let d = match std::env::var("PALISADE_DETECT_MODEL") {
        Ok(p) => Detector::from_model_bytes(&std::fs::read(p).expect("model file")).expect("model"),
        Err(_) => Detector::embedded().expect("embedded model"),
    };
    for n in [100usize, 1_000, 10_000] {
        let text: String = SEED.chars().cycle().take(n).collect();
        for channel in [Channel::User, Channel::Retrieved] {
            let input = ScanInput::new(&text, channel);
            for _ in 0..50 {
                std::hint::black_box(d.scan(&input));
            }
            let iters = if n >= 10_000 { 300 } else { 2_000 };
            let mut us: Vec<f64> = (0..iters)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(d.scan(&input));
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            us.sort_by(f64::total_cmp);
            let q = |p: f64| us[((us.len() - 1) as f64 * p) as usize];
            println!(
                "{n:>6} chars {:<11} p50 {:>7.1} µs  p95 {:>7.1} µs  p99 {:>7.1} µs",
                channel.as_str(),
                q(0.5),
                q(0.95),
                q(0.99)
            );
        }
    }
}
