//! Runtime state behind routing decisions: per backend, requests
//! outstanding, EWMA latency to the response head, passive health, the
//! retry budget, an upstream's `Retry-After`, and the last active probe.
//!
//! The decisions are `palisade_routing`'s; this module holds the state they
//! read, behind short locks, on the gateway's monotonic clock. It must not
//! decide anything itself, and never holds a lock across an await.
//!
//! Each backend's state is its own [`BackendRuntime`] behind an `Arc`, so a
//! config reload can hand an unchanged backend's state to the next routing
//! snapshot (see [`crate::snapshot`]): both snapshots then share it, and
//! requests still on the old one keep feeding the same counters.

pub(crate) mod attempts;
mod audit;
pub(crate) mod hedge;

pub(crate) use audit::cascade as audit_cascade;
pub(crate) mod spec;

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use palisade_routing::{
    DeploymentState, Ewma, Nanos, PassiveHealth, PassiveHealthConfig, RetryBudget,
    RetryBudgetConfig, StateView,
};

use crate::upstream::Backend;

/// The last active probe's result.
const PROBE_UNKNOWN: u8 = 0;
const PROBE_OK: u8 = 1;
const PROBE_FAILED: u8 = 2;

/// Half-life of the latency average: a few seconds follows a model server
/// that slows under load without chasing every outlier.
const EWMA_TAU: Nanos = 5_000_000_000;

#[derive(Debug)]
struct Learned {
    ewma: Ewma,
    passive: PassiveHealth,
    budget: RetryBudget,
    not_before: Nanos,
}

/// One backend's runtime state: what survives a reload that leaves the
/// backend unchanged.
#[derive(Debug)]
pub(crate) struct BackendRuntime {
    outstanding: AtomicU32,
    probe: AtomicU8,
    passive_config: PassiveHealthConfig,
    learned: Mutex<Learned>,
}

impl BackendRuntime {
    /// Fresh state for a backend with these settings.
    pub(crate) fn new(budget: RetryBudgetConfig, passive: PassiveHealthConfig) -> Self {
        Self {
            outstanding: AtomicU32::new(0),
            probe: AtomicU8::new(PROBE_UNKNOWN),
            passive_config: passive,
            learned: Mutex::new(Learned {
                ewma: Ewma::new(EWMA_TAU),
                passive: PassiveHealth::default(),
                budget: RetryBudget::new(budget, 0),
                not_before: 0,
            }),
        }
    }

    /// Records an active probe's result.
    pub(crate) fn probed(&self, ok: bool) {
        self.probe
            .store(if ok { PROBE_OK } else { PROBE_FAILED }, Ordering::Relaxed);
    }
}

/// All backends' runtime state, indexed like the snapshot's backend list.
#[derive(Debug)]
pub(crate) struct Balancer {
    /// Shared by every balancer of the process: carried state holds
    /// instants as nanoseconds since it.
    epoch: Instant,
    backends: Vec<Arc<BackendRuntime>>,
    /// Run-time weights of deployments under a canary rollout (usually
    /// none: the lookup costs nothing then).
    overrides: Vec<crate::canary::WeightOverride>,
}

/// How one attempt ended, for the state.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Observed {
    /// A usable answer (any status that is not a failure class).
    Ok(Duration),
    /// A failure counting against the deployment (connect, 5xx, timeout).
    Fault,
    /// The deployment is alive but said no (429, or a model-level refusal).
    Refusal,
    /// The attempt was cancelled after this long (a hedge won elsewhere):
    /// its latency was at least that, so the average learns it is slow;
    /// health does not change (it did not fail).
    Cancelled(Duration),
}

impl Balancer {
    /// A balancer over these backends' state (in backend order), on the
    /// clock that started at `epoch` (the previous balancer's, on reload).
    pub(crate) fn assemble(epoch: Instant, backends: Vec<Arc<BackendRuntime>>) -> Self {
        Self {
            epoch,
            backends,
            overrides: Vec::new(),
        }
    }

    /// The same balancer, with canary rollouts' run-time weights.
    pub(crate) fn with_overrides(mut self, overrides: Vec<crate::canary::WeightOverride>) -> Self {
        self.overrides = overrides;
        self
    }

    /// The instant this balancer's clock counts from.
    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// One backend's state, to carry into the next snapshot.
    pub(crate) fn runtime(&self, backend: usize) -> Option<&Arc<BackendRuntime>> {
        self.backends.get(backend)
    }

    /// `at` on the balancer's clock.
    pub(crate) fn nanos(&self, at: Instant) -> Nanos {
        at.saturating_duration_since(self.epoch).as_nanos() as Nanos
    }

    fn learned(&self, backend: usize) -> Option<std::sync::MutexGuard<'_, Learned>> {
        self.backends
            .get(backend)
            .map(|b| b.learned.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A request is about to go to `backend`; the guard ends it.
    pub(crate) fn begin(self: &Arc<Self>, backend: usize, first_attempt: bool) -> Outstanding {
        if let Some(b) = self.backends.get(backend) {
            b.outstanding.fetch_add(1, Ordering::Relaxed);
        }
        if first_attempt {
            let now = self.nanos(Instant::now());
            if let Some(mut l) = self.learned(backend) {
                l.budget.on_request(now);
            }
        }
        Outstanding {
            balancer: self.clone(),
            backend,
        }
    }

    /// Records how an attempt at `backend` ended.
    pub(crate) fn observe(
        &self,
        backend: usize,
        observed: Observed,
        retry_after: Option<Duration>,
    ) {
        let now = self.nanos(Instant::now());
        let Some(runtime) = self.backends.get(backend) else {
            return;
        };
        let config = runtime.passive_config;
        if let Some(mut l) = self.learned(backend) {
            match observed {
                Observed::Ok(latency) => {
                    l.ewma.observe(now, latency.as_nanos() as Nanos);
                    l.passive.record(&config, now, true);
                }
                Observed::Cancelled(at_least) => {
                    let at_least = at_least.as_nanos() as Nanos;
                    if at_least > l.ewma.value() {
                        l.ewma.observe(now, at_least);
                    }
                }
                Observed::Fault => l.passive.record(&config, now, false),
                Observed::Refusal => {}
            }
            if let Some(wait) = retry_after {
                // Bounded: a hostile upstream cannot park itself for a day.
                let wait = wait.min(Duration::from_secs(60)).as_nanos() as Nanos;
                l.not_before = l.not_before.max(now.saturating_add(wait));
            }
        }
    }

    /// The last active health probe's outcome of `backend`, for
    /// `/admin/limits`: `ok`, `failed` or `unknown` (none yet, or no probe).
    pub(crate) fn probe_state(&self, backend: usize) -> &'static str {
        match self
            .backends
            .get(backend)
            .map(|b| b.probe.load(Ordering::Relaxed))
        {
            Some(PROBE_OK) => "ok",
            Some(PROBE_FAILED) => "failed",
            _ => "unknown",
        }
    }

    /// The routing crate's view of the backends now.
    pub(crate) fn view<'a>(&'a self, backends: &'a [Arc<Backend>], at: Instant) -> View<'a> {
        View {
            balancer: self,
            backends,
            at,
            now: self.nanos(at),
        }
    }
}

/// A request outstanding at a backend; dropping it ends it.
#[derive(Debug)]
pub(crate) struct Outstanding {
    balancer: Arc<Balancer>,
    backend: usize,
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        if let Some(b) = self.balancer.backends.get(self.backend) {
            b.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The backends as `palisade_routing` sees them at one instant.
pub(crate) struct View<'a> {
    balancer: &'a Balancer,
    backends: &'a [Arc<Backend>],
    at: Instant,
    now: Nanos,
}

impl StateView for View<'_> {
    fn state(&self, backend: usize) -> DeploymentState {
        let Some(runtime) = self.balancer.backends.get(backend) else {
            return DeploymentState {
                healthy: false,
                ..DeploymentState::default()
            };
        };
        let breaker_open = self
            .backends
            .get(backend)
            .and_then(|b| b.breaker.as_ref())
            .is_some_and(|b| b.is_open(self.at));
        let probe_failed = runtime.probe.load(Ordering::Relaxed) == PROBE_FAILED;
        let (ewma, passive_ok, not_before) = match self.balancer.learned(backend) {
            Some(l) => (l.ewma.value(), l.passive.is_healthy(self.now), l.not_before),
            None => (0, true, 0),
        };
        DeploymentState {
            healthy: passive_ok && !breaker_open && !probe_failed,
            outstanding: runtime.outstanding.load(Ordering::Relaxed),
            ewma,
            not_before,
        }
    }

    fn weight(&self, route: usize, backend: usize, configured: u32) -> u32 {
        self.balancer
            .overrides
            .iter()
            .find_map(|o| o.weight(route, backend, configured))
            .unwrap_or(configured)
    }

    fn share(&self, route: usize) -> Option<(usize, u32)> {
        self.balancer.overrides.iter().find_map(|o| o.share(route))
    }

    fn try_retry(&mut self, backend: usize) -> bool {
        let now = self.now;
        self.balancer
            .learned(backend)
            .is_some_and(|mut l| l.budget.try_retry(now))
    }
}
