//! Scaling-aware anomaly detection, wired: the request path hands each
//! gated request's outcome to one task through a bounded channel (never
//! waiting: a full channel drops the observation and counts it), the task
//! feeds [`palisade_anomaly::Detector`], ticks its windows, and sends each
//! alert to the log (target `palisade::alert`), the metrics
//! (`palisade_anomaly_alerts_total{kind}`) and the alert webhook
//! (`limits.alert_webhook_url`, shared with spend alerts).
//!
//! Every replica judges its own share of the traffic, so a fleet-wide event
//! (a spike, one tenant's burst spread over the replicas) is raised by each.
//! With the fleet registry in Redis, an alert is claimed fleet-wide for the
//! dedup window ([`crate::fleet::FleetMember::claim`]): the first replica
//! delivers it, the others log it at `info`, count it in
//! `palisade_anomaly_alerts_deduplicated_total` and list it in
//! `GET /admin/anomaly` with `fleet_duplicate: true`. Without a registry (or
//! when it does not answer) each replica delivers: a duplicate page beats a
//! lost one.
//!
//! The fleet's replica count comes from `[detection.anomaly] replicas` until
//! something better says otherwise: [`Anomaly::set_replicas`] (the fleet
//! registry's setter) and `POST /admin/scaling-events` ([`admin`]).
//!
//! Must not: block or fail a request; hold detection logic (the pure crate
//! does).

pub(crate) mod admin;
pub(crate) mod events;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_anomaly::{Alert, Detector, Observation, Outcome, Params, ScaleEvent, Status};
use palisade_config::AnomalyConfig;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::fleet::Claim;

/// Alerts raised, by `kind`.
pub(crate) const ALERTS_TOTAL: &str = "palisade_anomaly_alerts_total";
/// Observations dropped because the detector's queue was full.
pub(crate) const DROPPED_TOTAL: &str = "palisade_anomaly_dropped_total";
/// Alerts another replica already delivered (fleet-wide dedup), by `kind`.
pub(crate) const DEDUPLICATED_TOTAL: &str = "palisade_anomaly_alerts_deduplicated_total";
/// Scale events received, by `source`.
pub(crate) const SCALE_EVENTS_TOTAL: &str = "palisade_scale_events_total";

/// Recent alerts kept for `GET /admin/anomaly`.
const RECENT_ALERTS: usize = 100;

enum Message {
    Observe {
        tenant: Arc<str>,
        key: Arc<str>,
        outcome: Outcome,
    },
    Scale(ScaleEvent),
    Replicas(u32),
}

/// An alert as delivered: the detector's, with a wall-clock time.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Delivered {
    /// Always `anomaly`, beside the spend alerts' kinds on the same webhook.
    pub(crate) category: &'static str,
    /// Unix milliseconds when it was raised.
    pub(crate) ts_ms: u64,
    /// Another replica delivered the same alert within the dedup window.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) fleet_duplicate: bool,
    #[serde(flatten)]
    pub(crate) alert: Alert,
}

/// What `GET /admin/anomaly` shows.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) status: Option<Status>,
    pub(crate) recent_alerts: VecDeque<Delivered>,
}

/// The handle the request path and the admin endpoints hold.
#[derive(Debug)]
pub(crate) struct Anomaly {
    tx: Option<mpsc::Sender<Message>>,
    rx: Mutex<Option<mpsc::Receiver<Message>>>,
    params: Params,
    replicas: u32,
    report: Arc<Mutex<Report>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

/// The pure detector's parameters from the config.
pub(crate) fn params_of(config: &AnomalyConfig) -> Params {
    Params {
        window_ms: config.window_secs.saturating_mul(1000),
        hold_down_ms: config.hold_down_secs.saturating_mul(1000),
        dedup_ms: config.dedup_secs.saturating_mul(1000),
        z_threshold: config.z_threshold,
        min_requests: config.min_requests,
        surge_ratio: config.surge_ratio,
        ..Params::default()
    }
}

impl Anomaly {
    /// The detector `config` asks for (disabled: every call is a no-op).
    pub(crate) fn from_config(config: &AnomalyConfig) -> Self {
        let (tx, rx) = if config.enabled {
            let (tx, rx) = mpsc::channel(config.queue.max(1));
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        Self {
            tx,
            rx: Mutex::new(rx),
            params: params_of(config),
            replicas: config.replicas.max(1),
            report: Arc::new(Mutex::new(Report::default())),
        }
    }

    /// Whether the detector runs.
    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Records one gated request's outcome. Never waits.
    pub(crate) fn observe(&self, tenant: &Arc<str>, key: &Arc<str>, outcome: Outcome) {
        let Some(tx) = &self.tx else { return };
        let message = Message::Observe {
            tenant: tenant.clone(),
            key: key.clone(),
            outcome,
        };
        if tx.try_send(message).is_err() {
            metrics::counter!(DROPPED_TOTAL).increment(1);
        }
    }

    /// A scale event is under way. Waits briefly for room: scale events are
    /// rare and must not be lost to a burst of observations.
    pub(crate) async fn scale_event(&self, event: ScaleEvent) -> bool {
        let Some(tx) = &self.tx else { return false };
        metrics::counter!(SCALE_EVENTS_TOTAL, "source" => source_label(&event.source)).increment(1);
        tx.send_timeout(Message::Scale(event), Duration::from_secs(1))
            .await
            .is_ok()
    }

    /// The fleet's replica count (the fleet registry's setter). A change is
    /// a scale event.
    #[allow(dead_code)] // The fleet registry (issue #15) calls it.
    pub(crate) fn set_replicas(&self, replicas: u32) {
        if let Some(tx) = &self.tx {
            if tx.try_send(Message::Replicas(replicas)).is_err() {
                metrics::counter!(DROPPED_TOTAL).increment(1);
            }
        }
    }

    /// The detector's status and recent alerts.
    pub(crate) fn report(&self) -> Report {
        self.report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Starts the detector task (once; later calls do nothing). `fleet`
    /// deduplicates alerts across replicas (see the module docs).
    pub(crate) fn spawn(
        &self,
        webhook: Option<String>,
        fleet: Option<Arc<crate::fleet::FleetMember>>,
    ) {
        let Some(mut rx) = self
            .rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let mut detector = Detector::new(self.params.clone(), self.replicas);
        let report = self.report.clone();
        let dedup = Duration::from_millis(self.params.dedup_ms.max(1_000));
        // Windows close on the tick even when no request arrives.
        let tick = Duration::from_millis((self.params.window_ms / 5).clamp(50, 1_000));
        tokio::spawn(async move {
            let origin = Instant::now();
            let now_ms = || origin.elapsed().as_millis() as u64;
            let client = crate::outbound::client_builder()
                .timeout(Duration::from_secs(5))
                .build()
                .ok();
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let alerts = tokio::select! {
                    message = rx.recv() => match message {
                        Some(message) => handle(&mut detector, message, now_ms()),
                        None => break,
                    },
                    _ = interval.tick() => detector.tick(now_ms()),
                };
                let status = detector.status(now_ms());
                let mut delivered: Vec<Delivered> = alerts.into_iter().map(delivered).collect();
                if let Some(fleet) = &fleet {
                    for d in &mut delivered {
                        d.fleet_duplicate =
                            fleet.claim(&claim_name(&d.alert), dedup).await == Claim::Taken;
                    }
                }
                {
                    let mut r = report.lock().unwrap_or_else(PoisonError::into_inner);
                    r.status = Some(status);
                    for d in &delivered {
                        if r.recent_alerts.len() >= RECENT_ALERTS {
                            r.recent_alerts.pop_front();
                        }
                        r.recent_alerts.push_back(d.clone());
                    }
                }
                for d in delivered {
                    if d.fleet_duplicate {
                        metrics::counter!(DEDUPLICATED_TOTAL, "kind" => d.alert.kind.as_str())
                            .increment(1);
                        tracing::info!(
                            target: "palisade::anomaly",
                            kind = d.alert.kind.as_str(),
                            tenant = d.alert.tenant.as_deref().unwrap_or("-"),
                            "alert already delivered by another replica"
                        );
                        continue;
                    }
                    publish(&d, webhook.as_deref(), client.as_ref()).await;
                }
            }
        });
    }
}

fn handle(detector: &mut Detector, message: Message, now_ms: u64) -> Vec<Alert> {
    match message {
        Message::Observe {
            tenant,
            key,
            outcome,
        } => detector.observe(
            &Observation {
                tenant: &tenant,
                key: Some(&key),
                outcome,
            },
            now_ms,
        ),
        Message::Scale(event) => {
            tracing::info!(
                target: "palisade::anomaly",
                source = %event.source,
                replicas = ?event.replicas,
                "scale event: capacity signals held down"
            );
            detector.scale_event(&event, now_ms);
            Vec::new()
        }
        Message::Replicas(n) => {
            detector.set_replicas(n, now_ms);
            Vec::new()
        }
    }
}

/// The fleet-wide identity of an alert: its kind and tenant. The windows of
/// two replicas never line up, so the window is not part of it; the claim's
/// time-to-live (the dedup window) is.
fn claim_name(alert: &Alert) -> String {
    format!(
        "anomaly:{}:{}",
        alert.kind.as_str(),
        alert.tenant.as_deref().unwrap_or("-")
    )
}

fn delivered(alert: Alert) -> Delivered {
    let ts_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Delivered {
        category: "anomaly",
        ts_ms,
        fleet_duplicate: false,
        alert,
    }
}

/// Log, metric, webhook. A webhook that stays down loses the alert from the
/// webhook only.
async fn publish(d: &Delivered, webhook: Option<&str>, client: Option<&reqwest::Client>) {
    metrics::counter!(ALERTS_TOTAL, "kind" => d.alert.kind.as_str()).increment(1);
    let json = serde_json::to_string(d).unwrap_or_default();
    tracing::warn!(target: "palisade::alert", alert = %json, "anomaly alert");
    if let (Some(url), Some(client)) = (webhook, client) {
        crate::limits::spend::deliver(client, url, &json).await;
    }
}

/// Metric label for a scale event's source: a fixed set, so a client
/// cannot grow the label space.
fn source_label(source: &str) -> &'static str {
    match source {
        "hpa" => "hpa",
        "keda" => "keda",
        "fleet" => "fleet",
        _ => "generic",
    }
}
