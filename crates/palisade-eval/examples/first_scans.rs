//! `cargo run --release -p palisade-eval --example first_scans -- ROWS.jsonl [N] [--warm]`: how much
//! slower the first scans of a fresh process are than the same scans once it is warm (a new
//! replica's first requests). Scans the first N rows (default 51) twice in one process, on
//! one thread, and prints per-pass latency percentiles in µs per 1,000 characters. With
//! `--warm`, the detector first scans its built-in warm-up texts, as the gateway does before
//! it reports ready.
//! Measuring only.

use std::time::Instant;

use palisade_detect::{Detector, ScanInput};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: first_scans ROWS.jsonl [N]")?;
    let rest: Vec<String> = args.collect();
    let warm = rest.iter().any(|a| a == "--warm");
    let n: usize = rest
        .iter()
        .find(|a| *a != "--warm")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(51);
    let rows: Vec<_> = palisade_eval::read_jsonl(path.as_ref())?
        .into_iter()
        .take(n)
        .collect();
    let started = Instant::now();
    let d = Detector::embedded()?;
    println!(
        "detector loaded in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    if warm {
        let started = Instant::now();
        d.warm();
        println!("warmed in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    }
    for pass in ["first", "second", "third"] {
        let mut per_kchar: Vec<f64> = rows
            .iter()
            .map(|r| {
                let input = ScanInput {
                    text: &r.text,
                    channel: r.channel(None).unwrap_or_default(),
                    system_prompt: r.system_prompt.as_deref(),
                };
                let t = Instant::now();
                std::hint::black_box(d.scan(&input));
                let us = t.elapsed().as_secs_f64() * 1e6;
                us / (r.text.chars().count() as f64 / 1000.0).max(1.0)
            })
            .collect();
        per_kchar.sort_by(f64::total_cmp);
        let q = |p: f64| per_kchar[((per_kchar.len() - 1) as f64 * p).round() as usize];
        println!(
            "{pass} pass over {} rows: p50 {:.0} µs/1k, p95 {:.0}, p99 {:.0}, max {:.0}",
            per_kchar.len(),
            q(0.5),
            q(0.95),
            q(0.99),
            q(1.0)
        );
    }
    Ok(())
}
