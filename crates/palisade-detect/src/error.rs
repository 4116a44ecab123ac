//! Errors of the detection engine.

/// Why a detector could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// The artifact does not start with the expected magic bytes: not a Palisade model, or a
    /// format from an incompatible version.
    #[error("model artifact has a bad magic number")]
    BadMagic,
    /// The artifact ends early or has trailing bytes: a truncated or corrupted file.
    #[error("model artifact is truncated or has trailing bytes")]
    Truncated,
    /// The JSON header is malformed or does not match this build's feature layout (the model
    /// was trained by a different version of the crate).
    #[error("model artifact header is invalid: {0}")]
    BadHeader(String),
    /// A caller-supplied threshold is outside `[0, 1]` or flag > block.
    #[error("invalid thresholds: flag {flag}, block {block}")]
    BadThresholds {
        /// The flag threshold given.
        flag: f32,
        /// The block threshold given.
        block: f32,
    },
}
