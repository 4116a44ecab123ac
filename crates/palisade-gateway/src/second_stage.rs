//! Loads the detector's second stage (the fine-tuned encoder) as `[detection]` asks: reads
//! the base weights and tokenizer from `model_dir`, attaches the shipped overlay, and says
//! plainly when it runs without one.
//!
//! This is the only place the gateway reads encoder files, and it holds the per-request
//! bound on second-stage work; it must not score anything.

use std::path::Path;
use std::sync::Arc;

use palisade_config::{DetectionConfig, SecondStageMode};
use palisade_detect::SecondStage;

use crate::state::GatewayError;

/// Texts per request the second stage may judge (each costs up to its window cap, ~12 ms
/// per window on one core): a request of hundreds of texts must not hold a CPU worker for
/// seconds. Later texts are judged by the first stage alone, as without a second stage.
pub(crate) const SCANS_PER_REQUEST: usize = 8;

/// What start-up found.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Loaded: the detector consults it.
    Attached(Arc<dyn SecondStage>),
    /// `auto` and the weights are missing or unreadable: first stage only, with the reason.
    Missing(String),
    /// `second_stage = "off"`.
    Off,
}

/// Loads the second stage; an error only when it is `required` and cannot be loaded.
pub(crate) fn load(config: &DetectionConfig) -> Result<Outcome, GatewayError> {
    if config.second_stage == SecondStageMode::Off {
        return Ok(Outcome::Off);
    }
    match read(&config.model_dir) {
        Ok(stage) => Ok(Outcome::Attached(stage)),
        Err(message) if config.second_stage == SecondStageMode::Auto => {
            Ok(Outcome::Missing(message))
        }
        Err(message) => Err(GatewayError::SecondStage {
            dir: config.model_dir.display().to_string(),
            message,
        }),
    }
}

fn read(dir: &Path) -> Result<Arc<dyn SecondStage>, String> {
    let file = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| {
            format!(
                "{}: {e} (run scripts/fetch-encoder, or set detection.model_dir)",
                path.display()
            )
        })
    };
    let base = file("model.safetensors")?;
    let tokenizer = file("tokenizer.json")?;
    let tuned = file(palisade_encoder::TUNED_FILE)?;
    let stage = palisade_encoder::EncoderStage::shipped(&base, &tuned, &tokenizer)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(Arc::new(stage))
}
