//! `[limits]`: admission limits, token budgets, spend rates, the escalation
//! ladder and per-tenant overrides.
//!
//! Validation checks values only; it must not connect to Redis. Whether a
//! cost quota can be priced depends on `[ledger.prices]`, so
//! [`Config::validate`] checks that.

use super::*;

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
    /// Per API key (by key name), on top of the tenant's: a request rate,
    /// and a budget (dollars and/or tokens per UTC month or day, tokens per
    /// minute) like a runtime key's own.
    pub keys: BTreeMap<String, KeyLimitsConfig>,
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

/// `[limits.keys.NAME]`: one API key's own limits, by key name. Every field
/// is optional; the budget fields mean what they mean on a runtime key
/// (`POST /admin/keys`), and are enforced by the same per-key budgets.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyLimitsConfig {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Requests at once after idling; default [`default_burst`]. Needs
    /// `requests_per_minute`.
    pub burst: Option<u64>,
    /// Tokens per minute for this key (reserved like the tenant's).
    pub tokens_per_minute: Option<u64>,
    /// Hard spend cap per `budget_period`, in dollars (priced with
    /// `[ledger.prices]`; needs the ledger to survive restarts).
    pub max_budget_usd: Option<f64>,
    /// Hard cap per `budget_period` on prompt plus completion tokens.
    pub max_tokens: Option<u64>,
    /// `monthly` (UTC calendar month, the default) or `daily` (UTC day).
    pub budget_period: KeyBudgetPeriod,
}

/// The period a key's caps count over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyBudgetPeriod {
    /// The UTC calendar month.
    #[default]
    Monthly,
    /// The UTC calendar day.
    Daily,
}

impl KeyLimitsConfig {
    /// The request rate, when one is set.
    pub fn rate(&self) -> Option<RateConfig> {
        self.requests_per_minute.map(|rpm| RateConfig {
            requests_per_minute: rpm,
            burst: self.burst,
        })
    }

    /// The budget the per-key budgets enforce (`None`: none set). The
    /// request rate is not part of it: [`rate`](Self::rate) is enforced as
    /// a key rate already.
    pub fn budget(&self) -> Option<palisade_limits::KeyBudget> {
        let budget = palisade_limits::KeyBudget {
            max_cost_micros: self
                .max_budget_usd
                .and_then(|usd| palisade_limits::key_budget::usd_to_micros("", usd).ok()),
            max_tokens: self.max_tokens,
            period: match self.budget_period {
                KeyBudgetPeriod::Monthly => palisade_limits::BudgetPeriod::Monthly,
                KeyBudgetPeriod::Daily => palisade_limits::BudgetPeriod::Daily,
            },
            requests_per_minute: None,
            tokens_per_minute: self.tokens_per_minute,
        };
        budget.is_limited().then_some(budget)
    }

    /// `scope` is the key path, e.g. `limits.keys.ci`.
    fn validate(&self, scope: &str) -> Result<(), ConfigError> {
        match self.rate() {
            Some(rate) => rate.validate(scope)?,
            None if self.burst.is_some() => {
                return Err(invalid(
                    format!("{scope}.burst"),
                    "needs requests_per_minute",
                ))
            }
            None => {}
        }
        if let Some(usd) = self.max_budget_usd {
            if palisade_limits::key_budget::usd_to_micros("max_budget_usd", usd).is_err() {
                return Err(invalid(
                    format!("{scope}.max_budget_usd"),
                    "must be a number of dollars from 0 to 1000000000",
                ));
            }
        }
        if let Some(budget) = self.budget() {
            if let Err(e) = budget.validate() {
                return Err(invalid(format!("{scope}.{}", e.field()), e.to_string()));
            }
        }
        Ok(())
    }
}

/// A request rate with burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Requests per minute.
    pub requests_per_minute: u64,
    /// Requests at once after idling; default [`default_burst`].
    #[serde(default)]
    pub burst: Option<u64>,
}

impl RateConfig {
    /// The burst in force.
    pub fn effective_burst(&self) -> u64 {
        self.burst
            .unwrap_or_else(|| default_burst(self.requests_per_minute))
    }
}

/// The smallest burst a per-minute rate gets when none is configured, capped by the rate.
///
/// Why a floor: "one second's worth" alone gives a 100 rpm client a burst of 1, so three
/// back-to-back requests answer 200, 429, 429 while `x-ratelimit-remaining-requests`
/// promised a per-minute budget; SDKs that fan out a handful of calls then back off for
/// nothing. Five at once is still far below any rate an operator would call abusive.
pub const MIN_DEFAULT_BURST: u64 = 5;

/// The burst in force when none is configured: one second's worth of `rpm`, but at least
/// [`MIN_DEFAULT_BURST`] (never more than `rpm` itself), and at least 1.
pub fn default_burst(rpm: u64) -> u64 {
    (rpm / 60).max(rpm.min(MIN_DEFAULT_BURST)).max(1)
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

    /// The burst in force: explicit, or [`default_burst`] of the rate.
    pub fn effective_burst(&self) -> Option<u64> {
        self.requests_per_minute
            .map(|rpm| self.burst.unwrap_or_else(|| default_burst(rpm)))
    }
}

impl LimitsConfig {
    /// The store is reachable by this build, every rate and bound admits
    /// something, and the alerting and escalation settings are usable.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.backend == LimitsBackend::Redis {
            stores::validate_redis_url(self.redis_url.as_deref())?;
        }
        if self.redis_timeout_ms == 0 {
            return Err(invalid("limits.redis_timeout_ms", "must be greater than 0"));
        }
        for (name, key) in &self.keys {
            key.validate(&format!("limits.keys.{name}"))?;
        }
        for (name, rate) in &self.models {
            rate.validate(&format!("limits.models.{name}"))?;
        }
        if let Some(escalation) = &self.escalation {
            escalation.validate()?;
        }
        let percents = &self.budget_alert_percents;
        if percents.iter().any(|p| *p == 0 || *p > 1000) || !percents.is_sorted_by(|a, b| a < b) {
            return Err(invalid(
                "limits.budget_alert_percents",
                "must be increasing percentages between 1 and 1000",
            ));
        }
        if let Some(url) = &self.alert_webhook_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "limits.alert_webhook_url",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if let Some(spend_rate) = &self.spend_rate {
            spend_rate.validate()?;
        }
        for (scope, limits) in self.scopes() {
            limits.validate(&scope)?;
        }
        Ok(())
    }

    /// The default limits (`limits`) and each tenant's
    /// (`limits.tenants.NAME`), with their key paths.
    pub(crate) fn scopes(&self) -> impl Iterator<Item = (String, &TenantLimits)> {
        std::iter::once(("limits".to_owned(), &self.default)).chain(
            self.tenants
                .iter()
                .map(|(tenant, limits)| (format!("limits.tenants.{tenant}"), limits)),
        )
    }
}

impl RateConfig {
    /// `scope` is the rate's key path, e.g. `limits.keys.ci`.
    fn validate(&self, scope: &str) -> Result<(), ConfigError> {
        if self.requests_per_minute == 0 {
            return Err(invalid(
                format!("{scope}.requests_per_minute"),
                "must be greater than 0",
            ));
        }
        if self.burst == Some(0) {
            return Err(invalid(format!("{scope}.burst"), "must be greater than 0"));
        }
        Ok(())
    }
}

impl EscalationConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let ordered =
            self.warn_at > 0.0 && self.warn_at <= self.slow_at && self.slow_at <= self.block_at;
        if !(ordered && self.block_at.is_finite()) {
            return Err(invalid(
                "limits.escalation",
                "needs 0 < warn_at <= slow_at <= block_at",
            ));
        }
        if self.half_life_secs == 0 {
            return Err(invalid(
                "limits.escalation.half_life_secs",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

impl SpendRateSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        // Below 2 an ordinary busy minute would trip the breaker.
        if self.factor < 2 {
            return Err(invalid("limits.spend_rate.factor", "must be at least 2"));
        }
        for (field, value) in [
            ("floor_tokens_per_minute", self.floor_tokens_per_minute),
            ("baseline_minutes", self.baseline_minutes),
            ("cooldown_secs", self.cooldown_secs),
        ] {
            if value == 0 {
                return Err(invalid(
                    format!("limits.spend_rate.{field}"),
                    "must be greater than 0",
                ));
            }
        }
        Ok(())
    }
}

impl TenantLimits {
    /// `scope` is `limits` or `limits.tenants.NAME`. An absent limit is no
    /// limit, so a zero is refused rather than read as "refuse everything".
    fn validate(&self, scope: &str) -> Result<(), ConfigError> {
        for (field, value) in [
            ("requests_per_minute", self.requests_per_minute),
            (
                "max_streams_per_key",
                self.max_streams_per_key.map(u64::from),
            ),
            ("tokens_per_minute", self.tokens_per_minute),
            (
                "max_in_flight_per_key",
                self.max_in_flight_per_key.map(u64::from),
            ),
        ] {
            if value == Some(0) {
                return Err(invalid(
                    format!("{scope}.{field}"),
                    "must be greater than 0 (leave it out for no limit)",
                ));
            }
        }
        for (field, value) in [
            ("monthly_token_quota", self.monthly_token_quota),
            ("monthly_token_budget", self.monthly_token_budget),
        ] {
            if value == Some(0) {
                return Err(invalid(
                    format!("{scope}.{field}"),
                    "must be greater than 0 (leave it out for none)",
                ));
            }
        }
        if self.burst == Some(0) {
            return Err(invalid(format!("{scope}.burst"), "must be greater than 0"));
        }
        for (field, usd) in self.cost_limits() {
            if !(usd.is_finite() && usd > 0.0) {
                return Err(invalid(
                    format!("{scope}.{field}"),
                    "must be a positive number of dollars",
                ));
            }
        }
        Ok(())
    }

    /// The dollar quota and budget that are set, by field name.
    pub(crate) fn cost_limits(&self) -> impl Iterator<Item = (&'static str, f64)> {
        [
            ("monthly_cost_quota_usd", self.monthly_cost_quota_usd),
            ("monthly_cost_budget_usd", self.monthly_cost_budget_usd),
        ]
        .into_iter()
        .filter_map(|(field, usd)| Some((field, usd?)))
    }
}
