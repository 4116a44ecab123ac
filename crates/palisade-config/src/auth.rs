//! `[auth]`: who may call the gateway, as API key hashes and their roles.
//!
//! Stores hashes only: this module must never see or derive a key itself.

use super::*;

/// Authentication mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// No keys: every caller is the tenant `local`. Only on loopback.
    Open,
    /// `Authorization: Bearer <key>`, matched by SHA-256 against `auth.keys`.
    Keys,
}

/// Who may call the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `open` or `keys`. When absent: `keys` if any key is configured,
    /// otherwise `open`.
    pub mode: Option<AuthMode>,
    /// API keys, stored as hashes. `palisade keys hash` prints one.
    pub keys: Vec<ApiKeyConfig>,
    /// Runtime keys: created, rotated and revoked through `/admin/keys`,
    /// kept (as hashes) in the ledger store, read back by every replica.
    pub runtime: RuntimeKeysConfig,
}

/// `[auth.runtime]`: keys managed at run time in the ledger store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeKeysConfig {
    /// Read keys from (and let `/admin/keys` write them to) the ledger
    /// store, `ledger.url`. Needs keys mode: a config admin key is how the
    /// first runtime key gets created.
    pub enabled: bool,
    /// How often each replica checks the store for key changes. A revoked
    /// key stops working on every replica within about this long. 2 s: one
    /// cheap aggregate query per replica per interval, and a revocation
    /// that takes effect faster than an operator can switch windows.
    pub refresh_ms: u64,
    /// Most live (unrevoked) runtime keys one tenant may hold: a flood of
    /// creations (a leaked admin key, a runaway script) stops here instead
    /// of growing every replica's key table without bound.
    pub max_keys_per_tenant: u64,
}

impl Default for RuntimeKeysConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            refresh_ms: 2_000,
            max_keys_per_tenant: 100,
        }
    }
}

impl AuthConfig {
    /// The mode in force after applying the default.
    pub fn effective_mode(&self) -> AuthMode {
        self.mode.unwrap_or(if self.keys.is_empty() {
            AuthMode::Open
        } else {
            AuthMode::Keys
        })
    }
}

/// One API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A label for logs and metrics (never the key itself).
    pub name: String,
    /// The tenant this key acts for.
    pub tenant: String,
    /// Lower-case hex SHA-256 of the key. Keys themselves are never stored, so
    /// a leaked config does not leak credentials.
    pub sha256: String,
    /// May call the `/admin/*` endpoints.
    #[serde(default)]
    pub admin: bool,
    /// May confirm held tool calls of its tenant (`POST /v1/tools/confirm`).
    /// Give it to the approval service or the human's console, not to the
    /// agent: a key that can confirm its own calls makes confirmation moot.
    #[serde(default)]
    pub approver: bool,
    /// Runs tool calls: `POST /v1/tools/verify` hands this key the tenant's
    /// tool credentials (`[tenants.NAME] tool_credentials_env`). Other keys
    /// of the tenant can verify tokens but never receive a credential: an
    /// agent key must not be able to collect them.
    #[serde(default)]
    pub executor: bool,
    /// Priority class at saturated backends: `high` is served first,
    /// `low` is shed rather than queued.
    #[serde(default)]
    pub priority: Priority,
}

/// A request's priority class at a saturated backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Served before everything queued.
    High,
    /// The default.
    #[default]
    Normal,
    /// Shed while the backend is saturated.
    Low,
}

impl Priority {
    /// 0 (high) to 2 (low).
    pub fn class(self) -> usize {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }
}

impl AuthConfig {
    /// Keys mode needs keys, and every key must be a well-formed, unique
    /// hash with a tenant. (Open mode off loopback is refused by
    /// [`Config::validate`]: it depends on `server.listen`.)
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.effective_mode() == AuthMode::Keys && self.keys.is_empty() {
            return Err(invalid(
                "auth.keys",
                "auth.mode = \"keys\" needs at least one key",
            ));
        }
        let runtime = &self.runtime;
        if runtime.enabled && self.effective_mode() != AuthMode::Keys {
            return Err(invalid(
                "auth.runtime.enabled",
                "runtime keys need keys mode: configure at least one admin key in [[auth.keys]]",
            ));
        }
        if !(100..=60_000).contains(&runtime.refresh_ms) {
            return Err(invalid(
                "auth.runtime.refresh_ms",
                "must be between 100 and 60000 (ms)",
            ));
        }
        if !(1..=100_000).contains(&runtime.max_keys_per_tenant) {
            return Err(invalid(
                "auth.runtime.max_keys_per_tenant",
                "must be between 1 and 100000",
            ));
        }
        let mut seen_hashes = HashSet::new();
        for (i, key) in self.keys.iter().enumerate() {
            let valid = key.sha256.len() == 64
                && key
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !valid {
                return Err(invalid(
                    format!("auth.keys[{i}].sha256"),
                    "must be 64 lower-case hex characters (run `palisade keys hash`)",
                ));
            }
            if !seen_hashes.insert(&key.sha256) {
                return Err(invalid(
                    format!("auth.keys[{i}].sha256"),
                    "the same key is configured twice",
                ));
            }
            if key.tenant.is_empty() {
                return Err(invalid(
                    format!("auth.keys[{i}].tenant"),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }
}
