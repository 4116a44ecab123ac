//! `[[routes]]`: the routing table, public model names to backends.
//!
//! Each route checks its own fields, and [`validate_routing_table`] the
//! rules between routes (names routed once, overload targets routed).
//! Whether a route's backend exists spans sections: [`Config::validate`]
//! checks it. Nothing here may look at a backend's own settings.

use super::*;

/// One routing-table entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Public model name, or `*` for every model not routed by name.
    pub model: String,
    /// Backend name from `[backends]`; leave it out when `deployments`
    /// lists the backends.
    #[serde(default)]
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
    /// Several backends serving this model, balanced by weight, load and
    /// health; instead of `backend`.
    #[serde(default)]
    pub deployments: Vec<DeploymentConfig>,
    /// Other routed models to try, per failure class, when this route's
    /// deployments fail.
    #[serde(default)]
    pub fallbacks: FallbacksConfig,
    /// Retries. Absent: 3 attempts when the route has several deployments
    /// or fallbacks, 1 (no retry) otherwise.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Where this route's requests may go, on top of the tenant's rule.
    #[serde(default)]
    pub residency: ResidencyConfig,
    /// The route's requests have no side effect at the model (no tools that
    /// act), so a failure after the body was sent (timeout, 5xx, broken
    /// connection) may be retried too. Embeddings always are.
    #[serde(default)]
    pub idempotent: bool,
    // --- Hedging (issue #19) ---
    /// Hedged requests for this route's side-effect-free requests
    /// (embeddings; chat and completions when `idempotent`, not streamed).
    #[serde(default)]
    pub hedge: Option<HedgeConfig>,
    // --- Cascades (issue #19) ---
    /// A cheaper routed model answers first; this route's own model only
    /// when an evidence gate escalates (non-streamed chat).
    #[serde(default)]
    pub cascade: Option<CascadeConfig>,
    /// A golden set replayed against each deployment (model canary).
    #[serde(default)]
    pub canary: Option<CanaryConfig>,
    /// A weighted rollout of one deployment, judged by `canary`.
    #[serde(default)]
    pub rollout: Option<RolloutConfig>,
}

impl RouteConfig {
    /// The route's backends: its deployments, or its one `backend`.
    pub fn backends(&self) -> Vec<&str> {
        if self.deployments.is_empty() {
            vec![self.backend.as_str()]
        } else {
            self.deployments
                .iter()
                .map(|d| d.backend.as_str())
                .collect()
        }
    }

    /// `i` is the route's index in `[[routes]]`, for the error path.
    pub(crate) fn validate(&self, i: usize) -> Result<(), ConfigError> {
        if self.deadline_ms == Some(0) {
            return Err(invalid(
                format!("routes[{i}].deadline_ms"),
                "must be greater than 0",
            ));
        }
        if self.overload_max_tokens == Some(0) {
            return Err(invalid(
                format!("routes[{i}].overload_max_tokens"),
                "must be greater than 0",
            ));
        }
        match (self.backend.is_empty(), self.deployments.is_empty()) {
            (true, true) => {
                return Err(invalid(
                    format!("routes[{i}].backend"),
                    "a route needs `backend` or `deployments`",
                ))
            }
            (false, false) => {
                return Err(invalid(
                    format!("routes[{i}].deployments"),
                    "set either `backend` or `deployments`, not both",
                ))
            }
            _ => {}
        }
        for (j, d) in self.deployments.iter().enumerate() {
            validate_deployment(&format!("routes[{i}].deployments[{j}]"), d)?;
        }
        if let Some(retry) = &self.retry {
            validate_retry(&format!("routes[{i}].retry"), retry)?;
        }
        if let Some(hedge) = &self.hedge {
            hedge.validate(&format!("routes[{i}].hedge"))?;
            if self.deployments.len() < 2 {
                // A hedge never goes to the deployment already tried.
                return Err(invalid(
                    format!("routes[{i}].hedge"),
                    "hedging needs at least two `deployments` (a hedge never goes to the one already tried)",
                ));
            }
        }
        if let Some(cascade) = &self.cascade {
            cascade.validate(&format!("routes[{i}].cascade"))?;
        }
        validate_canary(i, self)?;
        if self.model == WILDCARD_MODEL && !self.aliases.is_empty() {
            return Err(invalid(
                format!("routes[{i}].aliases"),
                "a wildcard route cannot have aliases",
            ));
        }
        Ok(())
    }

    /// The route's public names with their keys: `model`, then each alias.
    fn names(&self, i: usize) -> impl Iterator<Item = (String, &String)> {
        std::iter::once((format!("routes[{i}].model"), &self.model)).chain(
            self.aliases
                .iter()
                .enumerate()
                .map(move |(j, alias)| (format!("routes[{i}].aliases[{j}]"), alias)),
        )
    }

    fn answers_to(&self, name: &str) -> bool {
        self.model == name || self.aliases.iter().any(|a| a == name)
    }
}

/// Each route on its own, then the rules between routes: every public name
/// is non-empty and routed once, and an overload target is another routed
/// name.
pub(crate) fn validate_routing_table(routes: &[RouteConfig]) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for (i, route) in routes.iter().enumerate() {
        route.validate(i)?;
        for (key, name) in route.names(i) {
            if name.is_empty() {
                return Err(invalid(key, "empty model name"));
            }
            if !names.insert(name.as_str()) {
                return Err(invalid(key, format!("model name `{name}` is routed twice")));
            }
        }
        if let Some(judge) = route.cascade.as_ref().and_then(|c| c.judge.as_ref()) {
            let target = &judge.model;
            let found = routes.iter().find(|r| r.answers_to(target));
            if found.is_none_or(|r| r.cascade.is_some()) {
                return Err(invalid(
                    format!("routes[{i}].cascade.judge.model"),
                    format!("`{target}` must be a routed model name that is not a cascade"),
                ));
            }
        }
        if let Some(cascade) = &route.cascade {
            let target = &cascade.first;
            let first = routes.iter().find(|r| r.answers_to(target));
            // The cheap stage is a plain route: a cascade of cascades would
            // multiply calls per request.
            if first.is_none_or(|r| r.answers_to(&route.model) || r.cascade.is_some()) {
                return Err(invalid(
                    format!("routes[{i}].cascade.first"),
                    format!("`{target}` must be another routed model name, not itself a cascade"),
                ));
            }
        }
        if let Some(target) = &route.overload_model {
            let routed = routes.iter().any(|r| r.answers_to(target));
            if !routed || target == &route.model {
                return Err(invalid(
                    format!("routes[{i}].overload_model"),
                    format!("`{target}` must be another routed model name"),
                ));
            }
        }
    }
    Ok(())
}
