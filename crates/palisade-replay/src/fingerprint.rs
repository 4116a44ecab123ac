//! Request fingerprints and table keys: SHA-256 over length-prefixed parts,
//! so no two different part lists hash the same bytes (`"ab" + "c"` is not
//! `"a" + "bc"`).
//!
//! Must not: keep the request text; only digests leave this module.

use sha2::{Digest, Sha256};

/// The SHA-256 of a request body's canonical JSON (RFC 8785): key order and
/// insignificant whitespace do not change it; any value does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `body` sent to `endpoint`. `None` when the body is
    /// not canonicalizable JSON (duplicate names, nesting past the limit):
    /// such a request is never cached, and an idempotency key falls back to
    /// [`Fingerprint::of_bytes`] (exact bytes: stricter, still sound).
    pub fn of_json(endpoint: &str, body: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(body).ok()?;
        let canonical = palisade_tools::canonical_text(text).ok()?;
        Some(Self(digest(&[
            b"json",
            endpoint.as_bytes(),
            canonical.as_bytes(),
        ])))
    }

    /// The fingerprint of the exact bytes.
    pub fn of_bytes(endpoint: &str, body: &[u8]) -> Self {
        Self(digest(&[b"bytes", endpoint.as_bytes(), body]))
    }

    /// Lowercase hex, for logs.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A table key from its parts (tenant first, by convention): a digest, so a
/// client's long `Idempotency-Key` costs 32 bytes and never reaches a log.
pub fn scope_key(parts: &[&[u8]]) -> [u8; 32] {
    digest(parts)
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_fingerprint() {
        let a = Fingerprint::of_json(
            "chat",
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        );
        let b = Fingerprint::of_json(
            "chat",
            b"{ \"messages\": [ {\"content\":\"hi\", \"role\":\"user\"} ], \"model\": \"m\" }",
        );
        assert_eq!(a, b);
        assert!(a.is_some());
    }

    #[test]
    fn a_value_or_endpoint_changes_it() {
        let a = Fingerprint::of_json("chat", br#"{"model":"m","temperature":0}"#);
        let b = Fingerprint::of_json("chat", br#"{"model":"m","temperature":1}"#);
        let c = Fingerprint::of_json("embeddings", br#"{"model":"m","temperature":0}"#);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn duplicate_names_are_not_canonical() {
        assert_eq!(
            Fingerprint::of_json("chat", br#"{"model":"a","model":"b"}"#),
            None
        );
    }

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(scope_key(&[b"ab", b"c"]), scope_key(&[b"a", b"bc"]));
    }
}
