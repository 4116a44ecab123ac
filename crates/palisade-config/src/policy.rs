//! `[policy]`: where the safety policy and its audit log come from, and how
//! the output gate holds a stream.
//!
//! Validation checks values only; it must not open or verify the policy
//! files (the gateway does, at start and on reload).

use super::*;

/// Where the safety policy comes from. With no file, the built-in policy
/// applies (blocks high-confidence injections in user input and in
/// retrieved or tool content, redacts secrets in output, neutralizes
/// exfiltration links and hidden markup, blocks canary leaks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// A policy file (TOML); reloaded when it changes.
    pub file: Option<String>,
    /// A candidate policy evaluated beside the active one on every request,
    /// never enforced; where the two disagree, the audit log says so.
    pub shadow_file: Option<String>,
    /// How often the files are checked for changes.
    pub reload_interval_ms: u64,
    /// Turn the safety gates off entirely (admission control still runs).
    pub disabled: bool,
    /// Where every gate decision is recorded: `sqlite:PATH` or a PostgreSQL
    /// URL. Absent: decisions go to the log only.
    pub audit_url: Option<String>,
    /// Most bytes of a streamed completion the output gate holds back
    /// while it waits for a sentence or line boundary (at least 256). The
    /// bound on the delay it adds: a secret or link is judged whole before
    /// any of it is sent, and text without boundaries waits at most this
    /// long.
    pub stream_hold_bytes: usize,
    /// Public keys (64 hex digits each) whose signatures this replica
    /// accepts. When any is set, `file` and `shadow_file` must each have a
    /// valid detached signature beside them (`FILE.sig`, written by
    /// `palisade policy sign`): an unsigned or edited file stops the start
    /// and, on reload, is refused while the running policy stays.
    pub trusted_keys: Vec<String>,
    /// The lowest policy serial (`palisade policy sign --serial`) this
    /// replica accepts, at start as on reload. A replica already refuses a
    /// serial lower than the one it runs; raise this after a rollout so a
    /// restarted replica refuses older signed files too. Needs
    /// `trusted_keys`.
    pub min_serial: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            file: None,
            shadow_file: None,
            reload_interval_ms: 2_000,
            disabled: false,
            audit_url: None,
            stream_hold_bytes: 512,
            trusted_keys: Vec::new(),
            min_serial: 0,
        }
    }
}

impl PolicyConfig {
    /// The audit store must be reachable by this build, and the signing,
    /// hold and reload settings must be usable.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        stores::validate_postgres_tls("policy.audit_url", self.audit_url.as_deref())?;
        if self.min_serial > 0 && self.trusted_keys.is_empty() {
            return Err(invalid(
                "policy.min_serial",
                "a serial is only checked on signed policies: set policy.trusted_keys",
            ));
        }
        if self.stream_hold_bytes < 256 {
            return Err(invalid(
                "policy.stream_hold_bytes",
                "must be at least 256 (a URL or key must fit whole)",
            ));
        }
        if self.reload_interval_ms == 0 {
            return Err(invalid(
                "policy.reload_interval_ms",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}
