//! The table: per-tenant shards of in-flight leases and stored responses,
//! bounded per tenant in entries and bytes, expiring by time.
//!
//! Eviction is first-in first-out among a tenant's *done* entries (their
//! lifetime is one TTL, so insertion order is expiry order); in-flight
//! entries are never evicted, only expired by their lease. A tenant can
//! therefore only ever push out its own entries.
//!
//! Must not: read a clock, or let one tenant's activity remove, read or
//! displace another tenant's entry.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::Fingerprint;

/// Bounds of one table (the same for every tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a done entry is replayed.
    pub ttl_ms: u64,
    /// Entries per tenant, in flight and done.
    pub max_entries: usize,
    /// Stored bytes per tenant (bodies, headers and bookkeeping).
    pub max_bytes: usize,
    /// The largest single entry stored; a larger response is not stored.
    pub max_entry_bytes: usize,
}

/// A response as the client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// HTTP status.
    pub status: u16,
    /// The response headers worth replaying (content type and the like; not
    /// the per-request ones).
    pub headers: Vec<(String, String)>,
    /// The body: a JSON document, or a stream's relayed bytes, framing included.
    pub body: Vec<u8>,
    /// The gateway-minted id of the request that produced it (audit records
    /// of replays point to it).
    pub origin: String,
    /// The policy version that judged it.
    pub policy_version: String,
}

impl Stored {
    /// The bytes this entry is charged for: everything it holds, plus a
    /// fixed overhead for the slot and its place in the eviction order.
    pub fn charged_bytes(&self) -> usize {
        const OVERHEAD: usize = 128;
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + self.origin.len()
            + self.policy_version.len()
            + OVERHEAD
    }
}

/// Proof that the caller holds a key's in-flight entry; only the holder
/// completes or releases it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease(u64);

/// What [`Table::begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The key is new (or its entry expired): the caller holds it until it
    /// completes, releases, or the lease runs out.
    Fresh(Lease),
    /// The key's first request finished with this response.
    Replay(Arc<Stored>),
    /// The key's first request is still running; try again after this long.
    InFlight {
        /// Until its lease runs out, at the latest.
        retry_after_ms: u64,
    },
    /// The key was used with another request body.
    Mismatch,
    /// The tenant's quota is all in-flight entries: nothing can be evicted.
    Full,
}

#[derive(Debug)]
enum Slot {
    InFlight {
        fp: Fingerprint,
        lease: u64,
        until_ms: u64,
    },
    Done {
        fp: Option<Fingerprint>,
        stored: Arc<Stored>,
        expires_ms: u64,
        seq: u64,
        charged: usize,
    },
}

#[derive(Debug, Default)]
struct Shard {
    slots: HashMap<[u8; 32], Slot>,
    /// Done entries in insertion order (`seq`, key); entries whose slot was
    /// since removed or replaced are skipped when met, and compacted away.
    order: VecDeque<(u64, [u8; 32])>,
    bytes: usize,
}

impl Shard {
    fn remove(&mut self, key: &[u8; 32]) {
        if let Some(Slot::Done { charged, .. }) = self.slots.remove(key) {
            self.bytes -= charged;
        }
    }

    /// Drops expired done entries and expired leases at the front of the order.
    fn sweep(&mut self, now_ms: u64) {
        while let Some(&(seq, key)) = self.order.front() {
            match self.slots.get(&key) {
                Some(Slot::Done {
                    seq: s, expires_ms, ..
                }) if *s == seq => {
                    if *expires_ms > now_ms {
                        break;
                    }
                    self.remove(&key);
                }
                _ => {}
            }
            self.order.pop_front();
        }
        if self.order.len() > 2 * self.slots.len() + 32 {
            let slots = &self.slots;
            self.order.retain(
                |(seq, key)| matches!(slots.get(key), Some(Slot::Done { seq: s, .. }) if s == seq),
            );
        }
    }

    /// Evicts this shard's oldest done entries until one more entry of
    /// `need` bytes fits. `false`: only in-flight entries are left.
    fn make_room(&mut self, limits: &Limits, need: usize, now_ms: u64) -> bool {
        self.sweep(now_ms);
        // Expired leases are dead weight: a flood of abandoned requests must
        // not keep a tenant full.
        if self.slots.len() >= limits.max_entries {
            self.slots.retain(
                |_, slot| !matches!(slot, Slot::InFlight { until_ms, .. } if *until_ms <= now_ms),
            );
        }
        while self.slots.len() >= limits.max_entries || self.bytes + need > limits.max_bytes {
            let Some((seq, key)) = self.order.pop_front() else {
                return false;
            };
            if matches!(self.slots.get(&key), Some(Slot::Done { seq: s, .. }) if *s == seq) {
                self.remove(&key);
            }
        }
        true
    }
}

/// Per-tenant shards of leases and stored responses. Not synchronized: the
/// caller wraps it in its lock.
#[derive(Debug)]
pub struct Table {
    limits: Limits,
    shards: HashMap<String, Shard>,
    next: u64,
}

impl Table {
    /// An empty table.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            shards: HashMap::new(),
            next: 0,
        }
    }

    /// The table's bounds.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Idempotency: claims `key` for a request with fingerprint `fp`, or
    /// says what its first request left. A lease lasts `lease_ms` (the
    /// request's own deadline, and a margin).
    pub fn begin(
        &mut self,
        tenant: &str,
        key: [u8; 32],
        fp: Fingerprint,
        lease_ms: u64,
        now_ms: u64,
    ) -> Begin {
        let lease = self.next_id();
        let limits = self.limits;
        let shard = self.shards.entry(tenant.to_owned()).or_default();
        match shard.slots.get(&key) {
            Some(Slot::Done {
                fp: stored_fp,
                stored,
                expires_ms,
                ..
            }) if *expires_ms > now_ms => {
                return if *stored_fp == Some(fp) {
                    Begin::Replay(stored.clone())
                } else {
                    Begin::Mismatch
                };
            }
            Some(Slot::InFlight {
                fp: held, until_ms, ..
            }) if *until_ms > now_ms => {
                return if *held == fp {
                    Begin::InFlight {
                        retry_after_ms: until_ms - now_ms,
                    }
                } else {
                    Begin::Mismatch
                };
            }
            // Expired: the key is free again.
            Some(_) => shard.remove(&key),
            None => {}
        }
        if !shard.make_room(&limits, 0, now_ms) {
            return Begin::Full;
        }
        shard.slots.insert(
            key,
            Slot::InFlight {
                fp,
                lease,
                until_ms: now_ms.saturating_add(lease_ms),
            },
        );
        Begin::Fresh(Lease(lease))
    }

    /// Idempotency: the leased request finished with `stored`. `false`: not
    /// stored (the lease was lost to expiry, or the response is over
    /// `max_entry_bytes` or the tenant's whole quota), and the key is free.
    pub fn complete(
        &mut self,
        tenant: &str,
        key: [u8; 32],
        lease: Lease,
        stored: Stored,
        now_ms: u64,
    ) -> bool {
        let Some(shard) = self.shards.get_mut(tenant) else {
            return false;
        };
        let fp = match shard.slots.get(&key) {
            Some(Slot::InFlight { fp, lease: l, .. }) if *l == lease.0 => *fp,
            _ => return false,
        };
        shard.slots.remove(&key);
        self.insert_done(tenant, key, Some(fp), stored, now_ms)
    }

    /// Idempotency: the leased request ended without an outcome worth
    /// replaying; the key is free for a retry.
    pub fn release(&mut self, tenant: &str, key: [u8; 32], lease: Lease) {
        if let Some(shard) = self.shards.get_mut(tenant) {
            if matches!(shard.slots.get(&key), Some(Slot::InFlight { lease: l, .. }) if *l == lease.0)
            {
                shard.slots.remove(&key);
            }
            if shard.slots.is_empty() {
                self.shards.remove(tenant);
            }
        }
    }

    /// Cache: the live entry under `key` in `tenant`'s shard.
    pub fn get(&mut self, tenant: &str, key: [u8; 32], now_ms: u64) -> Option<Arc<Stored>> {
        let shard = self.shards.get_mut(tenant)?;
        match shard.slots.get(&key) {
            Some(Slot::Done {
                stored, expires_ms, ..
            }) if *expires_ms > now_ms => Some(stored.clone()),
            Some(Slot::Done { .. }) => {
                shard.remove(&key);
                None
            }
            _ => None,
        }
    }

    /// Cache: stores `stored` under `key`, replacing what was there.
    /// `false`: too large to store.
    pub fn put(&mut self, tenant: &str, key: [u8; 32], stored: Stored, now_ms: u64) -> bool {
        if let Some(shard) = self.shards.get_mut(tenant) {
            shard.remove(&key);
        }
        self.insert_done(tenant, key, None, stored, now_ms)
    }

    fn insert_done(
        &mut self,
        tenant: &str,
        key: [u8; 32],
        fp: Option<Fingerprint>,
        stored: Stored,
        now_ms: u64,
    ) -> bool {
        let charged = stored.charged_bytes();
        let seq = self.next_id();
        let limits = self.limits;
        let shard = self.shards.entry(tenant.to_owned()).or_default();
        let fits = charged <= limits.max_entry_bytes
            && charged <= limits.max_bytes
            && shard.make_room(&limits, charged, now_ms);
        if !fits {
            if shard.slots.is_empty() {
                self.shards.remove(tenant);
            }
            return false;
        }
        shard.slots.insert(
            key,
            Slot::Done {
                fp,
                stored: Arc::new(stored),
                expires_ms: now_ms.saturating_add(limits.ttl_ms),
                seq,
                charged,
            },
        );
        shard.order.push_back((seq, key));
        shard.bytes += charged;
        true
    }

    /// A tenant's entries (in flight and done) and charged bytes.
    pub fn usage(&self, tenant: &str) -> (usize, usize) {
        self.shards
            .get(tenant)
            .map_or((0, 0), |s| (s.slots.len(), s.bytes))
    }

    /// Entries and charged bytes over all tenants.
    pub fn total(&self) -> (usize, usize) {
        self.shards
            .values()
            .fold((0, 0), |(n, b), s| (n + s.slots.len(), b + s.bytes))
    }
}
