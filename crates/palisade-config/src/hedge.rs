//! `[[routes]] hedge`: hedged requests ("backup requests") for a route's
//! side-effect-free requests — after a delay, a second attempt to another
//! deployment; the first complete good answer wins.
//!
//! The delay is fixed (`after_ms`) or a percentile of the route's recent
//! latency (`after = "p95"`), clamped to `min_ms..=max_ms`. Whether a
//! request may be hedged at all (embeddings, or an `idempotent` route's
//! non-streamed chat) is the gateway's rule, not a key. Nothing here may
//! decide a hedge: the gateway compiles this into
//! `palisade_routing::HedgePolicy`.

use super::*;

/// A route's hedging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HedgeConfig {
    /// A fixed delay before the hedge, in milliseconds. Set this or `after`.
    #[serde(default)]
    pub after_ms: Option<u64>,
    /// A percentile of the route's recent latency (`"p50"` to `"p99.9"`)
    /// as the delay. Set this or `after_ms`.
    #[serde(default)]
    pub after: Option<String>,
    /// Floor of a percentile delay.
    #[serde(default = "default_min_ms")]
    pub min_ms: u64,
    /// Ceiling of a percentile delay, and the delay while the route has
    /// too few recent samples (a fresh route hedges late, not on noise).
    #[serde(default = "default_max_ms")]
    pub max_ms: u64,
    /// Hedges per request beyond the first attempt.
    #[serde(default = "default_max_extra")]
    pub max_extra: u32,
    /// How far back the latency percentile looks.
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
}

/// 10 ms: below that a hedge buys nothing over loopback jitter and costs a
/// second request.
fn default_min_ms() -> u64 {
    10
}

/// 1 s: a fresh route (no samples yet) hedges only a request that is
/// clearly stuck.
fn default_max_ms() -> u64 {
    1_000
}

/// One hedge: the tail-at-scale result (Dean and Barroso) is that one
/// backup request removes most of the tail; more add load for little.
fn default_max_extra() -> u32 {
    1
}

/// One minute: long enough for a stable p95 at a few requests per second,
/// short enough to follow a model server that slows down.
fn default_window_ms() -> u64 {
    60_000
}

/// The quantile of `"pNN"` / `"pNN.N"` (0 < NN < 100), e.g. 0.95.
pub fn parse_percentile(s: &str) -> Option<f64> {
    let n: f64 = s.strip_prefix('p')?.parse().ok()?;
    (n > 0.0 && n < 100.0 && n.is_finite()).then_some(n / 100.0)
}

impl HedgeConfig {
    /// `key` is the table's path, e.g. `routes[0].hedge`.
    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        match (&self.after_ms, &self.after) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(invalid(
                    format!("{key}.after"),
                    "set one of `after_ms` (fixed) or `after` (a percentile, e.g. \"p95\")",
                ))
            }
            (Some(0), None) => {
                return Err(invalid(format!("{key}.after_ms"), "must be greater than 0"))
            }
            (None, Some(p)) if parse_percentile(p).is_none() => {
                return Err(invalid(
                    format!("{key}.after"),
                    format!("`{p}` is not a percentile like \"p95\" or \"p99.9\""),
                ))
            }
            _ => {}
        }
        if self.max_ms == 0 || self.min_ms > self.max_ms {
            return Err(invalid(
                format!("{key}.max_ms"),
                "needs 0 < max_ms and min_ms <= max_ms",
            ));
        }
        if !(1..=3).contains(&self.max_extra) {
            return Err(invalid(format!("{key}.max_extra"), "must be 1 to 3"));
        }
        if !(1_000..=3_600_000).contains(&self.window_ms) {
            return Err(invalid(
                format!("{key}.window_ms"),
                "must be 1000 to 3600000 (1 s to 1 h)",
            ));
        }
        Ok(())
    }
}
