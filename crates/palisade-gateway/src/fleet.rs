//! This replica's place in the fleet: it announces itself in the Redis registry on every
//! heartbeat (what it enforces, since when), looks at the whole fleet, and reports the
//! events that concern it the moment it sees them — to the log, the metrics, Redis
//! pub/sub and the events webhook.
//!
//! Who reports what (so N replicas do not send N copies of one event): a replica reports
//! its own joining, enforcing, falling behind and catching up (it knows them first-hand);
//! a departure is reported by the *leader*, the live replica with the smallest id (the
//! departed one cannot). The registry is observability, not a safety gate: Redis being
//! down never stops a replica from serving; it reports `registry_error` instead.
//!
//! It must not decide what the replica enforces (that is the policy/bundle code's) and
//! must not block a request: requests only read the last view.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use palisade_config::FleetConfig;
use palisade_fleet::{events, FleetEvent, FleetView, Replica};
use palisade_redis::{RedisConnection, RedisFleet};
use tokio::sync::watch;

use crate::clock::GatewayClock;
use crate::gates::policy::PolicyStore;
use crate::readiness::Readiness;

/// Metric names.
const EVENTS: &str = "palisade_fleet_events_total";
/// Tries of a fleet-wide claim before delivering locally (see `claim`).
const CLAIM_ATTEMPTS: usize = 3;
const REPLICAS: &str = "palisade_fleet_replicas";
const SKEW: &str = "palisade_fleet_serial_skew";

/// The fleet as this replica last saw it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Snapshot {
    /// This replica's id.
    pub replica: String,
    /// `redis` or `none`.
    pub registry: &'static str,
    /// The last registry error, if the last look failed.
    pub registry_error: Option<String>,
    /// When the view was taken (unix ms).
    pub seen_unix_ms: u64,
    /// The view.
    pub view: FleetView,
}

/// This replica's fleet membership.
#[derive(Debug)]
pub(crate) struct FleetMember {
    config: FleetConfig,
    id: String,
    started_unix_ms: u64,
    enforcing_since: Mutex<Option<u64>>,
    last: Mutex<Snapshot>,
    clock: GatewayClock,
    /// The registry once connected, shared with [`FleetMember::claim`].
    shared: Mutex<Option<RedisFleet>>,
}

/// Whether this replica delivers an event several replicas may raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// First in the fleet: deliver it.
    Mine,
    /// Another replica claimed it within the window: do not deliver it again.
    Taken,
    /// No shared registry (none configured, or it did not answer): deliver it.
    /// A duplicate page beats a lost one.
    Unshared,
}

impl FleetMember {
    /// A member with `config`, started now.
    pub(crate) fn new(config: &FleetConfig, clock: GatewayClock) -> Self {
        let id = config.replica_id.clone().unwrap_or_else(default_id);
        // The process's own start (config, detector and policy loading included), so the
        // provisioning time is what an orchestrator waits, not just this constructor's share.
        let now = unix_ms(&clock);
        let started_unix_ms = process_started_unix_ms(now).unwrap_or(now);
        Self {
            last: Mutex::new(Snapshot {
                replica: id.clone(),
                registry: if config.redis_url.is_some() {
                    "redis"
                } else {
                    "none"
                },
                ..Snapshot::default()
            }),
            config: config.clone(),
            id,
            started_unix_ms,
            enforcing_since: Mutex::new(None),
            clock,
            shared: Mutex::new(None),
        }
    }

    /// Claims the event `name` fleet-wide for `ttl` (see [`Claim`]).
    pub(crate) async fn claim(&self, name: &str, ttl: Duration) -> Claim {
        let registry = self
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(registry) = registry else {
            return Claim::Unshared;
        };
        // The connection's timeout is the heartbeat's (short); a claim runs off
        // the request path, so a slow Redis gets a few tries before this
        // replica falls back to delivering on its own (a duplicate is better
        // than a lost alert). Retrying is safe: the claim is idempotent per owner.
        let mut last_error = None;
        for _ in 0..CLAIM_ATTEMPTS {
            match registry.claim(name, &self.id, ttl).await {
                Ok(true) => return Claim::Mine,
                Ok(false) => return Claim::Taken,
                Err(e) => last_error = Some(e),
            }
        }
        if let Some(e) = last_error {
            tracing::warn!(target: "palisade::fleet", error = %e, name, "cannot claim a fleet event; delivering it here");
        }
        Claim::Unshared
    }

    /// The last view (refreshed every heartbeat).
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// This replica's record now; `serial` is the running bundle's serial (or the
    /// policy file's signed serial without bundles).
    fn record(&self, policy: &PolicyStore, serial: u64, ready: bool, now: u64) -> Replica {
        let mut since = self
            .enforcing_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Enforcing = ready (a verified policy active, detector warm, stores answering).
        // Once set it stays: a drain is a departure, not a regression.
        if ready && since.is_none() {
            *since = Some(now);
        }
        Replica {
            id: self.id.clone(),
            serial,
            // `peek`, not `active`: describing the policy judges no request, so it must
            // not trip the requests-without-policy wire before a bundle is active.
            version: policy.peek().version().to_string(),
            started_unix_ms: self.started_unix_ms,
            enforcing_since_unix_ms: *since,
            heartbeat_unix_ms: now,
        }
    }

    /// Starts the heartbeat task; it withdraws the record when `stop` turns true.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        policy: Arc<PolicyStore>,
        bundle: Option<Arc<crate::bundle::BundleRuntime>>,
        readiness: Readiness,
        on_replicas: impl Fn(u32) + Send + 'static,
        mut stop: watch::Receiver<bool>,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            let heartbeat = Duration::from_millis(me.config.heartbeat_ms);
            let ttl = Duration::from_millis(me.config.ttl_ms);
            let http = crate::outbound::client_builder()
                .timeout(Duration::from_secs(5))
                .build()
                .ok();
            let mut registry: Option<RedisFleet> = None;
            let mut prev = FleetView::default();
            loop {
                let now = unix_ms(&me.clock);
                let ready = readiness.is_ready();
                let serial = match &bundle {
                    Some(b) => b.activator().running_serial().unwrap_or(0),
                    None => policy.active_serial(),
                };
                let mine = me.record(&policy, serial, ready, now);
                let (view, withdrawn, error) = match me.config.redis_url.as_deref() {
                    None => (
                        FleetView::at([mine.clone()], now, me.config.ttl_ms),
                        Vec::new(),
                        None,
                    ),
                    Some(url) => match me.look(url, &mut registry, &mine, ttl, now).await {
                        Ok((view, withdrawn)) => (view, withdrawn, None),
                        Err(e) => {
                            registry = None;
                            (prev.clone(), Vec::new(), Some(e))
                        }
                    },
                };
                if error.is_none() {
                    let leader = view.replicas.first().is_some_and(|r| r.id == me.id);
                    for event in events(&prev, &view, &withdrawn) {
                        if concerns(&event, &me.id, leader) {
                            me.report(&event, registry.as_ref(), http.as_ref()).await;
                        }
                    }
                    metrics::gauge!(REPLICAS).set(view.replicas.len() as f64);
                    // The anomaly detector normalizes per replica: tell it when the
                    // registry's count changes (a scale event it did not have to be told).
                    if me.config.redis_url.is_some() && view.replicas.len() != prev.replicas.len() {
                        on_replicas(u32::try_from(view.replicas.len()).unwrap_or(u32::MAX));
                    }
                    metrics::gauge!(SKEW).set(view.skew as f64);
                    prev = view.clone();
                }
                *me.last.lock().unwrap_or_else(PoisonError::into_inner) = Snapshot {
                    replica: me.id.clone(),
                    registry: if me.config.redis_url.is_some() {
                        "redis"
                    } else {
                        "none"
                    },
                    registry_error: error,
                    seen_unix_ms: now,
                    view: prev.clone(),
                };
                // Until enforcing, look often: "started enforcing" is reported within
                // ~20 ms of the moment, not a heartbeat later.
                let wait = if ready {
                    heartbeat
                } else {
                    Duration::from_millis(20).min(heartbeat)
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            if let Some(registry) = &registry {
                let now = unix_ms(&me.clock);
                match registry.withdraw(&me.id, now).await {
                    Ok(()) => {
                        tracing::info!(target: "palisade::fleet", replica = %me.id, "withdrew from the fleet")
                    }
                    Err(e) => {
                        tracing::warn!(target: "palisade::fleet", error = %e, "cannot withdraw from the fleet; the record expires")
                    }
                }
            }
        });
    }

    /// Announces `mine` and lists the fleet, connecting first if needed.
    async fn look(
        &self,
        url: &str,
        registry: &mut Option<RedisFleet>,
        mine: &Replica,
        ttl: Duration,
        now: u64,
    ) -> Result<(FleetView, Vec<String>), String> {
        if registry.is_none() {
            let timeout = Duration::from_millis(self.config.heartbeat_ms.min(1_000));
            let conn = RedisConnection::connect(url, timeout, timeout)
                .await
                .map_err(|e| e.to_string())?;
            let fleet = RedisFleet::new(conn, &self.config.key_prefix);
            *self.shared.lock().unwrap_or_else(PoisonError::into_inner) = Some(fleet.clone());
            *registry = Some(fleet);
        }
        let Some(reg) = registry.as_ref() else {
            return Err("no registry".to_owned());
        };
        reg.announce(mine, ttl).await.map_err(|e| e.to_string())?;
        let listing = reg.list(now).await.map_err(|e| e.to_string())?;
        if listing.malformed > 0 {
            tracing::warn!(target: "palisade::fleet", malformed = listing.malformed, "skipped fleet records that do not parse");
        }
        Ok((
            FleetView::at(listing.replicas, now, self.config.ttl_ms),
            listing.withdrawn,
        ))
    }

    async fn report(
        &self,
        event: &FleetEvent,
        registry: Option<&RedisFleet>,
        http: Option<&reqwest::Client>,
    ) {
        let json = serde_json::to_string(event).unwrap_or_default();
        tracing::info!(target: "palisade::fleet", replica = %self.id, event = %json, "fleet event");
        metrics::counter!(EVENTS, "kind" => event.kind()).increment(1);
        if let Some(registry) = registry {
            if let Err(e) = registry.publish(&json).await {
                tracing::warn!(target: "palisade::fleet", error = %e, "cannot publish a fleet event");
            }
        }
        if let (Some(url), Some(http)) = (&self.config.events_webhook_url, http) {
            crate::limits::spend::deliver(http, url, &json).await;
        }
    }
}

/// Whether this replica reports `event` (see the module doc).
fn concerns(event: &FleetEvent, me: &str, leader: bool) -> bool {
    match event {
        FleetEvent::Left { .. } => leader,
        FleetEvent::Joined { id }
        | FleetEvent::Enforcing { id, .. }
        | FleetEvent::Behind { id, .. }
        | FleetEvent::CaughtUp { id, .. } => id == me,
    }
}

fn unix_ms(clock: &GatewayClock) -> u64 {
    u64::try_from(clock.unix_ms()).unwrap_or(0)
}

/// When this process started (unix ms, 10 ms resolution): its age from `/proc` (field 22
/// of `/proc/self/stat`, clock ticks after boot, against `/proc/uptime`: one clock, so no
/// rounding of the boot time creeps in) subtracted from `now`. `None` off Linux.
fn process_started_unix_ms(now_unix_ms: u64) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after its end.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let start_ticks: u64 = after_comm.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // USER_HZ is 100 on every Linux ABI Rust targets.
    let age_ms = (uptime * 1_000.0) as u64 - (start_ticks * 10).min((uptime * 1_000.0) as u64);
    Some(now_unix_ms.saturating_sub(age_ms))
}

/// `$POD_NAME` (Kubernetes' downward API) or the host name, and the process id.
fn default_id() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "palisade".to_owned());
    format!("{host}:{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_started_before_now() {
        let now = unix_ms(&GatewayClock::system());
        let started = process_started_unix_ms(now).expect("Linux /proc");
        assert!(started <= now, "{started} > {now}");
        assert!(
            now - started < 3_600_000,
            "a test process started this hour"
        );
    }

    #[test]
    fn each_event_has_one_reporter() {
        let joined = FleetEvent::Joined { id: "b".into() };
        let left = FleetEvent::Left {
            id: "c".into(),
            because: palisade_fleet::LeftBecause::Expired,
        };
        // (event, me, leader) -> reports
        let table = [
            (&joined, "b", false, true),
            (&joined, "a", true, false),
            (&left, "a", true, true),
            (&left, "b", false, false),
        ];
        for (event, me, leader, want) in table {
            assert_eq!(concerns(event, me, leader), want, "{event:?} {me} {leader}");
        }
    }
}
