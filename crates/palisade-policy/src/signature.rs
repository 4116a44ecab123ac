//! Signed policy files: a replica configured with trusted keys enforces only
//! a policy whose exact bytes an operator signed.
//!
//! Why: the policy decides what is blocked. Whoever can write the file a
//! fleet reloads (a config map, a shared volume) could otherwise switch the
//! gates off on every replica at once. With signatures, only the holder of
//! a signing key can, and a replica refuses the file before it takes traffic
//! (at start) or keeps its running policy (on reload).
//!
//! A signature is a detached one-line text file, `FILE.sig`:
//! `palisade-policy-sig1 <key id> <ed25519 signature, 128 hex digits>`; the
//! key id is the first 8 bytes of the public key in hex, so a fleet can
//! trust an old and a new key during a rotation. Keys are 32-byte ed25519
//! seeds and public keys written as 64 hex digits (the same format as
//! `palisade tools keygen`).

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

const PREFIX: &str = "palisade-policy-sig1";

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A key is not 64 hex digits (or not a valid ed25519 public key).
    #[error("bad key: {0}")]
    BadKey(&'static str),
    /// The signature file is not `palisade-policy-sig1 <kid> <hex>`.
    #[error("the signature file is not `{PREFIX} <key id> <signature>`")]
    Malformed,
    /// The signing key is not among the trusted ones.
    #[error("signed by key {0}, which this replica does not trust")]
    UntrustedKey(String),
    /// The signature does not match the file's bytes.
    #[error("the signature does not match the policy file (edited after signing?)")]
    Mismatch,
}

fn hex32(text: &str, what: &'static str) -> Result<[u8; 32], SignatureError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| SignatureError::BadKey(what))?;
    Ok(bytes)
}

fn kid(key: &VerifyingKey) -> String {
    hex::encode(&key.as_bytes()[..8])
}

/// A trusted public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    key: VerifyingKey,
    id: String,
}

impl TrustedKey {
    /// A key from 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<TrustedKey, SignatureError> {
        let bytes = hex32(text, "a public key must be 64 hex digits")?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| SignatureError::BadKey("not an ed25519 public key"))?;
        Ok(TrustedKey { id: kid(&key), key })
    }

    /// The key id signatures name.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Signs `document` with the seed written as 64 hex digits; returns the
/// signature file's text (one line).
pub fn sign_document(seed_hex: &str, document: &[u8]) -> Result<String, SignatureError> {
    let key = SigningKey::from_bytes(&hex32(seed_hex, "a signing seed must be 64 hex digits")?);
    let signature = key.sign(document);
    Ok(format!(
        "{PREFIX} {} {}\n",
        kid(&key.verifying_key()),
        hex::encode(signature.to_bytes())
    ))
}

/// Checks `signature_file` (the text of `FILE.sig`) against `document` (the
/// exact bytes of the policy file). Returns the id of the key that signed it.
pub fn verify_document<'k>(
    trusted: &'k [TrustedKey],
    document: &[u8],
    signature_file: &str,
) -> Result<&'k str, SignatureError> {
    let mut fields = signature_file.split_whitespace();
    let (Some(PREFIX), Some(id), Some(sig_hex), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SignatureError::Malformed);
    };
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(sig_hex, &mut bytes).map_err(|_| SignatureError::Malformed)?;
    let key = trusted
        .iter()
        .find(|k| k.id == id)
        .ok_or_else(|| SignatureError::UntrustedKey(id.chars().take(16).collect()))?;
    key.key
        .verify(document, &Signature::from_bytes(&bytes))
        .map_err(|_| SignatureError::Mismatch)?;
    Ok(&key.id)
}

/// The public key (64 hex digits) of a seed written as 64 hex digits.
pub fn public_key_of(seed_hex: &str) -> Result<String, SignatureError> {
    let key = SigningKey::from_bytes(&hex32(seed_hex, "a signing seed must be 64 hex digits")?);
    Ok(hex::encode(key.verifying_key().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEED: &str = "9f1c2e3d4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const OTHER: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    fn trusted(seed: &str) -> TrustedKey {
        TrustedKey::from_hex(&public_key_of(seed).unwrap()).unwrap()
    }

    #[test]
    fn a_signed_document_verifies_and_names_its_key() {
        let doc = b"label = \"prod\"\n";
        let sig = sign_document(SEED, doc).unwrap();
        let keys = [trusted(OTHER), trusted(SEED)];
        assert_eq!(verify_document(&keys, doc, &sig), Ok(keys[1].id()));
    }

    #[test]
    fn edits_other_keys_and_garbage_are_refused() {
        let doc = b"label = \"prod\"\n";
        let sig = sign_document(SEED, doc).unwrap();
        let keys = [trusted(SEED)];
        assert_eq!(
            verify_document(&keys, b"label = \"prod\" \n", &sig),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify_document(&[trusted(OTHER)], doc, &sig),
            Err(SignatureError::UntrustedKey(_))
        ));
        for bad in [
            "",
            "palisade-policy-sig1",
            "other-format a b",
            &format!("{sig} extra"),
        ] {
            assert_eq!(
                verify_document(&keys, doc, bad),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
        assert!(TrustedKey::from_hex("abc").is_err());
        assert!(sign_document("not hex", doc).is_err());
    }

    proptest! {
        /// Any one flipped bit of the document or the signature is caught.
        #[test]
        fn any_flipped_bit_is_refused(doc in proptest::collection::vec(any::<u8>(), 1..256), bit in any::<usize>(), in_sig in any::<bool>()) {
            let sig = sign_document(SEED, &doc).unwrap();
            let keys = [trusted(SEED)];
            prop_assert!(verify_document(&keys, &doc, &sig).is_ok());
            if in_sig {
                let parts: Vec<&str> = sig.split_whitespace().collect();
                let mut raw = hex::decode(parts[2]).unwrap();
                let i = bit % (raw.len() * 8);
                raw[i / 8] ^= 1 << (i % 8);
                let forged = format!("{} {} {}", parts[0], parts[1], hex::encode(raw));
                prop_assert!(verify_document(&keys, &doc, &forged).is_err());
            } else {
                let mut edited = doc.clone();
                let i = bit % (edited.len() * 8);
                edited[i / 8] ^= 1 << (i % 8);
                prop_assert_eq!(verify_document(&keys, &edited, &sig), Err(SignatureError::Mismatch));
            }
        }
    }
}
