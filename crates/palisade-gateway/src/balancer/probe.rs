//! Active health probes: for each backend with `probe_path`, a GET every
//! `probe_interval_ms`; the result feeds the balancer (a failed probe takes
//! the backend out of balancing until one passes).
//!
//! Must not: send client data or tenant keys (only the backend's own key),
//! or outlive the gateway's stop signal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::state::GatewayState;

/// Starts one probe loop per probed backend.
pub(crate) fn spawn(state: &Arc<GatewayState>, stop: tokio::sync::watch::Receiver<bool>) {
    for (index, backend) in state.backends.iter().enumerate() {
        let Some((path, interval)) = backend.probe.clone() else {
            continue;
        };
        let state = state.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let backend = &state.backends[index];
                let timeout = interval.min(Duration::from_secs(5));
                let ok = match backend.get(&path, Instant::now() + timeout).await {
                    Ok(resp) => resp.status().is_success(),
                    Err(_) => false,
                };
                state.balancer.probed(index, ok);
                metrics::gauge!("palisade_backend_probe_ok", "backend" => backend.name.clone())
                    .set(if ok { 1.0 } else { 0.0 });
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }
}
