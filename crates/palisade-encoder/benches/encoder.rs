//! Scoring latency of 1,000-character English texts, on the calling thread.
//!
//! Needs `scripts/fetch-encoder`. The overlay is the test fixture's with the
//! production windowing (256 tokens, stride 192, 8 windows), so a
//! 1,000-character text is one window of about 200 tokens. candle computes
//! on rayon's pool (matrix products) and its own barrier pool (elementwise
//! ops), both sized by `RAYON_NUM_THREADS` (`CANDLE_NUM_THREADS` overrides
//! the second); run with both set to 1 and to 2 to compare:
//!
//!     RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 cargo bench -p palisade-encoder
//!
//! Before criterion's own report it prints p50/p95 over single calls, and
//! how many threads the process has after scoring.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use palisade_encoder::Encoder;
use safetensors::SafeTensors;

const SENTENCES: [&str; 8] = [
    "The committee reviewed the budget and approved funding for two new projects.",
    "Please remember to submit your timesheets before Friday afternoon.",
    "Our support team answers most questions within one business day.",
    "The museum's new exhibition covers the history of navigation at sea.",
    "Ignore the noise from the street; the meeting will continue as planned.",
    "Engineers replaced the worn bearings and the pump now runs quietly.",
    "A short walk from the station, the hotel offers breakfast until ten.",
    "Quarterly sales rose in the north while the south stayed flat.",
];

/// A 1,000-character English text; `seed` varies the sentence order.
fn text(seed: usize) -> String {
    let mut out = String::new();
    let mut i = seed;
    while out.len() < 1000 {
        out.push_str(SENTENCES[i % SENTENCES.len()]);
        out.push(' ');
        i = i * 5 + 3;
    }
    out.truncate(1000);
    out
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/fetch-encoder first", path.display()))
}

fn encoder() -> Encoder {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let models = root.join("../../models/minilm-l6");
    let fixture = read(root.join("tests/fixtures/overlay.safetensors"));
    let st = SafeTensors::deserialize(&fixture).unwrap();
    let meta: HashMap<String, String> = [
        ("format", "palisade-encoder-1"),
        ("outputs", "attack,jailbreak"),
        ("max_tokens", "256"),
        ("stride", "192"),
        ("max_windows", "8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let overlay = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
    Encoder::from_bytes(
        &read(models.join("model.safetensors")),
        &overlay,
        &read(models.join("tokenizer.json")),
    )
    .unwrap()
}

/// The process's threads with their CPU time (Linux), to see which ones
/// do the work: with one candle thread, the calling thread does it all.
fn threads() -> String {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return "unknown".to_owned();
    };
    let cpu: Vec<String> = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .map(|stat| {
            // Fields after the parenthesised name; utime + stime are 12 and 13.
            let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            format!("{} cpu ticks", ticks(11) + ticks(12))
        })
        .collect();
    format!("{} {cpu:?}", cpu.len())
}

fn percentiles(encoder: &Encoder, texts: &[String]) {
    for text in texts.iter().take(5) {
        black_box(encoder.score("retrieved", text).unwrap());
    }
    let mut times: Vec<Duration> = (0..200)
        .map(|i| {
            let text = &texts[i % texts.len()];
            let start = Instant::now();
            black_box(encoder.score("retrieved", text).unwrap());
            start.elapsed()
        })
        .collect();
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    println!(
        "encoder/score 1000 chars: p50 {:.0} µs, p95 {:.0} µs per 1,000 characters \
         (200 calls; RAYON_NUM_THREADS={:?} CANDLE_NUM_THREADS={:?}; candle threads {}; process threads {})",
        at(0.5),
        at(0.95),
        std::env::var("RAYON_NUM_THREADS").ok(),
        std::env::var("CANDLE_NUM_THREADS").ok(),
        candle_core::utils::get_num_threads(),
        threads(),
    );
}

fn main() {
    let encoder = encoder();
    let texts: Vec<String> = (0..16).map(text).collect();
    assert!(texts.iter().all(|t| t.len() == 1000));
    assert_eq!(encoder.windows("retrieved", &texts[0]).unwrap().len(), 1);
    let mut criterion = Criterion::default().configure_from_args();
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        percentiles(&encoder, &texts);
    }
    let mut group = criterion.benchmark_group("encoder");
    group.throughput(Throughput::Bytes(1000));
    group.bench_function(BenchmarkId::new("score", "1000 chars"), |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(encoder.score("retrieved", &texts[i % texts.len()]).unwrap())
        })
    });
    group.finish();
    criterion.final_summary();
}
