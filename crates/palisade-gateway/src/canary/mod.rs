//! Model canaries, wired: each route with `canary = { golden_set = ... }`
//! gets one background task that replays the golden set against **each of
//! its deployments directly** (no planner, no gates, no tenant), on the
//! route's schedule and at once when a deployment is new; grades the
//! answers with `palisade_canary`; exports `palisade_canary_*` metrics;
//! raises drift alerts (log `palisade::alert`, audit gate `canary`, the
//! alert webhook); and drives a route's **rollout**: the new deployment's
//! share of user traffic is stepped up while it stays healthy and set to 0
//! the moment it drifts.
//!
//! How a rollout reaches the balancer: the share lives in an atomic of the
//! rollout's [`RolloutCell`], which the routing snapshot's balancer reads
//! through `StateView::weight` and `StateView::share` on every pick
//! ([`WeightOverride`]). Changing it needs no reload
//! and no new snapshot; a request that already picked keeps its pick.
//!
//! What a reload keeps: a deployment whose backend identity, route and
//! canary settings (golden set content included) are unchanged keeps its
//! window, drift state and rollout ([`carry`]); a new or changed one starts
//! fresh and, with `on_new_deployment`, is replayed at once. The task of a
//! route whose canary, deployments or rollout changed is replaced (the old
//! one ends at once, like a probe loop); a route that lost its canary loses
//! its task.
//!
//! Canary traffic is nobody's: it never passes the request pipeline, so no
//! ledger row, no tenant spend and no rate limit is touched. It is marked
//! on the audit trail as gate `canary` (tenant `(canary)`).
//!
//! Canary prompts are made hard to tell from user traffic: the same
//! endpoint, model name, headers (content type, a UUID `x-request-id`, the
//! backend's own key) and the gateway's `max_tokens` default; no marker
//! header. What remains visible to a hostile upstream: the golden prompts
//! themselves (fixed text, replayed on a schedule), `temperature` 0 by
//! default, and no `traceparent`. A deployment that recognises them can
//! answer them well and user traffic badly; see the red-team note.
//!
//! Must not: send client data (only the golden set), bill or rate-limit a
//! tenant, hold a lock across an await, read an unbounded body, or outlive
//! the gateway's stop signal or its route's removal.

pub(crate) mod admin;
mod carry;
mod run;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use palisade_canary::{DriftMonitor, GoldenSet, Rollout, RolloutSpec, Window};
use palisade_config::{CanaryConfig, Config, RolloutConfig};
use tokio::sync::{oneshot, watch};

use crate::snapshot::carry::Identity;
pub(crate) use crate::snapshot::probes::Alive;
use crate::state::GatewayError;
use crate::upstream::Backend;

/// Checks graded, by route, backend, check and result (`pass`, `fail`).
pub(crate) const CHECKS_TOTAL: &str = "palisade_canary_checks_total";
/// A deployment's rolling scores, by route, backend and metric.
pub(crate) const SCORE: &str = "palisade_canary_score";
/// 1 while a deployment is drifted (after hold-down, 0 again).
pub(crate) const DRIFT: &str = "palisade_canary_drift";
/// A rolled-out deployment's share of its route's traffic, percent.
pub(crate) const TRAFFIC_PCT: &str = "palisade_canary_traffic_pct";
/// Rollout transitions, by route and action (`step`, `promote`, `rollback`).
pub(crate) const ROLLOUTS_TOTAL: &str = "palisade_canary_rollout_transitions_total";
/// Canary tasks alive now.
pub(crate) const TASKS: &str = "palisade_canary_tasks_running";

/// Failures kept per deployment for `GET /admin/canaries`.
const LAST_FAILURES: usize = 20;

/// `traffic_pct` value meaning "the configured weights apply".
const CONFIGURED: u32 = u32::MAX;

/// The help texts.
pub(crate) fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        CHECKS_TOTAL,
        "Canary checks graded, by route, backend, check (answer, json, refusal, length, latency) and result (pass, fail)."
    );
    describe_gauge!(
        SCORE,
        "A deployment's rolling canary scores, by route, backend and metric (<check>_rate, refusal_share, mean_chars, latency_p50_ms, latency_p95_ms)."
    );
    describe_gauge!(
        DRIFT,
        "1 while a deployment's canary scores have drifted from its baseline (cleared after hold-down)."
    );
    describe_gauge!(
        TRAFFIC_PCT,
        "A rolled-out deployment's share of its route's user traffic, percent (100 once promoted)."
    );
    describe_counter!(
        ROLLOUTS_TOTAL,
        "Canary rollout transitions, by route and action (start, step, promote, rollback)."
    );
    describe_gauge!(
        TASKS,
        "Canary replay tasks running (one per canaried route)."
    );
}

/// The monotonic clock the canary core's `Nanos` count on (shared by every
/// task, so state carried across reloads keeps one time line).
pub(crate) fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// One deployment's canary state: what survives a reload that leaves it
/// unchanged.
#[derive(Debug)]
pub(crate) struct DeploymentCell {
    pub(crate) inner: Mutex<DeploymentState>,
}

/// See [`DeploymentCell`].
#[derive(Debug)]
pub(crate) struct DeploymentState {
    pub(crate) window: Window,
    pub(crate) monitor: DriftMonitor,
    /// `now_nanos()` of the last completed run.
    pub(crate) last_run: Option<u64>,
    /// Unix milliseconds of the last completed run (for the admin view).
    pub(crate) last_run_unix_ms: Option<u64>,
    pub(crate) runs: u64,
    pub(crate) last_failures: VecDeque<String>,
    /// The last judgement had a check with enough results to judge.
    pub(crate) judged: bool,
}

impl DeploymentCell {
    fn new(config: &CanaryConfig) -> Self {
        Self {
            inner: Mutex::new(DeploymentState {
                window: Window::new(config.window),
                monitor: DriftMonitor::new(config.hold_down_s.saturating_mul(1_000_000_000)),
                last_run: None,
                last_run_unix_ms: None,
                runs: 0,
                last_failures: VecDeque::new(),
                judged: false,
            }),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, DeploymentState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A rollout's state, and the share the balancer reads.
#[derive(Debug)]
pub(crate) struct RolloutCell {
    /// The deployment's share of its route, percent; [`CONFIGURED`] once
    /// promoted.
    pct: AtomicU32,
    pub(crate) rollout: Mutex<Rollout>,
}

impl RolloutCell {
    fn new(cfg: &RolloutConfig) -> Self {
        let rollout = Rollout::new(RolloutSpec {
            start_pct: cfg.start_weight_pct,
            step_pct: cfg.step_pct,
            step_every: cfg.step_every_s.saturating_mul(1_000_000_000),
            rollback_on_drift: cfg.rollback_on_drift,
        });
        Self {
            pct: AtomicU32::new(rollout.traffic_pct().unwrap_or(CONFIGURED)),
            rollout: Mutex::new(rollout),
        }
    }

    /// The share in force: `None` when the configured weights apply.
    pub(crate) fn pct(&self) -> Option<u32> {
        match self.pct.load(Ordering::Acquire) {
            CONFIGURED => None,
            p => Some(p),
        }
    }

    fn publish(&self, pct: Option<u32>) {
        self.pct.store(pct.unwrap_or(CONFIGURED), Ordering::Release);
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Rollout> {
        self.rollout.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One deployment of a canaried route.
#[derive(Debug)]
pub(crate) struct Target {
    /// The backend's index in the snapshot it was compiled for.
    pub(crate) index: usize,
    pub(crate) backend: Arc<Backend>,
    pub(crate) identity: Identity,
    /// The deployment being rolled out (not part of the baseline until
    /// promoted).
    pub(crate) rolled_out: bool,
    pub(crate) cell: Arc<DeploymentCell>,
}

/// A route's canary: its golden set, its deployments and their state.
#[derive(Debug)]
pub(crate) struct RouteCanary {
    /// Its public name (metrics label).
    pub(crate) route: String,
    /// The name sent upstream (as for user traffic).
    pub(crate) upstream_model: String,
    pub(crate) config: CanaryConfig,
    pub(crate) rollout_config: Option<RolloutConfig>,
    pub(crate) golden: Arc<GoldenSet>,
    pub(crate) golden_hash: u64,
    pub(crate) targets: Vec<Target>,
    pub(crate) rollout: Option<Arc<RolloutCell>>,
    /// What makes the task: a different key is a different task.
    key: String,
}

impl RouteCanary {
    /// The drift rule from config.
    pub(crate) fn rule(&self) -> palisade_canary::DriftRule {
        palisade_canary::DriftRule {
            alpha: self.config.alpha,
            tolerance: self.config.tolerance,
            min_pass_rate: self.config.min_pass_rate,
            min_samples: self.config.min_samples,
            latency_ratio: self.config.latency_ratio,
        }
    }
}

/// A run-time override the balancer reads: route `route`'s deployment
/// `backend` is being rolled out. In analysis and after a rollback its
/// weight is 0 (no attempt of any kind); while stepping it gets its share
/// of the route's first attempts, drawn before load balancing (so the share
/// holds at low load too, where power-of-two-choices would send everything
/// to the faster deployment); once promoted the configured weights apply.
#[derive(Debug, Clone)]
pub(crate) struct WeightOverride {
    pub(crate) route: usize,
    pub(crate) backend: usize,
    pub(crate) cell: Arc<RolloutCell>,
}

impl WeightOverride {
    /// The weight of `backend` of `route` (configured `configured`), or
    /// `None` when this override does not apply.
    pub(crate) fn weight(&self, route: usize, backend: usize, configured: u32) -> Option<u32> {
        if route != self.route || backend != self.backend {
            return None;
        }
        match self.cell.pct() {
            Some(0) => Some(0),
            _ => Some(configured),
        }
    }

    /// The canary's share of `route`'s first attempts, while stepping.
    pub(crate) fn share(&self, route: usize) -> Option<(usize, u32)> {
        if route != self.route {
            return None;
        }
        match self.cell.pct() {
            Some(p) if p > 0 && p < 100 => Some((self.backend, p)),
            _ => None,
        }
    }
}

/// Compiles every canaried route of `config` against the snapshot's
/// backends (`index` by name, `backends` and `identities` in order),
/// carrying state from `previous` (the snapshot in force, on reload).
pub(crate) fn compile(
    config: &Config,
    index: &HashMap<String, usize>,
    backends: &[Arc<Backend>],
    identities: &[Identity],
    previous: &[Arc<RouteCanary>],
) -> Result<(Vec<Arc<RouteCanary>>, Vec<WeightOverride>), GatewayError> {
    let mut out = Vec::new();
    let mut overrides = Vec::new();
    for (route_id, route) in config.routes.iter().enumerate() {
        let Some(cfg) = &route.canary else {
            continue;
        };
        let text = std::fs::read_to_string(&cfg.golden_set).map_err(|e| GatewayError::Canary {
            path: cfg.golden_set.clone(),
            message: e.to_string(),
        })?;
        let golden = GoldenSet::parse(&text).map_err(|e| GatewayError::Canary {
            path: cfg.golden_set.clone(),
            message: e.to_string(),
        })?;
        let golden_hash = carry::hash(&text);
        let settings = serde_json::to_string(cfg).unwrap_or_default();
        let rollout_settings = route
            .rollout
            .as_ref()
            .map(|r| serde_json::to_string(r).unwrap_or_default());
        let names: Vec<(&str, u32)> = if route.deployments.is_empty() {
            vec![(route.backend.as_str(), 1)]
        } else {
            route
                .deployments
                .iter()
                .map(|d| (d.backend.as_str(), d.weight))
                .collect()
        };
        let old = previous.iter().find(|p| p.route == route.model);
        let mut targets = Vec::new();
        let mut key = format!(
            "{}\n{settings}\n{golden_hash}\n{rollout_settings:?}",
            route.model
        );
        for (name, weight) in names {
            // Validated config: every deployment names a backend.
            let Some(&i) = index.get(name) else {
                continue;
            };
            let (Some(backend), Some(identity)) = (backends.get(i), identities.get(i)) else {
                continue;
            };
            let rolled_out = route.rollout.as_ref().is_some_and(|r| r.deployment == name);
            let carried = old
                .filter(|o| o.config == *cfg && o.golden_hash == golden_hash)
                .and_then(|o| o.targets.iter().find(|t| t.identity == *identity))
                .map(|t| t.cell.clone());
            key.push_str(&format!(
                "\n{}:{}:{weight}",
                identity.name, identity.settings
            ));
            targets.push(Target {
                index: i,
                backend: backend.clone(),
                identity: identity.clone(),
                rolled_out,
                cell: carried.unwrap_or_else(|| Arc::new(DeploymentCell::new(cfg))),
            });
        }
        let rollout = match &route.rollout {
            None => None,
            Some(r) => {
                let carried = old.and_then(|o| {
                    let same = o.rollout_config.as_ref() == Some(r)
                        && o.config == *cfg
                        && o.golden_hash == golden_hash;
                    let old_target = o.targets.iter().find(|t| t.rolled_out)?;
                    let new_target = targets.iter().find(|t| t.rolled_out)?;
                    (same && old_target.identity == new_target.identity)
                        .then(|| o.rollout.clone())
                        .flatten()
                });
                Some(carried.unwrap_or_else(|| Arc::new(RolloutCell::new(r))))
            }
        };
        if let (Some(cell), Some(canary)) = (&rollout, targets.iter().find(|t| t.rolled_out)) {
            overrides.push(WeightOverride {
                route: route_id,
                backend: canary.index,
                cell: cell.clone(),
            });
        }
        out.push(Arc::new(RouteCanary {
            route: route.model.clone(),
            upstream_model: route
                .upstream_model
                .clone()
                .unwrap_or_else(|| route.model.clone()),
            config: cfg.clone(),
            rollout_config: route.rollout.clone(),
            golden: Arc::new(golden),
            golden_hash,
            targets,
            rollout,
            key,
        }));
    }
    Ok((out, overrides))
}

/// What the canary tasks need of the gateway besides the snapshot.
#[derive(Clone)]
pub(crate) struct Env {
    pub(crate) gates: Arc<crate::gates::Gates>,
    /// `limits.alert_webhook_url`, shared with spend and anomaly alerts.
    pub(crate) webhook: Option<String>,
    pub(crate) http: Option<reqwest::Client>,
    /// The `max_tokens` the gateway injects into user requests without
    /// one, so golden prompts carry the same.
    pub(crate) default_max_tokens: Option<u64>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("webhook", &self.webhook.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Inner {
    stop: Option<(watch::Receiver<bool>, Env)>,
    /// Each route's task by key; dropping the sender ends it.
    tasks: HashMap<String, oneshot::Sender<()>>,
}

/// The canary tasks of the routes in force.
#[derive(Debug, Default)]
pub(crate) struct Canaries {
    inner: Mutex<Inner>,
    running: Arc<AtomicUsize>,
}

impl Canaries {
    /// The gateway serves: run the canaries of `routes` until `stop`.
    pub(crate) fn start(&self, stop: watch::Receiver<bool>, env: Env, routes: &[Arc<RouteCanary>]) {
        self.lock().stop = Some((stop, env));
        self.sync(routes);
    }

    /// Makes the tasks match `routes`: tasks whose route canary changed or
    /// left end, new ones start.
    pub(crate) fn sync(&self, routes: &[Arc<RouteCanary>]) {
        let mut inner = self.lock();
        let Some((stop, env)) = inner.stop.clone() else {
            return;
        };
        let wanted: HashMap<&str, &Arc<RouteCanary>> =
            routes.iter().map(|r| (r.key.as_str(), r)).collect();
        inner
            .tasks
            .retain(|key, _| wanted.contains_key(key.as_str()));
        for (key, route) in wanted {
            if inner.tasks.contains_key(key) {
                continue;
            }
            let (cancel_tx, cancel) = oneshot::channel::<()>();
            inner.tasks.insert(key.to_owned(), cancel_tx);
            tokio::spawn(run::route_loop(
                route.clone(),
                env.clone(),
                cancel,
                stop.clone(),
                Alive::new(&self.running, TASKS),
            ));
        }
    }

    /// Tasks alive now.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
