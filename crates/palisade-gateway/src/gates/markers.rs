//! The markers the input gate plants in a request: the canary in the system prompt and the
//! boundaries around untrusted data. Both are keyed derivations, not per-request randomness,
//! so the prompt an upstream sees is the same on every turn of a conversation (its prefix
//! cache keeps working) while nobody without the key can predict or forge them.
//!
//! - canary: HMAC(key, "canary" ‖ tenant ‖ hour). Stable per tenant and hour; a leaked
//!   canary names its tenant and hour (recompute for candidate hours).
//! - boundary: HMAC(key, "boundary" ‖ tenant ‖ hour ‖ text). Stable for the same untrusted
//!   text, so a tool result carried in the history keeps its marking turn after turn; an
//!   attacker who writes the text cannot compute it.
//!
//! The key comes from `PALISADE_MARKER_KEY` (64 hex digits: set the same key on every replica
//! of a fleet) or is drawn at start. This module must not decide anything or touch requests.

use hmac::{Hmac, Mac as _};
use palisade_detect::Canary;
use sha2::Sha256;

use crate::clock::GatewayClock;

/// The environment variable holding the marker key.
pub(crate) const KEY_ENV: &str = "PALISADE_MARKER_KEY";

/// How long a canary stays the same.
const WINDOW_MS: i64 = 3_600_000;

/// Derives canaries and data boundaries (see the module docs).
#[derive(Clone)]
pub(crate) struct Markers {
    /// HMAC-SHA256 keyed once at start; cloned per derivation (no re-keying per request).
    keyed: Hmac<Sha256>,
    clock: GatewayClock,
}

impl std::fmt::Debug for Markers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Markers").finish_non_exhaustive()
    }
}

/// Why the configured key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{KEY_ENV} must be 64 hex digits (a 32-byte key)")]
pub(crate) struct BadMarkerKey;

impl Markers {
    /// The key from `env`, or a fresh random one when it is not set.
    pub(crate) fn from_env(
        env: &impl Fn(&str) -> Option<String>,
        clock: GatewayClock,
    ) -> Result<Self, BadMarkerKey> {
        let key = match env(KEY_ENV) {
            Some(hex_key) => {
                let bytes = hex::decode(hex_key.trim()).map_err(|_| BadMarkerKey)?;
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| BadMarkerKey)?
            }
            None => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|_| BadMarkerKey)?;
                key
            }
        };
        Self::keyed(&key, clock)
    }

    /// Markers under `key`.
    fn keyed(key: &[u8; 32], clock: GatewayClock) -> Result<Self, BadMarkerKey> {
        let keyed = <Hmac<Sha256>>::new_from_slice(key).map_err(|_| BadMarkerKey)?;
        Ok(Self { keyed, clock })
    }

    /// A fixed key, for tests.
    #[cfg(test)]
    pub(crate) fn with_key(key: [u8; 32], clock: GatewayClock) -> Self {
        Self::keyed(&key, clock).expect("HMAC accepts a 32-byte key")
    }

    fn window(&self) -> i64 {
        self.clock.unix_ms().div_euclid(WINDOW_MS)
    }

    fn mac(&self, purpose: &str, tenant: &str, window: i64, text: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        // Length-prefixed fields: no two (tenant, text) pairs share an input.
        for field in [purpose.as_bytes(), tenant.as_bytes()] {
            mac.update(&(field.len() as u64).to_le_bytes());
            mac.update(field);
        }
        mac.update(&window.to_le_bytes());
        mac.update(text);
        mac.finalize().into_bytes().into()
    }

    /// The canary for `tenant` in the current hour.
    pub(crate) fn canary(&self, tenant: &str) -> Canary {
        self.canary_in(tenant, self.window())
    }

    /// The canaries a response made at `unix_ms` may hold: that hour's and
    /// the next one's (a generation can run across the turn of the hour).
    pub(crate) fn canaries_at(&self, tenant: &str, unix_ms: i64) -> Vec<Canary> {
        let window = unix_ms.div_euclid(WINDOW_MS);
        vec![
            self.canary_in(tenant, window),
            self.canary_in(tenant, window + 1),
        ]
    }

    fn canary_in(&self, tenant: &str, window: i64) -> Canary {
        let mac = self.mac("canary", tenant, window, b"");
        let mut random = [0u8; 16];
        random.copy_from_slice(&mac[..16]);
        // 8 symbols (40 bits): the line costs ~16 tokens on cl100k/o200k (#17's budget).
        Canary::short_from_random(&random, 8)
    }

    /// The boundary name around one untrusted `text` of `tenant`, e.g. `data-3f9a0c1d2e4b5a69`.
    pub(crate) fn boundary(&self, tenant: &str, text: &str) -> String {
        let mac = self.mac("boundary", tenant, self.window(), text.as_bytes());
        format!("data-{}", hex::encode(&mac[..8]))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use palisade_limits::{ManualClock, Nanos};

    fn markers(key: u8) -> (Markers, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Nanos::ZERO));
        let m = Markers::with_key([key; 32], GatewayClock::manual(clock.clone(), 0));
        (m, clock)
    }

    #[test]
    fn a_canary_is_stable_per_tenant_and_hour_and_differs_across_them() {
        let (m, clock) = markers(1);
        let a = m.canary("acme").token;
        assert_eq!(a, m.canary("acme").token, "same tenant, same hour");
        assert_ne!(a, m.canary("globex").token, "tenants never share a canary");
        clock.advance(Nanos::from_secs(3600));
        assert_ne!(a, m.canary("acme").token, "a new hour rotates it");
        let (other_key, _) = markers(2);
        assert_ne!(
            m.canary("acme").token,
            other_key.canary("acme").token,
            "the key decides it"
        );
    }

    #[test]
    fn a_boundary_is_bound_to_its_text_and_tenant() {
        let (m, _) = markers(1);
        let b = m.boundary("acme", "tool result");
        assert_eq!(b, m.boundary("acme", "tool result"));
        assert_ne!(b, m.boundary("acme", "tool result."));
        assert_ne!(b, m.boundary("globex", "tool result"));
        assert!(b.starts_with("data-") && b.len() == 21, "{b}");
    }

    #[test]
    fn a_bad_key_is_refused() {
        let clock = GatewayClock::system();
        assert!(Markers::from_env(&|_| Some("abc".into()), clock.clone()).is_err());
        let ok = "11".repeat(32);
        assert!(Markers::from_env(&|_| Some(ok.clone()), clock.clone()).is_ok());
        assert!(Markers::from_env(&|_| None, clock).is_ok());
    }
}
