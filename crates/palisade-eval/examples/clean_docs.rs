//! `cargo run --release -p palisade-eval --example clean_docs -- [MODEL]`: flag rates on
//! the held-out part of the committed clean-document corpus (Debian packages training never
//! sees), and on synthetic tool outputs drawn with a seed training does not use (clean ones,
//! injected twins, instructions planted in the held-out chunks). Measuring only.
//! With MODEL, measures that artifact file instead of the embedded one.

use palisade_detect::{Channel, Detector, ScanInput, Verdict};
use palisade_eval::clean_docs::{default_path, read_clean_docs};
use palisade_eval::rng::Rng;
use palisade_eval::synth::{synthesize_documents, Kind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let detector = match std::env::args().nth(1) {
        Some(p) => Detector::from_model_bytes(&std::fs::read(p)?)?,
        None => Detector::embedded()?,
    };
    let docs = read_clean_docs(&default_path())?;
    let heldout: Vec<(&str, &str)> = docs
        .iter()
        .filter(|d| d.is_heldout())
        .map(|d| (d.text.as_str(), d.source.as_str()))
        .collect();
    let flagged = |text: &str, channel: Channel| {
        let s = detector.scan(&ScanInput {
            text,
            channel,
            system_prompt: None,
        });
        s.verdict != Verdict::Allow
    };
    let rate = |hits: usize, n: usize| 100.0 * hits as f64 / n.max(1) as f64;
    println!("Detector `{}`", detector.version());
    println!("| set | rows | flagged |\n|---|---:|---:|");
    for subtype in ["man", "readme", "changelog"] {
        let rows: Vec<&str> = docs
            .iter()
            .filter(|d| d.is_heldout() && d.subtype == subtype)
            .map(|d| d.text.as_str())
            .collect();
        let hits = rows
            .iter()
            .filter(|t| flagged(t, Channel::Retrieved))
            .count();
        println!(
            "| debian held-out ({subtype}) | {} | {:.1}% |",
            rows.len(),
            rate(hits, rows.len())
        );
    }
    let hits = heldout
        .iter()
        .filter(|(t, _)| flagged(t, Channel::Retrieved))
        .count();
    println!(
        "| **debian held-out, all** | {} | {:.1}% |",
        heldout.len(),
        rate(hits, heldout.len())
    );
    let synthetic = synthesize_documents(&heldout, &mut Rng::new(7));
    let mut sources: Vec<&str> = synthetic.iter().map(|e| e.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    for source in sources {
        let rows: Vec<_> = synthetic.iter().filter(|e| e.source == source).collect();
        let hits = rows.iter().filter(|e| flagged(&e.text, e.channel)).count();
        let kind = if rows[0].kind == Kind::Attack {
            "attack"
        } else {
            "clean"
        };
        println!(
            "| {source} (seed 7, {kind}) | {} | {:.1}% |",
            rows.len(),
            rate(hits, rows.len())
        );
    }
    // Ranking, whatever the threshold: injected documents against every clean one above
    // (held-out Debian chunks and clean synthetic tool outputs).
    let score = |text: &str, channel: Channel| {
        detector
            .scan(&ScanInput {
                text,
                channel,
                system_prompt: None,
            })
            .score
    };
    let mut clean: Vec<f32> = heldout
        .iter()
        .map(|(t, _)| score(t, Channel::Retrieved))
        .collect();
    let mut attacks = Vec::new();
    for e in &synthetic {
        let s = score(&e.text, e.channel);
        if e.kind == Kind::Attack {
            attacks.push(s);
        } else {
            clean.push(s);
        }
    }
    println!(
        "\nInjected vs clean documents: AUC {:.3}, TPR@1%FPR {:.1}%, TPR@0.1%FPR {:.1}% ({} vs {})",
        palisade_eval::eval::auc(&attacks, &clean),
        100.0 * palisade_eval::eval::tpr_at_fpr(&attacks, &clean, 0.01),
        100.0 * palisade_eval::eval::tpr_at_fpr(&attacks, &clean, 0.001),
        attacks.len(),
        clean.len()
    );
    Ok(())
}
