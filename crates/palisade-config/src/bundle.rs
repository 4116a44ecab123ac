//! `[bundle]`: where this replica gets its signed security bundle (the
//! policy and detector settings, one signature and serial), which keys it
//! trusts, where it keeps the last verified one, and how often it polls.
//!
//! Validation checks the form only; it must not fetch the bundle or parse
//! the keys (the gateway does, at start, and refuses traffic until a bundle
//! verifies).

use super::*;

/// A signed security bundle as the source of this replica's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BundleConfig {
    /// `file:PATH`, `http://…`, `https://…` or `redis://…`. Polled every
    /// `poll_interval_ms` (HTTP with `If-None-Match`; Redis by digest, and
    /// woken at once by the publisher's announcement on pub/sub).
    pub source: String,
    /// With a `redis://` source: the key prefix the bundle is published under
    /// (`palisade bundle publish --prefix`).
    pub redis_prefix: String,
    /// Public keys trusted to sign bundles (`palisade policy keygen`), each
    /// `HEX` or `HEX not_after=UNIX_SECONDS` for a key being rotated out: a
    /// bundle it signed after that time is refused, and past it the key
    /// verifies nothing.
    pub trusted_keys: Vec<String>,
    /// Directory where the last verified bundle is kept (written atomically),
    /// so a restart while the source is down enforces it again (after
    /// verifying it again). Absent: nothing is kept.
    pub cache_dir: Option<PathBuf>,
    /// How often the source is polled for a newer bundle. 2 s: a new
    /// bundle reaches a replica within about that, at one conditional GET
    /// per replica per poll.
    pub poll_interval_ms: u64,
    /// Bound on one fetch (connect to last byte), so a slow store cannot
    /// stall the poller.
    pub fetch_timeout_ms: u64,
    /// Largest bundle accepted, bytes (64 MiB: room for a detector model).
    pub max_bytes: usize,
    /// Lowest bundle serial this replica accepts (0: any). The running and
    /// cached bundles already keep the serial from going back; this floor
    /// also holds for a fresh replica with no cache, which would otherwise
    /// take any older signed bundle a compromised store replays. Raise it
    /// in the deployment when a bundle must never come back.
    pub min_serial: u64,
    /// Oldest signature accepted, seconds (absent: any age). With it, a
    /// replayed bundle is refused once it is this old, and the publisher
    /// must re-sign (a new serial) more often than this; a bundle already
    /// running stays in force when it ages out (refusing traffic would be
    /// an outage), but no replica starts on it.
    pub max_age_s: Option<u64>,
}

impl Default for BundleConfig {
    fn default() -> Self {
        Self {
            source: String::new(),
            redis_prefix: "palisade:bundle".to_owned(),
            trusted_keys: Vec::new(),
            cache_dir: None,
            poll_interval_ms: 2_000,
            fetch_timeout_ms: 5_000,
            max_bytes: 64 << 20,
            min_serial: 0,
            max_age_s: None,
        }
    }
}

impl BundleConfig {
    /// A usable source, at least one key, positive intervals.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let source_ok = self
            .source
            .strip_prefix("file:")
            .is_some_and(|p| !p.is_empty())
            || self.source.starts_with("http://")
            || self.source.starts_with("https://")
            || self.source.starts_with("redis://");
        if !source_ok {
            return Err(invalid(
                "bundle.source",
                "must be `file:PATH`, `http://…`, `https://…` or `redis://…`",
            ));
        }
        if self.trusted_keys.is_empty() {
            return Err(invalid(
                "bundle.trusted_keys",
                "must list at least one public key (a bundle verifies against these only)",
            ));
        }
        if self.poll_interval_ms == 0 || self.fetch_timeout_ms == 0 || self.max_bytes == 0 {
            return Err(invalid(
                "bundle.poll_interval_ms",
                "poll_interval_ms, fetch_timeout_ms and max_bytes must be positive",
            ));
        }
        if self.max_age_s == Some(0) {
            return Err(invalid(
                "bundle.max_age_s",
                "must be positive (leave it out to accept any age)",
            ));
        }
        Ok(())
    }
}
