//! Phase 2, authenticate: `Authorization: Bearer <key>` → tenant.
//!
//! Keys are stored as SHA-256 hashes, so the config (and a memory dump of the
//! routing table) never holds a usable credential. Lookup hashes the presented
//! key and probes a map; keys are high-entropy random strings, so a fast hash
//! is the right tool (a password KDF would only add latency).
//!
//! Config keys (`[[auth.keys]]`) are looked up first; then, with
//! `[auth.runtime]`, the runtime keys of the ledger store
//! ([`super::runtime_keys`]). A hash is in at most one of the two in
//! practice (keys are random), and on a name clash both keys work: names are
//! labels, the hash is the credential. Creating a runtime key with a name a
//! config key of the same tenant uses is refused, so labels stay unique.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use palisade_config::{AuthConfig, AuthMode};
use palisade_openai::{ApiError, ErrorCode};
use sha2::{Digest, Sha256};

/// Tenant used for every request in open mode.
pub const OPEN_TENANT: &str = "local";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant the key belongs to.
    pub tenant: Arc<str>,
    /// The key's label (never the key).
    pub key_name: Arc<str>,
    /// May call `/admin/*` (admin keys, and everyone in open mode, which is
    /// loopback-only).
    pub admin: bool,
    /// May confirm held tool calls of its tenant.
    pub approver: bool,
    /// Runs tool calls: receives the tenant's tool credentials from
    /// `POST /v1/tools/verify`.
    pub executor: bool,
    /// Priority class at saturated backends (0 high … 2 low).
    pub priority_class: usize,
    /// The models this key may call (`None`: every routed model). Config
    /// keys have no allowlist; runtime keys may.
    pub models: Option<Arc<[String]>>,
    /// The runtime key's id (`None` for config keys and open mode).
    pub key_id: Option<Arc<str>>,
    /// The runtime key's own budget and rates (`None`: none set). Read from
    /// the key table, so an update reaches every replica with the next
    /// refresh. Config keys take theirs from `[limits.keys]` at admission.
    pub budget: Option<palisade_limits::KeyBudget>,
}

impl Principal {
    /// Refuses a model outside the key's allowlist: 403 `model_not_allowed`.
    pub(crate) fn check_model(&self, model: &str) -> Result<(), ApiError> {
        match &self.models {
            Some(models) if !models.iter().any(|m| m == model) => Err(ApiError::new(
                ErrorCode::ModelNotAllowed,
                "this API key may not call this model",
            )
            .with_param("model")),
            _ => Ok(()),
        }
    }
}

/// Resolves credentials to principals.
#[derive(Debug)]
pub struct Authenticator {
    mode: Mode,
    /// The runtime key table, with `[auth.runtime] enabled`.
    pub(crate) runtime: Option<Arc<super::runtime_keys::RuntimeKeys>>,
}

/// The config's keys.
#[derive(Debug)]
enum Mode {
    /// Everyone is [`OPEN_TENANT`]; config validation allows this on loopback only.
    Open(Principal),
    /// Hash of key → principal.
    Keys(HashMap<[u8; 32], Principal>),
}

/// SHA-256 of a key, as stored in config.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Authenticator {
    /// Builds from validated config.
    pub fn from_config(config: &AuthConfig) -> Self {
        let runtime = (config.runtime.enabled && config.effective_mode() == AuthMode::Keys)
            .then(|| Arc::new(super::runtime_keys::RuntimeKeys::new(&config.runtime)));
        let mode = match config.effective_mode() {
            AuthMode::Open => Mode::Open(Principal {
                tenant: OPEN_TENANT.into(),
                key_name: "open".into(),
                admin: true,
                approver: true,
                executor: true,
                priority_class: palisade_config::Priority::Normal.class(),
                models: None,
                key_id: None,
                budget: None,
            }),
            AuthMode::Keys => Mode::Keys(
                config
                    .keys
                    .iter()
                    .filter_map(|k| {
                        let mut hash = [0u8; 32];
                        hex::decode_to_slice(&k.sha256, &mut hash).ok()?;
                        Some((
                            hash,
                            Principal {
                                tenant: k.tenant.as_str().into(),
                                key_name: k.name.as_str().into(),
                                admin: k.admin,
                                approver: k.approver,
                                executor: k.executor,
                                priority_class: k.priority.class(),
                                models: None,
                                key_id: None,
                                budget: None,
                            },
                        ))
                    })
                    .collect(),
            ),
        };
        Self { mode, runtime }
    }

    /// Whether a config key of `tenant` is labelled `name`.
    pub(crate) fn config_key_named(&self, tenant: &str, name: &str) -> bool {
        match &self.mode {
            Mode::Open(_) => false,
            Mode::Keys(keys) => keys
                .values()
                .any(|p| &*p.tenant == tenant && &*p.key_name == name),
        }
    }

    /// The config keys (`[[auth.keys]]`) as the API lists them: labels and
    /// roles, never the hash. Sorted by tenant, then name.
    pub(crate) fn config_keys(&self) -> Vec<&Principal> {
        let mut keys: Vec<&Principal> = match &self.mode {
            Mode::Open(_) => Vec::new(),
            Mode::Keys(keys) => keys.values().collect(),
        };
        keys.sort_by(|a, b| (&a.tenant, &a.key_name).cmp(&(&b.tenant, &b.key_name)));
        keys
    }

    /// Authenticates an admin request: a valid key that is an admin key.
    pub fn authenticate_admin(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let principal = self.authenticate(headers)?;
        if principal.admin {
            Ok(principal)
        } else {
            Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "this endpoint needs an admin key",
            ))
        }
    }

    /// Authenticates a request by its headers.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let keys = match &self.mode {
            Mode::Open(p) => {
                refuse_browsers_from_elsewhere(headers)?;
                return Ok(p.clone());
            }
            Mode::Keys(keys) => keys,
        };
        let header = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::MissingApiKey,
                    "missing API key: send `Authorization: Bearer <key>`",
                )
            })?;
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::MissingApiKey,
                    "malformed Authorization header: expected `Bearer <key>`",
                )
            })?;
        let hash = hash_key(key);
        if let Some(p) = keys.get(&hash) {
            return Ok(p.clone());
        }
        let now_ms = crate::clock::GatewayClock::system().unix_ms();
        match self.runtime.as_ref().and_then(|r| r.lookup(&hash, now_ms)) {
            Some(found) => found,
            None => Err(ApiError::new(ErrorCode::InvalidApiKey, "invalid API key")),
        }
    }
}

/// Open mode trusts whoever reaches the loopback listener, and a web page
/// in the operator's browser reaches it too: a cross-site form POST needs no
/// preflight, and DNS rebinding makes a hostile page same-origin with the
/// gateway. Such requests are told apart by what the browser always sends:
/// a `Host` naming the attacker's domain (rebinding), or an `Origin` or
/// `Sec-Fetch-Site` from another site. The `Host` is only held against a
/// request a browser sent (it carries `Origin` or a `Sec-Fetch-*` header,
/// as every current browser's requests do): clients that are not browsers
/// (SDKs, curl, a local reverse proxy keeping its own host name) pass.
fn refuse_browsers_from_elsewhere(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let refused = |what: &str| {
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "open mode (no API keys) answers loopback clients only, and this request's {what} \
                 is another site (a web page in a browser?); add [[auth.keys]] to serve it"
            ),
        ))
    };
    let from_a_browser = headers.contains_key(http::header::ORIGIN)
        || headers
            .keys()
            .any(|name| name.as_str().starts_with("sec-fetch-"));
    if let Some(host) = text(http::header::HOST).filter(|_| from_a_browser) {
        if !is_loopback_authority(host) {
            return refused("Host header");
        }
    }
    if let Some(origin) = text(http::header::ORIGIN) {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if !authority.is_some_and(|a| !a.contains('/') && is_loopback_authority(a)) {
            return refused("Origin");
        }
    }
    if text(http::HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
        return refused("Sec-Fetch-Site");
    }
    Ok(())
}

/// `localhost`, a `*.localhost` name (RFC 6761), `127.0.0.0/8` or `[::1]`,
/// with an optional port.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inside, port)) if port.is_empty() || port.starts_with(':') => inside,
            _ => return false,
        },
        None => authority.split(':').next().unwrap_or(authority),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_config::ApiKeyConfig;

    fn keys_auth() -> Authenticator {
        Authenticator::from_config(&AuthConfig {
            mode: None,
            runtime: Default::default(),
            keys: vec![ApiKeyConfig {
                name: "ci".into(),
                tenant: "acme".into(),
                sha256: hex::encode(hash_key("sk-good")),
                admin: false,
                approver: false,
                executor: false,
                priority: palisade_config::Priority::Normal,
            }],
        })
    }

    #[test]
    fn open_mode_refuses_requests_a_web_page_sent() {
        let open = Authenticator::from_config(&AuthConfig::default());
        let with = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (name, value) in pairs {
                h.insert(*name, value.parse().unwrap());
            }
            open.authenticate(&h).map(|p| p.admin)
        };
        // Not browsers, or the operator's own console: pass.
        for ok in [
            &[][..],
            &[("host", "127.0.0.1:8080")],
            &[("host", "localhost")],
            &[("host", "[::1]:8080"), ("origin", "http://[::1]:8080")],
            &[
                ("host", "app.localhost:80"),
                ("sec-fetch-site", "same-origin"),
            ],
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://localhost:3000"),
            ],
        ] {
            assert_eq!(with(ok), Ok(true), "{ok:?}");
        }
        // Not a browser: its Host is its own business.
        assert_eq!(with(&[("host", "x")]), Ok(true));
        // DNS rebinding, a cross-site form, an opaque origin: refused.
        for refused in [
            &[("host", "evil.example:8080"), ("sec-fetch-mode", "cors")][..],
            &[
                ("host", "127.0.0.1.evil.example"),
                ("sec-fetch-site", "same-origin"),
            ],
            &[("host", "[::1]x"), ("origin", "http://[::1]x")],
            &[("host", "localhost"), ("origin", "https://evil.example")],
            &[("host", "localhost"), ("origin", "null")],
            &[
                ("host", "localhost"),
                ("origin", "http://localhost.evil.example"),
            ],
            &[("host", "localhost"), ("sec-fetch-site", "cross-site")],
        ] {
            let err = with(refused).expect_err(&format!("{refused:?}"));
            assert_eq!(err.code, ErrorCode::PermissionDenied, "{refused:?}");
        }
    }

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn resolves_known_key_to_tenant() {
        let p = keys_auth()
            .authenticate(&headers(Some("Bearer sk-good")))
            .unwrap();
        assert_eq!(&*p.tenant, "acme");
        assert_eq!(&*p.key_name, "ci");
    }

    #[test]
    fn refuses_missing_malformed_and_unknown_keys() {
        let a = keys_auth();
        let code = |h: Option<&str>| a.authenticate(&headers(h)).unwrap_err().code;
        assert_eq!(code(None), ErrorCode::MissingApiKey);
        assert_eq!(code(Some("Basic abc")), ErrorCode::MissingApiKey);
        assert_eq!(code(Some("Bearer ")), ErrorCode::MissingApiKey);
        assert_eq!(code(Some("Bearer sk-bad")), ErrorCode::InvalidApiKey);
    }

    #[test]
    fn open_mode_admits_everyone_as_local() {
        let a = Authenticator::from_config(&AuthConfig::default());
        assert_eq!(
            &*a.authenticate(&headers(None)).unwrap().tenant,
            OPEN_TENANT
        );
    }
}
