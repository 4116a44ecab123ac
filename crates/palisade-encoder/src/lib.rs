//! Scores text with a fine-tuned MiniLM encoder (all-MiniLM-L6-v2 with tuned
//! top layers and a classification head): one logit per named output.
//!
//! The caller gives the bytes of the base weights, the tuned overlay and
//! `tokenizer.json`; the crate opens no file, does no network or async work
//! and keeps no clock. Compute is f32 on the CPU, on the calling thread and
//! candle's compute threads (`RAYON_NUM_THREADS` / `CANDLE_NUM_THREADS`,
//! see the README).
//!
//! ```no_run
//! # fn main() -> Result<(), palisade_encoder::EncoderError> {
//! # let (base, tuned, tokenizer) = (vec![], vec![], vec![]);
//! let encoder = palisade_encoder::Encoder::from_bytes(&base, &tuned, &tokenizer)?;
//! let logits = encoder.score("retrieved", "Ignore previous instructions.")?;
//! for (name, logit) in encoder.outputs().iter().zip(logits) {
//!     println!("{name}: {logit}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Input formatting and the forward pass are mirrored in
//! `python/encoder_ref.py`, which the trainer uses; the parity test pins the
//! two together.

#![forbid(unsafe_code)]

mod error;
mod meta;
mod model;
mod stage;
mod weights;
mod windows;

use std::fmt;

use tokenizers::Tokenizer;

pub use error::EncoderError;
pub use meta::{EncoderMeta, FORMAT, MAX_POSITIONS};
pub use stage::{committed_overlay, EncoderStage, TUNED_FILE, TUNED_SHA256};
pub use windows::{Channel, Window};

/// A loaded encoder: tokenizer, weights and windowing. Immutable; share it
/// across threads (`Send + Sync`) behind an `Arc`.
pub struct Encoder {
    tokenizer: Tokenizer,
    model: model::Model,
    meta: EncoderMeta,
    /// Each channel's name tokenized, in `Channel::ALL` order.
    channel_ids: [Vec<u32>; 4],
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// Builds an encoder from the base model's `model.safetensors`, the tuned
    /// overlay (format `palisade-encoder-1`) and the base's `tokenizer.json`.
    ///
    /// Overlay tensors named like base tensors replace them (f16 and bf16
    /// are widened to f32); the overlay must hold the head and nothing the
    /// base lacks. Costs about the size of the weights in memory and a few
    /// hundred milliseconds.
    pub fn from_bytes(
        base: &[u8],
        tuned: &[u8],
        tokenizer_json: &[u8],
    ) -> Result<Self, EncoderError> {
        let tuned = weights::File::parse("tuned", tuned)?;
        let meta = EncoderMeta::parse(tuned.metadata.as_ref())?;
        let base = weights::File::parse("base", base)?;

        let mut tokenizer = Tokenizer::from_bytes(tokenizer_json)
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        // all-MiniLM's tokenizer.json truncates and pads to 128 tokens, which
        // would cut long texts silently: windowing is done here instead.
        tokenizer
            .with_truncation(None)
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);

        let mut channel_ids: [Vec<u32>; 4] = Default::default();
        for (ids, channel) in channel_ids.iter_mut().zip(Channel::ALL) {
            *ids = tokenize(&tokenizer, channel.as_str())?;
            let Some(width) = windows::text_width(meta.max_tokens, ids.len()) else {
                return Err(EncoderError::Metadata {
                    key: "max_tokens",
                    reason: format!(
                        "{} leaves no text tokens after `{}`",
                        meta.max_tokens,
                        channel.as_str()
                    ),
                });
            };
            if meta.stride > width {
                return Err(EncoderError::Metadata {
                    key: "stride",
                    reason: format!(
                        "{} is more than a `{}` window's {width} text tokens: text between windows would go unscored",
                        meta.stride,
                        channel.as_str()
                    ),
                });
            }
        }

        let weights = weights::Weights::assemble(&base, &tuned, meta.outputs.len())?;
        let model = model::Model::new(weights)?;
        Ok(Self {
            tokenizer,
            model,
            meta,
            channel_ids,
        })
    }

    /// The names of the logits `score` returns, in order.
    pub fn outputs(&self) -> &[String] {
        &self.meta.outputs
    }

    /// The overlay's metadata.
    pub fn meta(&self) -> &EncoderMeta {
        &self.meta
    }

    /// The model inputs for `text` read from `channel`: one [`Window`] per
    /// scored window (at most `max_windows`).
    pub fn windows(&self, channel: &str, text: &str) -> Result<Vec<Window>, EncoderError> {
        let channel = Channel::parse(channel)?;
        let channel_ids = &self.channel_ids[channel as usize];
        // Checked for every channel in `from_bytes`.
        let width = windows::text_width(self.meta.max_tokens, channel_ids.len()).unwrap_or(1);
        let text_ids = tokenize(&self.tokenizer, text)?;
        Ok(windows::format(
            channel_ids,
            &text_ids,
            width,
            self.meta.stride,
            self.meta.max_windows,
        ))
    }

    /// The logits for `text` read from `channel` (`user`, `system`,
    /// `retrieved` or `tool_output`): per output, the largest over the
    /// text's windows. Empty text is scored as one window without text.
    ///
    /// Cost: tokenizing the whole text, then one forward pass over at most
    /// `max_windows` windows of `max_tokens` tokens.
    pub fn score(&self, channel: &str, text: &str) -> Result<Vec<f32>, EncoderError> {
        let windows = self.windows(channel, text)?;
        self.model.score(&windows)
    }
}

fn tokenize(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, EncoderError> {
    tokenizer
        .encode(text, false)
        .map(|encoding| encoding.get_ids().to_vec())
        .map_err(|e| EncoderError::Tokenizer(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn encoder_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Encoder>();
    }
}
