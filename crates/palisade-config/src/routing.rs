//! The routing keys shared by routes, backends and tenants: deployments,
//! fallback chains, retries, retry budgets, passive health and data
//! residency.
//!
//! Each type validates its own fields; names that must exist elsewhere (a
//! deployment's backend, a fallback's model) are checked by
//! [`Config::validate`]. Nothing here may decide a route: the gateway
//! compiles these into `palisade-routing`'s types.

use super::*;

/// One deployment of a route: a backend, its share of traffic, and labels
/// that override the backend's own `region` / `provider` / `data_classes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Backend name from `[backends]`.
    pub backend: String,
    /// Relative share of traffic (≥ 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// `region`, `provider` or `data_classes` (comma-separated), overriding
    /// the backend's.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

/// The label keys a deployment may set.
pub const DEPLOYMENT_LABELS: [&str; 3] = ["region", "provider", "data_classes"];

/// Ordered fallback chains (other routed model names), per failure class.
/// `default` serves connect errors, 429, 5xx, timeouts and broken
/// connections without their own list; `context_length` and
/// `content_filter` fall back only to their own lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FallbacksConfig {
    /// For every deployment failure without its own list.
    pub default: Vec<String>,
    /// The upstream could not be reached.
    pub connect: Option<Vec<String>>,
    /// The upstream answered 429.
    pub rate_limited: Option<Vec<String>>,
    /// The upstream answered 502 or 503.
    pub unavailable: Option<Vec<String>>,
    /// The upstream answered another 5xx.
    pub server_error: Option<Vec<String>>,
    /// No response head in time.
    pub timeout: Option<Vec<String>>,
    /// The prompt is too long for the model: name longer-context models.
    pub context_length: Vec<String>,
    /// The upstream's content filter refused: empty returns the refusal.
    pub content_filter: Vec<String>,
}

impl FallbacksConfig {
    /// Every (key, model name) the chains mention.
    pub fn named(&self) -> Vec<(String, &String)> {
        self.chains()
            .into_iter()
            .flat_map(|(key, list)| {
                list.iter()
                    .enumerate()
                    .map(move |(j, name)| (format!("fallbacks.{key}[{j}]"), name))
            })
            .collect()
    }

    /// Each configured chain with its key (`default`, `connect`, ...).
    pub fn chains(&self) -> Vec<(&'static str, &Vec<String>)> {
        let mut out = vec![("default", &self.default)];
        for (key, list) in [
            ("connect", &self.connect),
            ("rate_limited", &self.rate_limited),
            ("unavailable", &self.unavailable),
            ("server_error", &self.server_error),
            ("timeout", &self.timeout),
        ] {
            if let Some(list) = list {
                out.push((key, list));
            }
        }
        out.push(("context_length", &self.context_length));
        out.push(("content_filter", &self.content_filter));
        out
    }

    /// True when no chain is configured.
    pub fn is_empty(&self) -> bool {
        self.named().is_empty()
    }
}

/// Retries of one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1: no retry).
    pub max_attempts: u32,
    /// Ceiling of the first retry's backoff (full jitter below it), doubled
    /// for each further retry.
    pub base_backoff_ms: u64,
    /// Largest backoff ceiling.
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    /// Three attempts: one per deployment of a typical pair plus one
    /// fallback; 25 ms base keeps a failover well under a second.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_backoff_ms: 25,
            max_backoff_ms: 1_000,
        }
    }
}

/// A backend's retry budget: retries to it stay within `ratio` of its
/// requests plus `reserve_per_sec`, so retries cannot amplify an outage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    /// Retries per request (0.1: at most 10 % extra load).
    pub ratio: f64,
    /// Retries per second always allowed (a quiet backend).
    pub reserve_per_sec: f64,
    /// Largest burst of retries.
    pub cap: f64,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.1,
            reserve_per_sec: 1.0,
            cap: 10.0,
        }
    }
}

/// Passive health: eject a backend from balancing after failures in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealthConfig {
    /// Failures in a row (connect, 5xx, timeout) that eject it.
    pub consecutive_failures: u32,
    /// How long it stays out.
    pub ejection_ms: u64,
}

impl Default for PassiveHealthConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            ejection_ms: 10_000,
        }
    }
}

/// Data residency: allowed regions and providers, and data classes the
/// deployment must be cleared for. Empty lists do not restrict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ResidencyConfig {
    /// Allowed backend regions.
    pub regions: Vec<String>,
    /// Allowed backend providers.
    pub providers: Vec<String>,
    /// Data classes every deployment used must carry.
    pub data_classes: Vec<String>,
}

/// How a backend expects its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BackendAuth {
    /// `Authorization: Bearer <key>` (OpenAI, vLLM, most servers).
    #[default]
    Bearer,
    /// `api-key: <key>` (Azure OpenAI).
    ApiKey,
}

pub(crate) fn validate_retry(key: &str, retry: &RetryConfig) -> Result<(), ConfigError> {
    if retry.max_attempts == 0 || retry.max_attempts > 10 {
        return Err(invalid(format!("{key}.max_attempts"), "must be 1 to 10"));
    }
    if retry.base_backoff_ms == 0 || retry.max_backoff_ms < retry.base_backoff_ms {
        return Err(invalid(
            format!("{key}.base_backoff_ms"),
            "needs 0 < base_backoff_ms <= max_backoff_ms",
        ));
    }
    Ok(())
}

pub(crate) fn validate_budget(key: &str, b: &RetryBudgetConfig) -> Result<(), ConfigError> {
    let finite = [b.ratio, b.reserve_per_sec, b.cap]
        .iter()
        .all(|v| v.is_finite());
    if !finite || !(0.0..=1.0).contains(&b.ratio) || b.reserve_per_sec < 0.0 || b.cap < 0.0 {
        return Err(invalid(
            key.to_owned(),
            "needs 0 <= ratio <= 1, reserve_per_sec >= 0, cap >= 0",
        ));
    }
    Ok(())
}

pub(crate) fn validate_deployment(key: &str, d: &DeploymentConfig) -> Result<(), ConfigError> {
    if d.weight == 0 || d.weight > 10_000 {
        return Err(invalid(format!("{key}.weight"), "must be 1 to 10000"));
    }
    for label in d.labels.keys() {
        if !DEPLOYMENT_LABELS.contains(&label.as_str()) {
            return Err(invalid(
                format!("{key}.labels.{label}"),
                "unknown label (region, provider, data_classes)",
            ));
        }
    }
    Ok(())
}
