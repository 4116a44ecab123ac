//! The crate's one error type.
//!
//! Every way loading or scoring can fail is a variant here, documented with
//! its likely cause; nothing in the crate panics on bad input bytes.

/// Why an [`Encoder`](crate::Encoder) could not be built or could not score.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncoderError {
    /// A safetensors file could not be parsed: truncated or corrupt bytes,
    /// or not a safetensors file at all (`which` is `base` or `tuned`).
    #[error("{which} weights are not a valid safetensors file: {reason}")]
    Safetensors {
        /// `base` or `tuned`.
        which: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// The overlay's `__metadata__.format` is missing or is not
    /// `palisade-encoder-1`: an overlay from another trainer version, or a
    /// plain model file passed as the overlay.
    #[error("tuned weights have format {found:?}, expected {expected:?}")]
    Format {
        /// What the file says (`None`: no `format` key).
        found: Option<String>,
        /// The only format this crate reads.
        expected: &'static str,
    },
    /// A metadata key is missing or its value is unusable (not a number,
    /// zero, larger than the model allows, an empty output name, …): the
    /// trainer wrote an inconsistent overlay.
    #[error("tuned weights metadata `{key}`: {reason}")]
    Metadata {
        /// The `__metadata__` key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor the model needs is in neither file: a truncated base file
    /// or an overlay without its head.
    #[error("tensor `{name}` is missing")]
    MissingTensor {
        /// The tensor's name.
        name: String,
    },
    /// The overlay holds a tensor that is neither a base tensor nor part of
    /// the head, e.g. a `bert.`-prefixed name: refused rather than silently
    /// ignored, which would score with the untuned layer.
    #[error("tuned tensor `{name}` is not in the base model nor the head")]
    UnexpectedTensor {
        /// The tensor's name.
        name: String,
    },
    /// A tensor has the wrong shape: an overlay trained for another base
    /// model, or a head whose sizes disagree with each other or with the
    /// number of outputs.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A tensor is stored in a type the model cannot use (only f32, f16 and
    /// bf16 weights are read).
    #[error("tensor `{name}` has dtype {found}, expected a float type")]
    DType {
        /// The tensor's name.
        name: String,
        /// The stored dtype.
        found: String,
    },
    /// The overlay is not the one this build's cascade was calibrated for
    /// ([`crate::TUNED_SHA256`]): another trainer run, or a damaged copy.
    #[error("tuned overlay has sha256 {found}, this build expects {expected}")]
    OverlayDigest {
        /// The file's SHA-256 (hex).
        found: String,
        /// [`crate::TUNED_SHA256`].
        expected: &'static str,
    },
    /// The tokenizer.json could not be parsed, or tokenizing failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// `channel` is not one of `user`, `system`, `retrieved`, `tool_output`:
    /// a caller bug (channels come from Palisade, not from clients).
    #[error("unknown channel {0:?}")]
    Channel(String),
    /// The tensor library failed building or running the model; with valid
    /// weights this points at a bug in this crate.
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
}
