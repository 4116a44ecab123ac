//! Phase 4, route: public model name (or alias) → backend and upstream name.
//!
//! The table is compiled once from config into a hash map, so routing is one
//! lookup per request. A `*` route catches every name not routed explicitly and
//! forwards it unchanged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use palisade_config::{Config, WILDCARD_MODEL};

/// Where one public model name goes.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route's index in `[[routes]]` (its spec in [`RouteTable::specs`]).
    pub id: usize,
    /// Index into the gateway's backend list: the route's one backend, or
    /// its first deployment (saturation and listing look here).
    pub backend: usize,
    /// How often to retry, and how patiently.
    pub retry: palisade_routing::RetryPolicy,
    /// The route declared its requests free of side effects at the model.
    pub idempotent: bool,
    /// The route's public name (the label used in metrics); `*` for wildcard.
    pub public_name: Arc<str>,
    /// Name to send upstream; `None` keeps the client's name.
    pub upstream_model: Option<Arc<str>>,
    /// End-to-end deadline override.
    pub deadline: Option<Duration>,
    /// Model to route to while this route's backend is saturated.
    pub overload_model: Option<Arc<str>>,
    /// `max_tokens` cap while this route's backend is saturated.
    pub overload_max_tokens: Option<u64>,
    /// The configured tokenizer for prompt estimates, if any.
    pub tokenizer: Option<palisade_openai::usage::Tokenizer>,
    /// Hedging, when the route has it (policy and recent latency, shared
    /// by the route's names; a reload starts a fresh window).
    pub(crate) hedge: Option<Arc<crate::balancer::hedge::RouteHedge>>,
    /// The route's cascade, when it has one.
    pub(crate) cascade: Option<Arc<CascadeRoute>>,
}

/// A cascade: the cheap routed model that answers first, and the evidence
/// gates that escalate to the route's own model.
#[derive(Debug)]
pub(crate) struct CascadeRoute {
    /// The cheap model's routed name.
    pub(crate) first: String,
    pub(crate) gates: palisade_routing::CascadeGates,
    /// The judge's routed model name and instructions, when `judge` is on.
    pub(crate) judge: Option<(String, String)>,
}

impl CascadeRoute {
    fn from_config(cfg: &palisade_config::CascadeConfig) -> Self {
        Self {
            first: cfg.first.clone(),
            gates: palisade_routing::CascadeGates {
                // Validated: every name parses.
                on: cfg
                    .escalate_on
                    .iter()
                    .filter_map(|g| palisade_routing::EscalateReason::parse(g))
                    .collect(),
                min_mean_logprob: cfg.min_mean_logprob,
            },
            judge: cfg
                .judge
                .as_ref()
                .map(|j| (j.model.clone(), j.prompt.clone())),
        }
    }
}

/// The compiled routing table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    by_name: HashMap<String, Route>,
    wildcard: Option<Route>,
    /// Public names in config order, for `GET /v1/models`.
    listed: Vec<(String, usize)>,
    /// Each route by id (its own public name, not an alias).
    by_id: Vec<Route>,
    /// Each route's deployments, fallbacks and residency, by id.
    specs: Vec<palisade_routing::RouteSpec>,
    /// Tenants' residency rules.
    tenant_rules: HashMap<String, palisade_routing::Residency>,
}

impl RouteTable {
    /// Compiles the routes of a validated config. `backend_index` maps a
    /// backend name to its position in the gateway's backend list.
    /// `tokenizers` holds the loaded `tokenizer.json` files by path.
    pub fn compile(
        config: &Config,
        backend_index: impl Fn(&str) -> usize,
        tokenizers: &HashMap<String, palisade_openai::usage::Tokenizer>,
    ) -> Self {
        let mut table = Self {
            specs: crate::balancer::spec::route_specs(config, &backend_index),
            tenant_rules: config
                .tenants
                .iter()
                .map(|(name, t)| (name.clone(), crate::balancer::spec::residency(&t.residency)))
                .collect(),
            ..Self::default()
        };
        for (id, route) in config.routes.iter().enumerate() {
            let backend = table.specs[id].deployments.first().map_or(0, |d| d.backend);
            let compiled = Route {
                id,
                backend,
                retry: crate::balancer::spec::retry_policy(route),
                idempotent: route.idempotent,
                public_name: route.model.as_str().into(),
                upstream_model: route.upstream_model.as_deref().map(Into::into),
                deadline: route.deadline_ms.map(Duration::from_millis),
                overload_model: route.overload_model.as_deref().map(Into::into),
                overload_max_tokens: route.overload_max_tokens,
                tokenizer: route
                    .tokenizer
                    .as_ref()
                    .and_then(|path| tokenizers.get(path).cloned()),
                hedge: route
                    .hedge
                    .as_ref()
                    .map(|h| Arc::new(crate::balancer::hedge::RouteHedge::from_config(h))),
                cascade: route
                    .cascade
                    .as_ref()
                    .map(|c| Arc::new(CascadeRoute::from_config(c))),
            };
            table.by_id.push(compiled.clone());
            if route.model == WILDCARD_MODEL {
                table.wildcard = Some(compiled);
                continue;
            }
            for name in std::iter::once(&route.model).chain(&route.aliases) {
                let mut entry = compiled.clone();
                // An alias forwards under the route's upstream name, or the
                // route's own public name: the upstream never sees aliases.
                if entry.upstream_model.is_none() && name != &route.model {
                    entry.upstream_model = Some(route.model.as_str().into());
                }
                table.by_name.insert(name.clone(), entry);
                table.listed.push((name.clone(), backend));
            }
        }
        table
    }

    /// Resolves a requested model name.
    pub fn resolve(&self, model: &str) -> Option<&Route> {
        self.by_name.get(model).or(self.wildcard.as_ref())
    }

    /// Explicitly routed public names with their backend index.
    pub fn listed(&self) -> &[(String, usize)] {
        &self.listed
    }

    /// A route by id (for fallbacks).
    pub fn by_id(&self, id: usize) -> Option<&Route> {
        self.by_id.get(id)
    }

    /// Every route's spec, by id.
    pub fn specs(&self) -> &[palisade_routing::RouteSpec] {
        &self.specs
    }

    /// A tenant's residency rule (open when it has none).
    pub fn tenant_rule(&self, tenant: &str) -> palisade_routing::Residency {
        self.tenant_rules.get(tenant).cloned().unwrap_or_default()
    }

    /// The aliases of route `id` (its other public names), sorted.
    pub fn aliases_of(&self, id: usize) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .by_name
            .iter()
            .filter(|(name, r)| r.id == id && name.as_str() != &*r.public_name)
            .map(|(name, _)| name.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// The wildcard route, if any.
    pub fn wildcard(&self) -> Option<&Route> {
        self.wildcard.as_ref()
    }
}

/// The refusal for a name the table does not route (404, param `model`).
/// The name is quoted cut to 128 characters: it is the client's text.
pub(crate) fn model_not_found(model: &str) -> palisade_openai::ApiError {
    let shown = match model.char_indices().nth(128) {
        Some((i, _)) => &model[..i],
        None => model,
    };
    palisade_openai::ApiError::new(
        palisade_openai::ErrorCode::ModelNotFound,
        format!("the model `{shown}` does not exist or is not routed by this gateway"),
    )
    .with_param("model")
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_config::Sources;

    fn table(toml: &str) -> RouteTable {
        let config = Config::load(&Sources {
            toml: Some(toml),
            ..Sources::default()
        })
        .unwrap();
        let names: Vec<String> = config.backends.keys().cloned().collect();
        RouteTable::compile(
            &config,
            |n| names.iter().position(|x| x == n).unwrap(),
            &HashMap::new(),
        )
    }

    const TWO_BACKENDS: &str = r#"
        [backends.a]
        base_url = "http://127.0.0.1:1/v1"
        [backends.b]
        base_url = "http://127.0.0.1:2/v1"
        [[routes]]
        model = "llama"
        backend = "b"
        upstream_model = "meta-llama/Llama-3.1-8B"
        aliases = ["fast"]
        deadline_ms = 5000
        [[routes]]
        model = "qwen"
        backend = "a"
        aliases = ["q"]
    "#;

    #[test]
    fn names_and_aliases_resolve_to_upstream_names() {
        let t = table(TWO_BACKENDS);
        let llama = t.resolve("llama").unwrap();
        assert_eq!(llama.backend, 1);
        assert_eq!(
            llama.upstream_model.as_deref(),
            Some("meta-llama/Llama-3.1-8B")
        );
        assert_eq!(llama.deadline, Some(Duration::from_secs(5)));
        let fast = t.resolve("fast").unwrap();
        assert_eq!(
            fast.upstream_model.as_deref(),
            Some("meta-llama/Llama-3.1-8B")
        );
        assert_eq!(&*fast.public_name, "llama");
        let q = t.resolve("q").unwrap();
        assert_eq!(q.upstream_model.as_deref(), Some("qwen"));
        assert!(t.resolve("qwen").unwrap().upstream_model.is_none());
        assert!(t.resolve("gpt-4").is_none());
        assert_eq!(t.listed().len(), 4);
    }

    #[test]
    fn wildcard_catches_the_rest() {
        let t = table("");
        let r = t.resolve("anything").unwrap();
        assert_eq!(&*r.public_name, "*");
        assert!(r.upstream_model.is_none());
    }
}
