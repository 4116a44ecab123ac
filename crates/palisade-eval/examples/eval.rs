//! `cargo run --release -p palisade-eval --example eval -- [DIR] [MODEL]`: prints the eval table.
//! With MODEL, evaluates that artifact file instead of the embedded one.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .unwrap_or_else(|| "/work/shared/datasets/eval".into());
    let detector = match args.next() {
        Some(p) => palisade_detect::Detector::from_model_bytes(&std::fs::read(p)?)?,
        None => palisade_detect::Detector::embedded()?,
    };
    println!("{}", palisade_eval::run_eval(dir.as_ref(), &detector)?);
    Ok(())
}
