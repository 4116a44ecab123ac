//! Output watermarking (issue #16): a keyed unigram green list (Zhao et al.,
//! "Provable Robust Watermarking for AI-Generated Text", ICLR 2024) that an
//! upstream applies as a `logit_bias` map, and the detector that tells
//! watermarked text from plain text with a z-test.
//!
//! - [`key`]: a tenant's key for one rotation period, HMAC-derived from the
//!   operator's master key (the same derivation the CLI repeats for
//!   forensics), and which period an instant falls in.
//! - [`green`]: the green list (a keyed PRF over token ids; exactly
//!   `round(gamma * vocab)` tokens are green) and the bias map.
//! - [`score`]: the z-score of a token sequence against a green list (each
//!   distinct token counted once, as Zhao et al. do, so repetition cannot
//!   inflate it), with an exact binomial and a normal p-value, and the
//!   ranking of many candidate keys for forensics.
//! - [`request`]: putting the bias map into a request body, stripping or
//!   merging the client's own `logit_bias` (and every field that changes how
//!   an upstream reads it).
//!
//! Must not: do I/O, read a clock (periods are computed from the `now_ms`
//! the caller passes), draw randomness, or tokenize (the caller hands token
//! ids in; tokenizers live in `palisade-openai`).

pub mod green;
pub mod key;
pub mod request;
pub mod score;

pub use green::{GreenList, DEFAULT_DELTA, DEFAULT_GAMMA};
pub use key::{derive_key, period_of, Key};
pub use request::{apply, Applied, ClientBias, LogprobsAction, Marking};
pub use score::{rank, score, Score, DEFAULT_FPR};

/// What cannot be watermarked or scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WatermarkError {
    /// `gamma` must leave both lists non-empty: a value outside (0, 1), or a
    /// vocabulary too small for it to pick at least one green and one red
    /// token (a configuration error).
    #[error("gamma {gamma} leaves no green or no red token in a vocabulary of {vocab}")]
    Gamma {
        /// The configured fraction.
        gamma: f64,
        /// The vocabulary size.
        vocab: u32,
    },
    /// The bias is not a finite number in the OpenAI range (0, 100].
    #[error("delta {0} is outside (0, 100]")]
    Delta(f32),
    /// The rotation period is zero (a configuration error).
    #[error("the rotation period must be positive")]
    Rotation,
}
