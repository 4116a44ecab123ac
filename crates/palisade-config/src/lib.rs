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

mod stores;

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

/// Admission limits. Every field is optional: an absent limit is no limit,
/// so a config without `[limits]` admits everything (the local default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Where request-rate state lives: `memory` (this process) or `redis`
    /// (shared by every replica, exact across them).
    pub backend: LimitsBackend,
    /// Redis URL for `backend = "redis"`, e.g. `redis://10.0.0.7:6379/0`.
    pub redis_url: Option<String>,
    /// Longest wait for Redis per decision. Limits sit on every request's
    /// path: a slow Redis must degrade to the fallback, not stall traffic.
    pub redis_timeout_ms: u64,
    /// When Redis cannot answer: `local` falls back to this replica's
    /// in-memory limiter (limits stay enforced, per replica); `deny`
    /// refuses requests with 503 (strict quotas that must never be exceeded).
    pub on_backend_error: OnBackendError,
    /// Completion tokens reserved for a request that sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// Also send that `max_tokens` upstream when the client set none, so the
    /// reservation is a true bound (otherwise it is an estimate, and any
    /// excess is charged at reconciliation and counted as overshoot).
    pub inject_max_tokens: bool,
    /// Defaults applied to every tenant.
    #[serde(flatten)]
    pub default: TenantLimits,
    /// Per-tenant overrides; a field left out falls back to the default.
    pub tenants: BTreeMap<String, TenantLimits>,
    /// The escalation ladder for repeat offenders (per API key). Absent: off.
    pub escalation: Option<EscalationConfig>,
    /// Request rates per API key (by key name), on top of the tenant's.
    pub keys: BTreeMap<String, RateConfig>,
    /// Request rates per public model name (all tenants together): protects
    /// a scarce model.
    pub models: BTreeMap<String, RateConfig>,
    /// Percentages of a monthly budget (or quota) at which an alert is
    /// raised, once each per tenant and month.
    pub budget_alert_percents: Vec<u32>,
    /// Where alerts (budget thresholds, spend-rate trips) are POSTed as JSON,
    /// besides the log and metrics. Absent: log and metrics only.
    pub alert_webhook_url: Option<String>,
    /// The circuit breaker on each tenant's spend rate. Absent: off.
    pub spend_rate: Option<SpendRateSettings>,
}

/// Pause a tenant whose tokens per minute jump far above its baseline (a
/// leaked key, a runaway agent loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpendRateSettings {
    /// Trip at this multiple of the tenant's baseline tokens per minute.
    pub factor: u64,
    /// Never trip below this many tokens in a minute (new tenants have no
    /// baseline yet: this is their ceiling until one is learned).
    pub floor_tokens_per_minute: u64,
    /// The baseline remembers roughly this many minutes; at start it is
    /// seeded from the ledger's average over the last day.
    pub baseline_minutes: u64,
    /// How long a tripped tenant is refused (429 `spend_rate_exceeded`).
    pub cooldown_secs: u64,
}

impl Default for SpendRateSettings {
    fn default() -> Self {
        Self {
            factor: 10,
            floor_tokens_per_minute: 100_000,
            baseline_minutes: 60,
            cooldown_secs: 300,
        }
    }
}

/// A request rate with burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Requests per minute.
    pub requests_per_minute: u64,
    /// Requests at once after idling; default one second's worth (≥ 1).
    #[serde(default)]
    pub burst: Option<u64>,
}

impl RateConfig {
    /// The burst in force.
    pub fn effective_burst(&self) -> u64 {
        self.burst.unwrap_or((self.requests_per_minute / 60).max(1))
    }
}

/// Warn → slow → block for keys that keep hitting limits. Each refusal by a
/// limit is one point; points decay with `half_life_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationConfig {
    /// Score at which responses carry an `x-palisade-warning` header.
    pub warn_at: f64,
    /// Score at which requests are delayed by `slow_delay_ms` first.
    pub slow_at: f64,
    /// Score which blocks the key for `block_secs` (429 `blocked_offender`).
    pub block_at: f64,
    /// Time for a score to halve.
    pub half_life_secs: u64,
    /// Delay on the slow rung.
    pub slow_delay_ms: u64,
    /// Length of a block.
    pub block_secs: u64,
}

impl Default for EscalationConfig {
    /// Rationale: clients that honour `Retry-After` rarely collect more than
    /// a few refusals a minute; a script hammering through 429s collects
    /// dozens. Ten points warn, twenty-five slow it by a second, fifty block
    /// it for five minutes; a two-minute half-life forgets a burst quickly.
    fn default() -> Self {
        Self {
            warn_at: 10.0,
            slow_at: 25.0,
            block_at: 50.0,
            half_life_secs: 120,
            slow_delay_ms: 1000,
            block_secs: 300,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            backend: LimitsBackend::Memory,
            redis_url: None,
            redis_timeout_ms: 50,
            on_backend_error: OnBackendError::Local,
            default_max_tokens: 1024,
            inject_max_tokens: false,
            default: TenantLimits::default(),
            tenants: BTreeMap::new(),
            escalation: None,
            keys: BTreeMap::new(),
            models: BTreeMap::new(),
            budget_alert_percents: vec![50, 80, 100],
            alert_webhook_url: None,
            spend_rate: None,
        }
    }
}

/// The token ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// `sqlite:PATH` (embedded; WAL) or `postgres://user@host/db` (fleets).
    /// Absent: no ledger.
    pub url: Option<String>,
    /// Prices in US dollars per million tokens, by public model name; the
    /// entry `default` applies to every other model. Costs are stored as
    /// integer micro-dollars.
    pub prices: BTreeMap<String, PriceConfig>,
}

/// The price of one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// Dollars per million prompt tokens.
    pub input_usd_per_mtok: f64,
    /// Dollars per million completion tokens.
    pub output_usd_per_mtok: f64,
}

/// Where limit state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LimitsBackend {
    /// In this process only.
    #[default]
    Memory,
    /// In Redis, shared by all replicas.
    Redis,
}

/// What to do when the shared limits backend is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnBackendError {
    /// Enforce the same limits per replica, in memory.
    #[default]
    Local,
    /// Refuse requests (503 `limits_unavailable`).
    Deny,
}

/// The limits of one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TenantLimits {
    /// Requests per minute for the tenant as a whole (all its keys), GCRA.
    pub requests_per_minute: Option<u64>,
    /// Requests that may arrive at once after idling. Defaults to one
    /// second's worth of the rate (at least 1): a steady client is never
    /// refused, a sudden flood is.
    pub burst: Option<u64>,
    /// Requests (streams until they end) in flight per API key.
    pub max_in_flight_per_key: Option<u32>,
    /// Streams open at once per API key (a subset of the in-flight limit,
    /// since a stream holds its connection for the whole generation).
    pub max_streams_per_key: Option<u32>,
    /// Tokens (prompt + completion) per minute for the tenant. Each request
    /// reserves its estimated prompt plus its `max_tokens` before it is sent
    /// and is reconciled with the real usage afterwards, so concurrent
    /// requests cannot overshoot the budget by more than they reserved.
    pub tokens_per_minute: Option<u64>,
    /// Hard quota: tokens per calendar month (UTC). Reserved like the
    /// per-minute budget, seeded from the ledger at start; when used up,
    /// 429 `quota_exceeded` until the month turns.
    pub monthly_token_quota: Option<u64>,
    /// Hard quota: US dollars per calendar month, priced with
    /// `[ledger.prices]` (each request reserves the cost of its prompt
    /// estimate plus `max_tokens`).
    pub monthly_cost_quota_usd: Option<f64>,
    /// Soft budget: tokens per month. Crossing each of
    /// `limits.budget_alert_percents` raises one alert (log, metric,
    /// webhook); nothing is refused.
    pub monthly_token_budget: Option<u64>,
    /// Soft budget in US dollars per month, alerting like the token budget.
    pub monthly_cost_budget_usd: Option<f64>,
}

impl TenantLimits {
    /// `self`, with absent fields taken from `fallback`.
    pub fn or(self, fallback: TenantLimits) -> TenantLimits {
        TenantLimits {
            requests_per_minute: self.requests_per_minute.or(fallback.requests_per_minute),
            burst: self.burst.or(fallback.burst),
            max_in_flight_per_key: self
                .max_in_flight_per_key
                .or(fallback.max_in_flight_per_key),
            tokens_per_minute: self.tokens_per_minute.or(fallback.tokens_per_minute),
            max_streams_per_key: self.max_streams_per_key.or(fallback.max_streams_per_key),
            monthly_token_quota: self.monthly_token_quota.or(fallback.monthly_token_quota),
            monthly_cost_quota_usd: self
                .monthly_cost_quota_usd
                .or(fallback.monthly_cost_quota_usd),
            monthly_token_budget: self.monthly_token_budget.or(fallback.monthly_token_budget),
            monthly_cost_budget_usd: self
                .monthly_cost_budget_usd
                .or(fallback.monthly_cost_budget_usd),
        }
    }

    /// Whether any monthly quota or budget is set (so spend must be tracked
    /// per month).
    pub fn has_monthly(&self) -> bool {
        self.monthly_token_quota.is_some()
            || self.monthly_cost_quota_usd.is_some()
            || self.monthly_token_budget.is_some()
            || self.monthly_cost_budget_usd.is_some()
    }

    /// The burst in force: explicit, or one second's worth of the rate.
    pub fn effective_burst(&self) -> Option<u64> {
        self.requests_per_minute
            .map(|rpm| self.burst.unwrap_or((rpm / 60).max(1)))
    }
}

/// Listener, body limits and shutdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted; larger bodies get 413. 4 MiB holds a
    /// long multi-turn chat with images by URL, but not an accidental upload.
    pub max_body_bytes: usize,
    /// Largest single server-sent event accepted from an upstream. One event
    /// is one token delta in practice; 1 MiB leaves ample room for tool-call
    /// arguments while bounding memory per stream.
    pub max_sse_event_bytes: usize,
    /// While a stream's upstream is silent (a model thinking, the output
    /// gate holding text), send an SSE comment this often so proxies and
    /// clients do not drop the connection as idle. 0: never.
    pub sse_heartbeat_ms: u64,
    /// On SIGTERM/SIGINT: how long in-flight requests and streams may run
    /// before they are cut. Kubernetes' default grace period is 30 s, so 25 s
    /// leaves time to exit cleanly before SIGKILL.
    pub shutdown_grace_ms: u64,
    /// How long a client may take to send a request head (HTTP/1), counted
    /// from when the connection is ready for one (idle keep-alive included);
    /// past it the connection is closed. Headers trickled a byte at a time
    /// would otherwise hold a connection forever. 10 s is ample on any link.
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send a request body, counted from the
    /// end of its head; past it the request gets 408 `request_timeout`. A
    /// 4 MiB body needs ~1.1 Mbit/s to arrive in 30 s.
    pub body_read_timeout_ms: u64,
    /// Connections held at once. Beyond it a new connection is answered
    /// `503 overloaded` (with `Retry-After`) and closed rather than queued:
    /// a queue would hide the overload from load balancers. Each proxied
    /// request also holds an upstream connection, so keep `ulimit -n` above
    /// twice this.
    pub max_connections: usize,
    /// Threads of the pool that runs CPU-heavy checks (detector scans of
    /// large inputs, client JSON Schemas, tokenization) off the async
    /// workers, so `/healthz` and streams stay responsive. 0: one per core.
    pub cpu_workers: usize,
    /// How long a request waits for a thread of that pool before it gets
    /// `503 overloaded` with `Retry-After`. The check is never skipped.
    pub cpu_queue_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("constant address parses"),
            max_body_bytes: 4 * 1024 * 1024,
            max_sse_event_bytes: 1024 * 1024,
            sse_heartbeat_ms: 15_000,
            shutdown_grace_ms: 25_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_connections: 1024,
            cpu_workers: 0,
            cpu_queue_timeout_ms: 2_000,
        }
    }
}

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
}

/// One routing-table entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Public model name, or `*` for every model not routed by name.
    pub model: String,
    /// Backend name from `[backends]`.
    pub backend: String,
    /// Name sent upstream, when it differs from the public name.
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// Other public names for the same route.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// End-to-end deadline for this route, overriding the backend's.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Graceful degradation: while this route's backend is saturated (at
    /// its `max_in_flight` with requests queued), send requests to this
    /// (cheaper, routed) model instead.
    #[serde(default)]
    pub overload_model: Option<String>,
    /// Graceful degradation: while the backend is saturated, cap
    /// `max_tokens` at this value.
    #[serde(default)]
    pub overload_max_tokens: Option<u64>,
    /// A Hugging Face `tokenizer.json` for this route's model, used to
    /// estimate prompt tokens at admission (token budgets, quotas). Without
    /// it, OpenAI model names use their bundled vocabularies and other
    /// models ~4 characters per token.
    #[serde(default)]
    pub tokenizer: Option<String>,
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `palisade_gateway=debug`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
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
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<Config, ConfigError> {
        Config::load(&Sources {
            toml: Some(toml),
            ..Sources::default()
        })
    }

    fn assert_invalid(toml: &str, key_part: &str) {
        let err = load(toml).unwrap_err().to_string();
        assert!(
            err.contains(key_part),
            "error `{err}` should name `{key_part}`"
        );
    }

    #[test]
    fn empty_config_is_open_loopback_with_default_upstream() {
        let c = load("").unwrap();
        assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.auth.effective_mode(), AuthMode::Open);
        assert_eq!(c.backends[DEFAULT_BACKEND].base_url, DEFAULT_UPSTREAM);
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.routes[0].model, WILDCARD_MODEL);
    }

    #[test]
    fn unknown_keys_are_named() {
        assert_invalid("[server]\nlisten_addr = \"127.0.0.1:1\"", "listen_addr");
        assert_invalid(
            "[backends.a]\nbase_url = \"http://x/v1\"\ntimeout = 3",
            "timeout",
        );
    }

    #[test]
    fn slow_client_bounds_have_defaults_and_refuse_zero() {
        let c = load("").unwrap();
        assert_eq!(
            (
                c.server.header_read_timeout_ms,
                c.server.body_read_timeout_ms,
                c.server.max_connections
            ),
            (10_000, 30_000, 1024)
        );
        for key in [
            "header_read_timeout_ms",
            "body_read_timeout_ms",
            "max_connections",
        ] {
            assert_invalid(&format!("[server]\n{key} = 0"), key);
        }
    }

    #[test]
    fn open_mode_is_refused_off_loopback() {
        assert_invalid("[server]\nlisten = \"0.0.0.0:8080\"", "auth.mode");
        let with_key = format!(
            "[server]\nlisten = \"0.0.0.0:8080\"\n[[auth.keys]]\nname = \"k\"\ntenant = \"t\"\nsha256 = \"{}\"",
            "a".repeat(64)
        );
        assert_eq!(
            load(&with_key).unwrap().auth.effective_mode(),
            AuthMode::Keys
        );
    }

    #[test]
    fn limits_fall_back_to_defaults_and_reject_zero() {
        let c = load(
            "[limits]\nrequests_per_minute = 120\nmax_in_flight_per_key = 4\n[limits.tenants.big]\nrequests_per_minute = 6000\nburst = 10",
        )
        .unwrap();
        let big = c.limits.tenants["big"].or(c.limits.default);
        assert_eq!(big.requests_per_minute, Some(6000));
        assert_eq!(big.effective_burst(), Some(10));
        assert_eq!(big.max_in_flight_per_key, Some(4));
        assert_eq!(c.limits.default.effective_burst(), Some(2));
        assert_invalid(
            "[limits]\nrequests_per_minute = 0",
            "limits.requests_per_minute",
        );
        assert_invalid("[limits.tenants.x]\nburst = 0", "limits.tenants.x.burst");
    }

    #[test]
    fn cross_references_are_checked() {
        assert_invalid(
            "[backends.a]\nbase_url = \"http://x/v1\"\n[[routes]]\nmodel = \"m\"\nbackend = \"b\"",
            "routes[0].backend",
        );
        assert_invalid(
            "[backends.a]\nbase_url = \"http://x/v1\"\n[[routes]]\nmodel = \"m\"\nbackend = \"a\"\n[[routes]]\nmodel = \"n\"\nbackend = \"a\"\naliases = [\"m\"]",
            "routed twice",
        );
        assert_invalid(
            "[backends.a]\nbase_url = \"ftp://x\"",
            "backends.a.base_url",
        );
        assert_invalid(
            "[[auth.keys]]\nname = \"k\"\ntenant = \"t\"\nsha256 = \"nothex\"",
            "auth.keys[0].sha256",
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
    fn env_overrides_nested_keys_only() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PALISADE_SERVER__MAX_BODY_BYTES", "1234");
            jail.set_env("PALISADE_UPSTREAM", "http://ignored-here/v1");
            let c = Config::load(&Sources {
                toml: Some(""),
                env: true,
                ..Sources::default()
            })
            .map_err(|e| e.to_string())?;
            assert_eq!(c.server.max_body_bytes, 1234);
            assert_eq!(c.backends[DEFAULT_BACKEND].base_url, DEFAULT_UPSTREAM);
            Ok(())
        });
    }

    #[test]
    fn default_upstream_applies_only_without_backends() {
        let c = Config::load(&Sources {
            toml: Some(""),
            default_upstream: Some("http://127.0.0.1:9/v1"),
            ..Sources::default()
        })
        .unwrap();
        assert_eq!(
            c.backends[DEFAULT_BACKEND].base_url,
            "http://127.0.0.1:9/v1"
        );
    }
}
