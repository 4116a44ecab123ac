//! Why did the detector score a text as it did? JSON lines in on stdin (`text`, optional
//! `channel`, `system_prompt`), one line per row out: the score and the final layer's largest
//! contributions (standardized input × weight). A diagnosis tool for training data; never
//! point it at `eval/` to tune anything.
//!
//! `cargo run --release -p palisade-eval --example explain -- [MODEL] [TOP] < rows.jsonl`

use std::io::{BufRead as _, Write as _};

use palisade_detect::features::STAGE2_NAMES;
use palisade_detect::{Channel, Detector, ScanInput};

#[derive(serde::Deserialize)]
struct Row {
    text: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    system_prompt: Option<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let detector = match args.first().filter(|a| a.as_str() != "-") {
        Some(p) => Detector::from_model_bytes(&std::fs::read(p)?)?,
        None => Detector::embedded()?,
    };
    let top: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(6);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in std::io::stdin().lock().lines() {
        let row: Row = serde_json::from_str(&line?)?;
        let channel = match row.channel.as_deref() {
            Some("retrieved") => Channel::Retrieved,
            Some("tool_output") => Channel::ToolOutput,
            Some("system") => Channel::System,
            _ => Channel::User,
        };
        let input = ScanInput {
            text: &row.text,
            channel,
            system_prompt: row.system_prompt.as_deref(),
        };
        let a = detector.analyze(&input);
        let meta = &detector.model().meta;
        let layer = match (&meta.stage2_data, channel.is_data()) {
            (Some(d), true) => d,
            _ => &meta.stage2,
        };
        let mut parts: Vec<(f32, &str, f32)> = (0..STAGE2_NAMES.len())
            .map(|i| {
                let z = (a.stage2[i] - layer.mean[i]) / layer.std[i];
                (layer.weights[i] * z, STAGE2_NAMES[i], a.stage2[i])
            })
            .collect();
        parts.sort_by(|x, y| y.0.abs().total_cmp(&x.0.abs()));
        let shown: Vec<String> = parts
            .iter()
            .take(top)
            .map(|(c, n, x)| format!("{n}={x:.2}:{c:+.2}"))
            .collect();
        writeln!(out, "{:.3}\t{}", a.score, shown.join(" "))?;
    }
    Ok(())
}
