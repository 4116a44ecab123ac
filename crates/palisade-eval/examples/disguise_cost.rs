//! What the detector's second look at disguised text costs on benign text (measuring only;
//! never point it at `eval/`): for the benign rows of the given JSONL files (train's) and
//! the held-out clean-document chunks, how many are flagged only because a disguise's hidden
//! text was also judged, per disguise reason.
//!
//! `cargo run --release -p palisade-eval --example disguise_cost -- ../shared/datasets/train/benign.jsonl …`

use std::collections::BTreeMap;

use palisade_detect::{Channel, Detector, ScanInput, Verdict};
use palisade_eval::clean_docs::{default_path, read_clean_docs};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let detector = Detector::embedded()?;
    let flag = detector.thresholds().flag;
    let mut texts: Vec<(String, Channel, String)> = Vec::new();
    for f in std::env::args().skip(1) {
        for r in palisade_eval::read_jsonl(f.as_ref())? {
            if matches!(r.label(), "benign" | "benign_context") {
                let channel = r.channel(None).unwrap_or_default();
                texts.push((r.text.clone(), channel, format!("{f}:{}", r.label())));
            }
        }
    }
    for d in read_clean_docs(&default_path())?
        .iter()
        .filter(|d| d.is_heldout())
    {
        texts.push((d.text.clone(), Channel::Retrieved, "heldout_docs".into()));
    }
    let mut pools: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut raised: BTreeMap<&'static str, usize> = BTreeMap::new();
    // How often the second look runs at all (its cost), per reason.
    let mut looked: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (text, channel, pool) in &texts {
        let input = ScanInput {
            text,
            channel: *channel,
            system_prompt: None,
        };
        let written = detector.analyze_as_written(&input);
        for r in &written.normalized.reasons {
            *looked.entry(r.code).or_default() += 1;
        }
        if written.signals.upper_frac >= 0.6 && written.signals.chars >= 12 {
            *looked.entry("capitals").or_default() += 1;
        }
        let scan = detector.scan(&input);
        let e = pools.entry(pool.clone()).or_default();
        e.0 += 1;
        if scan.verdict != Verdict::Allow {
            e.1 += 1;
            if written.score < flag {
                e.2 += 1;
                for r in &written.normalized.reasons {
                    *raised.entry(r.code).or_default() += 1;
                }
                if written.signals.upper_frac >= 0.6 {
                    *raised.entry("capitals").or_default() += 1;
                }
            }
        }
    }
    println!("| pool | rows | flagged | flagged only by the second look |\n|---|---:|---:|---:|");
    for (pool, (n, f, r)) in pools {
        println!("| {pool} | {n} | {f} | {r} |");
    }
    println!("\nreasons on the rows the second look flagged: {raised:?}");
    println!(
        "normalization reasons over all {} rows (the disguises among them cost a second look): {looked:?}",
        texts.len()
    );
    Ok(())
}
