//! Palisade's configuration: the schema, its defaults, layered loading (TOML
//! file, then `PALISADE_*` environment overrides) and validation.
//!
//! Everything the gateway can do is configured through one [`Config`] value;
//! `examples/palisade.toml` documents every key. A config that loads is a
//! config that is safe to serve with: [`Config::validate`] rejects dangling
//! backend names, duplicate model names, malformed key hashes and an open
//! (unauthenticated) gateway on a non-loopback address, each with a message
//! that names the offending key as a path (`routes[0].backend`,
//! `limits.tenants.acme.requests_per_minute`).
//!
//! Each section lives in its own module and validates itself; only the
//! rules that span sections (a route's backend, a tenant's upstream key, a
//! dollar quota's prices, open mode off loopback) live in [`Config::validate`].
//!
//! This crate reads the config file and environment and nothing else; it opens
//! no sockets and never reads secrets (API keys named by `api_key_env` are
//! resolved by the gateway at start).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod auth;
mod backends;
mod bundle;
mod canary;
mod cascade;
mod console;
mod detection;
mod extraction;
mod fleet;
mod hedge;
mod ledger;
mod limits;
mod log;
mod policy;
mod reload;
mod replay;
mod routes;
mod routing;
mod server;
mod stores;
mod telemetry;
mod tenants;
mod tools;
mod watermark;

pub use auth::*;
pub use backends::*;
pub use bundle::*;
pub use canary::*;
pub use cascade::*;
pub use console::*;
pub use detection::*;
pub use extraction::*;
pub use fleet::*;
pub use hedge::*;
pub use ledger::*;
pub use limits::*;
pub use log::*;
pub use policy::*;
pub use reload::*;
pub use replay::*;
pub use routes::*;
pub use routing::*;
pub use server::*;
pub use telemetry::*;
pub use tenants::*;
pub use tools::*;
pub use watermark::*;

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
    /// The detection cascade's second stage.
    pub detection: DetectionConfig,
    /// The fleet registry (replicas, skew, events).
    pub fleet: FleetConfig,
    /// A signed security bundle as the policy's source (instead of
    /// `policy.file`); absent: the policy file or the built-in policy.
    pub bundle: Option<BundleConfig>,
    /// Model-extraction defence: parameter hardening, telemetry, detectors.
    pub extraction: ExtractionConfig,
    /// Idempotency keys: a repeated `Idempotency-Key` replays the first outcome.
    pub idempotency: IdempotencyConfig,
    /// The exact-match response cache (off by default).
    pub cache: CacheConfig,
    /// Output watermarking and its detector.
    pub watermark: WatermarkConfig,
    /// The admin web console (`/admin/ui`).
    pub console: ConsoleConfig,
    /// OpenTelemetry trace export (off by default).
    pub telemetry: TelemetryConfig,
    /// Watching the config file for edits (the hot sections of `[limits]`).
    pub reload: ReloadConfig,
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
                deployments: Vec::new(),
                fallbacks: FallbacksConfig::default(),
                retry: None,
                residency: ResidencyConfig::default(),
                idempotent: false,
                hedge: None,
                cascade: None,
                canary: None,
                rollout: None,
            });
        }
    }

    /// Checks every section, then the rules that span sections (a name
    /// in one section that must exist in another, a setting that is only
    /// safe given another's). The first problem found is returned, keyed
    /// by its path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        if self.auth.effective_mode() == AuthMode::Open && !self.server.listen.ip().is_loopback() {
            return Err(invalid(
                "auth.mode",
                format!(
                    "open mode (no API keys) is only allowed on a loopback address, but server.listen is {}; add [[auth.keys]] or listen on 127.0.0.1",
                    self.server.listen
                ),
            ));
        }
        self.auth.validate()?;
        if self.auth.runtime.enabled && self.ledger.url.is_none() {
            return Err(invalid(
                "auth.runtime.enabled",
                "runtime keys are kept in the ledger store: set ledger.url",
            ));
        }
        for (name, backend) in &self.backends {
            backend.validate(name)?;
        }
        self.limits.validate()?;
        self.ledger.validate()?;
        self.policy.validate()?;
        self.tools.validate()?;
        self.detection.validate()?;
        self.fleet.validate()?;
        self.idempotency.validate()?;
        self.cache.validate()?;
        self.console.validate()?;
        self.reload.validate()?;
        if let Some(bundle) = &self.bundle {
            bundle.validate()?;
            if self.policy.file.is_some() {
                return Err(invalid(
                    "policy.file",
                    "a [bundle] carries the policy: remove policy.file (or [bundle])",
                ));
            }
        }
        self.extraction.validate()?;
        self.watermark.validate(&self.routes)?;
        self.telemetry.validate()?;
        self.validate_cost_limits_are_priced()?;
        self.validate_tenant_backends()?;
        self.validate_route_backends()?;
        validate_routing_table(&self.routes)?;
        self.validate_route_residency()
    }

    /// A route's own residency rule must allow each of its deployments: one
    /// it forbids could never serve it, and in a config that is edited
    /// while running it is most likely a mistake that moves the route's
    /// data (refused the same way at start and on reload).
    fn validate_route_residency(&self) -> Result<(), ConfigError> {
        // (error key, backend name, the deployment's label overrides)
        type Target<'a> = (String, &'a str, Option<&'a BTreeMap<String, String>>);
        for (i, route) in self.routes.iter().enumerate() {
            let rule = &route.residency;
            if rule.regions.is_empty() && rule.providers.is_empty() && rule.data_classes.is_empty()
            {
                continue;
            }
            let targets: Vec<Target<'_>> = if route.deployments.is_empty() {
                vec![(format!("routes[{i}].backend"), route.backend.as_str(), None)]
            } else {
                route
                    .deployments
                    .iter()
                    .enumerate()
                    .map(|(j, d)| {
                        (
                            format!("routes[{i}].deployments[{j}]"),
                            d.backend.as_str(),
                            Some(&d.labels),
                        )
                    })
                    .collect()
            };
            for (key, backend, labels) in targets {
                let Some(b) = self.backends.get(backend) else {
                    continue;
                };
                let label = |name: &str, own: &Option<String>| {
                    labels
                        .and_then(|l| l.get(name).cloned())
                        .or_else(|| own.clone())
                };
                let region = label("region", &b.region);
                let provider = label("provider", &b.provider);
                let classes: Vec<String> = match labels.and_then(|l| l.get("data_classes")) {
                    Some(list) => list
                        .split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    None => b.data_classes.clone(),
                };
                let listed = |allowed: &[String], value: &Option<String>| {
                    allowed.is_empty() || value.as_ref().is_some_and(|v| allowed.contains(v))
                };
                if !listed(&rule.regions, &region)
                    || !listed(&rule.providers, &provider)
                    || !rule.data_classes.iter().all(|c| classes.contains(c))
                {
                    return Err(invalid(
                        key,
                        format!(
                            "backend `{backend}` (region {}, provider {}, data classes [{}]) is outside this route's residency rule",
                            region.as_deref().unwrap_or("unset"),
                            provider.as_deref().unwrap_or("unset"),
                            classes.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A dollar quota or budget is only enforceable if requests can be
    /// priced.
    fn validate_cost_limits_are_priced(&self) -> Result<(), ConfigError> {
        if !self.ledger.prices.is_empty() {
            return Ok(());
        }
        for (scope, limits) in self.limits.scopes() {
            if let Some((field, _)) = limits.cost_limits().next() {
                return Err(invalid(
                    format!("{scope}.{field}"),
                    "a cost quota or budget needs [ledger.prices] to price requests",
                ));
            }
        }
        Ok(())
    }

    /// A tenant's upstream key must be for a configured backend.
    fn validate_tenant_backends(&self) -> Result<(), ConfigError> {
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

    /// Every route must send its requests to configured backends, and its
    /// fallbacks to routed names.
    fn validate_route_backends(&self) -> Result<(), ConfigError> {
        let unknown = |key: String, name: &str| {
            let known: Vec<&str> = self.backends.keys().map(String::as_str).collect();
            invalid(
                key,
                format!(
                    "unknown backend `{name}` (configured: {})",
                    known.join(", ")
                ),
            )
        };
        for (i, route) in self.routes.iter().enumerate() {
            if route.deployments.is_empty() && !self.backends.contains_key(&route.backend) {
                return Err(unknown(format!("routes[{i}].backend"), &route.backend));
            }
            for (j, d) in route.deployments.iter().enumerate() {
                if !self.backends.contains_key(&d.backend) {
                    return Err(unknown(
                        format!("routes[{i}].deployments[{j}].backend"),
                        &d.backend,
                    ));
                }
            }
            for (key, name) in route.fallbacks.named() {
                let routed = self.routes.iter().any(|r| {
                    r.model != WILDCARD_MODEL && (&r.model == name || r.aliases.contains(name))
                });
                if !routed || name == &route.model {
                    return Err(invalid(
                        format!("routes[{i}].{key}"),
                        format!("`{name}` must be another routed model name"),
                    ));
                }
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
