//! Keys: one per tenant and rotation period, derived from the operator's
//! master key, so nothing per tenant has to be stored or synchronized
//! across replicas and forensics can recompute any past key.
//!
//! `key = HMAC-SHA256(master, "palisade-watermark-v1" ‖ len(tenant) ‖ tenant ‖ period)`,
//! the tenant length-prefixed so `("ab", …)` and `("a", "b…")` cannot collide.
//!
//! Must not: read a clock or an environment variable (the caller passes the
//! master key and `now_ms`).

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::WatermarkError;

/// Domain separation: a key derived here is never a canary or a token key.
const DOMAIN: &[u8] = b"palisade-watermark-v1";

/// A tenant's watermark key for one period. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub(crate) [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key from its bytes (tests, and key histories that list raw keys).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// The key of `tenant` in rotation `period` under `master`.
pub fn derive_key(master: &[u8; 32], tenant: &str, period: u64) -> Key {
    // HMAC zero-pads a short key to the hash's block size (RFC 2104), so
    // padding it here is the same MAC, without a fallible constructor.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(master);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    mac.update(DOMAIN);
    mac.update(&(tenant.len() as u64).to_be_bytes());
    mac.update(tenant.as_bytes());
    mac.update(&period.to_be_bytes());
    Key(mac.finalize().into_bytes().into())
}

/// The rotation period `now_ms` falls in: whole periods of `rotation_ms`
/// since the Unix epoch (instants before it count as period 0).
pub fn period_of(now_ms: i64, rotation_ms: u64) -> Result<u64, WatermarkError> {
    if rotation_ms == 0 {
        return Err(WatermarkError::Rotation);
    }
    Ok(u64::try_from(now_ms).unwrap_or(0) / rotation_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_tenant_period_and_master() {
        let m = [7u8; 32];
        let k = derive_key(&m, "acme", 10);
        assert_eq!(k, derive_key(&m, "acme", 10));
        assert_ne!(k, derive_key(&m, "acme", 11));
        assert_ne!(k, derive_key(&m, "acmf", 10));
        assert_ne!(k, derive_key(&[8u8; 32], "acme", 10));
        // The length prefix keeps tenant boundaries apart.
        assert_ne!(derive_key(&m, "ab", 0), derive_key(&m, "a", 0));
        assert_eq!(format!("{k:?}"), "Key(..)");
    }

    #[test]
    fn periods_are_whole_rotations_since_the_epoch() {
        let day: u64 = 86_400_000;
        let at = |ms: u64| i64::try_from(ms).unwrap();
        assert_eq!(period_of(0, day), Ok(0));
        assert_eq!(period_of(at(day - 1), day), Ok(0));
        assert_eq!(period_of(at(day), day), Ok(1));
        assert_eq!(period_of(-5, day), Ok(0));
        assert_eq!(period_of(5, 0), Err(WatermarkError::Rotation));
    }
}
