//! Bundles from Redis: fetched like any source (only *offered* to the activator, which
//! verifies), plus a push channel — a subscription to the publisher's announcements that
//! wakes the poller at once, so a new bundle reaches every replica in about a round trip
//! instead of a poll interval. Polling stays as the fallback: a lost announcement or a
//! dropped subscription costs at most one interval.

use std::sync::Arc;
use std::time::Duration;

use palisade_redis::{BundleFetch, RedisBundleStore, RedisConnection};
use tokio::sync::Notify;

use super::source::{BoxFuture, BundleSource, Fetched, SourceError};

/// A bundle slot in Redis (`bundle.source = "redis://…"`, keys under `bundle.redis_prefix`).
#[derive(Debug)]
pub struct RedisSource {
    url: String,
    prefix: String,
    timeout: Duration,
    max_bytes: usize,
    store: Option<RedisBundleStore>,
    /// The digest of the last bundle fetched, to skip unchanged ones.
    seen: Option<String>,
}

impl RedisSource {
    /// A source reading `prefix` on `url`, each call bounded by `timeout`.
    pub fn new(url: &str, prefix: &str, timeout: Duration, max_bytes: usize) -> RedisSource {
        RedisSource {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            timeout,
            max_bytes,
            store: None,
            seen: None,
        }
    }
}

impl BundleSource for RedisSource {
    fn fetch(&mut self) -> BoxFuture<'_, Result<Fetched, SourceError>> {
        Box::pin(async move {
            if self.store.is_none() {
                let conn = RedisConnection::connect(&self.url, self.timeout, self.timeout)
                    .await
                    .map_err(|e| SourceError::Unavailable(e.to_string()))?;
                self.store = Some(RedisBundleStore::new(conn, &self.prefix));
            }
            let Some(store) = &self.store else {
                return Err(SourceError::Unavailable("no connection".to_owned()));
            };
            match store.fetch(self.seen.as_deref(), self.max_bytes).await {
                Ok(BundleFetch::Missing) => Err(SourceError::BadAnswer(format!(
                    "no bundle published under {}",
                    self.prefix
                ))),
                Ok(BundleFetch::Unchanged) => Ok(Fetched::NotModified),
                Ok(BundleFetch::TooLarge(_)) => Err(SourceError::TooLarge {
                    max: self.max_bytes,
                }),
                Ok(BundleFetch::Bundle { digest, bytes }) => {
                    self.seen = digest;
                    Ok(Fetched::Bundle(bytes))
                }
                Err(e) => {
                    // Reconnect on the next fetch.
                    self.store = None;
                    Err(SourceError::Unavailable(e.to_string()))
                }
            }
        })
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.url, self.prefix)
    }

    fn forget_seen(&mut self) {
        self.seen = None;
    }
}

/// Keeps a subscription to `prefix`'s announcements on `url`, waking the poller on each;
/// reconnects with backoff (100 ms doubling to 5 s) for as long as the process runs.
pub(crate) fn spawn_push(url: String, prefix: String, wake: Arc<Notify>) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let woke = wake.clone();
            let result =
                palisade_redis::watch_published(&url, &prefix, Duration::from_secs(2), move || {
                    woke.notify_one()
                })
                .await;
            match result {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, "bundle announcements unavailable; polling only until they return");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            // Anything announced while the subscription was down: poll once now.
            wake.notify_one();
            tokio::time::sleep(backoff).await;
        }
    });
}
