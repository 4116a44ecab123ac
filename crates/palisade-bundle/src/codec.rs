//! Building, encoding, signing and verifying a bundle.
//!
//! [`Bundle`] is any decoded envelope (possibly unsigned, never trusted);
//! [`VerifiedBundle`] exists only through [`verify`], so code that activates
//! a bundle cannot be handed an unverified one by mistake.

use base64::Engine as _;
use palisade_policy::signature::sign_domain;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::manifest::{ArtifactRef, Manifest, PolicyPart, ThresholdOverrides};
use crate::{BundleError, TrustStore, FORMAT};

/// Most characters of a parser message repeated in an error (hostile input
/// must not fill logs).
const MESSAGE_CAP: usize = 160;

/// The wire form.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    manifest: Manifest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detector_artifact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

/// What `palisade bundle build` puts in a bundle.
#[derive(Debug, Clone, Default)]
pub struct BuildInput {
    /// The serial (must rise with every bundle the fleet gets).
    pub serial: u64,
    /// A label for operators.
    pub label: Option<String>,
    /// The policy document (TOML).
    pub policy_toml: String,
    /// The detector artifact's bytes, to ship it.
    pub detector_artifact: Option<Vec<u8>>,
    /// Or only its digest (hex SHA-256) and size, when replicas have it.
    pub detector_ref: Option<ArtifactRef>,
    /// Detector threshold overrides.
    pub thresholds: Option<ThresholdOverrides>,
    /// Extra link hosts.
    pub link_allowlist: Vec<String>,
}

/// A decoded bundle; not trusted until [`verify`] says so.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    manifest: Manifest,
    detector_artifact: Option<Vec<u8>>,
    signature: Option<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn cap(message: String) -> String {
    message.chars().take(MESSAGE_CAP).collect()
}

impl Bundle {
    /// An unsigned bundle from its parts.
    ///
    /// # Errors
    /// [`BundleError::Invalid`] for thresholds out of range, an empty or
    /// non-ASCII host, a malformed digest, or an artifact that contradicts
    /// the digest given with it.
    pub fn build(input: BuildInput) -> Result<Bundle, BundleError> {
        let detector = match (&input.detector_artifact, input.detector_ref) {
            (Some(bytes), given) => {
                let computed = ArtifactRef {
                    sha256: sha256_hex(bytes),
                    size: bytes.len() as u64,
                };
                if given.is_some_and(|g| g != computed) {
                    return Err(BundleError::ContentMismatch("detector artifact"));
                }
                Some(computed)
            }
            (None, given) => given,
        };
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            serial: input.serial,
            created_at: 0,
            key_id: String::new(),
            label: input.label,
            policy: PolicyPart {
                sha256: sha256_hex(input.policy_toml.as_bytes()),
                toml: input.policy_toml,
            },
            detector,
            thresholds: input.thresholds,
            link_allowlist: input.link_allowlist,
        };
        let bundle = Bundle {
            manifest,
            detector_artifact: input.detector_artifact,
            signature: None,
        };
        bundle.check_content()?;
        Ok(bundle)
    }

    /// Decodes an envelope of at most `max_bytes` and checks its parts
    /// against the manifest; the signature is [`verify`]'s.
    ///
    /// # Errors
    /// [`BundleError::TooLarge`], [`BundleError::Malformed`],
    /// [`BundleError::UnknownFormat`], [`BundleError::ContentMismatch`],
    /// [`BundleError::Invalid`].
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Bundle, BundleError> {
        if bytes.len() > max_bytes {
            return Err(BundleError::TooLarge {
                size: bytes.len(),
                max: max_bytes,
            });
        }
        let envelope: Envelope = serde_json::from_slice(bytes)
            .map_err(|e| BundleError::Malformed(cap(e.to_string())))?;
        if envelope.manifest.format != FORMAT {
            return Err(BundleError::UnknownFormat(cap(envelope.manifest.format)));
        }
        let detector_artifact = envelope
            .detector_artifact
            .map(|text| {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| BundleError::Malformed(cap(format!("detector_artifact: {e}"))))
            })
            .transpose()?;
        let bundle = Bundle {
            manifest: envelope.manifest,
            detector_artifact,
            signature: envelope.signature,
        };
        bundle.check_content()?;
        Ok(bundle)
    }

    /// Every part agrees with the manifest, and the values are possible.
    fn check_content(&self) -> Result<(), BundleError> {
        let m = &self.manifest;
        if sha256_hex(m.policy.toml.as_bytes()) != m.policy.sha256 {
            return Err(BundleError::ContentMismatch("policy"));
        }
        match (&m.detector, &self.detector_artifact) {
            (Some(reference), Some(bytes)) => {
                if reference.size != bytes.len() as u64 || sha256_hex(bytes) != reference.sha256 {
                    return Err(BundleError::ContentMismatch("detector artifact"));
                }
            }
            (None, Some(_)) => return Err(BundleError::ContentMismatch("detector artifact")),
            (Some(reference), None) => {
                let ok = reference.sha256.len() == 64
                    && reference.sha256.bytes().all(|b| b.is_ascii_hexdigit());
                if !ok {
                    return Err(BundleError::Invalid(
                        "detector.sha256 must be 64 hex digits".to_owned(),
                    ));
                }
            }
            (None, None) => {}
        }
        if m.thresholds.is_some_and(|t| !t.is_valid()) {
            return Err(BundleError::Invalid(
                "thresholds must be in [0, 1] with flag <= block".to_owned(),
            ));
        }
        for host in &m.link_allowlist {
            let ok = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'*'));
            if !ok {
                return Err(BundleError::Invalid(format!(
                    "link_allowlist entry {:?} is not a host name",
                    cap(host.clone())
                )));
            }
        }
        Ok(())
    }

    /// The manifest's canonical JSON: what the signature covers (after the
    /// domain line) and what the digest names.
    fn canonical_manifest(&self) -> Result<String, BundleError> {
        let value = serde_json::to_value(&self.manifest)
            .map_err(|e| BundleError::Malformed(cap(e.to_string())))?;
        palisade_tools::canonical_json(&value)
            .map_err(|e| BundleError::Malformed(cap(e.to_string())))
    }

    /// Signs the bundle with the seed (64 hex digits) at `created_at` (unix
    /// seconds, the signer's clock), replacing any earlier signature.
    ///
    /// # Errors
    /// [`BundleError::BadKey`] for a bad seed.
    pub fn sign(mut self, seed_hex: &str, created_at: u64) -> Result<Bundle, BundleError> {
        let key_id = palisade_policy::signature::public_key_of(seed_hex)
            .map_err(|e| BundleError::BadKey(e.to_string()))?
            .get(..16)
            .unwrap_or_default()
            .to_owned();
        self.manifest.key_id = key_id;
        self.manifest.created_at = created_at;
        let payload = self.canonical_manifest()?;
        let (_, signature) = sign_domain(seed_hex, FORMAT, payload.as_bytes())
            .map_err(|e| BundleError::BadKey(e.to_string()))?;
        self.signature = Some(signature);
        Ok(self)
    }

    /// The envelope's bytes (JSON, one line).
    pub fn encode(&self) -> Vec<u8> {
        let envelope = Envelope {
            manifest: self.manifest.clone(),
            detector_artifact: self
                .detector_artifact
                .as_ref()
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
            signature: self.signature.clone(),
        };
        // A struct of strings, integers and finite floats always serializes.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Whether a signature is attached (not whether it verifies).
    pub fn is_signed(&self) -> bool {
        self.signature.is_some()
    }
}

/// A bundle whose signature, signer, key window and parts all checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedBundle {
    bundle: Bundle,
    digest: String,
}

impl VerifiedBundle {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.bundle.manifest
    }

    /// Hex SHA-256 of the signed message: the bundle's identity. Two
    /// envelopes with the same digest enforce the same thing.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The detector artifact's bytes, when the bundle ships them.
    pub fn detector_artifact(&self) -> Option<&[u8]> {
        self.bundle.detector_artifact.as_deref()
    }

    /// The policy document with the bundle's link allowlist merged into
    /// `[links] allowed_domains`; compile it with `Snapshot::from_toml`.
    ///
    /// # Errors
    /// As [`Manifest::effective_policy_toml`].
    pub fn effective_policy_toml(&self) -> Result<String, BundleError> {
        self.bundle.manifest.effective_policy_toml()
    }
}

/// Verifies `bytes` (at most `max_bytes`) against `trust` at `now` (unix
/// seconds): format, signer, signature, key window, parts. Whether its
/// serial may follow the running one is [`crate::check_successor`]'s.
///
/// # Errors
/// Each refusal as its [`BundleError`].
pub fn verify(
    bytes: &[u8],
    trust: &TrustStore,
    now: u64,
    max_bytes: usize,
) -> Result<VerifiedBundle, BundleError> {
    let bundle = Bundle::decode(bytes, max_bytes)?;
    let signature = bundle.signature.as_deref().ok_or(BundleError::Unsigned)?;
    let m = &bundle.manifest;
    let key = trust
        .find(&m.key_id)
        .ok_or_else(|| BundleError::UntrustedKey(cap(m.key_id.clone())))?;
    let payload = bundle.canonical_manifest()?;
    key.key()
        .verify_domain(FORMAT, payload.as_bytes(), signature)
        .map_err(|_| BundleError::BadSignature)?;
    // Checked after the signature: an edited created_at reads as tampering.
    if let Some(not_after) = key.not_after() {
        let retired = |why| BundleError::KeyRetired {
            key_id: key.id().to_owned(),
            not_after,
            why,
        };
        if m.created_at > not_after {
            return Err(retired("the bundle was signed after the key's window"));
        }
        if now > not_after {
            return Err(retired(
                "the key's window has closed; re-sign with the new key",
            ));
        }
    }
    let mut message = Vec::with_capacity(FORMAT.len() + 1 + payload.len());
    message.extend_from_slice(FORMAT.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(payload.as_bytes());
    let digest = sha256_hex(&message);
    Ok(VerifiedBundle { bundle, digest })
}
