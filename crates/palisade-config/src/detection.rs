//! `[detection]`: whether the detector's second stage (the fine-tuned encoder) runs, and
//! where its base weights are.
//!
//! Validation checks the form only; it must not read the weights (the gateway does, at
//! start, and reports what it found).

use super::*;

/// The detection cascade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// `off` (the default): first stage only; `auto`: use the second stage when its weights
    /// are present, otherwise run the first stage alone and say so at start and in `/readyz`;
    /// `required`: refuse to start without it. Off by default because the shipped encoder
    /// does not yet earn its place: on `eval/` it raised the benign flag rate from 1.8% to 4.9%
    /// (see `crates/palisade-encoder/model/TRAINING.md`).
    pub second_stage: SecondStageMode,
    /// Directory holding the base encoder's `model.safetensors` and `tokenizer.json`
    /// (`scripts/fetch-encoder` puts them in `models/minilm-l6`). Relative paths are read
    /// from the working directory.
    pub model_dir: PathBuf,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            second_stage: SecondStageMode::Off,
            model_dir: PathBuf::from("models/minilm-l6"),
        }
    }
}

/// When the second stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondStageMode {
    /// When its weights are present.
    Auto,
    /// Always; start fails without it.
    Required,
    /// Never.
    Off,
}

impl DetectionConfig {
    /// A model directory must be named when the second stage can run.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.second_stage != SecondStageMode::Off && self.model_dir.as_os_str().is_empty() {
            return Err(invalid(
                "detection.model_dir",
                "must name the directory of the encoder's weights (or set detection.second_stage = \"off\")",
            ));
        }
        Ok(())
    }
}
