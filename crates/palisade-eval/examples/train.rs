//! Reproducible training command:
//! `cargo run --release -p palisade-eval --example train -- [TRAIN_DIR] [OUT] [SEED]`
//! Defaults: `/work/shared/datasets/train`, `crates/palisade-detect/model/palisade-detect.model`, 42.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let train = args
        .next()
        .unwrap_or_else(|| "/work/shared/datasets/train".into());
    let out = args
        .next()
        .unwrap_or_else(|| "crates/palisade-detect/model/palisade-detect.model".into());
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(42);
    let t = std::time::Instant::now();
    let r = palisade_eval::run_train(train.as_ref(), out.as_ref(), seed)?;
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
