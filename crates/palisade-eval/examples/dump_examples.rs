//! Writes every example stage-1 training sees (train files, synthetic examples, and with
//! `--clean-docs` the clean-document corpus) as JSON lines, for the second-stage encoder
//! trainer (`crates/palisade-encoder/python/train.py`). Reads only `train/`, never `eval/`.
//!
//! `cargo run --release -p palisade-eval --example dump_examples -- [TRAIN_DIR] [OUT] [SEED] [--clean-docs]`

use std::io::Write as _;

use palisade_eval::synth::Kind;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (flags, mut args): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    args.reverse();
    let train = args
        .pop()
        .unwrap_or_else(|| "/work/shared/datasets/train".into());
    let out = args.pop().unwrap_or_else(|| "target/examples.jsonl".into());
    let seed: u64 = args.pop().map(|s| s.parse()).transpose()?.unwrap_or(42);
    let options = palisade_eval::TrainOptions::from_flags(flags.iter().map(String::as_str))?;
    let examples = palisade_eval::training_examples(train.as_ref(), seed, &options)?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(&out)?);
    for e in &examples {
        let kind = match e.kind {
            Kind::Attack => "attack",
            Kind::BenignUser => "benign_user",
            Kind::BenignContext => "benign_context",
            Kind::Harmful => "harmful",
        };
        let line = serde_json::json!({
            "text": e.text,
            "channel": e.channel.as_str(),
            "system_prompt": e.sp,
            "kind": kind,
            "jailbreak": e.jb,
            "source": e.source,
            "group": e.group,
        });
        writeln!(w, "{line}")?;
    }
    w.flush()?;
    eprintln!("{} examples -> {out}", examples.len());
    Ok(())
}
