//! Writes the first stage's out-of-fold scores for every training example, as JSON lines in
//! the order `dump_examples` writes them (same arguments, same flags): `index`, `source`,
//! `channel`, `kind`, `fold`, `score` (the view training calibrated on) and `score_grouped`
//! (heads that never saw the row's source family). Reads only `train/`, never `eval/`.
//!
//! Run it with the flags the shipped artifact was trained with (none today), so the scores
//! are those of the shipped first stage's cross-validation:
//! `cargo run --release -p palisade-eval --example oof_scores -- [TRAIN_DIR] [OUT] [SEED] [--clean-docs]`

use std::io::Write as _;

use palisade_eval::synth::Kind;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (flags, mut args): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    args.reverse();
    let train = args
        .pop()
        .unwrap_or_else(|| "/work/shared/datasets/train".into());
    let out = args
        .pop()
        .unwrap_or_else(|| "target/oof_scores.jsonl".into());
    let seed: u64 = args.pop().map(|s| s.parse()).transpose()?.unwrap_or(42);
    let options = palisade_eval::TrainOptions::from_flags(flags.iter().map(String::as_str))?;
    let t = std::time::Instant::now();
    let oof = palisade_eval::out_of_fold_scores(train.as_ref(), seed, &options)?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(&out)?);
    for (index, r) in oof.rows.iter().enumerate() {
        let e = &r.example;
        let kind = match e.kind {
            Kind::Attack => "attack",
            Kind::BenignUser => "benign_user",
            Kind::BenignContext => "benign_context",
            Kind::Harmful => "harmful",
        };
        let line = serde_json::json!({
            "index": index,
            "source": e.source,
            "channel": e.channel.as_str(),
            "kind": kind,
            "fold": r.fold,
            "score": r.score,
            "score_grouped": r.score_grouped,
        });
        writeln!(w, "{line}")?;
    }
    w.flush()?;
    eprintln!(
        "{} rows -> {out} in {:.0}s; thresholds flag {:.4} block {:.4}, data offset {:.3}",
        oof.rows.len(),
        t.elapsed().as_secs_f64(),
        oof.thresholds.flag,
        oof.thresholds.block,
        oof.data_offset
    );
    Ok(())
}
