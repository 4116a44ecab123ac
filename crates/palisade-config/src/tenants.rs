//! `[tenants.*]`: per-tenant credentials, by environment variable name.
//!
//! Holds names only: this module must never resolve or store a secret. The
//! only rule (each named backend exists) spans sections, so
//! [`Config::validate`] checks it.

use super::*;

/// One tenant's credentials. Values are environment variable *names*: the
/// secrets stay out of the config file, the model's context and the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// Backend name → variable holding this tenant's API key for it, sent
    /// upstream instead of the backend's own `api_key_env`.
    pub upstream_api_key_env: BTreeMap<String, String>,
    /// Tool name → variable holding the credential an executor needs for
    /// it; `POST /v1/tools/verify` returns it with a valid capability token.
    pub tool_credentials_env: BTreeMap<String, String>,
    /// Where this tenant's requests may go (regions, providers, data
    /// classes), for every route and fallback.
    pub residency: ResidencyConfig,
}
