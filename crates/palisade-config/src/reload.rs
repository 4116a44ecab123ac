//! `[reload]`: how the running gateway notices edits to its config file
//! (the hot sections are swapped in; see the gateway's `reload` module).
//!
//! Validation checks ranges only; it must not read or watch the file.

use super::*;

/// Watching the config file for edits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// How often the config file is read to look for an edit, in
    /// milliseconds; 0 turns polling off (`SIGHUP` and
    /// `POST /admin/config/reload` still reload). An edit is applied once
    /// two consecutive polls read the same bytes, so a file caught half
    /// written is never applied.
    pub config_poll_ms: u64,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        // Rationale: a config file is a few kilobytes, so reading it once a
        // second costs nothing, and an edit lands within about two seconds
        // (one poll to see it, one to see it settled).
        Self {
            config_poll_ms: 1_000,
        }
    }
}

impl ReloadConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.config_poll_ms != 0 && !(100..=3_600_000).contains(&self.config_poll_ms) {
            return Err(invalid(
                "reload.config_poll_ms",
                "must be 0 (off) or between 100 and 3600000: faster polling only burns CPU",
            ));
        }
        Ok(())
    }
}
