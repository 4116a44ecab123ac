//! The routing snapshot: everything a request needs to pick and reach an
//! upstream — the route table, the backends (HTTP clients, breakers,
//! queues), the balancer's per-backend state and the residency rules —
//! built as one immutable value and published behind an `ArcSwap`.
//!
//! A request loads the snapshot **once**, when it is routed, and keeps it
//! (in its [`crate::context::RequestCtx`]) until its last byte, streams
//! included: a reload never changes a request's route halfway through, and
//! no request can see half-old, half-new tables. A reload builds the next
//! snapshot next to the running one, carrying the state of every unchanged
//! backend over ([`carry`]), then swaps it in with one atomic store; the
//! health probes of backends that left stop ([`probes`]).
//!
//! Must not: be mutated once published (a new table is a new snapshot), or
//! be loaded more than once per request on the request path.

pub(crate) mod carry;
pub(crate) mod probes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use palisade_config::Config;

use crate::balancer::{BackendRuntime, Balancer};
use crate::routing::RouteTable;
use crate::state::GatewayError;
use crate::upstream::Backend;

/// How backend and tenant keys are looked up (the process environment, or
/// a test's map); kept so a reload resolves a new backend's key the same
/// way start did.
pub(crate) type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// One immutable routing table and the backends it routes to.
#[derive(Debug)]
pub(crate) struct RoutingSnapshot {
    /// 1 at start, one more per applied reload (shown by `/admin/routes`).
    pub(crate) generation: u64,
    pub(crate) routes: RouteTable,
    /// The backends, in `[backends]` order (routes refer to them by index).
    pub(crate) backends: Vec<Arc<Backend>>,
    /// Per-backend load, latency, health and retry budgets, same order.
    pub(crate) balancer: Arc<Balancer>,
    /// Each backend's identity, same order (what a reload compares).
    identities: Vec<carry::Identity>,
    /// The routes' loaded `tokenizer.json` files by path (reused by the
    /// next snapshot for paths it still names).
    tokenizers: HashMap<String, palisade_openai::usage::Tokenizer>,
    /// The canaried routes: golden sets, deployments, rollout state.
    pub(crate) canaries: Vec<Arc<crate::canary::RouteCanary>>,
}

/// What a reload changed, for the log and `/admin/config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) carried: usize,
    pub(crate) fresh: usize,
    pub(crate) dropped: Vec<String>,
}

impl RoutingSnapshot {
    /// Builds the snapshot of a validated `config`, carrying what it can
    /// from `previous` (the snapshot in force, on reload).
    pub(crate) fn build(
        config: &Config,
        previous: Option<&RoutingSnapshot>,
        env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    ) -> Result<(Self, Change), GatewayError> {
        let identities: Vec<carry::Identity> = config
            .backends
            .iter()
            .map(|(name, backend)| identity(config, name, backend))
            .collect();
        let plan = match previous {
            Some(p) => carry::plan(&p.identities, &identities),
            None => carry::plan(&[], &identities),
        };
        let mut backends = Vec::with_capacity(identities.len());
        let mut runtimes = Vec::with_capacity(identities.len());
        let mut index = HashMap::new();
        let mut change = Change::default();
        for ((name, cfg), carried) in config.backends.iter().zip(&plan.carried) {
            index.insert(name.clone(), backends.len());
            let reused = carried.and_then(|old| {
                let p = previous?;
                Some((
                    p.backends.get(old)?.clone(),
                    p.balancer.runtime(old)?.clone(),
                ))
            });
            let (backend, runtime) = match reused {
                Some(pair) => {
                    change.carried += 1;
                    pair
                }
                None => {
                    change.fresh += 1;
                    let budget = cfg.retry_budget;
                    let passive = cfg.passive_health;
                    (
                        Arc::new(Backend::new(name, cfg, &config.tenants, env)?),
                        Arc::new(BackendRuntime::new(
                            palisade_routing::RetryBudgetConfig {
                                ratio: budget.ratio,
                                reserve_per_sec: budget.reserve_per_sec,
                                cap: budget.cap,
                            },
                            palisade_routing::PassiveHealthConfig {
                                consecutive_failures: passive.consecutive_failures,
                                ejection: passive.ejection_ms.saturating_mul(1_000_000),
                            },
                        )),
                    )
                }
            };
            backends.push(backend);
            runtimes.push(runtime);
        }
        if let Some(p) = previous {
            change.dropped = plan
                .dropped
                .iter()
                .filter_map(|&i| p.identities.get(i).map(|id| id.name.clone()))
                .collect();
        }
        let mut tokenizers = HashMap::new();
        for path in config.routes.iter().filter_map(|r| r.tokenizer.as_ref()) {
            if tokenizers.contains_key(path) {
                continue;
            }
            if let Some(t) = previous.and_then(|p| p.tokenizers.get(path)) {
                tokenizers.insert(path.clone(), t.clone());
                continue;
            }
            let loaded = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    palisade_openai::usage::Tokenizer::from_json_bytes(&bytes)
                        .map_err(|e| e.to_string())
                })
                .map_err(|message| GatewayError::Tokenizer {
                    path: path.clone(),
                    message,
                })?;
            tokenizers.insert(path.clone(), loaded);
        }
        // Validated config: every route names a configured backend.
        let routes = RouteTable::compile(
            config,
            |name| index.get(name).copied().unwrap_or(0),
            &tokenizers,
        );
        let epoch = previous.map_or_else(Instant::now, |p| p.balancer.epoch());
        let (canaries, overrides) = crate::canary::compile(
            config,
            &index,
            &backends,
            &identities,
            previous.map_or(&[][..], |p| &p.canaries[..]),
        )?;
        Ok((
            Self {
                generation: previous.map_or(1, |p| p.generation + 1),
                routes,
                backends,
                balancer: Arc::new(Balancer::assemble(epoch, runtimes).with_overrides(overrides)),
                identities,
                tokenizers,
                canaries,
            },
            change,
        ))
    }

    /// Backend `i`'s identity.
    pub(crate) fn identity(&self, i: usize) -> Option<&carry::Identity> {
        self.identities.get(i)
    }
}

/// A backend's identity: its name, its whole table, and the tenant keys
/// sent to it (by variable name), rendered canonically.
fn identity(
    config: &Config,
    name: &str,
    backend: &palisade_config::BackendConfig,
) -> carry::Identity {
    let tenant_keys: Vec<(&String, &String)> = config
        .tenants
        .iter()
        .filter_map(|(t, cfg)| cfg.upstream_api_key_env.get(name).map(|v| (t, v)))
        .collect();
    carry::Identity {
        name: name.to_owned(),
        // Serializing a config struct cannot fail; an empty rendering only
        // makes two such backends compare equal by name and keys.
        settings: serde_json::to_string(&(backend, tenant_keys)).unwrap_or_default(),
    }
}

/// The published snapshot, and the probes of its backends.
pub(crate) struct Routing {
    current: ArcSwap<RoutingSnapshot>,
    probes: probes::Probes,
    /// The canaried routes' replay tasks, synced like the probes.
    canaries: crate::canary::Canaries,
    env: Env,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("generation", &self.current.load().generation)
            .finish_non_exhaustive()
    }
}

impl Routing {
    /// The routing of `config` at start.
    pub(crate) fn new(config: &Config, env: Env) -> Result<Self, GatewayError> {
        let (snapshot, _) = RoutingSnapshot::build(config, None, env.as_ref())?;
        Ok(Self {
            current: ArcSwap::from_pointee(snapshot),
            probes: probes::Probes::default(),
            canaries: crate::canary::Canaries::default(),
            env,
        })
    }

    /// The snapshot in force: one atomic load and a reference count. A
    /// request calls this once and keeps what it got.
    pub(crate) fn load(&self) -> Arc<RoutingSnapshot> {
        self.current.load_full()
    }

    /// Builds the snapshot `config` describes next to the one in force
    /// (nothing is published; a failure changes nothing).
    pub(crate) fn prepare(
        &self,
        config: &Config,
    ) -> Result<(RoutingSnapshot, Change), GatewayError> {
        let current = self.current.load();
        RoutingSnapshot::build(config, Some(&current), self.env.as_ref())
    }

    /// Publishes a prepared snapshot: new requests route by it from now on;
    /// probes of backends that left stop, new ones start.
    pub(crate) fn install(&self, snapshot: RoutingSnapshot) {
        let snapshot = Arc::new(snapshot);
        self.current.store(snapshot.clone());
        self.probes.sync(&snapshot);
        self.canaries.sync(&snapshot.canaries);
    }

    /// Starts the canary tasks of the snapshot in force; they stop on
    /// `stop`, and follow reloads.
    pub(crate) fn start_canaries(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
        env: crate::canary::Env,
    ) {
        self.canaries
            .start(stop, env, &self.current.load().canaries);
    }

    /// Canary tasks alive now (one per canaried route in force).
    pub(crate) fn canaries_running(&self) -> usize {
        self.canaries.running()
    }

    /// Starts the probes of the snapshot in force; they stop on `stop`.
    pub(crate) fn start_probes(&self, stop: tokio::sync::watch::Receiver<bool>) {
        self.probes.start(stop, &self.current.load());
    }

    /// Probe loops running now (one per probed backend in force).
    pub(crate) fn probes_running(&self) -> usize {
        self.probes.running()
    }
}

/// The routing snapshot's costs, for the criterion benches only: building
/// and publishing the next snapshot on reload, and a request's one load.
#[doc(hidden)]
pub mod bench {
    use super::*;

    /// A routing holder built from a config, probes never started.
    #[derive(Debug)]
    pub struct Snapshots(Routing);

    impl Snapshots {
        /// The routing of `config` (keys looked up in an empty environment).
        pub fn new(config: &Config) -> Result<Self, GatewayError> {
            Routing::new(config, Arc::new(|_: &str| None)).map(Self)
        }

        /// One reload's routing work: build next to the one in force
        /// (carrying unchanged backends), then publish.
        pub fn reload(&self, config: &Config) -> Result<u64, GatewayError> {
            let (next, _) = self.0.prepare(config)?;
            let generation = next.generation;
            self.0.install(next);
            Ok(generation)
        }

        /// What a request does to get its routing: one load.
        pub fn load(&self) -> u64 {
            self.0.load().generation
        }
    }
}
