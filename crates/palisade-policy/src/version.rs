//! Policy versions: a content hash of the parsed document, so that the version names what a
//! policy *says*, not how its file is laid out.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::document::PolicyDocument;
use crate::error::PolicyError;

/// `sha256:` + the first 16 hex digits of the SHA-256 of the canonical JSON serialization
/// of the parsed document ([`PolicyDocument::canonical`]).
///
/// Whitespace, comments, key order, `0.9` vs `0.90` and inline vs standard tables do not
/// change it; any change of a value does (including the label). 64 bits keep accidental
/// collisions out of reach for the few thousand versions a fleet will ever see; this is an
/// identifier, not an integrity check. `Copy`, so a decision carries it without allocating.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyVersion([u8; 8]);

const PREFIX: &str = "sha256:";

impl PolicyVersion {
    /// The version of `doc`.
    pub fn of(doc: &PolicyDocument) -> Result<PolicyVersion, PolicyError> {
        // serde_json writes struct fields in declaration order and `BTreeMap` keys sorted,
        // and f64 in shortest round-trip form: a canonical form for our types.
        let json = serde_json::to_vec(&doc.canonical()).map_err(PolicyError::Canonicalize)?;
        let digest = Sha256::digest(&json);
        let mut v = [0u8; 8];
        v.copy_from_slice(&digest[..8]);
        Ok(PolicyVersion(v))
    }
}

impl fmt::Display for PolicyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One write of a stack buffer: every audit record names its version, and eight
        // formatted `{:02x}` writes cost ~2,400 instructions a record.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; PREFIX.len() + 16];
        buf[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
        for (i, b) in self.0.iter().enumerate() {
            buf[PREFIX.len() + 2 * i] = HEX[usize::from(b >> 4)];
            buf[PREFIX.len() + 2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for PolicyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not `sha256:` followed by 16 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad policy version {0:?} (expected sha256: and 16 hex digits)")]
pub struct ParseVersionError(pub String);

impl FromStr for PolicyVersion {
    type Err = ParseVersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseVersionError(s.to_owned());
        let hex_part = s.strip_prefix(PREFIX).ok_or_else(bad)?;
        if hex_part.len() != 16 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut v = [0u8; 8];
        hex::decode_to_slice(hex_part, &mut v).map_err(|_| bad())?;
        Ok(PolicyVersion(v))
    }
}

impl Serialize for PolicyVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicyVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_roundtrip() {
        let v = PolicyVersion([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 0xff]);
        let s = v.to_string();
        assert_eq!(s, "sha256:deadbeef000102ff");
        assert_eq!(s.parse::<PolicyVersion>().unwrap(), v);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, "\"sha256:deadbeef000102ff\"");
        assert_eq!(serde_json::from_str::<PolicyVersion>(&json).unwrap(), v);
        for bad in [
            "deadbeef000102ff",
            "sha256:deadbeef",
            "sha256:DEADBEEF000102FF",
            "sha256:deadbeef000102fg",
            "md5:deadbeef000102ff",
        ] {
            assert!(bad.parse::<PolicyVersion>().is_err(), "{bad}");
        }
    }
}
