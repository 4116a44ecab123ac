//! `[idempotency]` and `[cache]`: storing a response to replay it, for a
//! client's `Idempotency-Key` (on by default) and for identical requests
//! (the exact-match response cache, off by default). Both are bounded per
//! tenant, so one tenant's keys never push out another's.
//!
//! Validation checks ranges only; it must not size or allocate anything.

use super::*;

/// Sizes shared by both tables.
fn validate_bounds(
    section: &str,
    ttl_secs: u64,
    max_entries: usize,
    max_bytes: usize,
    max_entry_bytes: usize,
) -> Result<(), ConfigError> {
    if !(1..=604_800).contains(&ttl_secs) {
        return Err(invalid(
            format!("{section}.ttl_secs"),
            "must be between 1 and 604800 (7 days)",
        ));
    }
    if !(1..=1_000_000).contains(&max_entries) {
        return Err(invalid(
            format!("{section}.max_entries_per_tenant"),
            "must be between 1 and 1000000",
        ));
    }
    if !(1_024..=1 << 30).contains(&max_bytes) {
        return Err(invalid(
            format!("{section}.max_bytes_per_tenant"),
            "must be between 1024 and 1073741824 (1 GiB): it bounds memory per tenant",
        ));
    }
    if max_entry_bytes < 256 || max_entry_bytes > max_bytes {
        return Err(invalid(
            format!("{section}.max_entry_bytes"),
            "must be at least 256 and at most max_bytes_per_tenant",
        ));
    }
    Ok(())
}

/// Idempotency keys: a repeat of a request with the same `Idempotency-Key`
/// gets the first one's response (or 409 while it runs, 422 for another body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// Honour `Idempotency-Key` on chat, completions and embeddings.
    pub enabled: bool,
    /// How long a finished request's response is replayed.
    pub ttl_secs: u64,
    /// Keys per tenant (running and finished); the oldest finished go first.
    pub max_entries_per_tenant: usize,
    /// Stored bytes per tenant.
    pub max_bytes_per_tenant: usize,
    /// The largest response stored; a larger one is not replayable (a
    /// repeat runs again).
    pub max_entry_bytes: usize,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        // Rationale: clients (the OpenAI SDKs among them) retry within
        // seconds to minutes, so an hour covers retries without holding
        // responses for a day; 16 MiB and 10 000 keys per tenant bound
        // memory at tenants × 16 MiB; 1 MiB covers all but the longest
        // completions.
        Self {
            enabled: true,
            ttl_secs: 3_600,
            max_entries_per_tenant: 10_000,
            max_bytes_per_tenant: 16 << 20,
            max_entry_bytes: 1 << 20,
        }
    }
}

impl IdempotencyConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        validate_bounds(
            "idempotency",
            self.ttl_secs,
            self.max_entries_per_tenant,
            self.max_bytes_per_tenant,
            self.max_entry_bytes,
        )
    }
}

/// The exact-match response cache: an identical request (same tenant, tier,
/// policy version and canonical body) is answered from the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Off by default: sampling (`temperature` > 0) makes identical
    /// requests legitimately differ, and only the operator knows whether
    /// their clients want that.
    pub enabled: bool,
    /// How long an entry is served.
    pub ttl_secs: u64,
    /// Entries per tenant; the oldest go first.
    pub max_entries_per_tenant: usize,
    /// Stored bytes per tenant.
    pub max_bytes_per_tenant: usize,
    /// The largest response cached.
    pub max_entry_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        // Rationale: five minutes keeps answers close to the model's current
        // behaviour while catching bursts of identical requests (retries,
        // fan-out, evaluation loops).
        Self {
            enabled: false,
            ttl_secs: 300,
            max_entries_per_tenant: 1_000,
            max_bytes_per_tenant: 16 << 20,
            max_entry_bytes: 1 << 20,
        }
    }
}

impl CacheConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        validate_bounds(
            "cache",
            self.ttl_secs,
            self.max_entries_per_tenant,
            self.max_bytes_per_tenant,
            self.max_entry_bytes,
        )
    }
}
