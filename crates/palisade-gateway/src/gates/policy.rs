//! The active safety policy of this replica: swapped atomically, reloaded
//! from its file, rolled back on request, with an optional shadow candidate.
//!
//! Readers take the current [`Snapshot`] with one atomic load (`arc-swap`)
//! and keep it for the whole request, so a request is judged by one policy
//! version even when a reload lands in the middle of it, and a reload never
//! blocks a request. A replica holds its policy before it takes traffic: the
//! first load happens in [`PolicyStore::load`], before the listener is ready,
//! and a file that does not compile stops the start (a later bad edit is
//! logged and the running policy kept).
//!
//! Shadow mode: a candidate snapshot is decided beside the active one on
//! every gate; where they disagree the audit record carries both, and
//! `palisade_policy_shadow_divergences_total` counts it. The candidate never
//! changes what the client gets.
//!
//! Signed policies (`policy.trusted_keys`): each file must be signed for its
//! role (the active file as `active`, the shadow file as `shadow`), and a
//! reload refuses a serial lower than the highest this replica has run for
//! that role, or than `policy.min_serial` (at start too), so an older signed
//! policy or the shadow candidate cannot be copied over the active file. The
//! mark only rises: an admin rollback does not lower it.
//!
//! Bundles (`[bundle]`): the store starts *not enforcing*
//! ([`PolicyStore::awaiting_bundle`]) and the request pipeline refuses
//! traffic until `crate::bundle` activates a verified bundle through
//! [`PolicyStore::activate_bundle`] (one atomic swap). Taking the active
//! snapshot while not enforcing is a bug that the tripwire counter
//! `palisade_requests_without_policy_total` reports.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use palisade_policy::signature::{verify_document, Role, SignatureError, TrustedKey};
use palisade_policy::Snapshot;

/// How many earlier versions are kept for rollback.
const HISTORY: usize = 16;

/// Errors loading a policy file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// The file could not be read.
    #[error("cannot read policy file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("policy file {path} is invalid: {source}")]
    Invalid {
        /// The file.
        path: String,
        /// The first problem, naming its key.
        #[source]
        source: palisade_policy::PolicyError,
    },
    /// A configured trusted key is not a public key.
    #[error("policy.trusted_keys[{index}]: {source}")]
    TrustedKey {
        /// Its position in the list.
        index: usize,
        /// Why.
        #[source]
        source: SignatureError,
    },
    /// Trusted keys are configured and the file's signature is missing or wrong.
    #[error("policy file {path} is not signed by a trusted key: {reason}")]
    Unsigned {
        /// The file.
        path: String,
        /// Why (no `.sig` file, another key, edited after signing, signed
        /// for the other role ...).
        reason: String,
    },
    /// Validly signed, but with a serial lower than this replica accepts.
    #[error(
        "policy file {path} is signed with serial {serial}, lower than {running} (the serial \
         this replica runs, or policy.min_serial): an older policy is not reinstated"
    )]
    OlderSerial {
        /// The file.
        path: String,
        /// Its serial.
        serial: u64,
        /// The lowest serial accepted.
        running: u64,
    },
}

/// The detached signature of a policy file.
pub fn signature_path(path: &str) -> String {
    format!("{path}.sig")
}

/// Reads and compiles a policy file; with trusted keys, only if its exact
/// bytes carry a valid signature from one of them for `role`, with a serial
/// of at least `min_serial`. Returns the snapshot and the signed serial.
fn read_snapshot(
    path: &str,
    trusted: &[TrustedKey],
    role: Role,
    min_serial: u64,
) -> Result<(Snapshot, Option<u64>), PolicyLoadError> {
    let bytes = std::fs::read(path).map_err(|source| PolicyLoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut signed_by = None;
    if !trusted.is_empty() {
        let unsigned = |reason: String| PolicyLoadError::Unsigned {
            path: path.to_owned(),
            reason,
        };
        let sig_path = signature_path(path);
        let signature = std::fs::read_to_string(&sig_path)
            .map_err(|e| unsigned(format!("cannot read {sig_path}: {e}")))?;
        let signed = verify_document(trusted, &bytes, &signature, role)
            .map_err(|e| unsigned(e.to_string()))?;
        if signed.serial < min_serial {
            return Err(PolicyLoadError::OlderSerial {
                path: path.to_owned(),
                serial: signed.serial,
                running: min_serial,
            });
        }
        signed_by = Some((signed.key_id.to_owned(), signed.serial));
    }
    let text = String::from_utf8(bytes).map_err(|e| PolicyLoadError::Read {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    let snapshot = Snapshot::from_toml(&text).map_err(|source| PolicyLoadError::Invalid {
        path: path.to_owned(),
        source,
    })?;
    if let Some((key, serial)) = &signed_by {
        tracing::info!(path, key, serial, %role, version = %snapshot.version(), "policy signature verified");
    }
    Ok((snapshot, signed_by.map(|(_, serial)| serial)))
}

/// When a policy file (or its signature) last changed: a new signature
/// written after its file is a change too.
fn modified(path: &Path) -> Option<SystemTime> {
    let at = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let file = at(path)?;
    let sig = at(Path::new(&signature_path(&path.to_string_lossy())));
    Some(sig.map_or(file, |s| s.max(file)))
}

/// The replica's policy.
#[derive(Debug)]
pub struct PolicyStore {
    active: ArcSwap<Snapshot>,
    shadow: ArcSwapOption<Snapshot>,
    /// Earlier active versions, newest last.
    history: Mutex<Vec<Arc<Snapshot>>>,
    file: Option<PathBuf>,
    shadow_file: Option<PathBuf>,
    interval: Duration,
    trusted: Vec<TrustedKey>,
    /// The lowest serial a reload accepts, per role (active, shadow): the
    /// highest run so far, and at least `policy.min_serial`.
    serials: Mutex<[u64; 2]>,
    /// Whether the active snapshot is a policy this replica may enforce:
    /// always after [`PolicyStore::load`]; with a bundle, once one verified.
    enforcing: AtomicBool,
    /// The policy comes from signed bundles: only a newer signed serial
    /// changes it, never the admin API's rollback.
    from_bundle: bool,
}

/// Why `POST /admin/policy/rollback` did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackRefusal {
    /// No earlier version is held.
    NoHistory,
    /// The policy comes from a signed bundle.
    FromBundle,
}

impl PolicyStore {
    /// Loads the configured policy (the built-in one without a file) and the
    /// shadow candidate.
    ///
    /// # Errors
    /// A file that cannot be read or compiled.
    pub fn load(config: &palisade_config::PolicyConfig) -> Result<Self, PolicyLoadError> {
        let trusted = config
            .trusted_keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                TrustedKey::from_hex(key)
                    .map_err(|source| PolicyLoadError::TrustedKey { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let min = config.min_serial;
        let mut serials = [min; 2];
        // The built-in policy is part of the binary and needs no signature.
        let active = match &config.file {
            Some(path) => {
                let (snapshot, serial) = read_snapshot(path, &trusted, Role::Active, min)?;
                serials[0] = serial.unwrap_or(min).max(min);
                snapshot
            }
            None => Snapshot::builtin(),
        };
        let shadow = match &config.shadow_file {
            Some(path) => {
                let (snapshot, serial) = read_snapshot(path, &trusted, Role::Shadow, min)?;
                serials[1] = serial.unwrap_or(min).max(min);
                Some(Arc::new(snapshot))
            }
            None => None,
        };
        tracing::info!(version = %active.version(), label = active.label(), "policy loaded");
        Ok(Self {
            active: ArcSwap::from_pointee(active),
            shadow: ArcSwapOption::new(shadow),
            history: Mutex::new(Vec::new()),
            file: config.file.as_ref().map(PathBuf::from),
            shadow_file: config.shadow_file.as_ref().map(PathBuf::from),
            interval: Duration::from_millis(config.reload_interval_ms),
            trusted,
            serials: Mutex::new(serials),
            enforcing: AtomicBool::new(true),
            from_bundle: false,
        })
    }

    /// The serial of the active role: the highest signed serial this replica has run (0
    /// for unsigned policies), as the fleet registry reports it.
    pub fn active_serial(&self) -> u64 {
        self.serials.lock().unwrap_or_else(PoisonError::into_inner)[0]
    }

    /// A store whose policy comes from a signed bundle: not enforcing until
    /// [`PolicyStore::activate_bundle`]. The placeholder snapshot it holds
    /// meanwhile is never meant to judge a request (the pipeline refuses
    /// first; the tripwire counts any that slips through). The shadow file,
    /// if any, loads as usual.
    ///
    /// # Errors
    /// As [`PolicyStore::load`], for the shadow file and the policy keys.
    pub fn awaiting_bundle(
        config: &palisade_config::PolicyConfig,
    ) -> Result<Self, PolicyLoadError> {
        let mut store = Self::load(config)?;
        store.enforcing = AtomicBool::new(false);
        store.from_bundle = true;
        tracing::warn!(
            "waiting for a verified signed bundle: /v1/* is refused until one is active"
        );
        Ok(store)
    }

    /// Whether a verified policy is in force (requests may be judged).
    pub fn is_enforcing(&self) -> bool {
        self.enforcing.load(Ordering::Acquire)
    }

    /// Makes a verified bundle's policy the active one, in one atomic swap,
    /// and starts enforcing. Before the first bundle, the placeholder is
    /// not kept for rollback (it was never enforced).
    pub fn activate_bundle(&self, next: Snapshot) {
        if self.is_enforcing() {
            self.install(next);
        } else {
            self.active.store(Arc::new(next));
            self.enforcing.store(true, Ordering::Release);
        }
    }

    /// The policy in force now.
    pub fn active(&self) -> Arc<Snapshot> {
        if !self.is_enforcing() {
            // The pipeline refuses requests before this point while no
            // verified policy is active; reaching here is the bug to see.
            metrics::counter!(crate::metrics::REQUESTS_WITHOUT_POLICY).increment(1);
            tracing::error!("a request was judged without an active verified policy");
        }
        self.active.load_full()
    }

    /// The active snapshot for display (`/admin/policy`), not for judging:
    /// no tripwire, since nothing is decided with it.
    pub fn peek(&self) -> Arc<Snapshot> {
        self.active.load_full()
    }

    /// The shadow candidate, if any.
    pub fn shadow(&self) -> Option<Arc<Snapshot>> {
        self.shadow.load_full()
    }

    /// Makes `next` the active policy (unless it is the same version),
    /// keeping the current one for rollback. Returns whether it changed.
    pub fn install(&self, next: Snapshot) -> bool {
        if next.version() == self.active.load().version() {
            return false;
        }
        let previous = self.active.swap(Arc::new(next));
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history.push(previous);
        if history.len() > HISTORY {
            history.remove(0);
        }
        let now = self.active.load();
        tracing::warn!(version = %now.version(), label = now.label(), "policy activated");
        true
    }

    /// Returns to the previous version.
    ///
    /// # Errors
    /// None is held, or the policy comes from signed bundles: the signing
    /// key alone decides what a bundle replica enforces (an admin key
    /// rolling one replica back would run an older policy while the fleet
    /// reports the newer serial).
    pub fn rollback(&self) -> Result<Arc<Snapshot>, RollbackRefusal> {
        if self.from_bundle {
            return Err(RollbackRefusal::FromBundle);
        }
        let previous = self
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .ok_or(RollbackRefusal::NoHistory)?;
        self.active.store(previous.clone());
        tracing::warn!(version = %previous.version(), label = previous.label(), "policy rolled back");
        Ok(previous)
    }

    /// The snapshot of `version` (`sha256:…`) among those this replica
    /// holds (active, shadow, rollback history), for `/admin/policy/diff`.
    pub fn find(&self, version: &str) -> Option<Arc<Snapshot>> {
        let active = self.active.load_full();
        if active.version().to_string() == version {
            return Some(active);
        }
        if let Some(shadow) = self.shadow.load_full() {
            if shadow.version().to_string() == version {
                return Some(shadow);
            }
        }
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|s| s.version().to_string() == version)
            .cloned()
    }

    /// The versions kept for rollback, oldest first.
    pub fn history(&self) -> Vec<String> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|s| s.version().to_string())
            .collect()
    }

    /// Reads the file of `slot` (0 active, 1 shadow) for a reload: signed
    /// for its role, with a serial no lower than the one running (which it
    /// then raises).
    fn reload(&self, path: &str, slot: usize) -> Result<Snapshot, PolicyLoadError> {
        let role = if slot == 0 {
            Role::Active
        } else {
            Role::Shadow
        };
        let floor = self.serials.lock().unwrap_or_else(PoisonError::into_inner)[slot];
        let (snapshot, serial) = read_snapshot(path, &self.trusted, role, floor)?;
        if let Some(serial) = serial {
            let mut serials = self.serials.lock().unwrap_or_else(PoisonError::into_inner);
            serials[slot] = serials[slot].max(serial);
        }
        Ok(snapshot)
    }

    /// Polls the policy files and installs changed versions. A file that no
    /// longer compiles is logged and ignored: the running policy stays.
    pub fn spawn_reload(self: &Arc<Self>) {
        if self.file.is_none() && self.shadow_file.is_none() {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let mut seen = [None, None];
            let mut tick = tokio::time::interval(store.interval);
            loop {
                tick.tick().await;
                for (slot, path) in [&store.file, &store.shadow_file].into_iter().enumerate() {
                    let Some(path) = path else { continue };
                    let modified = modified(path);
                    if modified.is_none() || modified == seen[slot] {
                        continue;
                    }
                    seen[slot] = modified;
                    let Some(path) = path.to_str() else { continue };
                    match store.reload(path, slot) {
                        Ok(snapshot) if slot == 0 => {
                            store.install(snapshot);
                        }
                        Ok(snapshot) => store.shadow.store(Some(Arc::new(snapshot))),
                        Err(e) => {
                            metrics::counter!(crate::metrics::POLICY_RELOAD_REFUSED).increment(1);
                            tracing::error!(error = %e, "policy reload failed; keeping the running policy")
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tripped(handle: &metrics_exporter_prometheus::PrometheusHandle) -> u64 {
        handle
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("palisade_requests_without_policy_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn judging_before_a_bundle_trips_the_wire_and_activation_arms_the_store() {
        let handle = crate::metrics::install().expect("the recorder installs");
        let store =
            PolicyStore::awaiting_bundle(&palisade_config::PolicyConfig::default()).unwrap();
        assert!(!store.is_enforcing());
        let before = tripped(&handle);
        let _ = store.peek();
        assert_eq!(tripped(&handle), before, "a display read is not a decision");
        let _ = store.active();
        assert_eq!(tripped(&handle), before + 1);
        store.activate_bundle(Snapshot::builtin());
        assert!(store.is_enforcing());
        assert!(
            store.history().is_empty(),
            "the placeholder is never kept for rollback"
        );
        let _ = store.active();
        assert_eq!(tripped(&handle), before + 1);
        // A plain policy store enforces from the start.
        assert!(PolicyStore::load(&palisade_config::PolicyConfig::default())
            .unwrap()
            .is_enforcing());
    }
}
