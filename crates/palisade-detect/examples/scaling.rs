//! Latency per 1,000 characters of each adversarial shape (and train text when the
//! datasets are at hand) at 1k, 10k and 100k characters: the per-character cost must not
//! grow with length. The same 100k characters are scanned at each length (as 100 pieces of
//! 1k, 10 of 10k or one of 100k), so only the length changes.
//!
//! `cargo run --release -p palisade-detect --example scaling -- [TRAIN_DIR [SHAPE PIECE]]`

#[path = "../tests/shapes/mod.rs"]
mod shapes;

use std::io::BufRead as _;
use std::time::Instant;

use palisade_detect::{Channel, Detector, ScanInput};

/// Concatenated `text` fields of the train files (empty if the directory is missing).
fn train_text(dir: &str) -> String {
    let mut out = String::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut paths: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
    {
        let Ok(f) = std::fs::File::open(p) else {
            continue;
        };
        for line in std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .take(400)
        {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
                    out.push_str(t);
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// Median over a few repetitions of the time to scan `text` cut into pieces of `piece`
/// characters, in µs per 1,000 characters: the same characters at every piece length, so
/// only the length changes.
fn us_per_1k(d: &Detector, text: &str, piece: usize, channel: Channel) -> f64 {
    let chars: Vec<char> = text.chars().collect();
    let pieces: Vec<String> = chars.chunks(piece).map(|c| c.iter().collect()).collect();
    let reps = (2_000_000 / chars.len().max(1)).clamp(3, 25);
    let mut us: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            for p in &pieces {
                std::hint::black_box(d.scan(&ScanInput::new(p, channel)));
            }
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(f64::total_cmp);
    us[us.len() / 2] / (chars.len() as f64 / 1000.0)
}

/// A shape builder that may own its text (train text).
type BoxedBuild = Box<dyn Fn(usize) -> String>;

fn main() {
    let d = Detector::embedded().expect("embedded model");
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/work/shared/datasets/train".into());
    let train = train_text(&dir);
    let mut shapes: Vec<(String, BoxedBuild)> = shapes::shapes()
        .into_iter()
        .map(|(n, f)| (n.to_string(), Box::new(f) as BoxedBuild))
        .collect();
    if !train.is_empty() {
        shapes.insert(
            0,
            (
                "train_text".into(),
                Box::new(move |n| shapes::repeat_to(&train, n)),
            ),
        );
    }
    // `scaling DIR SHAPE PIECE`: only that shape at that piece length, for a profiler.
    if let (Some(only), Some(piece)) = (std::env::args().nth(2), std::env::args().nth(3)) {
        let piece: usize = piece.parse().expect("piece length");
        for (name, build) in shapes.iter().filter(|(n, _)| *n == only) {
            let text = build(100_000);
            for _ in 0..10 {
                let us = us_per_1k(&d, &text, piece, Channel::User);
                println!("{name} {piece}: {us:.0} µs/1k");
            }
        }
        return;
    }
    println!("| shape | channel | 1k µs/1k | 10k µs/1k | 100k µs/1k | 100k/1k |");
    println!("|---|---|---:|---:|---:|---:|");
    for (name, build) in &shapes {
        for channel in [Channel::User, Channel::Retrieved] {
            let text = build(100_000);
            let per: Vec<f64> = [1_000usize, 10_000, 100_000]
                .iter()
                .map(|&n| us_per_1k(&d, &text, n, channel))
                .collect();
            println!(
                "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.2} |",
                channel.as_str(),
                per[0],
                per[1],
                per[2],
                per[2] / per[0]
            );
        }
    }
}
