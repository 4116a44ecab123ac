//! Scores one text from the command line: the smallest binary linking the
//! crate (its stripped size is the crate's binary-size cost).
//!
//!     cargo run --release -p palisade-encoder --example score -- \
//!         models/minilm-l6 crates/palisade-encoder/tests/fixtures/overlay.safetensors retrieved "text"

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model_dir, overlay, channel, text] = args.as_slice() else {
        return Err("usage: score <model-dir> <overlay.safetensors> <channel> <text>".into());
    };
    let dir = Path::new(model_dir);
    let encoder = palisade_encoder::Encoder::from_bytes(
        &std::fs::read(dir.join("model.safetensors"))?,
        &std::fs::read(overlay)?,
        &std::fs::read(dir.join("tokenizer.json"))?,
    )?;
    let logits = encoder.score(channel, text)?;
    for (name, logit) in encoder.outputs().iter().zip(logits) {
        println!("{name}\t{logit:.6}");
    }
    Ok(())
}
