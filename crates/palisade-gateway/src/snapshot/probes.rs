//! Active health probes: for each backend with `probe_path`, a GET every
//! `probe_interval_ms`; the result feeds the balancer (a failed probe takes
//! the backend out of balancing until one passes).
//!
//! One loop per backend identity in force: a reload that keeps a backend
//! keeps its loop, a new backend gets one, and a removed (or changed)
//! backend's loop ends at once — its cancel sender is dropped, which wakes
//! the loop even mid-probe. [`Probes::running`] counts live loops, so a
//! leak is visible (`palisade_backend_probes_running`) and tested.
//!
//! The same lifecycle runs each backend's **engine metrics scrape**
//! (`engine_metrics_url`): the engine's Prometheus text, read by
//! `palisade_routing::EngineStats`, becomes `palisade_engine_*{backend}`
//! gauges (speculative decoding's acceptance as a rate between scrapes).
//!
//! Must not: send client data or tenant keys (only the backend's own key to
//! its probe path, no key at all to a metrics endpoint), outlive the
//! gateway's stop signal, or outlive its backend's removal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::carry::Identity;
use super::RoutingSnapshot;

/// Probe loops alive now.
const RUNNING: &str = "palisade_backend_probes_running";

#[derive(Debug, Default)]
struct Inner {
    /// The gateway's stop signal, once it serves (no probes before).
    stop: Option<watch::Receiver<bool>>,
    /// Each probed backend's loop, by identity; dropping the sender ends it.
    loops: HashMap<Identity, oneshot::Sender<()>>,
    /// Each scraped backend's engine metrics loop, the same way.
    scrapes: HashMap<Identity, oneshot::Sender<()>>,
}

/// The probe loops of the backends in force.
#[derive(Debug, Default)]
pub(crate) struct Probes {
    inner: Mutex<Inner>,
    running: Arc<AtomicUsize>,
}

/// Counts a background loop as running for as long as it lives, in `count`
/// and in the gauge named `gauge` (probe loops here, canary tasks in
/// `crate::canary`): a loop that leaks shows in the gauge.
pub(crate) struct Alive {
    count: Arc<AtomicUsize>,
    gauge: &'static str,
}

impl Alive {
    pub(crate) fn new(count: &Arc<AtomicUsize>, gauge: &'static str) -> Self {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        metrics::gauge!(gauge).set(n as f64);
        Self {
            count: count.clone(),
            gauge,
        }
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        let n = self.count.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        metrics::gauge!(self.gauge).set(n as f64);
    }
}

impl Probes {
    /// The gateway serves: probe the backends of `snapshot` until `stop`.
    pub(crate) fn start(&self, stop: watch::Receiver<bool>, snapshot: &RoutingSnapshot) {
        self.lock().stop = Some(stop);
        self.sync(snapshot);
    }

    /// Makes the loops match `snapshot`'s probed backends: loops of
    /// backends it no longer has end, loops for its new ones start.
    pub(crate) fn sync(&self, snapshot: &RoutingSnapshot) {
        let mut inner = self.lock();
        let Some(stop) = inner.stop.clone() else {
            return;
        };
        let mut wanted = HashMap::new();
        for (i, backend) in snapshot.backends.iter().enumerate() {
            if let (Some(probe), Some(id), Some(runtime)) = (
                backend.probe.clone(),
                snapshot.identity(i),
                snapshot.balancer.runtime(i),
            ) {
                wanted.insert(id.clone(), (backend.clone(), runtime.clone(), probe));
            }
        }
        let scraped: HashMap<Identity, Arc<crate::upstream::Backend>> = snapshot
            .backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.engine_metrics.is_some())
            .filter_map(|(i, b)| Some((snapshot.identity(i)?.clone(), b.clone())))
            .collect();
        inner.scrapes.retain(|id, _| scraped.contains_key(id));
        for (id, backend) in scraped {
            if inner.scrapes.contains_key(&id) {
                continue;
            }
            let (cancel_tx, cancel) = oneshot::channel::<()>();
            inner.scrapes.insert(id, cancel_tx);
            tokio::spawn(scrape_loop(
                backend,
                cancel,
                stop.clone(),
                Alive::new(&self.running, RUNNING),
            ));
        }
        // Dropping a sender wakes and ends its loop.
        inner.loops.retain(|id, _| wanted.contains_key(id));
        for (id, (backend, runtime, (path, interval))) in wanted {
            if inner.loops.contains_key(&id) {
                continue;
            }
            let (cancel_tx, mut cancel) = oneshot::channel::<()>();
            inner.loops.insert(id, cancel_tx);
            let alive = Alive::new(&self.running, RUNNING);
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let _alive = alive;
                loop {
                    let timeout = interval.min(Duration::from_secs(5));
                    let probe = backend.get(&path, Instant::now() + timeout);
                    let ok = tokio::select! {
                        r = probe => r.is_ok_and(|resp| resp.status().is_success()),
                        _ = &mut cancel => return,
                        _ = stop.wait_for(|s| *s) => return,
                    };
                    runtime.probed(ok);
                    metrics::gauge!("palisade_backend_probe_ok", "backend" => backend.name.clone())
                        .set(if ok { 1.0 } else { 0.0 });
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = &mut cancel => return,
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            });
        }
    }

    /// Probe and scrape loops alive now.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Scrapes one backend's engine metrics until it is removed or the gateway
/// stops; a failed scrape sets `palisade_engine_scrape_ok` to 0 and keeps
/// the last figures out of the gauges' way (they are not refreshed).
async fn scrape_loop(
    backend: Arc<crate::upstream::Backend>,
    mut cancel: oneshot::Receiver<()>,
    mut stop: watch::Receiver<bool>,
    alive: Alive,
) {
    let _alive = alive;
    let Some((url, interval)) = backend.engine_metrics.clone() else {
        return;
    };
    let name = backend.name.clone();
    let mut previous: Option<palisade_routing::EngineStats> = None;
    loop {
        let timeout = interval.min(Duration::from_secs(5));
        let scraped = tokio::select! {
            r = backend.get_unauthenticated(&url, timeout) => r,
            _ = &mut cancel => return,
            _ = stop.wait_for(|s| *s) => return,
        };
        match scraped {
            Ok(text) => {
                // Bounded: an engine's exposition is a few hundred KB at most.
                let text = text.get(..text.len().min(4 << 20)).unwrap_or("");
                let stats = palisade_routing::EngineStats::parse(text);
                publish(&name, &stats, stats.since(previous.as_ref()));
                previous = Some(stats);
                metrics::gauge!(ENGINE_SCRAPE_OK, "backend" => name.clone()).set(1.0);
            }
            Err(e) => {
                tracing::debug!(backend = %name, error = %e, "engine metrics scrape failed");
                metrics::gauge!(ENGINE_SCRAPE_OK, "backend" => name.clone()).set(0.0);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut cancel => return,
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Whether the last scrape of a backend's engine metrics succeeded.
const ENGINE_SCRAPE_OK: &str = "palisade_engine_scrape_ok";

fn publish(
    backend: &str,
    stats: &palisade_routing::EngineStats,
    speculation: Option<palisade_routing::Speculation>,
) {
    let set = |name: &'static str, value: Option<f64>| {
        if let Some(v) = value {
            metrics::gauge!(name, "backend" => backend.to_owned()).set(v);
        }
    };
    set("palisade_engine_kv_cache_usage_ratio", stats.kv_cache_usage);
    set("palisade_engine_requests_waiting", stats.requests_waiting);
    set("palisade_engine_requests_running", stats.requests_running);
    set(
        "palisade_engine_spec_decode_acceptance_rate",
        speculation.map(|s| s.acceptance_rate),
    );
    set(
        "palisade_engine_spec_decode_tokens_per_step",
        speculation.and_then(|s| s.tokens_per_step),
    );
}
