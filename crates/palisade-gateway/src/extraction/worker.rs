//! The extraction worker: one OS thread that drains the request path's
//! queue, sketches each request, runs the tracker, publishes standings above
//! `observe`, audits every rung change with its evidence, and writes the
//! store in batches with periodic retention sweeps.
//!
//! A thread rather than a task: sketches, the MMD permutations and SQLite
//! writes are CPU and blocking I/O that must not sit on the async workers.
//! It ends when the gateway's state (the queue's sender) is dropped.
//!
//! With a shared store (PostgreSQL) a ticker asks it every [`SYNC_EVERY`]
//! to pull the standings other replicas wrote: a standing above this
//! replica's own (decayed) score for the key is adopted by the tracker and
//! published, so a key blocked on one replica is blocked on every replica
//! within about a second, and points this replica adds build on it.
//! Must not: be waited for by the request path.

use std::collections::HashMap;
use std::sync::Arc;

use palisade_extraction::{sketch, Action, Assessment, RequestFeatures, Tracker, TrackerConfig};
use palisade_policy::{AuditRecord, Evidence, Gate};
use tokio::sync::mpsc;

use super::store::{off_runtime, Store};
use super::{Message, Published};
use crate::clock::GatewayClock;
use crate::gates::audit::AuditSink;
use crate::gates::policy::PolicyStore;

/// Records written per store transaction at most.
const BATCH: usize = 256;
/// How long the worker lets requests gather after it emptied the queue.
/// Without it, a gateway at a moderate rate (a request every few ms) wakes
/// this thread once per request, and a thread's wake-up and sleep cost more
/// CPU than the sketch itself (`docs/benchmarks.md`, 2026-12-07). Standings
/// are published at most this much later; the ladder acts on the key's next
/// request anyway.
pub(super) const LINGER: std::time::Duration = std::time::Duration::from_millis(5);
/// Inserts between retention sweeps.
const SWEEP_EVERY: u64 = 10_000;
/// How often standings written by other replicas are pulled.
pub(super) const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Overlap of successive pulls (a row written while the last pull ran is
/// read by the next).
const SYNC_OVERLAP_MS: i64 = 5_000;

/// Sends a [`Message::Sync`] every [`SYNC_EVERY`] until the gateway's
/// state (the last strong sender) is gone. A full queue skips a tick.
pub(super) fn spawn_sync_ticker(sender: mpsc::WeakSender<Message>) {
    let spawned = std::thread::Builder::new()
        .name("palisade-extraction-sync".into())
        .spawn(move || loop {
            std::thread::sleep(SYNC_EVERY);
            let Some(sender) = sender.upgrade() else {
                return;
            };
            let _ = sender.try_send(Message::Sync);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "extraction standings sync not started");
    }
}

/// The tracker's key for a tenant's key (key names are unique per tenant only).
pub(crate) fn key_id(tenant: &str, key: &str) -> String {
    format!("{tenant}/{key}")
}

pub(super) fn spawn(
    mut receiver: mpsc::Receiver<Message>,
    config: TrackerConfig,
    mut store: Option<Store>,
    published: Published,
    audit: AuditSink,
    policy: Arc<PolicyStore>,
    clock: GatewayClock,
) {
    let ladder = config.ladder.clone();
    let mut tracker = Tracker::new(config);
    if let Some(store) = &mut store {
        match off_runtime(|| store.standings()).unwrap_or_else(|| Ok(Vec::new())) {
            Ok(rows) => {
                let now = clock.unix_ms();
                let mut map = published.write().unwrap_or_else(|e| e.into_inner());
                for (key, tenant, standing) in rows {
                    tracker.restore(&key, &tenant, standing);
                    if standing.action(now, &ladder) > Action::Observe {
                        map.insert(key, standing);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "extraction standings not restored"),
        }
    }
    let spawned = std::thread::Builder::new()
        .name("palisade-extraction".into())
        .spawn(move || {
            let mut batch: Vec<(String, String, RequestFeatures, u64)> = Vec::with_capacity(BATCH);
            let mut inserted: u64 = 0;
            let mut last_action: HashMap<String, Action> = HashMap::new();
            let mut synced_ms = clock.unix_ms();
            while let Some(first) = receiver.blocking_recv() {
                let mut next = Some(first);
                while let Some(message) = next.take() {
                    let record = match message {
                        Message::Request(record) => record,
                        Message::Sync => {
                            if let Some(store) = &mut store {
                                let now = clock.unix_ms();
                                adopt_fleet_standings(store, &mut tracker, &published, synced_ms, now, &ladder);
                                synced_ms = now;
                            }
                            if batch.len() < BATCH {
                                next = receiver.try_recv().ok();
                            }
                            continue;
                        }
                    };
                    let key = key_id(&record.tenant, &record.key);
                    let features = RequestFeatures {
                        at_ms: record.at_ms,
                        sketch: sketch(&record.text),
                        sampling: record.sampling,
                        outcome: record.outcome,
                    };
                    if let Some(a) = tracker.observe(&key, &record.tenant, &features, record.at_ms) {
                        publish(&published, &tracker, &a, record.at_ms, &ladder);
                        let before = last_action.get(&key).copied().unwrap_or_default();
                        if a.action != before {
                            audit_change(&audit, &policy, &record.tenant, &a, record.at_ms);
                            if a.action == Action::Observe {
                                last_action.remove(&key);
                            } else {
                                last_action.insert(key.clone(), a.action);
                            }
                        }
                        if let (Some(store), Some(standing)) = (&mut store, tracker.standing(&key)) {
                            let evidence = serde_json::to_string(&a.signals).unwrap_or_default();
                            if let Err(e) = store.save_standing(&key, &record.tenant, standing, a.action.as_str(), &evidence) {
                                tracing::warn!(error = %e, "extraction standing not saved");
                            }
                        }
                    }
                    if store.is_some() {
                        batch.push((record.tenant.to_string(), key, features, record.fingerprint));
                    }
                    if batch.len() < BATCH {
                        next = receiver.try_recv().ok();
                    }
                }
                if let Some(store) = &mut store {
                    if !batch.is_empty() {
                        if let Err(e) = store.insert(&batch) {
                            tracing::warn!(error = %e, rows = batch.len(), "extraction rows not written");
                        }
                        let before = inserted / SWEEP_EVERY;
                        inserted += batch.len() as u64;
                        if inserted / SWEEP_EVERY != before {
                            if let Err(e) = store.sweep(clock.unix_ms()) {
                                tracing::warn!(error = %e, "extraction retention sweep failed");
                            }
                        }
                        batch.clear();
                    }
                }
                // Only once the queue is empty: a full batch (a flood) is
                // followed by the next one at once, so the linger never caps
                // how fast records are taken (see LINGER).
                if receiver.is_empty() {
                    std::thread::sleep(LINGER);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "extraction worker not started");
    }
}

/// Pulls the standings written since `since_ms` (less an overlap) and
/// adopts each that is above this replica's own for the key.
fn adopt_fleet_standings(
    store: &mut Store,
    tracker: &mut Tracker,
    published: &Published,
    since_ms: i64,
    now_ms: i64,
    ladder: &palisade_extraction::LadderConfig,
) {
    let rows = match store.standings_since(since_ms.saturating_sub(SYNC_OVERLAP_MS)) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "extraction standings not pulled");
            return;
        }
    };
    for (key, tenant, remote) in rows {
        let own = tracker
            .standing(&key)
            .map_or(0.0, |s| s.score_at(now_ms, ladder));
        if remote.score_at(now_ms, ladder) <= own {
            continue;
        }
        tracker.restore(&key, &tenant, remote);
        let mut map = published.write().unwrap_or_else(|e| e.into_inner());
        if remote.action(now_ms, ladder) > Action::Observe {
            map.insert(key, remote);
        }
    }
}

/// Publishes the key's standing when above `observe`, removes it otherwise
/// (the map the request path reads stays small).
fn publish(
    published: &Published,
    tracker: &Tracker,
    a: &Assessment,
    now_ms: i64,
    ladder: &palisade_extraction::LadderConfig,
) {
    let Some(standing) = tracker.standing(&a.key) else {
        return;
    };
    let mut map = published.write().unwrap_or_else(|e| e.into_inner());
    if standing.action(now_ms, ladder) > Action::Observe {
        map.insert(a.key.clone(), standing);
    } else {
        map.remove(&a.key);
    }
}

/// One audit record per rung change: the rung, the score and every
/// detector's statistic as reason codes (`extraction:<rung>`,
/// `extraction_<detector>`), never text.
fn audit_change(
    audit: &AuditSink,
    policy: &PolicyStore,
    tenant: &str,
    a: &Assessment,
    now_ms: i64,
) {
    let mut reasons = vec![format!("extraction:{}", a.action.as_str())];
    reasons.extend(a.fired().map(|s| format!("extraction_{}", s.kind.as_str())));
    let action = match a.action {
        Action::Observe => palisade_policy::Action::Allow,
        Action::Flag | Action::Slow => palisade_policy::Action::Flag,
        Action::Reverify | Action::Block => palisade_policy::Action::Block,
    };
    tracing::warn!(
        target: "palisade::extraction",
        key = %a.key,
        action = a.action.as_str(),
        score = a.score,
        evidence = %serde_json::to_string(&a.signals).unwrap_or_default(),
        "extraction ladder moved"
    );
    let record = AuditRecord {
        ts_ms: u64::try_from(now_ms).unwrap_or(0),
        request_id: String::new(),
        tenant: tenant.to_owned(),
        route: String::new(),
        model: String::new(),
        gate: Gate::Input,
        tier: "extraction".to_owned(),
        policy_version: policy.active().version(),
        evidence: Evidence {
            detector_reasons: reasons,
            ..Evidence::default()
        },
        action,
        reasons: Vec::new(),
        latency_us: 0,
        shadow: None,
        degraded: None,
    };
    audit.write(&record);
}
