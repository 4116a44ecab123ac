//! Palisade's configuration: the schema, its defaults, layered loading (TOML
//! file, then `PALISADE_*` environment overrides) and validation.
//!
//! Everything the gateway can do is configured through one [`Config`] value;
//! `examples/palisade.toml` documents every key. A config that loads is a
//! config that is safe to serve with: [`Config::validate`] rejects dangling
//! backend names, duplicate model names, malformed key hashes and an open
//! (unauthenticated) gateway on a non-loopback address, each with a message
//! that names the offending key.
//!
//! This crate reads the config file and environment and nothing else; it opens
//! no sockets and never reads secrets (API keys named by `api_key_env` are
//! resolved by the gateway at start).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod backends;
mod limits;
mod server;
mod stores;

pub use backends::*;
pub use limits::*;
pub use server::*;

/// vLLM's default address: the most common thing to put Palisade in front of.
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:8000/v1";
/// Loopback only by default: an unconfigured gateway must not be reachable
/// from the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Name of the backend synthesized when the config defines none.
pub const DEFAULT_BACKEND: &str = "default";
/// The route pattern that matches every model not matched by name.
pub const WILDCARD_MODEL: &str = "*";

/// Errors from loading or validating a config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file or environment could not be parsed into the schema (unknown
    /// key, wrong type, TOML syntax). The message names the key and source.
    #[error("{0}")]
    Load(Box<figment::Error>),
    /// The config parsed but is inconsistent or unsafe.
    #[error("invalid config: {key}: {message}")]
    Invalid {
        /// Dotted path of the offending key, e.g. `routes[2].backend`.
        key: String,
        /// What is wrong and, where possible, how to fix it.
        message: String,
    },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        Self::Load(Box::new(e))
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listener, limits and lifecycle.
    pub server: ServerConfig,
    /// Who may call the gateway.
    pub auth: AuthConfig,
    /// Named upstream model servers.
    pub backends: BTreeMap<String, BackendConfig>,
    /// Model name → backend routing table, matched in order; `*` matches any.
    pub routes: Vec<RouteConfig>,
    /// Admission control: request rates and in-flight limits.
    pub limits: LimitsConfig,
    /// The token ledger: one row per request that reached an upstream.
    pub ledger: LedgerConfig,
    /// The safety policy: gates, thresholds and actions.
    pub policy: PolicyConfig,
    /// Tool-call security mechanics: capability-token signing, confirmations.
    /// (Which tools are allowed is the policy's `[tools]` and tier `tool` gate.)
    pub tools: ToolsConfig,
    /// Per-tenant credentials, by environment variable name.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Logging.
    pub log: LogConfig,
}

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
}

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

/// Where a config comes from. Tests pass an explicit environment so they do
/// not depend on (or race over) the process environment.
#[derive(Debug, Clone, Default)]
pub struct Sources<'a> {
    /// TOML file, if any.
    pub file: Option<&'a Path>,
    /// TOML text (used instead of `file` when set; for tests and `config check -`).
    pub toml: Option<&'a str>,
    /// Read `PALISADE_SECTION__KEY` overrides from the process environment.
    pub env: bool,
    /// Upstream URL for the synthesized default backend (`--upstream`,
    /// `PALISADE_UPSTREAM`); used only when no backend is configured.
    pub default_upstream: Option<&'a str>,
}

impl Config {
    /// Loads, fills in defaults and validates.
    pub fn load(sources: &Sources<'_>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(text) = sources.toml {
            figment = figment.merge(Toml::string(text));
        } else if let Some(path) = sources.file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        if sources.env {
            // Only nested keys (`PALISADE_SERVER__LISTEN`) are config
            // overrides; flat ones such as PALISADE_UPSTREAM and
            // PALISADE_CONFIG are the CLI's and must not trip
            // `deny_unknown_fields`.
            figment = figment.merge(
                Env::prefixed("PALISADE_")
                    .filter(|k| k.as_str().contains("__"))
                    .split("__"),
            );
        }
        let mut config: Config = figment.extract()?;
        config.fill_defaults(sources.default_upstream.unwrap_or(DEFAULT_UPSTREAM));
        config.validate()?;
        Ok(config)
    }

    /// With no backend configured, forward every model to one default
    /// upstream, so `palisade serve` is useful with no config at all.
    fn fill_defaults(&mut self, default_upstream: &str) {
        if self.backends.is_empty() {
            self.backends.insert(
                DEFAULT_BACKEND.to_owned(),
                BackendConfig::with_url(default_upstream),
            );
        }
        if self.routes.is_empty() && self.backends.len() == 1 {
            let backend = self.backends.keys().next().cloned().unwrap_or_default();
            self.routes.push(RouteConfig {
                model: WILDCARD_MODEL.to_owned(),
                backend,
                upstream_model: None,
                aliases: Vec::new(),
                deadline_ms: None,
                overload_model: None,
                overload_max_tokens: None,
                tokenizer: None,
            });
        }
    }

    /// Monthly quotas and budgets, alerts and the spend-rate breaker.
    fn validate_tools(&self) -> Result<(), ConfigError> {
        let t = &self.tools;
        if t.token_ttl_secs == 0 || t.confirmation_ttl_secs == 0 || t.conversation_ttl_secs == 0 {
            return Err(invalid(
                "tools",
                "token_ttl_secs, confirmation_ttl_secs and conversation_ttl_secs must be greater than 0",
            ));
        }
        if t.max_pending == 0 {
            return Err(invalid("tools.max_pending", "must be greater than 0"));
        }
        // Above max_pending it is max_pending (a config that lowers only the
        // total stays valid).
        if t.max_pending_per_tenant == 0 {
            return Err(invalid(
                "tools.max_pending_per_tenant",
                "must be greater than 0",
            ));
        }
        if t.max_conversations_per_tenant == 0 {
            return Err(invalid(
                "tools.max_conversations_per_tenant",
                "must be greater than 0",
            ));
        }
        if t.max_call_bytes < 1024 {
            return Err(invalid("tools.max_call_bytes", "must be at least 1024"));
        }
        for (tenant, cfg) in &self.tenants {
            for backend in cfg.upstream_api_key_env.keys() {
                if !self.backends.contains_key(backend) {
                    return Err(invalid(
                        format!("tenants.{tenant}.upstream_api_key_env.{backend}"),
                        "names no backend under [backends]",
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_spend_controls(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        let percents = &limits.budget_alert_percents;
        if percents.iter().any(|p| *p == 0 || *p > 1000) || !percents.is_sorted_by(|a, b| a < b) {
            return Err(invalid(
                "limits.budget_alert_percents",
                "must be increasing percentages between 1 and 1000",
            ));
        }
        if let Some(url) = &limits.alert_webhook_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "limits.alert_webhook_url",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if let Some(b) = &limits.spend_rate {
            if b.factor < 2 || b.floor_tokens_per_minute == 0 {
                return Err(invalid(
                    "limits.spend_rate",
                    "needs factor >= 2 and floor_tokens_per_minute > 0",
                ));
            }
            if b.baseline_minutes == 0 || b.cooldown_secs == 0 {
                return Err(invalid(
                    "limits.spend_rate",
                    "baseline_minutes and cooldown_secs must be greater than 0",
                ));
            }
        }
        let scopes = std::iter::once(("limits".to_owned(), &limits.default)).chain(
            limits
                .tenants
                .iter()
                .map(|(t, l)| (format!("limits.tenants.{t}"), l)),
        );
        for (scope, l) in scopes {
            for (field, value) in [
                ("monthly_token_quota", l.monthly_token_quota),
                ("monthly_token_budget", l.monthly_token_budget),
            ] {
                if value == Some(0) {
                    return Err(invalid(
                        format!("{scope}.{field}"),
                        "must be greater than 0 (leave it out for none)",
                    ));
                }
            }
            for (field, value) in [
                ("monthly_cost_quota_usd", l.monthly_cost_quota_usd),
                ("monthly_cost_budget_usd", l.monthly_cost_budget_usd),
            ] {
                let Some(usd) = value else { continue };
                if !(usd.is_finite() && usd > 0.0) {
                    return Err(invalid(
                        format!("{scope}.{field}"),
                        "must be a positive number of dollars",
                    ));
                }
                if self.ledger.prices.is_empty() {
                    return Err(invalid(
                        format!("{scope}.{field}"),
                        "a cost quota or budget needs [ledger.prices] to price requests",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks cross-references and safety rules the schema cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.max_body_bytes == 0 {
            return Err(invalid("server.max_body_bytes", "must be greater than 0"));
        }
        for (key, value) in [
            (
                "server.header_read_timeout_ms",
                self.server.header_read_timeout_ms,
            ),
            (
                "server.body_read_timeout_ms",
                self.server.body_read_timeout_ms,
            ),
            ("server.max_connections", self.server.max_connections as u64),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.server.max_sse_event_bytes < 1024 {
            return Err(invalid(
                "server.max_sse_event_bytes",
                "must be at least 1024",
            ));
        }
        if self.auth.effective_mode() == AuthMode::Open && !self.server.listen.ip().is_loopback() {
            return Err(invalid(
                "auth.mode",
                format!(
                    "open mode (no API keys) is only allowed on a loopback address, but server.listen is {}; add [[auth.keys]] or listen on 127.0.0.1",
                    self.server.listen
                ),
            ));
        }
        if self.auth.effective_mode() == AuthMode::Keys && self.auth.keys.is_empty() {
            return Err(invalid(
                "auth.keys",
                "auth.mode = \"keys\" needs at least one key",
            ));
        }
        let mut seen_hashes = HashSet::new();
        for (i, key) in self.auth.keys.iter().enumerate() {
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
        for (name, backend) in &self.backends {
            let key = |field: &str| format!("backends.{name}.{field}");
            let url = backend.base_url.as_str();
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            match rest {
                Some(host) if !host.is_empty() && !host.starts_with('/') => {}
                _ => {
                    return Err(invalid(
                        key("base_url"),
                        format!("`{url}` is not an http:// or https:// URL with a host"),
                    ))
                }
            }
            if backend.max_in_flight == Some(0) {
                return Err(invalid(
                    key("max_in_flight"),
                    "must be greater than 0 (leave it out for no limit)",
                ));
            }
            if backend.adaptive_concurrency {
                match backend.max_in_flight {
                    Some(max) if backend.min_in_flight >= 1 && backend.min_in_flight <= max => {}
                    _ => {
                        return Err(invalid(
                            key("adaptive_concurrency"),
                            "needs max_in_flight and 1 <= min_in_flight <= max_in_flight",
                        ))
                    }
                }
            }
            if let Some(b) = &backend.circuit_breaker {
                let sane = b.error_rate > 0.0
                    && b.error_rate <= 1.0
                    && b.window > 0
                    && b.min_requests > 0
                    && b.min_requests <= b.window
                    && b.cooldown_ms > 0;
                if !sane {
                    return Err(invalid(
                        key("circuit_breaker"),
                        "needs 0 < error_rate <= 1, 0 < min_requests <= window, cooldown_ms > 0",
                    ));
                }
            }
            if backend.max_queued_tokens == Some(0) {
                return Err(invalid(key("max_queued_tokens"), "must be greater than 0"));
            }
            if backend.max_queued_per_tenant == 0 {
                return Err(invalid(
                    key("max_queued_per_tenant"),
                    "must be greater than 0",
                ));
            }
            for (field, value) in [
                ("queue_timeout_ms", backend.queue_timeout_ms),
                ("connect_timeout_ms", backend.connect_timeout_ms),
                ("first_byte_timeout_ms", backend.first_byte_timeout_ms),
                ("idle_timeout_ms", backend.idle_timeout_ms),
                ("request_timeout_ms", backend.request_timeout_ms),
            ] {
                if value == 0 {
                    return Err(invalid(key(field), "must be greater than 0"));
                }
            }
        }
        if self.limits.backend == LimitsBackend::Redis {
            stores::validate_redis_url(self.limits.redis_url.as_deref())?;
        }
        stores::validate_postgres_tls("ledger.url", self.ledger.url.as_deref())?;
        stores::validate_postgres_tls("policy.audit_url", self.policy.audit_url.as_deref())?;
        if self.policy.min_serial > 0 && self.policy.trusted_keys.is_empty() {
            return Err(invalid(
                "policy.min_serial",
                "a serial is only checked on signed policies: set policy.trusted_keys",
            ));
        }
        if let Some(url) = &self.ledger.url {
            let known = ["sqlite:", "postgres://", "postgresql://"];
            if !known.iter().any(|p| url.starts_with(p)) {
                return Err(invalid(
                    "ledger.url",
                    "must start with sqlite:, postgres:// or postgresql://",
                ));
            }
        }
        for (model, price) in &self.ledger.prices {
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            if !ok(price.input_usd_per_mtok) || !ok(price.output_usd_per_mtok) {
                return Err(invalid(
                    format!("ledger.prices.{model}"),
                    "prices must be finite and not negative",
                ));
            }
        }
        for (scope, rates) in [("keys", &self.limits.keys), ("models", &self.limits.models)] {
            for (name, rate) in rates {
                if rate.requests_per_minute == 0 || rate.burst == Some(0) {
                    return Err(invalid(
                        format!("limits.{scope}.{name}"),
                        "requests_per_minute and burst must be greater than 0",
                    ));
                }
            }
        }
        if let Some(e) = &self.limits.escalation {
            let ordered = e.warn_at > 0.0 && e.warn_at <= e.slow_at && e.slow_at <= e.block_at;
            if !(ordered && e.block_at.is_finite()) {
                return Err(invalid(
                    "limits.escalation",
                    "needs 0 < warn_at <= slow_at <= block_at",
                ));
            }
            if e.half_life_secs == 0 {
                return Err(invalid(
                    "limits.escalation.half_life_secs",
                    "must be greater than 0",
                ));
            }
        }
        if self.limits.redis_timeout_ms == 0 {
            return Err(invalid("limits.redis_timeout_ms", "must be greater than 0"));
        }
        if self.policy.stream_hold_bytes < 256 {
            return Err(invalid(
                "policy.stream_hold_bytes",
                "must be at least 256 (a URL or key must fit whole)",
            ));
        }
        if self.policy.reload_interval_ms == 0 {
            return Err(invalid(
                "policy.reload_interval_ms",
                "must be greater than 0",
            ));
        }
        self.validate_spend_controls()?;
        self.validate_tools()?;
        for (scope, limits) in std::iter::once(("limits".to_owned(), &self.limits.default)).chain(
            self.limits
                .tenants
                .iter()
                .map(|(t, l)| (format!("limits.tenants.{t}"), l)),
        ) {
            if limits.requests_per_minute == Some(0) {
                return Err(invalid(
                    format!("{scope}.requests_per_minute"),
                    "must be greater than 0 (leave it out for no limit)",
                ));
            }
            if limits.burst == Some(0) {
                return Err(invalid(format!("{scope}.burst"), "must be greater than 0"));
            }
            if limits.max_streams_per_key == Some(0) {
                return Err(invalid(
                    format!("{scope}.max_streams_per_key"),
                    "must be greater than 0 (leave it out for no limit)",
                ));
            }
            if limits.tokens_per_minute == Some(0) {
                return Err(invalid(
                    format!("{scope}.tokens_per_minute"),
                    "must be greater than 0 (leave it out for no limit)",
                ));
            }
            if limits.max_in_flight_per_key == Some(0) {
                return Err(invalid(
                    format!("{scope}.max_in_flight_per_key"),
                    "must be greater than 0 (leave it out for no limit)",
                ));
            }
        }
        let mut names = HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            if !self.backends.contains_key(&route.backend) {
                let known: Vec<&str> = self.backends.keys().map(String::as_str).collect();
                return Err(invalid(
                    format!("routes[{i}].backend"),
                    format!(
                        "unknown backend `{}` (configured: {})",
                        route.backend,
                        known.join(", ")
                    ),
                ));
            }
            if route.deadline_ms == Some(0) {
                return Err(invalid(
                    format!("routes[{i}].deadline_ms"),
                    "must be greater than 0",
                ));
            }
            for name in std::iter::once(&route.model).chain(&route.aliases) {
                if name.is_empty() {
                    return Err(invalid(format!("routes[{i}]"), "empty model name"));
                }
                if !names.insert(name.as_str()) {
                    return Err(invalid(
                        format!("routes[{i}]"),
                        format!("model name `{name}` is routed twice"),
                    ));
                }
            }
            if let Some(m) = &route.overload_model {
                let routed = self
                    .routes
                    .iter()
                    .any(|r| &r.model == m || r.aliases.contains(m));
                if !routed || m == &route.model {
                    return Err(invalid(
                        format!("routes[{i}].overload_model"),
                        format!("`{m}` must be another routed model name"),
                    ));
                }
            }
            if route.overload_max_tokens == Some(0) {
                return Err(invalid(
                    format!("routes[{i}].overload_max_tokens"),
                    "must be greater than 0",
                ));
            }
            if route.model == WILDCARD_MODEL && !route.aliases.is_empty() {
                return Err(invalid(
                    format!("routes[{i}].aliases"),
                    "a wildcard route cannot have aliases",
                ));
            }
        }
        Ok(())
    }

    /// The config as TOML, defaults filled in (for `palisade config check --print`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
