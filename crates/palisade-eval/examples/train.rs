//! Reproducible training command:
//! `cargo run --release -p palisade-eval --example train -- [TRAIN_DIR] [OUT] [SEED] [--clean-docs]`
//! Defaults: `/work/shared/datasets/train`, `crates/palisade-detect/model/palisade-detect.model`, 42.
//! `--clean-docs` adds the committed clean-document corpus (`crates/palisade-eval/data/`)
//! and the synthetic tool outputs built on it; without it the shipped artifact is reproduced.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (flags, mut args): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    args.reverse();
    let train = args
        .pop()
        .unwrap_or_else(|| "/work/shared/datasets/train".into());
    let out = args
        .pop()
        .unwrap_or_else(|| "crates/palisade-detect/model/palisade-detect.model".into());
    let seed: u64 = args.pop().map(|s| s.parse()).transpose()?.unwrap_or(42);
    let options = palisade_eval::TrainOptions::from_flags(flags.iter().map(String::as_str))?;
    let t = std::time::Instant::now();
    let r = palisade_eval::run_train_with(train.as_ref(), out.as_ref(), seed, &options)?;
    println!("{}", r.markdown);
    eprintln!(
        "trained {} examples in {:.1}s -> {} ({} bytes)",
        r.examples,
        t.elapsed().as_secs_f64(),
        out,
        r.artifact_bytes
    );
    Ok(())
}
