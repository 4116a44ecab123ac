//! Errors of the output gate: only configuration can be wrong; sanitizing never fails.

/// Why an output-gate option was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// A link allowlist entry is not a host name or a `*.suffix` pattern: typically a URL
    /// (`https://…`), a path, a port, or a wildcard somewhere other than the first label.
    #[error("invalid host pattern {pattern:?}: {reason}")]
    InvalidHostPattern {
        /// The entry as given.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `max_hold_bytes` is below [`crate::MIN_MAX_HOLD_BYTES`]: the guard could not hold a
    /// URL or a credential whole, so it would have to cut through them.
    #[error("max_hold_bytes {got} is below the minimum of {min}")]
    HoldTooSmall {
        /// The value given.
        got: usize,
        /// The smallest accepted value.
        min: usize,
    },
}
