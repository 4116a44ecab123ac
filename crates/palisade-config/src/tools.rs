//! `[tools]`: how released tool calls are signed and held calls confirmed.
//!
//! Only the mechanics live here; which tools are allowed is the policy's
//! business. Validation must not read the signing key file (the gateway
//! does, at start).

use super::*;

/// How released tool calls are signed and held calls confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// A file holding the ed25519 signing seed as 64 hex digits
    /// (`palisade tools keygen` writes one). Every replica needs the same
    /// key, so that executors trust one public key. Absent: a key is drawn
    /// at start (tokens then verify only against this process).
    pub signing_key_file: Option<String>,
    /// Lifetime of a capability token.
    pub token_ttl_secs: u64,
    /// How long a call waits for confirmation before it lapses.
    pub confirmation_ttl_secs: u64,
    /// Most calls waiting for confirmation at once, all tenants together.
    /// When it is reached, a new call is withheld rather than another
    /// tenant's call evicted.
    pub max_pending: usize,
    /// Most calls one tenant may have waiting for confirmation (at most
    /// `max_pending`); past it the tenant's own oldest call lapses. One
    /// tenant parking calls can never evict another tenant's.
    pub max_pending_per_tenant: usize,
    /// Most bytes of streamed tool-call names and arguments held per
    /// response while the calls are assembled.
    pub max_call_bytes: usize,
    /// How long a conversation's tool-loop counters are kept after its
    /// last request.
    pub conversation_ttl_secs: u64,
    /// Most conversations whose tool-loop counters one tenant keeps in a
    /// replica's memory; past it the least recently counted is forgotten.
    pub max_conversations_per_tenant: usize,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            token_ttl_secs: 300,
            confirmation_ttl_secs: 900,
            max_pending: 10_000,
            max_pending_per_tenant: 1_000,
            max_call_bytes: 1024 * 1024,
            conversation_ttl_secs: 3_600,
            max_conversations_per_tenant: 10_000,
        }
    }
}

impl ToolsConfig {
    /// Every lifetime and bound must be usable: a zero would expire every
    /// token at once or refuse every call.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (field, secs) in [
            ("token_ttl_secs", self.token_ttl_secs),
            ("confirmation_ttl_secs", self.confirmation_ttl_secs),
            ("conversation_ttl_secs", self.conversation_ttl_secs),
        ] {
            if secs == 0 {
                return Err(invalid(
                    format!("tools.{field}"),
                    "must be greater than 0 (a lifetime of 0 expires at once)",
                ));
            }
        }
        if self.max_pending == 0 {
            return Err(invalid("tools.max_pending", "must be greater than 0"));
        }
        // Above max_pending it is max_pending (a config that lowers only the
        // total stays valid).
        if self.max_pending_per_tenant == 0 {
            return Err(invalid(
                "tools.max_pending_per_tenant",
                "must be greater than 0",
            ));
        }
        if self.max_conversations_per_tenant == 0 {
            return Err(invalid(
                "tools.max_conversations_per_tenant",
                "must be greater than 0",
            ));
        }
        if self.max_call_bytes < 1024 {
            return Err(invalid("tools.max_call_bytes", "must be at least 1024"));
        }
        Ok(())
    }
}
