//! Why a bundle was refused: one typed reason per rule, worded for the
//! operator who reads it in a log line or from `palisade bundle verify`.

/// Why a bundle could not be built, signed, verified or activated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// More bytes than the caller's bound; refused before parsing.
    #[error("the bundle is {size} bytes, over the limit of {max}")]
    TooLarge {
        /// Bytes offered (at least; a reader may stop early).
        size: usize,
        /// The bound.
        max: usize,
    },
    /// Not a bundle envelope (truncated, not JSON, unknown or missing members).
    #[error("not a bundle: {0}")]
    Malformed(String),
    /// Another format tag than `palisade-bundle-v1`.
    #[error("unknown bundle format {0:?} (this build reads palisade-bundle-v1)")]
    UnknownFormat(String),
    /// A built bundle that was never signed.
    #[error("the bundle is not signed (run `palisade bundle sign`)")]
    Unsigned,
    /// The signer's key id is not among the trusted keys.
    #[error("signed by key {0}, which this replica does not trust")]
    UntrustedKey(String),
    /// The signature does not match the manifest (edited after signing, or
    /// signed by another key under the same id).
    #[error("the signature does not match the bundle (edited after signing?)")]
    BadSignature,
    /// The signing key was rotated out: the bundle was signed after its
    /// `not_after`, or its window has closed.
    #[error("signed by key {key_id}, retired at {not_after} (unix seconds): {why}")]
    KeyRetired {
        /// The retired key.
        key_id: String,
        /// The end of its overlap window.
        not_after: u64,
        /// Which of the two rules refused it.
        why: &'static str,
    },
    /// A part does not match the digest the manifest signs.
    #[error("the {0} does not match the digest in the signed manifest")]
    ContentMismatch(&'static str),
    /// A field with an impossible value (thresholds out of range, an empty host).
    #[error("invalid bundle: {0}")]
    Invalid(String),
    /// Validly signed, but older than the bundle this replica runs.
    #[error(
        "bundle serial {serial} is lower than the running serial {running}: an older bundle is \
         not reinstated"
    )]
    OlderSerial {
        /// The offered serial.
        serial: u64,
        /// The running one.
        running: u64,
    },
    /// The running serial, with different content: a serial names one bundle.
    #[error("bundle serial {serial} is already running with different content; sign a new serial")]
    SerialReuse {
        /// The serial.
        serial: u64,
    },
    /// Validly signed, but below the serial floor the operator configured
    /// (`bundle.min_serial`): a replica with no history still refuses a
    /// replayed old bundle.
    #[error(
        "bundle serial {serial} is below this replica's minimum serial {min_serial} \
         (bundle.min_serial): an older bundle is not reinstated"
    )]
    BelowMinSerial {
        /// The offered serial.
        serial: u64,
        /// The configured floor.
        min_serial: u64,
    },
    /// Validly signed, but signed longer ago than the operator allows
    /// (`bundle.max_age_s`), or dated in the future beyond the allowed skew.
    #[error(
        "bundle signed at {created_at} (unix seconds) is {why} (bundle.max_age_s = {max_age_s}); \
         re-sign it with a new serial"
    )]
    Stale {
        /// When it was signed.
        created_at: u64,
        /// The configured bound.
        max_age_s: u64,
        /// Too old, or from the future.
        why: &'static str,
    },
    /// A key or seed that is not usable.
    #[error("bad key: {0}")]
    BadKey(String),
}
