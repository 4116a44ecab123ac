//! Signed security bundles on the replica: fetched from a source (file,
//! HTTP(S) with ETag, Redis with pub/sub announcements: [`redis_source`]),
//! verified and activated ([`activate::Activator`]), persisted as the last
//! verified bundle ([`cache::BundleCache`]), and the gate that refuses
//! traffic until one is active ([`gate`]).
//!
//! Start: the source once; if it fails or serves nothing that verifies,
//! the cached bundle (verified again); if neither, the replica stays up,
//! refuses traffic (`not_ready`) and keeps polling. Then the source is
//! polled every `bundle.poll_interval_ms`, or sooner when [`BundleRuntime::wake`]
//! is notified (a push). The format and its rules are `palisade-bundle`'s;
//! this module must not judge requests.

pub mod activate;
pub mod cache;
pub(crate) mod gate;
pub mod redis_source;
pub mod source;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use self::activate::{Activator, Origin};
use self::source::{BundleSource, Fetched};

static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// Marks the process start, the origin of
/// `palisade_security_provisioning_seconds`. Call first thing in `main`;
/// otherwise the first gateway built marks it.
pub fn mark_process_start() -> Instant {
    *PROCESS_START.get_or_init(Instant::now)
}

/// Errors setting the bundle runtime up.
#[derive(Debug, thiserror::Error)]
pub enum BundleSetupError {
    /// A trusted key is malformed.
    #[error("bundle.trusted_keys: {0}")]
    TrustedKey(#[source] palisade_bundle::BundleError),
}

/// The replica's bundle machinery: the activator, its source and the wake-up.
#[derive(Debug)]
pub struct BundleRuntime {
    activator: Arc<Activator>,
    source: Mutex<Option<Box<dyn BundleSource>>>,
    cache: Option<cache::BundleCache>,
    interval: Duration,
    wake: Arc<Notify>,
    /// With a `redis://` source: the URL and prefix whose announcements wake the poller.
    push: Option<(String, String)>,
}

impl BundleRuntime {
    pub(crate) fn new(
        config: &palisade_config::BundleConfig,
        policy: Arc<crate::gates::policy::PolicyStore>,
        detector: Arc<crate::gates::detectors::DetectorStore>,
        ready: crate::readiness::Condition,
    ) -> Result<BundleRuntime, BundleSetupError> {
        let trust = palisade_bundle::TrustStore::parse(&config.trusted_keys)
            .map_err(BundleSetupError::TrustedKey)?;
        let cache = config
            .cache_dir
            .as_deref()
            .map(|dir| cache::BundleCache::new(dir, config.max_bytes));
        let activator = Arc::new(Activator::new(
            activate::Acceptance {
                trust,
                max_bytes: config.max_bytes,
                freshness: palisade_bundle::Freshness {
                    min_serial: config.min_serial,
                    max_age_s: config.max_age_s,
                },
            },
            policy,
            detector,
            cache.clone(),
            ready,
            mark_process_start(),
        ));
        Ok(BundleRuntime {
            activator,
            source: Mutex::new(Some(source::from_config(config))),
            cache,
            interval: Duration::from_millis(config.poll_interval_ms),
            wake: Arc::new(Notify::new()),
            push: config
                .source
                .starts_with("redis://")
                .then(|| (config.source.clone(), config.redis_prefix.clone())),
        })
    }

    /// Replaces the configured source (e.g. with a Redis one) before the
    /// gateway starts; returns `false` once the fetch loop has taken it.
    pub fn set_source(&self, source: Box<dyn BundleSource>) -> bool {
        let mut slot = self.source.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_mut() {
            Some(current) => {
                *current = source;
                true
            }
            None => false,
        }
    }

    /// The activator, for other sources (a push channel) to offer bundles to.
    pub fn activator(&self) -> Arc<Activator> {
        self.activator.clone()
    }

    /// Notify to poll the source now instead of at the next interval.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Starts the fetch loop (once; later calls do nothing).
    pub(crate) fn spawn(&self) {
        let Some(source) = self
            .source
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let activator = self.activator.clone();
        let cache = self.cache.clone();
        let interval = self.interval;
        let wake = self.wake.clone();
        if let Some((url, prefix)) = &self.push {
            redis_source::spawn_push(url.clone(), prefix.clone(), wake.clone());
        }
        tokio::spawn(run(activator, source, cache, interval, wake));
    }
}

/// Offers bytes on a blocking thread (verification hashes and compiles).
async fn offer(activator: &Arc<Activator>, bytes: Vec<u8>, origin: Origin) -> bool {
    let activator = activator.clone();
    matches!(
        tokio::task::spawn_blocking(move || activator.offer(&bytes, origin)).await,
        Ok(Ok(_))
    )
}

async fn fetch_and_offer(activator: &Arc<Activator>, source: &mut Box<dyn BundleSource>) -> bool {
    match source.fetch().await {
        Ok(Fetched::Bundle(bytes)) => {
            let accepted = offer(activator, bytes, Origin::Source).await;
            if !accepted {
                source.forget_seen();
            }
            accepted
        }
        Ok(Fetched::NotModified) => false,
        Err(e) => {
            tracing::warn!(source = %source.describe(), error = %e, "bundle fetch failed; keeping the running bundle");
            false
        }
    }
}

async fn run(
    activator: Arc<Activator>,
    mut source: Box<dyn BundleSource>,
    cache: Option<cache::BundleCache>,
    interval: Duration,
    wake: Arc<Notify>,
) {
    // The cache first sets the serial floor (a replayed older bundle from
    // the store is refused), then the source is tried, then the cache used.
    let cached = match &cache {
        Some(cache) => {
            let cache = cache.clone();
            match tokio::task::spawn_blocking(move || cache.load()).await {
                Ok(Ok(bytes)) => {
                    let check = activator.clone();
                    let copy = bytes.clone();
                    match tokio::task::spawn_blocking(move || check.remember_cached(&copy)).await {
                        Ok(Some(_)) => Some(bytes),
                        _ => None,
                    }
                }
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "no usable cached bundle");
                    None
                }
                Err(_) => None,
            }
        }
        None => None,
    };
    fetch_and_offer(&activator, &mut source).await;
    if activator.running_serial().is_none() {
        if let Some(bytes) = cached {
            tracing::warn!("bundle source unavailable or refused; enforcing the cached bundle");
            offer(&activator, bytes, Origin::Cache).await;
        }
    }
    if activator.running_serial().is_none() {
        tracing::error!(
            source = %source.describe(),
            "no verified bundle: this replica does not enforce and refuses traffic until one verifies"
        );
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = wake.notified() => {}
        }
        fetch_and_offer(&activator, &mut source).await;
    }
}
