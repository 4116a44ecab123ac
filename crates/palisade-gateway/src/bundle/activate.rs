//! Activation: a bundle's bytes become this replica's policy only after
//! they verify (signature, trusted key inside its window, parts), follow
//! the running bundle (higher serial, or the very same bundle) and compile.
//! The bundle's detector (its artifact and threshold overrides) is built and
//! warmed next, and put in force *before* the policy: a request that sees
//! the new policy also sees the detector the bundle vouches for. Then the
//! policy is swapped in one atomic store and the replica enforces.
//!
//! This is the one entry point every source uses ([`Activator::offer`]):
//! polling, the disk cache at start, and (later) a push from Redis. It must
//! not fetch anything itself. Activations are serialized by one lock held
//! only for the check-compile-swap (no `.await` inside).
//!
//! The serial floor survives restarts: at start the cached bundle, once it
//! verifies, sets the lowest serial the source may offer
//! ([`Activator::remember_cached`]), so a compromised store cannot replay
//! an older signed bundle to a freshly restarted replica. A replica with no
//! cache has the operator's floor and age bound instead
//! ([`palisade_bundle::Freshness`]: `bundle.min_serial`, `bundle.max_age_s`),
//! checked on every offer, the cached bundle included.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use palisade_bundle::{
    check_fresh, check_successor, verify, BundleError, Freshness, Running, Succession, TrustStore,
};

use super::cache::BundleCache;
use crate::gates::detectors::{DetectorRefusal, DetectorStore};
use crate::gates::policy::PolicyStore;
use crate::readiness::Condition;

/// Where an offered bundle came from (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The configured source (poll or push).
    Source,
    /// The on-disk cache, at start.
    Cache,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Source => "source",
            Origin::Cache => "cache",
        }
    }
}

/// What an accepted offer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activated {
    /// A new serial is active.
    New {
        /// Its serial.
        serial: u64,
    },
    /// The running bundle was offered again.
    Unchanged,
}

/// Why an offer was refused (the running bundle, if any, stays).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Verification or the serial rule refused it.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Verified, but its policy does not compile.
    #[error("the bundle's policy does not compile: {0}")]
    Policy(String),
    /// Verified, but the detector it names cannot be enforced here.
    #[error(transparent)]
    Detector(#[from] DetectorRefusal),
}

impl Refusal {
    /// A short, bounded label for the refusal metric.
    /// Every value [`Refusal::label`] returns (the metric starts them at 0).
    pub(crate) const LABELS: &'static [&'static str] = &[
        "policy",
        "detector",
        "too_large",
        "malformed",
        "unsigned",
        "untrusted_key",
        "bad_signature",
        "key_retired",
        "invalid",
        "older_serial",
        "serial_reuse",
        "below_min_serial",
        "stale",
        "other",
    ];

    fn label(&self) -> &'static str {
        match self {
            Refusal::Policy(_) => "policy",
            Refusal::Detector(_) => "detector",
            Refusal::Bundle(e) => match e {
                BundleError::TooLarge { .. } => "too_large",
                BundleError::Malformed(_) | BundleError::UnknownFormat(_) => "malformed",
                BundleError::Unsigned => "unsigned",
                BundleError::UntrustedKey(_) => "untrusted_key",
                BundleError::BadSignature => "bad_signature",
                BundleError::KeyRetired { .. } => "key_retired",
                BundleError::ContentMismatch(_) | BundleError::Invalid(_) => "invalid",
                BundleError::OlderSerial { .. } => "older_serial",
                BundleError::SerialReuse { .. } => "serial_reuse",
                BundleError::BelowMinSerial { .. } => "below_min_serial",
                BundleError::Stale { .. } => "stale",
                _ => "other",
            },
        }
    }
}

/// What an offered bundle is verified against before it may follow anything.
#[derive(Debug)]
pub(crate) struct Acceptance {
    /// The keys that may sign.
    pub trust: TrustStore,
    /// The largest bundle read.
    pub max_bytes: usize,
    /// The operator's serial floor and age bound.
    pub freshness: Freshness,
}

/// Verifies and activates bundles for one replica.
#[derive(Debug)]
pub struct Activator {
    trust: TrustStore,
    max_bytes: usize,
    freshness: Freshness,
    policy: Arc<PolicyStore>,
    detector: Arc<DetectorStore>,
    cache: Option<BundleCache>,
    ready: Condition,
    started: Instant,
    running: Mutex<Option<Running>>,
    /// The verified cached bundle at start: no older bundle is activated.
    floor: Mutex<Option<Running>>,
}

fn unix_now() -> (u64, f64) {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs(), since.as_secs_f64())
}

impl Activator {
    pub(crate) fn new(
        acceptance: Acceptance,
        policy: Arc<PolicyStore>,
        detector: Arc<DetectorStore>,
        cache: Option<BundleCache>,
        ready: Condition,
        started: Instant,
    ) -> Activator {
        let Acceptance {
            trust,
            max_bytes,
            freshness,
        } = acceptance;
        Activator {
            trust,
            max_bytes,
            freshness,
            policy,
            detector,
            cache,
            ready,
            started,
            running: Mutex::new(None),
            floor: Mutex::new(None),
        }
    }

    /// Verifies the cached bundle (without activating it) and makes it the
    /// floor for what the source may offer. Returns its serial.
    pub fn remember_cached(&self, bytes: &[u8]) -> Option<u64> {
        let (now, _) = unix_now();
        let checked = verify(bytes, &self.trust, now, self.max_bytes)
            .and_then(|v| check_fresh(&v, self.freshness, now).map(|()| v));
        match checked {
            Ok(verified) => {
                let serial = verified.manifest().serial;
                *self.floor.lock().unwrap_or_else(PoisonError::into_inner) = Some(Running {
                    serial,
                    digest: verified.digest().to_owned(),
                });
                Some(serial)
            }
            Err(e) => {
                metrics::counter!(crate::metrics::BUNDLE_REFUSED, "reason" => Refusal::from(e.clone()).label())
                    .increment(1);
                tracing::error!(origin = "cache", reason = %e, "cached bundle refused");
                None
            }
        }
    }

    /// The serial in force, if any.
    pub fn running_serial(&self) -> Option<u64> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|r| r.serial)
    }

    /// Offers a bundle's bytes. CPU-bound (hashing, signature, compiling):
    /// call from a blocking task.
    ///
    /// # Errors
    /// Why it was refused; the running policy is untouched.
    pub fn offer(&self, bytes: &[u8], origin: Origin) -> Result<Activated, Refusal> {
        let outcome = self.try_offer(bytes, origin);
        if let Err(refusal) = &outcome {
            metrics::counter!(crate::metrics::BUNDLE_REFUSED, "reason" => refusal.label())
                .increment(1);
            tracing::error!(
                origin = origin.as_str(),
                reason = %refusal,
                running_serial = self.running_serial(),
                "bundle refused"
            );
        }
        outcome
    }

    fn try_offer(&self, bytes: &[u8], origin: Origin) -> Result<Activated, Refusal> {
        let (now, now_f64) = unix_now();
        let verified = verify(bytes, &self.trust, now, self.max_bytes)?;
        check_fresh(&verified, self.freshness, now)?;
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let floor = self
            .floor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let reference = running.as_ref().or(floor.as_ref());
        // The cached bundle itself is "unchanged" against the floor, yet not running.
        if check_successor(reference, &verified)? == Succession::Unchanged && running.is_some() {
            return Ok(Activated::Unchanged);
        }
        let policy = verified.effective_policy_toml()?;
        let snapshot = palisade_policy::Snapshot::from_toml(&policy)
            .map_err(|e| Refusal::Policy(e.to_string()))?;
        let manifest = verified.manifest();
        let detector = self.detector.prepare(
            manifest.detector.as_ref(),
            verified.detector_artifact(),
            manifest.thresholds,
        )?;
        let detector_version = detector.version().to_owned();
        let first = running.is_none();
        let version = snapshot.version().to_string();
        // The detector first, so no request pairs this policy with the old one.
        self.detector.install(detector);
        // The one atomic swap: requests take the new snapshot from here on.
        self.policy.activate_bundle(snapshot);
        *running = Some(Running {
            serial: manifest.serial,
            digest: verified.digest().to_owned(),
        });
        // Persisted under the lock, so the cache never goes back to an older serial.
        if origin == Origin::Source {
            if let Some(cache) = &self.cache {
                if let Err(e) = cache.store(bytes) {
                    tracing::error!(path = %cache.path().display(), error = %e, "cannot persist the verified bundle");
                }
            }
        }
        drop(running);
        self.ready.set(true);
        let propagation = (now_f64 - manifest.created_at as f64).max(0.0);
        metrics::gauge!(crate::metrics::BUNDLE_SERIAL).set(manifest.serial as f64);
        metrics::histogram!(crate::metrics::BUNDLE_PROPAGATION).record(propagation);
        tracing::warn!(
            serial = manifest.serial,
            key = %manifest.key_id,
            origin = origin.as_str(),
            digest = %verified.digest(),
            policy_version = %version,
            detector_version = %detector_version,
            propagation_seconds = propagation,
            "bundle activated"
        );
        if first {
            let provisioning = self.started.elapsed().as_secs_f64();
            metrics::gauge!(crate::metrics::SECURITY_PROVISIONING).set(provisioning);
            tracing::warn!(
                serial = manifest.serial,
                provisioning_seconds = provisioning,
                "enforcing: a verified bundle is active, traffic is accepted"
            );
        }
        Ok(Activated::New {
            serial: manifest.serial,
        })
    }
}
