//! The tool gate's per-process memory, bounded per tenant: calls held for confirmation and
//! conversations' tool-loop counters.
//!
//! Why per tenant: the store used to be one global FIFO, so a tenant that parked calls
//! (an agent looping on an irreversible tool) evicted other tenants' calls before anyone
//! could confirm them, and the conversation map was swept in O(n) on every insert once
//! large. Here every tenant has its own insertion-ordered map:
//!
//! - held calls: past `per_tenant`, the tenant's own oldest call lapses; when all tenants
//!   together reach `max_total`, a new call is refused (the caller withholds it) rather
//!   than anyone else's dropped;
//! - conversations: least recently counted first; past `per_tenant` the oldest is
//!   forgotten, and lapsed ones leave from the front.
//!
//! Every eviction is O(1) (`hashlink::LinkedHashMap`); the number of tenants is bounded by
//! the config (tenants are named by API keys), so memory is bounded too.

use std::collections::HashMap;

use hashlink::LinkedHashMap;

/// A record that lapses at a Unix second.
pub(crate) trait Lapses {
    /// When it lapses (exclusive).
    fn expires_at(&self) -> u64;
}

/// What became of a call offered to [`PendingStore::park`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Held; these ids of the same tenant lapsed to make room.
    Held { evicted: Vec<String> },
    /// Not held: the store is full with other tenants' calls.
    Full,
}

/// Held calls, per tenant.
#[derive(Debug)]
pub(crate) struct PendingStore<T> {
    tenants: HashMap<String, LinkedHashMap<String, T>>,
    /// id → tenant, so a confirmation finds its call in O(1).
    owners: HashMap<String, String>,
    per_tenant: usize,
    max_total: usize,
}

impl<T: Lapses> PendingStore<T> {
    pub(crate) fn new(per_tenant: usize, max_total: usize) -> Self {
        Self {
            tenants: HashMap::new(),
            owners: HashMap::new(),
            per_tenant: per_tenant.max(1),
            max_total: max_total.max(1),
        }
    }

    /// Calls held now, all tenants.
    pub(crate) fn len(&self) -> usize {
        self.owners.len()
    }

    /// Drops `tenant`'s lapsed calls from the front (calls share one lifetime, so the
    /// oldest lapse first).
    fn drop_lapsed(&mut self, tenant: &str, now: u64) {
        let Some(calls) = self.tenants.get_mut(tenant) else {
            return;
        };
        while calls.front().is_some_and(|(_, c)| c.expires_at() <= now) {
            if let Some((id, _)) = calls.pop_front() {
                self.owners.remove(&id);
            }
        }
        if calls.is_empty() {
            self.tenants.remove(tenant);
        }
    }

    /// Holds `call` under `id` for `tenant`.
    pub(crate) fn park(&mut self, tenant: &str, id: String, call: T, now: u64) -> Hold {
        self.remove(&id);
        self.drop_lapsed(tenant, now);
        let mut evicted = Vec::new();
        let held = self.tenants.get(tenant).map_or(0, LinkedHashMap::len);
        if held >= self.per_tenant {
            if let Some(calls) = self.tenants.get_mut(tenant) {
                while calls.len() >= self.per_tenant {
                    let Some((old, _)) = calls.pop_front() else {
                        break;
                    };
                    self.owners.remove(&old);
                    evicted.push(old);
                }
            }
        } else if self.len() >= self.max_total {
            let tenants: Vec<String> = self.tenants.keys().cloned().collect();
            for t in tenants {
                self.drop_lapsed(&t, now);
            }
            if self.len() >= self.max_total {
                return Hold::Full;
            }
        }
        self.owners.insert(id.clone(), tenant.to_owned());
        self.tenants
            .entry(tenant.to_owned())
            .or_default()
            .insert(id, call);
        Hold::Held { evicted }
    }

    /// The call held under `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&T> {
        let tenant = self.owners.get(id)?;
        self.tenants.get(tenant)?.get(id)
    }

    /// Takes the call held under `id`.
    pub(crate) fn remove(&mut self, id: &str) -> Option<T> {
        let tenant = self.owners.remove(id)?;
        let calls = self.tenants.get_mut(&tenant)?;
        let call = calls.remove(id);
        if calls.is_empty() {
            self.tenants.remove(&tenant);
        }
        call
    }

    /// Every held call (lapsed ones included: callers filter by time).
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.tenants.values().flat_map(LinkedHashMap::values)
    }
}

/// A conversation's tool-loop counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Conversation {
    pub(crate) rounds: u32,
    pub(crate) loop_tokens: u64,
    pub(crate) last_seen: u64,
}

/// Conversation counters, per tenant, least recently counted first.
#[derive(Debug)]
pub(crate) struct Conversations {
    tenants: HashMap<String, LinkedHashMap<String, Conversation>>,
    per_tenant: usize,
    ttl: u64,
}

impl Conversations {
    pub(crate) fn new(per_tenant: usize, ttl: u64) -> Self {
        Self {
            tenants: HashMap::new(),
            per_tenant: per_tenant.max(1),
            ttl,
        }
    }

    /// The counters of `tenant`'s conversation `id` (zeros when unknown or lapsed).
    pub(crate) fn get(&self, tenant: &str, id: &str, now: u64) -> Conversation {
        self.tenants
            .get(tenant)
            .and_then(|m| m.get(id))
            .filter(|c| c.last_seen.saturating_add(self.ttl) > now)
            .copied()
            .unwrap_or_default()
    }

    /// Adds a finished response to the conversation's counters.
    pub(crate) fn record(
        &mut self,
        tenant: &str,
        id: &str,
        had_calls: bool,
        tokens: u64,
        now: u64,
    ) {
        let ttl = self.ttl;
        let map = self.tenants.entry(tenant.to_owned()).or_default();
        // Counted conversations are in order of their last count: lapsed ones are in front.
        while map
            .front()
            .is_some_and(|(_, c)| c.last_seen.saturating_add(ttl) <= now)
        {
            map.pop_front();
        }
        let mut c = map.remove(id).unwrap_or_default();
        c.rounds = c.rounds.saturating_add(u32::from(had_calls));
        c.loop_tokens = c.loop_tokens.saturating_add(tokens);
        c.last_seen = now;
        map.insert(id.to_owned(), c);
        while map.len() > self.per_tenant {
            map.pop_front();
        }
    }

    /// Conversations counted for `tenant`.
    #[cfg(test)]
    pub(crate) fn len(&self, tenant: &str) -> usize {
        self.tenants.get(tenant).map_or(0, LinkedHashMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Call(u64);

    impl Lapses for Call {
        fn expires_at(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn a_tenant_at_its_cap_evicts_only_its_own_calls() {
        let mut store = PendingStore::new(3, 5);
        for i in 0..2 {
            store.park("victim", format!("v{i}"), Call(1_000), 0);
        }
        for i in 0..50 {
            let hold = store.park("attacker", format!("a{i}"), Call(1_000), 0);
            let want: Vec<String> = if i < 3 {
                vec![]
            } else {
                vec![format!("a{}", i - 3)]
            };
            assert_eq!(hold, Hold::Held { evicted: want });
        }
        assert!(store.get("v0").is_some() && store.get("v1").is_some());
        // Full: a third tenant's call is refused, nobody's dropped.
        assert_eq!(store.park("third", "t".into(), Call(1_000), 0), Hold::Full);
        assert_eq!(store.len(), 5);
        // Lapsed calls make room.
        assert_eq!(
            store.park("third", "t".into(), Call(2_000), 1_000),
            Hold::Held { evicted: vec![] }
        );
        assert_eq!(store.len(), 1);
        assert_eq!(store.remove("t"), Some(Call(2_000)));
        assert_eq!(store.len(), 0);
        assert!(store.tenants.is_empty());
    }

    #[test]
    fn conversations_are_bounded_per_tenant_least_recent_first() {
        let mut convs = Conversations::new(3, 100);
        convs.record("victim", "v", true, 10, 0);
        for i in 0..1_000 {
            convs.record("attacker", &format!("c{i}"), true, 1, 1);
        }
        assert_eq!(convs.len("attacker"), 3);
        assert_eq!(convs.get("victim", "v", 2).rounds, 1);
        // Counting a conversation again makes it the most recent.
        convs.record("victim", "a", false, 0, 3);
        convs.record("victim", "b", false, 0, 3);
        convs.record("victim", "v", true, 5, 4);
        convs.record("victim", "c", false, 0, 5);
        assert_eq!(convs.get("victim", "v", 5).rounds, 2);
        assert_eq!(convs.get("victim", "a", 5), Conversation::default());
        // Lapsed after the ttl.
        assert_eq!(convs.get("victim", "v", 104), Conversation::default());
        convs.record("victim", "d", false, 0, 200);
        assert_eq!(convs.len("victim"), 1);
    }

    proptest! {
        /// Whatever the sequence of parks and takes, no tenant exceeds its cap, the total
        /// never exceeds the bound, and a call is only ever evicted by its own tenant.
        #[test]
        fn caps_hold_and_evictions_stay_within_a_tenant(
            ops in prop::collection::vec((0u8..4, any::<bool>(), 0u64..4), 1..200)
        ) {
            let mut store = PendingStore::new(4, 10);
            let mut owner = HashMap::new();
            for (i, (tenant, take, now)) in ops.into_iter().enumerate() {
                let tenant = format!("t{tenant}");
                if take && i > 0 {
                    store.remove(&format!("c{}", i - 1));
                    continue;
                }
                let id = format!("c{i}");
                owner.insert(id.clone(), tenant.clone());
                if let Hold::Held { evicted } = store.park(&tenant, id, Call(now + 2), now) {
                    for e in evicted {
                        prop_assert_eq!(&owner[&e], &tenant);
                    }
                }
                prop_assert!(store.len() <= 10);
                for calls in store.tenants.values() {
                    prop_assert!(calls.len() <= 4);
                }
                prop_assert_eq!(store.values().count(), store.len());
            }
        }
    }
}
