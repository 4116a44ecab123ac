//! `[backends.*]`: the upstream model servers, their timeouts, queues and
//! circuit breakers.
//!
//! Validation checks each backend on its own; it must not connect to one
//! (the gateway does) nor read `api_key_env` (secrets are resolved at start).

use super::*;

/// An OpenAI-compatible upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Base URL including the API prefix, e.g. `http://10.0.0.5:8000/v1`.
    pub base_url: String,
    /// Environment variable holding the upstream's API key, sent as
    /// `Authorization: Bearer`. The client's own credentials are never
    /// forwarded.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// TCP (and TLS) connect timeout.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time from sending the request to receiving the response head. A cold
    /// model server with a long prompt can take tens of seconds to prefill.
    #[serde(default = "defaults::first_byte_timeout_ms")]
    pub first_byte_timeout_ms: u64,
    /// Longest silence allowed between two reads of a streamed body.
    #[serde(default = "defaults::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// End-to-end deadline for one request, stream included, unless a route
    /// sets its own.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Whether `GET /v1/models` asks this backend for its models when a
    /// wildcard route points at it.
    #[serde(default = "defaults::yes")]
    pub list_models: bool,
    /// Most requests at this backend at once (its downstream budget). More
    /// wait in a fair queue across tenants. Unset: no limit.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// Requests one tenant may have waiting for this backend; more are
    /// refused with 503 `upstream_overloaded`.
    #[serde(default = "defaults::max_queued_per_tenant")]
    pub max_queued_per_tenant: u32,
    /// Longest wait in that queue (also bounded by the request's deadline).
    #[serde(default = "defaults::queue_timeout_ms")]
    pub queue_timeout_ms: u64,
    /// Tokens (the queued requests' reservations: prompt estimate plus
    /// `max_tokens`) that may wait for this backend in all, across tenants;
    /// more are refused with 503 `upstream_overloaded`. Bounds the work
    /// queued in front of a model server, not just the number of requests.
    /// Unset: no token bound.
    #[serde(default)]
    pub max_queued_tokens: Option<u64>,
    /// Move the in-flight limit between `min_in_flight` and `max_in_flight`
    /// by AIMD on the backend's latency and 429/503 answers.
    #[serde(default)]
    pub adaptive_concurrency: bool,
    /// Floor of the adaptive limit.
    #[serde(default = "defaults::min_in_flight")]
    pub min_in_flight: u32,
    /// Response heads slower than this count as overload (adaptive only).
    #[serde(default = "defaults::target_latency_ms")]
    pub target_latency_ms: u64,
    /// Circuit breaker on this backend's error rate. Absent: off.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// Where the backend runs, for residency rules (e.g. `eu-west`).
    #[serde(default)]
    pub region: Option<String>,
    /// Who runs it, for residency rules (e.g. `azure`, `self-hosted`).
    #[serde(default)]
    pub provider: Option<String>,
    /// Data classes the backend is cleared for (e.g. `pii`).
    #[serde(default)]
    pub data_classes: Vec<String>,
    /// How the key is sent: `bearer` (`Authorization: Bearer`) or `api-key`
    /// (Azure OpenAI's `api-key` header).
    #[serde(default)]
    pub auth: BackendAuth,
    /// Azure OpenAI's `api-version` query parameter, added to every call.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Active health check: GET this path (under `base_url`, e.g.
    /// `/models`) every `probe_interval_ms`; a failure takes the backend
    /// out of balancing until a probe passes. Absent: no active probe.
    #[serde(default)]
    pub probe_path: Option<String>,
    /// Interval between active probes.
    #[serde(default = "defaults::probe_interval_ms")]
    pub probe_interval_ms: u64,
    /// The serving engine's own Prometheus endpoint (vLLM's or llama.cpp
    /// server's `/metrics`, a full `http://` URL, usually not under
    /// `base_url`): scraped every `engine_metrics_interval_ms`, without the
    /// backend's key, into `palisade_engine_*{backend}` (KV-cache use, queue
    /// depth, requests running, speculative decoding's acceptance rate and
    /// tokens per step). Absent: not scraped.
    #[serde(default)]
    pub engine_metrics_url: Option<String>,
    /// Interval between engine metrics scrapes.
    #[serde(default = "defaults::engine_metrics_interval_ms")]
    pub engine_metrics_interval_ms: u64,
    /// Retries to this backend stay within this budget.
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// Eject the backend from balancing after failures in a row.
    #[serde(default)]
    pub passive_health: PassiveHealthConfig,
}

/// Open the circuit when a backend keeps failing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    /// Share of failed requests (connect errors, timeouts, 5xx) that opens it.
    pub error_rate: f64,
    /// Recent requests considered.
    pub window: u32,
    /// Requests needed before the rate is trusted.
    pub min_requests: u32,
    /// How long it stays open before one probe request is let through.
    pub cooldown_ms: u64,
}

impl Default for CircuitBreakerConfig {
    /// Rationale: half of the last 20 failing is no blip; 10 requests keep
    /// one bad second from tripping it; 5 s lets a restarting model server
    /// come back without being hammered.
    fn default() -> Self {
        Self {
            error_rate: 0.5,
            window: 20,
            min_requests: 10,
            cooldown_ms: 5_000,
        }
    }
}

impl BackendConfig {
    /// A backend at `base_url` with default timeouts.
    pub fn with_url(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key_env: None,
            connect_timeout_ms: defaults::connect_timeout_ms(),
            first_byte_timeout_ms: defaults::first_byte_timeout_ms(),
            idle_timeout_ms: defaults::idle_timeout_ms(),
            request_timeout_ms: defaults::request_timeout_ms(),
            list_models: true,
            max_in_flight: None,
            max_queued_per_tenant: defaults::max_queued_per_tenant(),
            queue_timeout_ms: defaults::queue_timeout_ms(),
            max_queued_tokens: None,
            adaptive_concurrency: false,
            min_in_flight: defaults::min_in_flight(),
            target_latency_ms: defaults::target_latency_ms(),
            circuit_breaker: None,
            region: None,
            provider: None,
            data_classes: Vec::new(),
            auth: BackendAuth::Bearer,
            api_version: None,
            probe_path: None,
            probe_interval_ms: defaults::probe_interval_ms(),
            engine_metrics_url: None,
            engine_metrics_interval_ms: defaults::engine_metrics_interval_ms(),
            retry_budget: RetryBudgetConfig::default(),
            passive_health: PassiveHealthConfig::default(),
        }
    }
}

mod defaults {
    pub(super) fn connect_timeout_ms() -> u64 {
        2_000
    }
    pub(super) fn first_byte_timeout_ms() -> u64 {
        120_000
    }
    pub(super) fn idle_timeout_ms() -> u64 {
        60_000
    }
    pub(super) fn request_timeout_ms() -> u64 {
        600_000
    }
    pub(super) fn yes() -> bool {
        true
    }
    /// Absorbs a client's burst while the backend is saturated; beyond that,
    /// waiting only turns into timeouts.
    pub(super) fn max_queued_per_tenant() -> u32 {
        64
    }
    /// Long enough to ride out a burst, short enough that clients retry
    /// elsewhere before their own timeouts.
    pub(super) fn queue_timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn min_in_flight() -> u32 {
        1
    }
    /// Time to the response head covers queueing and prefill at the model
    /// server; a few seconds is where interactive users start to notice.
    pub(super) fn target_latency_ms() -> u64 {
        5_000
    }
    /// Often enough to notice a dead server within seconds; cheap for it.
    pub(super) fn probe_interval_ms() -> u64 {
        5_000
    }
    /// Prometheus' own default scrape interval.
    pub(super) fn engine_metrics_interval_ms() -> u64 {
        15_000
    }
}

impl BackendConfig {
    /// `name` is the backend's key under `[backends]`, for the error path.
    pub(crate) fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let key = |field: &str| format!("backends.{name}.{field}");
        let url = self.base_url.as_str();
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
        if self.max_in_flight == Some(0) {
            return Err(invalid(
                key("max_in_flight"),
                "must be greater than 0 (leave it out for no limit)",
            ));
        }
        if self.adaptive_concurrency {
            match self.max_in_flight {
                Some(max) if self.min_in_flight >= 1 && self.min_in_flight <= max => {}
                _ => {
                    return Err(invalid(
                        key("adaptive_concurrency"),
                        "needs max_in_flight and 1 <= min_in_flight <= max_in_flight",
                    ))
                }
            }
        }
        if let Some(breaker) = &self.circuit_breaker {
            if !breaker.is_sane() {
                return Err(invalid(
                    key("circuit_breaker"),
                    "needs 0 < error_rate <= 1, 0 < min_requests <= window, cooldown_ms > 0",
                ));
            }
        }
        if self.max_queued_tokens == Some(0) {
            return Err(invalid(key("max_queued_tokens"), "must be greater than 0"));
        }
        if self.max_queued_per_tenant == 0 {
            return Err(invalid(
                key("max_queued_per_tenant"),
                "must be greater than 0",
            ));
        }
        validate_budget(&key("retry_budget"), &self.retry_budget)?;
        if let Some(path) = &self.probe_path {
            if !path.starts_with('/') || path.contains("://") {
                return Err(invalid(key("probe_path"), "must be a path starting with /"));
            }
        }
        if let Some(url) = &self.engine_metrics_url {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            if !rest.is_some_and(|host| !host.is_empty() && !host.starts_with('/')) {
                return Err(invalid(
                    key("engine_metrics_url"),
                    "must be an http:// or https:// URL (the engine's /metrics)",
                ));
            }
        }
        if let Some(v) = &self.api_version {
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return Err(invalid(key("api_version"), "must be like 2024-10-21"));
            }
        }
        for (field, value) in [
            ("probe_interval_ms", self.probe_interval_ms),
            (
                "engine_metrics_interval_ms",
                self.engine_metrics_interval_ms,
            ),
            ("queue_timeout_ms", self.queue_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("first_byte_timeout_ms", self.first_byte_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(key(field), "must be greater than 0"));
            }
        }
        Ok(())
    }
}

impl CircuitBreakerConfig {
    /// The fields only make sense together: a rate is a share, the trusted
    /// sample must fit in the window, and the breaker must close again.
    fn is_sane(&self) -> bool {
        self.error_rate > 0.0
            && self.error_rate <= 1.0
            && self.window > 0
            && self.min_requests > 0
            && self.min_requests <= self.window
            && self.cooldown_ms > 0
    }
}
