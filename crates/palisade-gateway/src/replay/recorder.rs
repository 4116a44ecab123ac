//! The request's side of a replay table: the idempotency key it holds and the
//! cache slot it may fill, and the bytes it sent the client.
//!
//! The [`Recorder`] rides on the request's context, so every way a request
//! ends is covered: a success commits what the client received; anything else
//! (an error, a stream cut short, a client gone, a panic) drops it, and the
//! drop releases the idempotency key for a retry.
//!
//! Must not: record anything but what went to the client after the response
//! filters, or hold more than `max_entry_bytes`.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use palisade_replay::{Lease, Stored};

use super::Shared;

/// An idempotency key this request holds; released on drop unless completed.
#[derive(Debug)]
pub(crate) struct IdemHold {
    shared: Shared,
    tenant: Arc<str>,
    slot: [u8; 32],
    lease: Option<Lease>,
}

impl IdemHold {
    pub(super) fn new(shared: Shared, tenant: &str, slot: [u8; 32], lease: Lease) -> Self {
        Self {
            shared,
            tenant: tenant.into(),
            slot,
            lease: Some(lease),
        }
    }

    fn complete(mut self, stored: Stored) {
        if let Some(lease) = self.lease.take() {
            let (tenant, slot) = (self.tenant.clone(), self.slot);
            let kept = self
                .shared
                .with(|t, now| t.complete(&tenant, slot, lease, stored, now));
            crate::metrics::replay_stored("idempotency", kept);
        }
    }
}

impl Drop for IdemHold {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            let (tenant, slot) = (self.tenant.clone(), self.slot);
            self.shared.with(|t, _| t.release(&tenant, slot, lease));
        }
    }
}

/// A cache slot this request may fill.
#[derive(Debug)]
pub(crate) struct CacheSlot {
    shared: Shared,
    tenant: Arc<str>,
    slot: [u8; 32],
}

impl CacheSlot {
    pub(super) fn new(shared: Shared, tenant: &str, slot: [u8; 32]) -> Self {
        Self {
            shared,
            tenant: tenant.into(),
            slot,
        }
    }

    fn put(self, stored: Stored) {
        let kept = self
            .shared
            .with(|t, now| t.put(&self.tenant, self.slot, stored, now));
        crate::metrics::replay_stored("cache", kept);
    }
}

/// What a request will store, and (for a stream) what it sent so far.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) idem: Option<IdemHold>,
    pub(crate) cache: Option<CacheSlot>,
    /// A stream's bytes as relayed; `None` once past the bound (nothing is
    /// stored then, and the key is released).
    streamed: Option<Vec<u8>>,
    max_bytes: usize,
    /// A stream's response head, kept when the relay starts.
    stream_headers: Vec<(String, String)>,
}

/// The response headers a replay repeats: the content type and the
/// upstream's `openai-*` metadata; never the per-request ones (request and
/// ledger ids, rate-limit state), which the replaying request sets itself.
pub(crate) fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| {
            let n = n.as_str();
            n == "content-type"
                || n == "cache-control"
                || n == "x-accel-buffering"
                || n.starts_with("openai-")
        })
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

impl Recorder {
    pub(super) fn new(max_bytes: usize) -> Self {
        Self {
            idem: None,
            cache: None,
            streamed: Some(Vec::new()),
            max_bytes,
            stream_headers: Vec::new(),
        }
    }

    /// A whole response went to the client: store it (`cacheable: false`:
    /// for the idempotency key only).
    pub(crate) fn commit(
        self,
        status: u16,
        headers: &HeaderMap,
        body: &Bytes,
        origin: &str,
        version: String,
        cacheable: bool,
    ) {
        self.store(
            Stored {
                status,
                headers: kept_headers(headers),
                body: body.to_vec(),
                origin: origin.to_owned(),
                policy_version: version,
            },
            cacheable,
        );
    }

    /// A replayed entry answered a request holding an idempotency key (a
    /// cache hit): the key replays the same bytes from now on.
    pub(super) fn commit_copy(mut self, stored: &Stored) {
        self.cache = None;
        if self.idem.is_some() {
            self.store(stored.clone(), false);
        }
    }

    /// A stream starts: its head.
    pub(crate) fn stream_head(&mut self, headers: &HeaderMap) {
        self.stream_headers = kept_headers(headers);
    }

    /// A stream sent `bytes`.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if let Some(buf) = &mut self.streamed {
            if buf.len() + bytes.len() > self.max_bytes {
                self.streamed = None;
            } else {
                buf.extend_from_slice(bytes);
            }
        }
    }

    /// A stream ended as judged: store what was sent. `cacheable: false`
    /// (the output gate stopped it) stores it for the idempotency key only.
    pub(crate) fn finish_stream(mut self, origin: &str, version: String, cacheable: bool) {
        let Some(body) = self.streamed.take() else {
            return;
        };
        let headers = std::mem::take(&mut self.stream_headers);
        self.store(
            Stored {
                status: 200,
                headers,
                body,
                origin: origin.to_owned(),
                policy_version: version,
            },
            cacheable,
        );
    }

    fn store(mut self, stored: Stored, cacheable: bool) {
        // A response with tool calls is never cached (each call's token and
        // confirmation belong to one request); the scan is conservative: a
        // completion that merely mentions the word, or has any `\u` escape,
        // is not cached either.
        let cacheable =
            cacheable && !crate::gates::json_keys::may_hold_key(&stored.body, b"\"tool_calls\"");
        match (self.idem.take(), self.cache.take().filter(|_| cacheable)) {
            (Some(idem), Some(cache)) => {
                cache.put(stored.clone());
                idem.complete(stored);
            }
            (Some(idem), None) => idem.complete(stored),
            (None, Some(cache)) => cache.put(stored),
            (None, None) => {}
        }
    }
}
