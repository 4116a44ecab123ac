//! A string-keyed map of small per-key states with bounded, incremental eviction.
//!
//! Limiters keep one small state per key (tenant, API key, route, model). Keys come and go,
//! so idle states must be forgotten, but a full sweep of a large map under the gateway's
//! shard lock would be a latency spike. Instead every operation examines a constant number
//! of slots ([`SWEEP_STEP`]) in round-robin order: the cost per call is bounded, and every
//! slot is visited once per `len / SWEEP_STEP` calls, so memory stays within a constant
//! factor of the live key set.
//!
//! Each limiter only evicts states that are *equivalent to absent* (a GCRA key whose bucket
//! has refilled, a concurrency key with nothing in flight), so eviction never changes a
//! decision. That is also what lets the Redis backend use key expiry for the same job.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Slots examined per operation. Two is the smallest number that outpaces insertion (one
/// new key per call at most), so the sweep always catches up; larger numbers only add cost.
pub(crate) const SWEEP_STEP: usize = 2;

/// A slab of `(key, state)` with a hash index into it.
pub(crate) struct KeyedStore<S> {
    index: HashMap<Arc<str>, usize>,
    slots: Vec<(Arc<str>, S)>,
    cursor: usize,
}

impl<S> fmt::Debug for KeyedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedStore")
            .field("len", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl<S> Default for KeyedStore<S> {
    fn default() -> Self {
        Self {
            index: HashMap::new(),
            slots: Vec::new(),
            cursor: 0,
        }
    }
}

impl<S> KeyedStore<S> {
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&S> {
        self.index.get(key).map(|&i| &self.slots[i].1)
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut S> {
        let i = *self.index.get(key)?;
        Some(&mut self.slots[i].1)
    }

    /// Inserts or overwrites the state of `key`. Allocates only for a new key.
    pub(crate) fn put(&mut self, key: &str, state: S) {
        if let Some(&i) = self.index.get(key) {
            self.slots[i].1 = state;
            return;
        }
        let k: Arc<str> = Arc::from(key);
        self.index.insert(Arc::clone(&k), self.slots.len());
        self.slots.push((k, state));
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<S> {
        let i = *self.index.get(key)?;
        Some(self.remove_at(i))
    }

    fn remove_at(&mut self, i: usize) -> S {
        let (key, state) = self.slots.swap_remove(i);
        self.index.remove(&*key);
        if let Some((moved, _)) = self.slots.get(i) {
            // The last slot moved into `i`; point its index entry at the new place.
            if let Some(slot) = self.index.get_mut(&**moved) {
                *slot = i;
            }
        }
        state
    }

    /// Examines up to `budget` slots from the cursor and evicts those `idle` says can be
    /// forgotten. `idle` may also update a state it keeps (a reservation that expires is
    /// settled, not dropped). Returns how many were evicted.
    pub(crate) fn sweep(&mut self, budget: usize, mut idle: impl FnMut(&mut S) -> bool) -> usize {
        let mut evicted = 0;
        for _ in 0..budget {
            if self.slots.is_empty() {
                break;
            }
            if self.cursor >= self.slots.len() {
                self.cursor = 0;
            }
            if idle(&mut self.slots[self.cursor].1) {
                // Another slot moves into the cursor's place; examine it next time round.
                self.remove_at(self.cursor);
                evicted += 1;
            } else {
                self.cursor += 1;
            }
        }
        evicted
    }

    /// Every state, in slot order. O(len): for diagnostics, not the request path.
    pub(crate) fn values(&self) -> impl Iterator<Item = &S> {
        self.slots.iter().map(|(_, s)| s)
    }

    /// Every key with its state, in slot order. O(len): for migrating state
    /// to a reconfigured limiter, not the request path.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &S)> {
        self.slots.iter().map(|(k, s)| (&**k, s))
    }

    /// Evicts every idle state now. O(len); for tests and explicit maintenance.
    pub(crate) fn sweep_all(&mut self, mut idle: impl FnMut(&mut S) -> bool) -> usize {
        let before = self.slots.len();
        self.slots.retain_mut(|(_, s)| !idle(s));
        self.index.clear();
        for (i, (k, _)) in self.slots.iter().enumerate() {
            self.index.insert(Arc::clone(k), i);
        }
        self.cursor = 0;
        before - self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consistent(s: &KeyedStore<u32>) {
        assert_eq!(s.index.len(), s.slots.len());
        for (i, (k, _)) in s.slots.iter().enumerate() {
            assert_eq!(s.index[&**k], i, "index of {k}");
        }
    }

    #[test]
    fn put_get_remove_keep_index_consistent() {
        let mut s = KeyedStore::default();
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            s.put(k, i as u32);
        }
        s.put("b", 10);
        assert_eq!(s.get("b"), Some(&10));
        assert_eq!(s.remove("a"), Some(0));
        consistent(&s);
        assert_eq!(s.get("d"), Some(&3));
        assert_eq!(s.remove("zz"), None);
        *s.get_mut("c").unwrap() += 1;
        assert_eq!(s.get("c"), Some(&3));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn sweep_is_bounded_and_eventually_complete() {
        let mut s = KeyedStore::default();
        for i in 0..100u32 {
            s.put(&format!("k{i}"), i);
        }
        // Evict the even ones, two slots per call.
        let mut calls = 0;
        let mut evicted = 0;
        while s.len() > 50 {
            let n = s.sweep(SWEEP_STEP, |v| *v % 2 == 0);
            assert!(n <= SWEEP_STEP);
            evicted += n;
            calls += 1;
            consistent(&s);
        }
        assert_eq!(evicted, 50);
        // One pass over 100 slots at two per call, plus the wrap.
        assert!(calls <= 100, "took {calls} calls");
        assert!((0..100)
            .filter(|i| i % 2 == 1)
            .all(|i| s.get(&format!("k{i}")) == Some(&i)));
    }

    #[test]
    fn sweep_all_rebuilds_index() {
        let mut s = KeyedStore::default();
        for i in 0..10u32 {
            s.put(&format!("k{i}"), i);
        }
        assert_eq!(s.sweep_all(|v| *v < 5), 5);
        consistent(&s);
        assert_eq!(s.get("k7"), Some(&7));
        assert_eq!(s.get("k2"), None);
    }
}
