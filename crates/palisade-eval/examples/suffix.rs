//! `cargo run --release -p palisade-eval --example suffix -- TRAIN_DIR [OUT_ARTIFACT]`:
//! calibrates and measures the `adversarial_suffix` rule (`palisade_detect::suffix`) on
//! `train/` only, and with OUT_ARTIFACT writes the embedded artifact plus a token LM trained
//! on all of train's benign text and the clean-document corpus's training split.
//!
//! Benign pools are scored by token LMs that never saw them: train's benign prompts and
//! clean contexts out-of-fold (5 folds grouped by file, source and subtype family), the
//! Debian held-out packages by the full LM. Attacks: GCG-like suffixes synthesized here
//! (random printable `cl100k_base` tokens and markup fragments appended to train's English
//! harmful asks, seed 7), train's own soup rows. Never reads `eval/`.

use std::collections::HashMap;
use std::path::Path;

use palisade_detect::model::Model;
use palisade_detect::suffix::{suffix_stats, SuffixStats, SuffixThresholds, THRESHOLDS};
use palisade_detect::tokenlm::{tokens, TokenLm};
use palisade_eval::clean_docs::{default_path, read_clean_docs};
use palisade_eval::read_jsonl;
use palisade_eval::rng::Rng;
use palisade_eval::train::train_token_lm;

const MARKUP: &[&str] = &[
    "](", "**", "\\!--", "}{", "==", "[[", ")}", "\\\\", "<>", "'.", "^{", "|\\", "--)", ".]",
];

/// A GCG-like suffix: printable ASCII `cl100k_base` tokens drawn uniformly, with markup.
fn gcg_suffix(rng: &mut Rng, printable: &[String]) -> String {
    let n = 15 + rng.below(20);
    let mut s = String::new();
    for _ in 0..n {
        if rng.chance(0.2) {
            let m: &&str = rng.pick(MARKUP);
            s.push_str(m);
        } else {
            s.push_str(rng.pick(printable).as_str());
        }
    }
    s
}

fn rate(stats: &[SuffixStats], t: SuffixThresholds) -> f64 {
    if stats.is_empty() {
        return 0.0;
    }
    stats.iter().filter(|s| s.fires(t)).count() as f64 / stats.len() as f64
}

fn group_of(file: &str, r: &palisade_eval::Row) -> String {
    let st = r.subtype.as_deref().unwrap_or("");
    let family = st.split([':', '(']).next().unwrap_or("");
    format!("{file}|{}|{family}", r.source.as_deref().unwrap_or(""))
}

fn fold_of(group: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    (h % 5) as usize
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(
        args.get(1)
            .ok_or("usage: suffix TRAIN_DIR [OUT_ARTIFACT]")?,
    );
    // Benign pools: (text, group, pool name).
    let mut benign: Vec<(String, String, &str)> = Vec::new();
    for r in read_jsonl(&dir.join("benign.jsonl"))? {
        let g = group_of("benign", &r);
        benign.push((r.text, g, "train benign (user)"));
    }
    for r in read_jsonl(&dir.join("indirect.jsonl"))? {
        if r.label() == "benign_context" {
            let g = group_of("indirect", &r);
            benign.push((r.text, g, "train benign_context"));
        }
    }
    let harmful = read_jsonl(&dir.join("harmful_request.jsonl"))?;
    let docs = read_clean_docs(&default_path())?;
    let doc_train: Vec<Vec<u32>> = docs
        .iter()
        .filter(|d| !d.is_heldout())
        .map(|d| tokens(&d.text))
        .collect();
    let benign_tok: Vec<Vec<u32>> = benign.iter().map(|(t, _, _)| tokens(t)).collect();

    // Out-of-fold benign statistics.
    let mut oof = vec![SuffixStats::default(); benign.len()];
    for fold in 0..5 {
        let lm = train_token_lm(
            benign_tok
                .iter()
                .zip(&benign)
                .filter(|(_, b)| fold_of(&b.1) != fold)
                .map(|(t, _)| t.as_slice())
                .chain(doc_train.iter().map(Vec::as_slice)),
        );
        for (i, b) in benign.iter().enumerate() {
            if fold_of(&b.1) == fold {
                oof[i] = suffix_stats(&lm, &b.0);
            }
        }
    }
    let full: TokenLm =
        train_token_lm(benign_tok.iter().chain(doc_train.iter()).map(Vec::as_slice));

    let mut pools: Vec<(String, Vec<SuffixStats>, bool)> = Vec::new();
    let mut by_pool: HashMap<&str, Vec<SuffixStats>> = HashMap::new();
    for (b, s) in benign.iter().zip(&oof) {
        by_pool.entry(b.2).or_default().push(*s);
    }
    let mut names: Vec<&str> = by_pool.keys().copied().collect();
    names.sort_unstable();
    for n in names {
        pools.push((format!("{n} (oof)"), by_pool[n].clone(), false));
    }
    let heldout: Vec<SuffixStats> = docs
        .iter()
        .filter(|d| d.is_heldout())
        .map(|d| suffix_stats(&full, &d.text))
        .collect();
    pools.push(("Debian held-out clean docs".into(), heldout, false));
    let plain: Vec<SuffixStats> = harmful
        .iter()
        .map(|r| suffix_stats(&full, &r.text))
        .collect();
    pools.push(("train harmful_request (plain asks)".into(), plain, false));

    // Synthetic GCG-like attacks on English harmful asks.
    let bpe = palisade_bpe::cl100k()?;
    let printable: Vec<String> = (0..100_000u32)
        .filter_map(|id| bpe.decode_bytes(&[id]).ok())
        .filter_map(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty() && s.bytes().all(|c| (0x20..0x7f).contains(&c)))
        .collect();
    let asks: Vec<&str> = harmful
        .iter()
        .filter(|r| r.lang.as_deref() == Some("en"))
        .map(|r| r.text.as_str())
        .collect();
    let mut rng = Rng::new(7);
    let mut gcg = Vec::new();
    let mut gcg_nl = Vec::new();
    let mut gcg_padded = Vec::new();
    for _ in 0..1000 {
        let ask = *rng.pick(&asks);
        let suf = gcg_suffix(&mut rng, &printable);
        gcg.push(suffix_stats(&full, &format!("{ask} {suf}")));
        let split: String = suf
            .char_indices()
            .map(|(i, c)| {
                if i % 17 == 16 {
                    format!("\n{c}")
                } else {
                    c.to_string()
                }
            })
            .collect();
        gcg_nl.push(suffix_stats(&full, &format!("{ask}\n{split}")));
        let pad = *rng.pick(&asks);
        gcg_padded.push(suffix_stats(
            &full,
            &format!("{pad} {pad} {ask} {suf} {pad} {pad} {pad}"),
        ));
    }
    pools.push(("synth GCG-like suffix".into(), gcg, true));
    pools.push(("synth GCG-like, split by newlines".into(), gcg_nl, true));
    pools.push(("synth GCG-like, padded both sides".into(), gcg_padded, true));

    for (name, stats, _) in &pools {
        let q = |f: &dyn Fn(&SuffixStats) -> f32| {
            let mut v: Vec<f32> = stats.iter().map(f).collect();
            v.sort_by(f32::total_cmp);
            let at = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
            format!("{:.1}/{:.1}/{:.1}", at(0.5), at(0.9), at(0.99))
        };
        println!(
            "{name}: worst {} rest {} best {} worst-best {}",
            q(&|s| s.worst),
            q(&|s| s.rest),
            q(&|s| s.best),
            q(&|s| if s.best > 0.0 { s.worst - s.best } else { 0.0 })
        );
    }
    let grid_w = [17.0f32, 18.0, 18.5, 19.0];
    let grid_c = [2.0f32, 3.0, 4.0, 5.0];
    print!("| pool | rows |");
    for w in grid_w {
        for c in grid_c {
            print!(" {w}/{c} |");
        }
    }
    println!();
    for (name, stats, _) in &pools {
        print!("| {name} | {} |", stats.len());
        for w in grid_w {
            for c in grid_c {
                let t = SuffixThresholds {
                    worst: w,
                    contrast: c,
                };
                print!(" {:.2}% |", 100.0 * rate(stats, t));
            }
        }
        println!();
    }
    println!(
        "\nshipped thresholds worst {} / contrast {}:",
        THRESHOLDS.worst, THRESHOLDS.contrast
    );
    for (name, stats, attack) in &pools {
        println!(
            "  {name}: {:.2}% fire ({})",
            100.0 * rate(stats, THRESHOLDS),
            if *attack { "recall" } else { "false positives" }
        );
    }
    if let Some(out) = args.get(2) {
        let mut model = Model::from_bytes(include_bytes!(
            "../../palisade-detect/model/palisade-detect.model"
        ))?;
        model.tok = full;
        model.meta.token_lm = true;
        std::fs::write(out, model.to_bytes()?)?;
        println!("wrote {out}");
    }
    Ok(())
}
