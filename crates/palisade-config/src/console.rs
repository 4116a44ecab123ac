//! `[console]`: the admin web console at `/admin/ui` (sessions for people
//! who logged in with an admin key; scripts keep using bearer keys).
//!
//! Validation checks ranges only; it must not size or allocate anything.

use super::*;

/// The admin web console and its server-side session table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve `/admin/ui` (the page, its assets, login and logout).
    pub enabled: bool,
    /// How long a session lives after login, in seconds (not extended by
    /// use: a stolen cookie is worth at most this long).
    pub session_ttl_secs: u64,
    /// Sessions held at once; at the bound the oldest is dropped first.
    pub max_sessions: usize,
    /// Mark the session cookie `Secure` (sent over HTTPS only). Leave it on
    /// behind a TLS-terminating proxy; turn it off only for plain-HTTP
    /// loopback use.
    pub secure_cookie: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        // Rationale: an operator's working session is hours, not days, so
        // 8 hours; 64 sessions is far more than the people holding admin
        // keys, and keeps a login flood's memory at a few kilobytes.
        Self {
            enabled: true,
            session_ttl_secs: 8 * 3_600,
            max_sessions: 64,
            secure_cookie: true,
        }
    }
}

impl ConsoleConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=604_800).contains(&self.session_ttl_secs) {
            return Err(invalid(
                "console.session_ttl_secs",
                "must be between 1 and 604800 (7 days)",
            ));
        }
        if !(1..=10_000).contains(&self.max_sessions) {
            return Err(invalid(
                "console.max_sessions",
                "must be between 1 and 10000: it bounds the session table's memory",
            ));
        }
        Ok(())
    }
}
