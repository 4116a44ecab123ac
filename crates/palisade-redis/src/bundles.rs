//! Signed bundles distributed through Redis: the current bundle's bytes and a digest
//! under one prefix, written together, and a pub/sub channel on which a publisher says
//! "a new bundle is there" so every replica fetches it at once instead of at its next
//! poll.
//!
//! Redis is a hostile store like any other: what it holds is only *offered* to the
//! replica, which verifies the signature and serial before activating anything. The
//! digest is a cache hint (skip the download when unchanged), never trusted; a value over
//! the caller's size bound is refused before it is read. This module stores, fetches and
//! notifies; it must not verify or activate.

use std::time::Duration;

use futures_util::StreamExt as _;

use crate::{RedisConnection, RedisLimitError};

/// What one fetch found.
#[derive(Debug, PartialEq, Eq)]
pub enum BundleFetch {
    /// No bundle published under the prefix.
    Missing,
    /// The stored digest equals `known`: nothing new to download.
    Unchanged,
    /// The stored value is larger than the bound (its length).
    TooLarge(usize),
    /// The bundle's bytes and the digest stored beside them.
    Bundle {
        /// The stored digest hint (not verified here).
        digest: Option<String>,
        /// The bytes, to be verified by the caller.
        bytes: Vec<u8>,
    },
}

/// The bundle slot of one fleet (one key prefix).
#[derive(Clone, Debug)]
pub struct RedisBundleStore {
    conn: RedisConnection,
    prefix: String,
}

impl RedisBundleStore {
    /// A store under `prefix` (e.g. `palisade:bundle`).
    pub fn new(conn: RedisConnection, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
        }
    }

    fn bytes_key(&self) -> String {
        format!("{}:bytes", self.prefix)
    }

    fn digest_key(&self) -> String {
        format!("{}:digest", self.prefix)
    }

    /// The channel publishers announce new bundles on.
    pub fn channel(prefix: &str) -> String {
        format!("{prefix}:published")
    }

    /// Stores `bytes` (with `digest`) as the current bundle and announces it, atomically.
    ///
    /// # Errors
    /// Redis unreachable or too slow.
    pub async fn publish(
        &self,
        bytes: &[u8],
        digest: &str,
        serial: u64,
    ) -> Result<(), RedisLimitError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.bytes_key())
            .arg(bytes)
            .ignore()
            .cmd("SET")
            .arg(self.digest_key())
            .arg(digest)
            .ignore()
            .cmd("PUBLISH")
            .arg(Self::channel(&self.prefix))
            .arg(format!("{serial} {digest}"))
            .ignore();
        self.conn.pipeline::<()>(&pipe).await
    }

    /// The current bundle, unless its digest is `known` or it is over `max_bytes`.
    ///
    /// # Errors
    /// Redis unreachable or too slow.
    pub async fn fetch(
        &self,
        known: Option<&str>,
        max_bytes: usize,
    ) -> Result<BundleFetch, RedisLimitError> {
        let mut head = redis::pipe();
        head.cmd("GET")
            .arg(self.digest_key())
            .cmd("STRLEN")
            .arg(self.bytes_key());
        let (digest, len): (Option<String>, usize) = self.conn.pipeline(&head).await?;
        if len == 0 {
            return Ok(BundleFetch::Missing);
        }
        if digest.is_some() && digest.as_deref() == known {
            return Ok(BundleFetch::Unchanged);
        }
        if len > max_bytes {
            return Ok(BundleFetch::TooLarge(len));
        }
        let mut get = redis::pipe();
        get.cmd("GET").arg(self.bytes_key());
        let (bytes,): (Option<Vec<u8>>,) = self.conn.pipeline(&get).await?;
        match bytes {
            // Replaced between the two reads by a larger one: refuse, fetch again later.
            Some(b) if b.len() > max_bytes => Ok(BundleFetch::TooLarge(b.len())),
            Some(bytes) => Ok(BundleFetch::Bundle { digest, bytes }),
            None => Ok(BundleFetch::Missing),
        }
    }
}

/// Subscribes to `prefix`'s announcements on `url` and calls `on_published` for each,
/// until the connection ends (returns `Ok`) or fails. The caller reconnects.
///
/// # Errors
/// Redis unreachable, or the subscription refused, within `connect_timeout`.
pub async fn watch_published(
    url: &str,
    prefix: &str,
    connect_timeout: Duration,
    mut on_published: impl FnMut() + Send,
) -> Result<(), RedisLimitError> {
    let client = redis::Client::open(url)?;
    let millis = u64::try_from(connect_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut pubsub = tokio::time::timeout(connect_timeout, client.get_async_pubsub())
        .await
        .map_err(|_| RedisLimitError::Timeout(millis))??;
    tokio::time::timeout(
        connect_timeout,
        pubsub.subscribe(RedisBundleStore::channel(prefix)),
    )
    .await
    .map_err(|_| RedisLimitError::Timeout(millis))??;
    let mut messages = pubsub.on_message();
    while messages.next().await.is_some() {
        on_published();
    }
    Ok(())
}
