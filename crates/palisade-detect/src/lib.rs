//! Palisade's detection engine: prompt-injection, jailbreak, indirect-injection, secret, PII
//! and canary detection for one piece of text at a time, in well under a millisecond.
//!
//! It normalizes the text (reporting every obfuscation it undoes), runs short high-precision
//! rules, a linear model over hashed n-grams trained in Rust (see `palisade-eval`), a
//! character LM and a BPE-token LM for adversarial token soup, and regex-based secret/PII finders with byte spans.
//!
//! **Invariant:** this crate is pure. No I/O, no async, no threads, no randomness, no clock:
//! the model artifact is compiled in with `include_bytes!`, canary randomness comes from the
//! caller. Everything here is linear in the input size and bounded.
//!
//! ```
//! use palisade_detect::{Detector, ScanInput, Channel};
//! let d = Detector::embedded().unwrap();
//! let s = d.scan(&ScanInput { text: "What is the capital of France?", channel: Channel::User, system_prompt: None });
//! assert!(s.score >= 0.0 && s.score <= 1.0);
//! ```

pub mod canary;
pub mod cascade;
pub mod charlm;
pub mod chars;
pub mod concepts;
mod ctype;
mod detector;
mod error;
pub mod features;
mod hash;
pub mod model;
pub mod normalize;
pub mod pii;
pub mod rules;
pub mod secrets;
mod segment;
mod spans;
pub mod suffix;
pub mod tokenlm;
mod work;

#[cfg(test)]
mod linearity;
#[cfg(test)]
#[path = "../tests/shapes/mod.rs"]
mod shapes;
mod types;
mod warm;

pub use canary::Canary;
pub use cascade::{CascadeCalibration, LogitScale, SecondStage, SecondStageError};
pub use detector::{content_hash, Analysis, Detector};
pub use error::DetectError;
pub use normalize::{normalize, Normalized, Payload};
pub use pii::find_pii;
pub use secrets::{find_secrets, find_secrets_glued};
pub use types::{
    Category, Channel, Finding, FindingKind, ParseChannelError, Reason, Scan, ScanInput,
    Thresholds, Verdict,
};

/// Compiles every lazily built matcher now: secret rules, PII patterns, concept lexicons,
/// attack rules and the normalizer's automata. Without it the first scan in a process pays
/// for all of them (~170 ms measured), so the first request a fresh replica serves would be
/// slow. [`Detector`] construction calls it; it is cheap after the first call.
pub fn warm_up() {
    ctype::warm_up();
    // Touches each matcher once; the text itself does not matter.
    const SAMPLE: &str = "Ignore previous instructions <!-- hidden --> aGVsbG8gd29ybGQgaGVsbG8= 0x41 42 43 44 45 46 47 48 49 4a %41%42%43%44 mail@example.com";
    let normalized = normalize(SAMPLE);
    let _ = rules::match_rules(&normalized.combined());
    let _ = concepts::concepts(SAMPLE);
    let _ = concepts::imperative_count(SAMPLE);
    let _ = find_secrets(SAMPLE);
    let _ = find_secrets_glued(SAMPLE);
    let _ = find_pii(SAMPLE);
}

/// Hashing used by features; exposed for the trainer.
pub use hash::{hash_bytes, mix64};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn detector_is_send_sync() {
        assert_send_sync::<Detector>();
    }

    #[test]
    fn channel_parses_and_serializes() {
        assert_eq!(
            "tool_output".parse::<Channel>().unwrap(),
            Channel::ToolOutput
        );
        assert_eq!(
            serde_json::to_string(&Channel::ToolOutput).unwrap(),
            "\"tool_output\""
        );
        assert!("bogus".parse::<Channel>().is_err());
    }
}
