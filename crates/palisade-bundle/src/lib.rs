//! Signed security bundles: one artifact carrying everything a replica
//! enforces (the policy file, the detector artifact or its digest, threshold
//! overrides, link allowlists), a monotonically increasing serial, the
//! signing time and the signer's key id, signed with ed25519.
//!
//! This crate is the format and its rules only: encoding, canonical bytes,
//! signing and verification, which serial may follow which, and when a
//! rotated-out key stops being accepted. It must not do I/O, read the clock
//! (the caller passes `now`) or know where bundles come from; the gateway's
//! `bundle` module fetches, caches and activates.
//!
//! # Format (why JSON)
//!
//! A bundle is one JSON envelope:
//! `{"manifest": {...}, "detector_artifact": "<base64>", "signature": "<128 hex>"}`.
//! The signature covers `palisade-bundle-v1\n` followed by the manifest's
//! **canonical JSON** (RFC 8785 via `palisade_tools::canonical_json`: sorted
//! members, no whitespace, exact integers), so the bytes that are verified
//! are recomputed from the very values the replica then uses: formatting,
//! member order or an unknown member (refused) cannot make a verified
//! manifest mean something else. The manifest holds the policy text inline
//! and the SHA-256 and size of the detector artifact, so one signature binds
//! every part; the artifact travels beside the manifest (base64) and is
//! checked against its digest. A tar would need a canonical ordering and
//! header rules of its own and a second parser for hostile input; JSON is
//! already parsed with a depth limit and the canonical form already exists
//! in this workspace. The signing primitive is the policy signature's
//! (`palisade_policy::signature::sign_domain`), with the domain
//! `palisade-bundle-v1`, so a policy `.sig` never verifies as a bundle.
//!
//! # Rules
//!
//! - A replica activates a bundle only after [`verify`] accepted it, and
//!   [`check_successor`] refuses a lower serial, and an equal serial with a
//!   different digest (the same serial must mean the same bundle).
//! - Key rotation with an overlap window: a trusted key may carry
//!   `not_after` (unix seconds). A bundle it signed after that time is
//!   refused, and once `now` is past it the key verifies nothing (a stolen
//!   retired key cannot back-date a bundle into its window).
//! - Inputs are bounded: bytes over the caller's limit are refused before
//!   parsing; every failure is a typed [`BundleError`], never a panic.

mod codec;
mod error;
mod keys;
mod manifest;
mod rules;

pub use codec::{verify, BuildInput, Bundle, VerifiedBundle};
pub use error::BundleError;
pub use keys::{BundleKey, TrustStore};
pub use manifest::{ArtifactRef, Manifest, PolicyPart, ThresholdOverrides};
pub use rules::{check_fresh, check_successor, Freshness, Running, Succession, FUTURE_SKEW_S};

/// The format tag and the signature's domain separator.
pub const FORMAT: &str = "palisade-bundle-v1";

/// The default bound on a bundle's encoded size (the detector artifact
/// included, base64): large enough for the embedded model, small enough
/// that a hostile store cannot exhaust memory.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

#[cfg(test)]
mod tests;
