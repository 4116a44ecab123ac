//! Signed policy files: a replica configured with trusted keys enforces only
//! a policy whose exact bytes an operator signed, for the role it plays, no
//! older than the one it runs.
//!
//! Why: the policy decides what is blocked. Whoever can write the file a
//! fleet reloads (a config map, a shared volume) could otherwise switch the
//! gates off on every replica at once. With signatures, only the holder of
//! a signing key can, and a replica refuses the file before it takes traffic
//! (at start) or keeps its running policy (on reload).
//!
//! A signature over the bytes alone is not enough: an older signed policy
//! (say, one from before a jailbreak was blocked), or the signed *shadow*
//! candidate, could be copied over the active file and would verify. So a
//! signature also covers a **serial number** (a replica refuses a serial
//! lower than the one it runs) and the file's **role** (`active` or
//! `shadow`: a file signed for one is refused as the other).
//!
//! A signature is a detached one-line text file, `FILE.sig`:
//! `palisade-policy-sig2 <key id> <role> <serial> <ed25519 signature, 128 hex
//! digits>`. The signed message is `palisade-policy-sig2\n<role>\n<serial>\n`
//! followed by the file's exact bytes, so no signature made for one role,
//! serial or format verifies for another. The key id is the first 8 bytes of
//! the public key in hex, so a fleet can trust an old and a new key during a
//! rotation. Keys are 32-byte ed25519 seeds and public keys written as 64 hex
//! digits (the same format as `palisade tools keygen`). Signatures of the
//! first format (`palisade-policy-sig1`, bytes only) are refused: re-sign.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

const PREFIX: &str = "palisade-policy-sig2";
const LEGACY_PREFIX: &str = "palisade-policy-sig1";

/// Which policy file a signature is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The enforced policy (`policy.file`).
    Active,
    /// The candidate evaluated beside it (`policy.shadow_file`).
    Shadow,
}

impl Role {
    /// `active` or `shadow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Shadow => "shadow",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Role, SignatureError> {
        match s {
            "active" => Ok(Role::Active),
            "shadow" => Ok(Role::Shadow),
            _ => Err(SignatureError::Malformed),
        }
    }
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A key is not 64 hex digits (or not a valid ed25519 public key).
    #[error("bad key: {0}")]
    BadKey(&'static str),
    /// The signature file is not `palisade-policy-sig2 <kid> <role> <serial> <hex>`.
    #[error("the signature file is not `{PREFIX} <key id> <role> <serial> <signature>`")]
    Malformed,
    /// A signature of the first format, which covers neither a serial nor a role.
    #[error(
        "the signature is of the old format ({LEGACY_PREFIX}: no serial, no role); re-sign with \
         `palisade policy sign --serial N --role active|shadow`"
    )]
    Legacy,
    /// The signing key is not among the trusted ones.
    #[error("signed by key {0}, which this replica does not trust")]
    UntrustedKey(String),
    /// The signature does not match the file's bytes (or its role and serial).
    #[error("the signature does not match the policy file (edited after signing?)")]
    Mismatch,
    /// Signed for the other role (the shadow file offered as the active one, or back).
    #[error("the file is signed as the {signed} policy, not the {expected} one")]
    WrongRole {
        /// The role in the signature.
        signed: Role,
        /// The role the file is loaded as.
        expected: Role,
    },
}

/// What a valid signature vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed<'k> {
    /// The id of the key that signed.
    pub key_id: &'k str,
    /// The serial number signed with the file.
    pub serial: u64,
    /// The role signed with the file.
    pub role: Role,
}

fn hex32(text: &str, what: &'static str) -> Result<[u8; 32], SignatureError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| SignatureError::BadKey(what))?;
    Ok(bytes)
}

fn kid(key: &VerifyingKey) -> String {
    hex::encode(&key.as_bytes()[..8])
}

/// The bytes a signature covers.
fn message(role: Role, serial: u64, document: &[u8]) -> Vec<u8> {
    let head = format!("{PREFIX}\n{role}\n{serial}\n");
    let mut m = Vec::with_capacity(head.len() + document.len());
    m.extend_from_slice(head.as_bytes());
    m.extend_from_slice(document);
    m
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

/// Signs `document` as the `role` policy with `serial`, with the seed written as 64 hex
/// digits; returns the signature file's text (one line).
pub fn sign_document(
    seed_hex: &str,
    document: &[u8],
    serial: u64,
    role: Role,
) -> Result<String, SignatureError> {
    let key = SigningKey::from_bytes(&hex32(seed_hex, "a signing seed must be 64 hex digits")?);
    let signature = key.sign(&message(role, serial, document));
    Ok(format!(
        "{PREFIX} {} {role} {serial} {}\n",
        kid(&key.verifying_key()),
        hex::encode(signature.to_bytes())
    ))
}

/// Checks `signature_file` (the text of `FILE.sig`) against `document` (the exact bytes of
/// the policy file) loaded as the `role` policy. Returns what the signature vouches for;
/// whether its serial is recent enough is the caller's to decide (it knows what it runs).
pub fn verify_document<'k>(
    trusted: &'k [TrustedKey],
    document: &[u8],
    signature_file: &str,
    role: Role,
) -> Result<Signed<'k>, SignatureError> {
    let mut fields = signature_file.split_whitespace();
    let first = fields.next();
    if first == Some(LEGACY_PREFIX) {
        return Err(SignatureError::Legacy);
    }
    let (Some(PREFIX), Some(id), Some(signed_role), Some(serial), Some(sig_hex), None) = (
        first,
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(SignatureError::Malformed);
    };
    let signed_role: Role = signed_role.parse()?;
    // Digits only: `+5` or ` 5` would parse, and the signed text must be the one form.
    if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed);
    }
    let serial: u64 = serial.parse().map_err(|_| SignatureError::Malformed)?;
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(sig_hex, &mut bytes).map_err(|_| SignatureError::Malformed)?;
    let key = trusted
        .iter()
        .find(|k| k.id == id)
        .ok_or_else(|| SignatureError::UntrustedKey(id.chars().take(16).collect()))?;
    key.key
        .verify(
            &message(signed_role, serial, document),
            &Signature::from_bytes(&bytes),
        )
        .map_err(|_| SignatureError::Mismatch)?;
    // Checked after the signature, so an edited role field reads as tampering.
    if signed_role != role {
        return Err(SignatureError::WrongRole {
            signed: signed_role,
            expected: role,
        });
    }
    Ok(Signed {
        key_id: &key.id,
        serial,
        role: signed_role,
    })
}

/// Signs `payload` under a `domain` (e.g. `palisade-bundle-v1`) with the seed written as
/// 64 hex digits: the signed message is `<domain>\n<payload>`, so a signature made for one
/// artifact kind (a bundle, a policy file) never verifies as another. Returns the key id
/// and the signature (128 hex digits). For artifacts other than detached policy files,
/// which carry their own serial and signer inside the signed payload.
pub fn sign_domain(
    seed_hex: &str,
    domain: &str,
    payload: &[u8],
) -> Result<(String, String), SignatureError> {
    let key = SigningKey::from_bytes(&hex32(seed_hex, "a signing seed must be 64 hex digits")?);
    let signature = key.sign(&domain_message(domain, payload));
    Ok((kid(&key.verifying_key()), hex::encode(signature.to_bytes())))
}

fn domain_message(domain: &str, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + 1 + payload.len());
    m.extend_from_slice(domain.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(payload);
    m
}

impl TrustedKey {
    /// Checks a [`sign_domain`] signature (128 hex digits) of `payload` under `domain`
    /// against this key.
    ///
    /// # Errors
    /// [`SignatureError::Malformed`] for a signature that is not 128 hex digits,
    /// [`SignatureError::Mismatch`] when it does not verify.
    pub fn verify_domain(
        &self,
        domain: &str,
        payload: &[u8],
        signature_hex: &str,
    ) -> Result<(), SignatureError> {
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(signature_hex, &mut bytes).map_err(|_| SignatureError::Malformed)?;
        self.key
            .verify(
                &domain_message(domain, payload),
                &Signature::from_bytes(&bytes),
            )
            .map_err(|_| SignatureError::Mismatch)
    }
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
    fn a_signed_document_verifies_and_names_its_key_serial_and_role() {
        let doc = b"label = \"prod\"\n";
        let sig = sign_document(SEED, doc, 42, Role::Active).unwrap();
        assert!(sig.starts_with("palisade-policy-sig2 "), "{sig}");
        let keys = [trusted(OTHER), trusted(SEED)];
        assert_eq!(
            verify_document(&keys, doc, &sig, Role::Active),
            Ok(Signed {
                key_id: keys[1].id(),
                serial: 42,
                role: Role::Active
            })
        );
    }

    /// The finding: the signature covered the bytes only, so the shadow file (or an older
    /// signed policy) verified as the active one.
    #[test]
    fn role_and_serial_are_signed() {
        let doc = b"label = \"candidate\"\n";
        let keys = [trusted(SEED)];
        let shadow = sign_document(SEED, doc, 7, Role::Shadow).unwrap();
        assert_eq!(
            verify_document(&keys, doc, &shadow, Role::Active),
            Err(SignatureError::WrongRole {
                signed: Role::Shadow,
                expected: Role::Active
            })
        );
        assert!(verify_document(&keys, doc, &shadow, Role::Shadow).is_ok());
        // Editing the role or the serial in the .sig breaks the signature.
        let relabelled = shadow.replace(" shadow 7 ", " active 7 ");
        assert_eq!(
            verify_document(&keys, doc, &relabelled, Role::Active),
            Err(SignatureError::Mismatch)
        );
        let bumped = shadow.replace(" shadow 7 ", " shadow 8 ");
        assert_eq!(
            verify_document(&keys, doc, &bumped, Role::Shadow),
            Err(SignatureError::Mismatch)
        );
        for odd in [" shadow +7 ", " shadow 07x ", " shadow -7 "] {
            let forged = shadow.replace(" shadow 7 ", odd);
            assert_eq!(
                verify_document(&keys, doc, &forged, Role::Shadow),
                Err(SignatureError::Malformed),
                "{odd}"
            );
        }
        // The old format, whatever it signed, is refused with a way out.
        let legacy = format!("palisade-policy-sig1 {} {}", keys[0].id(), "00".repeat(64));
        assert_eq!(
            verify_document(&keys, doc, &legacy, Role::Active),
            Err(SignatureError::Legacy)
        );
    }

    #[test]
    fn edits_other_keys_and_garbage_are_refused() {
        let doc = b"label = \"prod\"\n";
        let sig = sign_document(SEED, doc, 1, Role::Active).unwrap();
        let keys = [trusted(SEED)];
        assert_eq!(
            verify_document(&keys, b"label = \"prod\" \n", &sig, Role::Active),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify_document(&[trusted(OTHER)], doc, &sig, Role::Active),
            Err(SignatureError::UntrustedKey(_))
        ));
        for bad in [
            "",
            "palisade-policy-sig2",
            "other-format a b",
            "palisade-policy-sig2 kid active 1",
            "palisade-policy-sig2 kid primary 1 00",
            &format!("{sig} extra"),
        ] {
            assert_eq!(
                verify_document(&keys, doc, bad, Role::Active),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
        assert!(TrustedKey::from_hex("abc").is_err());
        assert!(sign_document("not hex", doc, 1, Role::Active).is_err());
    }

    #[test]
    fn domain_signatures_are_bound_to_their_domain_and_key() {
        let (id, sig) = sign_domain(SEED, "palisade-bundle-v1", b"payload").unwrap();
        let key = trusted(SEED);
        assert_eq!(id, key.id());
        assert_eq!(
            key.verify_domain("palisade-bundle-v1", b"payload", &sig),
            Ok(())
        );
        assert_eq!(
            key.verify_domain("palisade-bundle-v2", b"payload", &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            trusted(OTHER).verify_domain("palisade-bundle-v1", b"payload", &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key.verify_domain("palisade-bundle-v1", b"payload", "zz"),
            Err(SignatureError::Malformed)
        );
    }

    proptest! {
        /// Any one flipped bit of the document or the signature is caught.
        #[test]
        fn any_flipped_bit_is_refused(doc in proptest::collection::vec(any::<u8>(), 1..256), bit in any::<usize>(), in_sig in any::<bool>(), serial in any::<u64>()) {
            let sig = sign_document(SEED, &doc, serial, Role::Active).unwrap();
            let keys = [trusted(SEED)];
            prop_assert!(verify_document(&keys, &doc, &sig, Role::Active).is_ok());
            if in_sig {
                let parts: Vec<&str> = sig.split_whitespace().collect();
                let mut raw = hex::decode(parts[4]).unwrap();
                let i = bit % (raw.len() * 8);
                raw[i / 8] ^= 1 << (i % 8);
                let forged = format!("{} {} {} {} {}", parts[0], parts[1], parts[2], parts[3], hex::encode(raw));
                prop_assert!(verify_document(&keys, &doc, &forged, Role::Active).is_err());
            } else {
                let mut edited = doc.clone();
                let i = bit % (edited.len() * 8);
                edited[i / 8] ^= 1 << (i % 8);
                prop_assert_eq!(verify_document(&keys, &edited, &sig, Role::Active), Err(SignatureError::Mismatch));
            }
        }
    }
}
