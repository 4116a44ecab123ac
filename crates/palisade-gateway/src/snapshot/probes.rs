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
//! Must not: send client data or tenant keys (only the backend's own key),
//! outlive the gateway's stop signal, or outlive its backend's removal.

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
}

/// The probe loops of the backends in force.
#[derive(Debug, Default)]
pub(crate) struct Probes {
    inner: Mutex<Inner>,
    running: Arc<AtomicUsize>,
}

/// Counts a loop as running for as long as it lives.
struct Alive(Arc<AtomicUsize>);

impl Alive {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        metrics::gauge!(RUNNING).set(n as f64);
        Self(count.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        let n = self.0.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        metrics::gauge!(RUNNING).set(n as f64);
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
        // Dropping a sender wakes and ends its loop.
        inner.loops.retain(|id, _| wanted.contains_key(id));
        for (id, (backend, runtime, (path, interval))) in wanted {
            if inner.loops.contains_key(&id) {
                continue;
            }
            let (cancel_tx, mut cancel) = oneshot::channel::<()>();
            inner.loops.insert(id, cancel_tx);
            let alive = Alive::new(&self.running);
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

    /// Probe loops alive now.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
