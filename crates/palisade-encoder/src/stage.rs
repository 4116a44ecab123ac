//! The encoder as the detector's second stage ([`palisade_detect::SecondStage`]): the tuned
//! overlay shipped with this crate, the cascade calibration written into its metadata by the
//! trainer, and the channel mapping.
//!
//! It must not decide verdicts: the detector's cascade (`palisade_detect::cascade`) does.

use palisade_detect::{CascadeCalibration, Channel, LogitScale, SecondStage, SecondStageError};

use crate::{Encoder, EncoderError};

/// SHA-256 of the tuned overlay (top layers and head; `model/tuned.safetensors`, see
/// `model/TRAINING.md`) whose calibration this build ships. The overlay is read from disk
/// next to the base weights (`scripts/fetch-encoder` copies it there), not compiled in: it
/// is 11 MB that every gateway binary carried although only a gateway with the second stage
/// on reads it, and that one reads the base weights from disk anyway.
pub const TUNED_SHA256: &str = "50330d019301440859014041d21cf3332242c2b7336ffa80dbc95f71e11b7fa8";

/// File name of the overlay inside the model directory.
pub const TUNED_FILE: &str = "tuned.safetensors";

/// Where the overlay is committed in the workspace (for tests and tools run from a checkout;
/// a deployed gateway reads it from its model directory).
pub fn committed_overlay() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("model")
        .join(TUNED_FILE)
}

/// The metadata keys of the cascade calibration, in [`CascadeCalibration`] order.
const KEYS: [&str; 6] = [
    "cascade.consult_user",
    "cascade.consult_data",
    "cascade.user_flag",
    "cascade.user_block",
    "cascade.data_flag",
    "cascade.data_block",
];

/// An [`Encoder`] with the calibration that places it in the detector's cascade.
#[derive(Debug)]
pub struct EncoderStage {
    encoder: Encoder,
    calibration: CascadeCalibration,
    version: String,
}

impl EncoderStage {
    /// The shipped overlay on the base model's weights and tokenizer (`scripts/fetch-encoder`).
    /// `tuned` must be the overlay this build pins ([`TUNED_SHA256`]): its calibration is
    /// the one the cascade was measured with.
    pub fn shipped(
        base: &[u8],
        tuned: &[u8],
        tokenizer_json: &[u8],
    ) -> Result<EncoderStage, EncoderError> {
        use sha2::Digest as _;
        let found = hex::encode(sha2::Sha256::digest(tuned));
        if found != TUNED_SHA256 {
            return Err(EncoderError::OverlayDigest {
                found,
                expected: TUNED_SHA256,
            });
        }
        EncoderStage::new(base, tuned, tokenizer_json)
    }

    /// Any overlay that carries a cascade calibration.
    pub fn new(
        base: &[u8],
        tuned: &[u8],
        tokenizer_json: &[u8],
    ) -> Result<EncoderStage, EncoderError> {
        let encoder = Encoder::from_bytes(base, tuned, tokenizer_json)?;
        let calibration = calibration(&encoder)?;
        let version = format!("minilm-l6+{}", palisade_detect::content_hash(tuned));
        Ok(EncoderStage {
            encoder,
            calibration,
            version,
        })
    }

    /// The encoder behind the stage.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }
}

/// Reads the six calibration numbers; all must be present and finite, the block logits
/// above the flag logits.
fn calibration(encoder: &Encoder) -> Result<CascadeCalibration, EncoderError> {
    let extra = &encoder.meta().extra;
    let mut v = [0f32; 6];
    for (slot, key) in v.iter_mut().zip(KEYS) {
        let raw = extra.get(key).ok_or_else(|| EncoderError::Metadata {
            key,
            reason: "missing: the overlay carries no cascade calibration".to_owned(),
        })?;
        *slot = raw
            .trim()
            .parse::<f32>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| EncoderError::Metadata {
                key,
                reason: format!("{raw:?} is not a finite number"),
            })?;
    }
    for (flag, block) in [(2, 3), (4, 5)] {
        if v[block] <= v[flag] {
            return Err(EncoderError::Metadata {
                key: KEYS[block],
                reason: format!("{} is not above {} = {}", v[block], KEYS[flag], v[flag]),
            });
        }
    }
    Ok(CascadeCalibration {
        consult_user: v[0],
        consult_data: v[1],
        user: LogitScale {
            flag: v[2],
            block: v[3],
        },
        data: LogitScale {
            flag: v[4],
            block: v[5],
        },
    })
}

impl SecondStage for EncoderStage {
    fn attack_logit(&self, channel: Channel, text: &str) -> Result<f32, SecondStageError> {
        let logits = self
            .encoder
            .score(channel.as_str(), text)
            .map_err(|e| SecondStageError(e.to_string()))?;
        logits
            .first()
            .copied()
            .ok_or_else(|| SecondStageError("the encoder has no outputs".to_owned()))
    }

    fn calibration(&self) -> CascadeCalibration {
        self.calibration
    }

    fn version(&self) -> &str {
        &self.version
    }
}
