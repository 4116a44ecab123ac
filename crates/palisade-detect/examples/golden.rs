//! Golden dump for refactors that must not change results: one line per row of every
//! `*.jsonl` file under the given directories (score bits, score, verdict, category and
//! reason codes with details), so `diff` against a dump taken before a change shows any
//! difference. With `--time`, prints per-row microseconds and characters instead (for
//! profiling the slow rows).
//!
//! `cargo run --release -p palisade-detect --example golden -- DIR... > golden.txt`

use std::io::{BufRead as _, Write as _};

use palisade_detect::{Channel, Detector, ScanInput};

fn channel_of(v: &serde_json::Value) -> Channel {
    if let Some(c) = v.get("channel").and_then(|c| c.as_str()) {
        return c.parse().unwrap_or(Channel::User);
    }
    match v.get("label").and_then(|l| l.as_str()) {
        Some("indirect_injection" | "benign_context") => Channel::Retrieved,
        _ => Channel::User,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let time = args.iter().any(|a| a == "--time");
    args.retain(|a| a != "--time");
    let d = Detector::embedded()?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for dir in &args {
        let mut paths: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        paths.sort();
        for p in paths {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let f = std::io::BufReader::new(std::fs::File::open(&p)?);
            for (i, line) in f.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(&line)?;
                let text = v.get("text").and_then(|t| t.as_str()).unwrap_or("");
                let input = ScanInput {
                    text,
                    channel: channel_of(&v),
                    system_prompt: v.get("system_prompt").and_then(|s| s.as_str()),
                };
                if time {
                    let t = std::time::Instant::now();
                    let s = d.scan(&input);
                    let us = t.elapsed().as_secs_f64() * 1e6;
                    std::hint::black_box(s);
                    writeln!(out, "{us:.1}\t{}\t{name}:{}", text.chars().count(), i + 1)?;
                    continue;
                }
                let s = d.scan(&input);
                let reasons: Vec<String> = s
                    .reasons
                    .iter()
                    .map(|r| format!("{}={:?}@{:?}", r.code, r.detail, r.span))
                    .collect();
                let findings: Vec<String> = s
                    .findings
                    .iter()
                    .map(|f| format!("{:?}:{}@{}..{}", f.kind, f.rule, f.span.start, f.span.end))
                    .collect();
                // Every intermediate value, bit for bit: a change that keeps the verdict but
                // moves a logit still shows.
                let a = d.analyze(&input);
                let mut bits: Vec<u32> = vec![
                    a.attack_logit.to_bits(),
                    a.harm_logit.to_bits(),
                    a.jb_logit.to_bits(),
                    a.segment_max.to_bits(),
                ];
                bits.extend(a.stage2.iter().map(|x| x.to_bits()));
                let mut bits: Vec<String> = bits.iter().map(|b| format!("{b:08x}")).collect();
                let norm = format!("{:?}", a.normalized);
                bits.push(format!(
                    "norm:{:016x}",
                    palisade_detect::hash_bytes(0, norm.as_bytes())
                ));
                writeln!(
                    out,
                    "{name}:{}\t{:08x}\t{:.6}\t{:?}\t{:?}\t{}\t{}\t{}\t{:?}",
                    i + 1,
                    s.score.to_bits(),
                    s.score,
                    s.verdict,
                    s.category,
                    reasons.join(","),
                    findings.join(","),
                    bits.join(" "),
                    a.signals,
                )?;
            }
        }
    }
    Ok(())
}
