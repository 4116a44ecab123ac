//! `cargo run --release -p palisade-eval --example eval -- [DIR] [MODEL|-] [--second-stage MODEL_DIR]`:
//! prints the eval table. With MODEL, evaluates that artifact file instead of the embedded
//! one (`-`: embedded). With `--second-stage`, the shipped encoder overlay on the base weights
//! in MODEL_DIR (`scripts/fetch-encoder`: `models/minilm-l6`) joins as the cascade's second stage.

use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let second = match args.iter().position(|a| a == "--second-stage") {
        Some(i) if i + 1 < args.len() => {
            let dir = std::path::PathBuf::from(args.remove(i + 1));
            args.remove(i);
            Some(dir)
        }
        Some(_) => return Err("--second-stage needs a directory".into()),
        None => None,
    };
    let mut args = args.into_iter();
    let dir = args
        .next()
        .unwrap_or_else(|| "/work/shared/datasets/eval".into());
    let mut detector = match args.next().filter(|p| p != "-") {
        Some(p) => palisade_detect::Detector::from_model_bytes(&std::fs::read(p)?)?,
        None => palisade_detect::Detector::embedded()?,
    };
    if let Some(model_dir) = second {
        let base = std::fs::read(model_dir.join("model.safetensors"))?;
        let tokenizer = std::fs::read(model_dir.join("tokenizer.json"))?;
        let tuned = std::fs::read(model_dir.join(palisade_encoder::TUNED_FILE))?;
        let stage = palisade_encoder::EncoderStage::shipped(&base, &tuned, &tokenizer)?;
        detector = detector.with_second_stage(Arc::new(stage));
    }
    println!("{}", palisade_eval::run_eval(dir.as_ref(), &detector)?);
    Ok(())
}
