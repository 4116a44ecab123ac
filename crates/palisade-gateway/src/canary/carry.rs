//! Fingerprints for what a reload may carry: a golden set is the same
//! golden set when its text is.
//!
//! Pure: hashes text it is given.

use std::hash::{Hash, Hasher};

/// A fingerprint of a golden set's text (not cryptographic: it only tells
/// an edited file from an unchanged one).
pub(crate) fn hash(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}
