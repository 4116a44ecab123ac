//! The signed manifest: what a bundle vouches for. Every field is covered
//! by the signature through the manifest's canonical JSON.
//!
//! Unknown members are refused (`deny_unknown_fields`): a field this build
//! does not understand must not ride along under a valid signature.

use serde::{Deserialize, Serialize};

use crate::BundleError;

/// Most characters of a TOML error repeated in a refusal.
const MESSAGE_CAP: usize = 160;

fn cap(message: String) -> String {
    message.chars().take(MESSAGE_CAP).collect()
}

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

impl Manifest {
    /// The policy document with the bundle's link allowlist merged into
    /// `[links] allowed_domains`; compile it with `Snapshot::from_toml`.
    ///
    /// # Errors
    /// [`BundleError::Invalid`] when the policy is not TOML or `[links]`
    /// has an unexpected shape.
    pub fn effective_policy_toml(&self) -> Result<String, BundleError> {
        let m = self;
        if m.link_allowlist.is_empty() {
            return Ok(m.policy.toml.clone());
        }
        let mut doc: toml::Table = toml::from_str(&m.policy.toml)
            .map_err(|e| BundleError::Invalid(cap(format!("policy: {e}"))))?;
        let links = doc
            .entry("links")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(links) = links else {
            return Err(BundleError::Invalid(
                "policy: [links] is not a table".to_owned(),
            ));
        };
        let domains = links
            .entry("allowed_domains")
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        let toml::Value::Array(domains) = domains else {
            return Err(BundleError::Invalid(
                "policy: links.allowed_domains is not an array".to_owned(),
            ));
        };
        for host in &m.link_allowlist {
            let value = toml::Value::String(host.clone());
            if !domains.contains(&value) {
                domains.push(value);
            }
        }
        toml::to_string(&doc).map_err(|e| BundleError::Invalid(cap(format!("policy: {e}"))))
    }
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
