//! The signed manifest: what a bundle vouches for. Every field is covered
//! by the signature through the manifest's canonical JSON.
//!
//! Unknown members are refused (`deny_unknown_fields`): a field this build
//! does not understand must not ride along under a valid signature.

use serde::{Deserialize, Serialize};

/// The manifest of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`crate::FORMAT`].
    pub format: String,
    /// Monotonically increasing across the bundles of a fleet.
    pub serial: u64,
    /// Signing time, unix seconds (given by the signer; used for key
    /// rotation and the propagation metric). 0 before signing.
    pub created_at: u64,
    /// The id of the signing key (first 8 bytes of the public key, hex).
    /// Empty before signing.
    pub key_id: String,
    /// A free-form label for operators (`prod-2026-12-06`).
    pub label: Option<String>,
    /// The policy file, inline.
    pub policy: PolicyPart,
    /// The detector artifact (model file) this bundle expects, by digest;
    /// the bytes travel beside the manifest when the signer included them.
    pub detector: Option<ArtifactRef>,
    /// Detector threshold / calibration overrides.
    pub thresholds: Option<ThresholdOverrides>,
    /// Extra hosts the output gate's link check leaves alone, merged into
    /// the policy's `[links] allowed_domains`.
    pub link_allowlist: Vec<String>,
}

/// The policy file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPart {
    /// Hex SHA-256 of `toml` (for `inspect` and logs).
    pub sha256: String,
    /// The policy document (TOML).
    pub toml: String,
}

/// An artifact named by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRef {
    /// Hex SHA-256 of the artifact's bytes.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Detector threshold overrides (scores in `[0, 1]`, `flag <= block`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdOverrides {
    /// Scores at or above this are flagged.
    pub flag: f64,
    /// Scores at or above this are blocked.
    pub block: f64,
}

impl ThresholdOverrides {
    /// Both in `[0, 1]` and `flag <= block`.
    pub fn is_valid(&self) -> bool {
        (0.0..=1.0).contains(&self.flag)
            && (0.0..=1.0).contains(&self.block)
            && self.flag <= self.block
    }
}
