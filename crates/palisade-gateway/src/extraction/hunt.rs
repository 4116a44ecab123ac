//! The cross-account hunt, the gateway's side: a thread that every
//! `extraction.hunt.interval_secs` reads the store's last window of rows,
//! runs `palisade_extraction::hunt`, saves the campaigns, sends each new
//! one to the alert webhook once, and refreshes the confirmed keys'
//! floors the request path reads ([`HuntShared::floor`]). `GET /admin/hunt`
//! and `palisade hunt` read the same results; `POST /admin/hunt/{id}` and
//! `palisade hunt mark` set operators' marks.
//!
//! What a mark does: **confirmed** holds every key of the campaign at
//! `confirmed_action` or above from the next request on (and keys that
//! later join it by shared evidence inherit the mark with its id);
//! **benign** stops alerts for the campaign, leaves its keys out of later
//! hunts, and makes their traffic the distribution baseline once it holds
//! `clustering.baseline_min_requests` requests (see `hunt()`).
//!
//! Must not: run on the request path or an async worker (SQLite reads and
//! the clustering are blocking CPU work on its own thread), or hold the
//! request path's locks while hunting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use palisade_config::{ExtractionConfig, HuntJobConfig};
use palisade_extraction::hunt::ProfileSet;
use palisade_extraction::{hunt, Action};

pub use super::hunt_store::{HuntStore, StoredCampaign};
pub use super::store::DbError;
use crate::clock::GatewayClock;
pub use palisade_extraction::{Campaign, HuntReport, Mark};

/// Campaigns found by the last hunt.
const CAMPAIGNS: &str = "palisade_extraction_hunt_campaigns";
/// Hunt alerts sent (once per campaign).
const ALERTS: &str = "palisade_extraction_hunt_alerts_total";

/// `Retry-After` of a refusal held by a confirmed campaign's floor alone:
/// the floor lasts until an operator changes the mark, so clients are told
/// to come back in an hour rather than hammer.
pub(crate) const FLOOR_RETRY_SECS: u64 = 3600;

/// The hunt could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HuntError {
    /// No `extraction.store` is configured: there is nothing to hunt in.
    #[error("no extraction store is configured (set extraction.store)")]
    NoStore,
    /// The store could not be opened.
    #[error(transparent)]
    Open(#[from] super::StoreError),
    /// A read or write failed.
    #[error("extraction store: {0}")]
    Db(#[from] DbError),
}

/// Runs one hunt over `store`: reads the window's rows, clusters them with
/// the stored marks, saves the campaigns. Returns the report and the
/// campaigns whose alert is due (not benign, never alerted).
pub fn run_once(
    store: &mut HuntStore,
    job: &HuntJobConfig,
    now_ms: i64,
) -> Result<(HuntReport, Vec<Campaign>), HuntError> {
    let window_ms = i64::try_from(job.window_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX);
    let mut set = ProfileSet::new();
    store.read_rows(
        now_ms.saturating_sub(window_ms),
        job.max_rows,
        &job.clustering,
        &mut set,
    )?;
    let marks = store.marks(now_ms)?;
    let report = hunt(&set, &marks, None, &job.clustering, now_ms);
    let due = store.save(&report, job.clustering.max_listed_keys, job.alert)?;
    Ok((report, due))
}

/// The hunt's state shared with the request path and the admin endpoints.
#[derive(Debug)]
pub(crate) struct HuntShared {
    job: HuntJobConfig,
    store_url: Option<String>,
    store: Mutex<Option<HuntStore>>,
    report: RwLock<Option<HuntReport>>,
    floors: RwLock<HashMap<String, Action>>,
    /// Where alerts go, set when the job starts.
    webhook: OnceLock<(Option<String>, Option<reqwest::Client>)>,
}

impl HuntShared {
    pub(crate) fn new(config: &ExtractionConfig) -> Self {
        Self {
            job: config.hunt.clone(),
            store_url: config.store.clone().filter(|_| config.enabled),
            store: Mutex::new(None),
            report: RwLock::new(None),
            floors: RwLock::new(HashMap::new()),
            webhook: OnceLock::new(),
        }
    }

    /// The job's settings.
    pub(crate) fn job(&self) -> &HuntJobConfig {
        &self.job
    }

    /// The floor a confirmed campaign holds `key_id` at, if any. A read
    /// lock and a lookup: the request path's whole share of the hunt.
    pub(crate) fn floor(&self, key_id: &str) -> Option<Action> {
        self.floors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key_id)
            .copied()
    }

    /// The last hunt's report.
    pub(crate) fn report(&self) -> Option<HuntReport> {
        self.report
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn with_store<T>(
        &self,
        f: impl FnOnce(&mut HuntStore) -> Result<T, HuntError>,
    ) -> Result<T, HuntError> {
        let url = self.store_url.as_deref().ok_or(HuntError::NoStore)?;
        let mut guard = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(HuntStore::open(url)?);
        }
        match guard.as_mut() {
            Some(store) => f(store),
            None => Err(HuntError::NoStore),
        }
    }

    /// Runs a hunt now (blocking): saves, publishes the report and the
    /// floors; returns the campaigns whose alert is due.
    pub(crate) fn run_now(&self, now_ms: i64) -> Result<Vec<Campaign>, HuntError> {
        let (report, due) = self.with_store(|store| {
            let out = run_once(store, &self.job, now_ms)?;
            self.refresh_floors(store)?;
            Ok(out)
        })?;
        metrics::gauge!(CAMPAIGNS).set(report.campaigns.len() as f64);
        *self.report.write().unwrap_or_else(PoisonError::into_inner) = Some(report);
        Ok(due)
    }

    /// Marks a campaign (blocking); `Ok(false)` when the id is unknown.
    pub(crate) fn mark(&self, id: &str, mark: Mark, now_ms: i64) -> Result<bool, HuntError> {
        let found = self.with_store(|store| {
            if !store.mark(id, mark, now_ms)? {
                return Ok(false);
            }
            self.refresh_floors(store)?;
            Ok(true)
        })?;
        if found {
            let mut report = self.report.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = report
                .as_mut()
                .and_then(|r| r.campaigns.iter_mut().find(|c| c.id == id))
            {
                c.mark = Some(mark);
            }
            tracing::warn!(target: "palisade::extraction", campaign = id, mark = mark.as_str(), "hunt campaign marked");
        }
        Ok(found)
    }

    fn refresh_floors(&self, store: &mut HuntStore) -> Result<(), HuntError> {
        let keys = store.confirmed_keys()?;
        let floors: HashMap<String, Action> = keys
            .into_iter()
            .map(|k| (k, self.job.confirmed_action))
            .collect();
        *self.floors.write().unwrap_or_else(PoisonError::into_inner) = floors;
        Ok(())
    }
}

/// Starts the hunt thread (when enabled and a store is configured). It ends
/// when the gateway's state is dropped.
pub(crate) fn spawn(shared: &Arc<HuntShared>, webhook: Option<String>, clock: GatewayClock) {
    let client = crate::outbound::client_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok();
    let _ = shared.webhook.set((webhook, client));
    if !shared.job.enabled || shared.store_url.is_none() {
        return;
    }
    // Confirmed floors hold from the start, before the first hunt.
    let restored =
        super::store::off_runtime(|| shared.with_store(|store| shared.refresh_floors(store)));
    if let Some(Err(e)) = restored {
        tracing::error!(error = %e, "hunt: confirmed campaigns not restored");
    }
    let weak: Weak<HuntShared> = Arc::downgrade(shared);
    let runtime = tokio::runtime::Handle::try_current().ok();
    let interval = Duration::from_secs(shared.job.interval_secs.max(1));
    let spawned = std::thread::Builder::new()
        .name("palisade-hunt".into())
        .spawn(move || {
            loop {
                // Sleep in short steps so a dropped gateway ends the thread soon.
                let mut slept = Duration::ZERO;
                while slept < interval {
                    let step = (interval - slept).min(Duration::from_millis(250));
                    std::thread::sleep(step);
                    slept += step;
                    if weak.strong_count() == 0 {
                        return;
                    }
                }
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                match shared.run_now(clock.unix_ms()) {
                    Ok(due) => {
                        for c in due {
                            let json = announce(&c);
                            if let (Some((Some(url), Some(client))), Some(rt)) =
                                (shared.webhook.get(), runtime.as_ref())
                            {
                                rt.block_on(crate::limits::spend::deliver(client, url, &json));
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "hunt failed"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "hunt thread not started");
    }
}

/// Logs and counts a campaign's alert; returns its webhook body.
fn announce(campaign: &Campaign) -> String {
    metrics::counter!(ALERTS).increment(1);
    let json = serde_json::json!({
        "category": "hunt",
        "ts_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "campaign": campaign,
    })
    .to_string();
    tracing::warn!(target: "palisade::alert", alert = %json, "hunt campaign found");
    json
}

/// Sends due alerts from async code (the admin endpoint's on-demand hunt).
pub(crate) async fn deliver(shared: &HuntShared, due: &[Campaign]) {
    for c in due {
        let json = announce(c);
        if let Some((Some(url), Some(client))) = shared.webhook.get() {
            crate::limits::spend::deliver(client, url, &json).await;
        }
    }
}
