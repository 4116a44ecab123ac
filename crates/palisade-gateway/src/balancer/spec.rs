//! Compiles the config's routes, backends and tenants into
//! `palisade_routing`'s route specs and residency rules, once at start.
//!
//! Must not: check the config (it is validated); names it cannot resolve
//! are skipped, never guessed.

use std::collections::HashMap;

use palisade_config::{Config, ResidencyConfig, RouteConfig};
use palisade_routing::{
    Deployment, FailureClass, Fallbacks, Labels, Residency, RetryPolicy, RouteSpec,
};

/// A residency rule from config.
pub(crate) fn residency(cfg: &ResidencyConfig) -> Residency {
    Residency {
        regions: cfg.regions.clone(),
        providers: cfg.providers.clone(),
        data_classes: cfg.data_classes.clone(),
    }
}

/// The route's retry policy: its own, or 3 attempts when it has more than
/// one deployment or a fallback, 1 (no retry: today's behaviour) otherwise.
pub(crate) fn retry_policy(route: &RouteConfig) -> RetryPolicy {
    let defaults = palisade_config::RetryConfig::default();
    let has_alternatives = route.deployments.len() > 1 || !route.fallbacks.is_empty();
    let cfg = route.retry.unwrap_or(palisade_config::RetryConfig {
        max_attempts: if has_alternatives {
            defaults.max_attempts
        } else {
            1
        },
        ..defaults
    });
    RetryPolicy {
        max_attempts: cfg.max_attempts,
        base_backoff: cfg.base_backoff_ms.saturating_mul(1_000_000),
        max_backoff: cfg.max_backoff_ms.saturating_mul(1_000_000),
    }
}

fn labels(
    config: &Config,
    backend: &str,
    overrides: &std::collections::BTreeMap<String, String>,
) -> Labels {
    let b = config.backends.get(backend);
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    Labels {
        region: overrides
            .get("region")
            .cloned()
            .or_else(|| b.and_then(|b| b.region.clone())),
        provider: overrides
            .get("provider")
            .cloned()
            .or_else(|| b.and_then(|b| b.provider.clone())),
        data_classes: match overrides.get("data_classes") {
            Some(list) => split(list),
            None => b.map(|b| b.data_classes.clone()).unwrap_or_default(),
        },
    }
}

/// Every route's spec, indexed like `config.routes`. `backend_index` maps a
/// backend name to its index.
pub(crate) fn route_specs(
    config: &Config,
    backend_index: &dyn Fn(&str) -> usize,
) -> Vec<RouteSpec> {
    let mut id_of: HashMap<&str, usize> = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        for name in std::iter::once(&route.model).chain(&route.aliases) {
            id_of.insert(name.as_str(), i);
        }
    }
    let ids = |names: &[String]| -> Vec<usize> {
        names
            .iter()
            .filter_map(|n| id_of.get(n.as_str()).copied())
            .collect()
    };
    config
        .routes
        .iter()
        .map(|route| {
            let deployments = if route.deployments.is_empty() {
                vec![Deployment {
                    backend: backend_index(&route.backend),
                    weight: 1,
                    labels: labels(config, &route.backend, &Default::default()),
                }]
            } else {
                route
                    .deployments
                    .iter()
                    .map(|d| Deployment {
                        backend: backend_index(&d.backend),
                        weight: d.weight,
                        labels: labels(config, &d.backend, &d.labels),
                    })
                    .collect()
            };
            let f = &route.fallbacks;
            let mut by_class = Vec::new();
            for (class, list) in [
                (FailureClass::Connect, &f.connect),
                (FailureClass::RateLimited, &f.rate_limited),
                (FailureClass::Unavailable, &f.unavailable),
                (FailureClass::ServerError, &f.server_error),
                (FailureClass::Timeout, &f.timeout),
            ] {
                if let Some(list) = list {
                    by_class.push((class, ids(list)));
                }
            }
            by_class.push((FailureClass::ContextLength, ids(&f.context_length)));
            by_class.push((FailureClass::ContentFilter, ids(&f.content_filter)));
            RouteSpec {
                deployments,
                fallbacks: Fallbacks {
                    by_class,
                    default: ids(&f.default),
                },
                residency: residency(&route.residency),
            }
        })
        .collect()
}
