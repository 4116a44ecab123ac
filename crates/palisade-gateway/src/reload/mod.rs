//! Config hot reload: the config file is re-read (polled, on `SIGHUP`, or on
//! `POST /admin/config/reload`), validated by `palisade-config`, and its hot
//! sections swapped in atomically; anything else in the edit refuses the
//! whole edit, and a file that does not validate changes nothing. Either
//! way the running config keeps serving, and `GET /admin/config`,
//! the log and `palisade_config_reload_total{result}` say what happened.
//!
//! Hot in this build ([`diff`] lists them): the rate fields of `[limits]`,
//! swapped by [`crate::limits::admission::Admission::reload`], which keeps
//! the counters of every unchanged limit and carries changed rates'
//! counters over, so editing the file never refills a bucket; and the
//! routing sections (`[[routes]]`, `[backends]`, tenants' `residency`),
//! rebuilt as a new routing snapshot that carries every unchanged
//! backend's state and is swapped in whole ([`crate::snapshot`]).
//! Requests in flight keep what they were admitted and routed with.
//!
//! An edit is applied all or nothing: the new routing snapshot is built
//! (new backends' keys resolved, tokenizers loaded) and the limits checked
//! before anything is swapped; a failure of either keeps everything.
//!
//! A file caught half written is never applied: an edit found by polling
//! is applied only once two consecutive polls read the same bytes, and
//! each attempt parses the very bytes it hashed.
//!
//! Must not: apply anything it has not validated in full, or hold a lock
//! across an await on the request path (requests never take these locks).

pub(crate) mod diff;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_config::Config;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::state::GatewayState;

/// Builds a config from the file's text the way `serve` did at start (the
/// same environment overrides and command-line flags), validated.
pub type ConfigLoader = Arc<dyn Fn(&str) -> Result<Config, String> + Send + Sync>;

/// The metric counting reload attempts by result.
pub(crate) const RELOADS: &str = "palisade_config_reload_total";

/// What one reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The hot sections of the new file are in force.
    Applied,
    /// The file's bytes are those already in force.
    Unchanged,
    /// The file does not load or validate; the running config stays.
    Invalid(String),
    /// The edit touches these restart-only sections; nothing was applied.
    RestartRequired(Vec<String>),
}

impl Outcome {
    /// The `result` label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Invalid(_) => "invalid",
            Outcome::RestartRequired(_) => "restart_required",
        }
    }

    /// Every label, for starting the counters at zero.
    pub(crate) const LABELS: [&'static str; 4] =
        ["applied", "unchanged", "invalid", "restart_required"];
}

/// Where the config came from.
struct Source {
    path: PathBuf,
    loader: ConfigLoader,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("path", &self.path).finish()
    }
}

/// What `GET /admin/config` shows.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Status {
    /// The watched file, when the gateway was started from one.
    pub(crate) file: Option<String>,
    /// `sha256:` of the bytes of the config in force.
    pub(crate) hash: Option<String>,
    /// When the config in force was loaded (Unix seconds).
    pub(crate) loaded_at: u64,
    /// How many reloads were applied since start.
    pub(crate) reloads_applied: u64,
    /// The last attempt's result label, and when (Unix seconds).
    pub(crate) last_result: Option<&'static str>,
    pub(crate) last_attempt_at: Option<u64>,
    /// Why the last refused attempt was refused (kept until one applies).
    pub(crate) last_error: Option<String>,
}

/// The replica's config reloader.
#[derive(Debug)]
pub(crate) struct Reloader {
    source: OnceLock<Source>,
    /// The config in force (hot sections included).
    active: Mutex<Config>,
    status: Mutex<Status>,
    /// One attempt at a time (poll, signal and endpoint may race).
    serial: tokio::sync::Mutex<()>,
    /// The poll interval (`reload.config_poll_ms`; 0 is off).
    poll: Duration,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `sha256:<hex>` of a file's bytes.
pub(crate) fn hash(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Reloader {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            source: OnceLock::new(),
            active: Mutex::new(config.clone()),
            status: Mutex::new(Status {
                loaded_at: unix_now(),
                ..Status::default()
            }),
            serial: tokio::sync::Mutex::new(()),
            poll: Duration::from_millis(config.reload.config_poll_ms),
        }
    }

    /// Names the file the running config was read from, and how to read it
    /// again. Its current bytes are taken as the version in force.
    pub(crate) fn watch(&self, path: PathBuf, loader: ConfigLoader) {
        let bytes = std::fs::read(&path).ok();
        {
            let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            status.file = Some(path.display().to_string());
            status.hash = bytes.as_deref().map(hash);
        }
        let _ = self.source.set(Source { path, loader });
    }

    /// The status for `GET /admin/config`.
    pub(crate) fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn path(&self) -> Option<&Path> {
        self.source.get().map(|s| s.path.as_path())
    }

    /// Reads the file now and applies it (signal, admin endpoint).
    pub(crate) async fn reload_now(&self, state: &GatewayState) -> Outcome {
        let Some(path) = self.path() else {
            return self.record(Outcome::Invalid(
                "the gateway was not started from a config file".to_owned(),
            ));
        };
        match tokio::fs::read(path).await {
            Ok(bytes) => self.apply(state, &bytes).await,
            Err(e) => self.record(Outcome::Invalid(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Validates `bytes` as the new config and applies its hot sections,
    /// or refuses the whole edit.
    pub(crate) async fn apply(&self, state: &GatewayState, bytes: &[u8]) -> Outcome {
        let _one_at_a_time = self.serial.lock().await;
        let digest = hash(bytes);
        if self.status().hash.as_deref() == Some(digest.as_str()) {
            return self.record(Outcome::Unchanged);
        }
        let Some(source) = self.source.get() else {
            return self.record(Outcome::Invalid("no config file".to_owned()));
        };
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => return self.record(Outcome::Invalid(format!("not UTF-8: {e}"))),
        };
        let next = match (source.loader)(text) {
            Ok(config) => config,
            Err(e) => return self.record(Outcome::Invalid(e)),
        };
        let running = self
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let restart = diff::restart_only_changes(&running, &next);
        if !restart.is_empty() {
            return self.record(Outcome::RestartRequired(restart));
        }
        // Built next to the running snapshot; nothing is published yet.
        let routing = if diff::routing_changed(&running, &next) {
            match state.routing.prepare(&next) {
                Ok(prepared) => Some(prepared),
                Err(e) => return self.record(Outcome::Invalid(e.to_string())),
            }
        } else {
            None
        };
        if let Err(e) = state.admission.reload(&next.limits) {
            return self.record(Outcome::Invalid(e.to_string()));
        }
        if let Some((snapshot, change)) = routing {
            let generation = snapshot.generation;
            state.routing.install(snapshot);
            // A removed backend serves no new request: its breaker gauge
            // must not keep an "open" alert firing for it.
            for name in change
                .dropped
                .iter()
                .filter(|n| !next.backends.contains_key(*n))
            {
                metrics::gauge!(crate::metrics::CIRCUIT_OPEN, "backend" => name.clone()).set(0.0);
            }
            tracing::warn!(
                generation,
                carried = change.carried,
                fresh = change.fresh,
                dropped = ?change.dropped,
                "config reloaded: new routing snapshot in force"
            );
        }
        *self.active.lock().unwrap_or_else(PoisonError::into_inner) = next;
        {
            let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            status.hash = Some(digest.clone());
            status.loaded_at = unix_now();
            status.reloads_applied += 1;
        }
        tracing::warn!(hash = %digest, "config reloaded: new limits and routes in force");
        self.record(Outcome::Applied)
    }

    /// Counts, logs and shows an attempt's outcome.
    fn record(&self, outcome: Outcome) -> Outcome {
        metrics::counter!(RELOADS, "result" => outcome.label()).increment(1);
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.last_result = Some(outcome.label());
        status.last_attempt_at = Some(unix_now());
        match &outcome {
            Outcome::Applied => status.last_error = None,
            Outcome::Unchanged => {}
            Outcome::Invalid(why) => {
                tracing::error!(error = %why, "config reload refused: the file is invalid; keeping the running config");
                status.last_error = Some(format!("invalid: {why}"));
            }
            Outcome::RestartRequired(sections) => {
                let sections = sections.join(", ");
                tracing::error!(%sections, "config reload refused: these sections change only with a restart; keeping the running config");
                status.last_error = Some(format!(
                    "restart required: the edit changes {sections}, which this build reloads only with a restart; nothing was applied"
                ));
            }
        }
        outcome
    }

    /// Polls the file every `reload.config_poll_ms` and applies an edit
    /// once two consecutive reads agree (a half-written file is never
    /// applied), until `stop`.
    pub(crate) fn spawn_poll(
        state: Arc<GatewayState>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let reloader = &state.reload;
        if reloader.poll.is_zero() {
            return;
        }
        let Some(path) = reloader.path().map(Path::to_path_buf) else {
            return;
        };
        let interval = reloader.poll;
        tokio::spawn(async move {
            // The bytes seen on the previous poll (to see them settle), and
            // the last bytes attempted (so a refused edit is tried once).
            let mut pending: Option<String> = None;
            let mut attempted = state.reload.status().hash;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let Ok(bytes) = tokio::fs::read(&path).await else {
                    continue;
                };
                let digest = hash(&bytes);
                if attempted.as_deref() == Some(digest.as_str()) {
                    pending = None;
                    continue;
                }
                if pending.as_deref() != Some(digest.as_str()) {
                    pending = Some(digest);
                    continue;
                }
                pending = None;
                attempted = Some(digest);
                let _ = state.reload.apply(&state, &bytes).await;
            }
        });
    }
}
