//! The keys a replica trusts for bundles, each with an optional end of its
//! overlap window (`not_after`), for key rotation: trust old and new, sign
//! with the new, then let the old one lapse.
//!
//! The keys themselves are the policy-signature keys
//! (`palisade policy keygen`); this module only adds the window.

use palisade_policy::signature::TrustedKey;

use crate::BundleError;

/// A trusted key and the end of its window, if it is being rotated out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleKey {
    key: TrustedKey,
    not_after: Option<u64>,
}

impl BundleKey {
    /// Parses `HEX` (64 hex digits) or `HEX not_after=UNIX_SECONDS`.
    ///
    /// # Errors
    /// [`BundleError::BadKey`] naming what is wrong.
    pub fn parse(text: &str) -> Result<BundleKey, BundleError> {
        let mut parts = text.split_whitespace();
        let hex = parts
            .next()
            .ok_or_else(|| BundleError::BadKey("empty key".to_owned()))?;
        let key = TrustedKey::from_hex(hex).map_err(|e| BundleError::BadKey(e.to_string()))?;
        let not_after = match (parts.next(), parts.next()) {
            (None, _) => None,
            (Some(option), None) => {
                let value = option.strip_prefix("not_after=").ok_or_else(|| {
                    BundleError::BadKey(format!("unknown key option {option:?} (not_after=UNIX)"))
                })?;
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(BundleError::BadKey(format!(
                        "not_after must be unix seconds, got {value:?}"
                    )));
                }
                Some(value.parse().map_err(|_| {
                    BundleError::BadKey(format!("not_after out of range: {value:?}"))
                })?)
            }
            (Some(_), Some(_)) => {
                return Err(BundleError::BadKey(
                    "a key is `HEX` or `HEX not_after=UNIX`".to_owned(),
                ))
            }
        };
        Ok(BundleKey { key, not_after })
    }

    /// The key id bundles name.
    pub fn id(&self) -> &str {
        self.key.id()
    }

    /// The end of the key's window, if any.
    pub fn not_after(&self) -> Option<u64> {
        self.not_after
    }

    pub(crate) fn key(&self) -> &TrustedKey {
        &self.key
    }
}

/// Every key a replica trusts for bundles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustStore {
    keys: Vec<BundleKey>,
}

impl TrustStore {
    /// Parses each entry with [`BundleKey::parse`].
    ///
    /// # Errors
    /// The first bad entry, with its index.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustStore, BundleError> {
        let keys = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                BundleKey::parse(e.as_ref())
                    .map_err(|err| BundleError::BadKey(format!("[{i}] {err}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustStore { keys })
    }

    /// The key with this id.
    pub fn find(&self, key_id: &str) -> Option<&BundleKey> {
        self.keys.iter().find(|k| k.id() == key_id)
    }

    /// Whether no key is trusted (then nothing verifies).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
