//! Weighted fair queueing across tenants, in the spirit of the Virtual Token Counter (VTC,
//! Sheng et al., "Fairness in Serving Large Language Models", OSDI'24).
//!
//! This is the decision core only: it counts queued requests per tenant and says whose
//! request goes next. The requests themselves, the waiting and the queue timeouts live in
//! the gateway.
//!
//! Each tenant has a *virtual counter*: the service it has received (tokens, weighted as
//! the caller likes, e.g. prompt + 2 x output) divided by its weight. The next request
//! served is from the backlogged tenant with the smallest counter, so service is shared in
//! proportion to weight among tenants that want it. When a tenant becomes backlogged again
//! after being idle, its counter is *lifted* to the smallest counter among backlogged
//! tenants (or, when none is, to the last one that left): idle time earns no credit, so a
//! tenant that was quiet for an hour cannot then monopolise the upstream.
//!
//! **Bound** (property-tested): two tenants continuously backlogged from the same instant
//! receive weighted service within `max request cost / min weight` of each other (plus
//! rounding), however long they run and whoever else comes and goes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::LimitError;

/// Fixed-point scale of the virtual counters: one token of service at weight 1 adds
/// `COUNTER_SCALE`. Integer counters keep the order of tenants exact and reproducible
/// (no float ties that depend on summation order); 32 fractional bits make the rounding
/// error of a weighted charge at most 2^-32 token.
pub const COUNTER_SCALE: u128 = 1 << 32;

/// Configuration of a fair queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FairQueueConfig {
    /// Weight of tenants not given one with [`FairQueue::set_weight`].
    pub default_weight: u32,
    /// Requests a tenant may have queued at once; more are refused with
    /// [`LimitError::QueueFull`] and should be shed.
    pub max_queued_per_tenant: u32,
}

impl Default for FairQueueConfig {
    /// Rationale: weight 1 makes tenants equal unless the policy says otherwise; a queue of
    /// 64 per tenant absorbs a client's burst while an upstream is saturated, and beyond
    /// that waiting only turns into timeouts, so shedding early is kinder.
    fn default() -> Self {
        Self {
            default_weight: 1,
            max_queued_per_tenant: 64,
        }
    }
}

#[derive(Debug)]
struct Tenant {
    name: Arc<str>,
    weight: u32,
    counter: u128,
    queued: u32,
}

/// The VTC decision core.
#[derive(Debug)]
pub struct FairQueue {
    config: FairQueueConfig,
    tenants: Vec<Tenant>,
    index: HashMap<Arc<str>, usize>,
    /// Backlogged tenants ordered by counter, then by age (index), for a deterministic pick.
    backlogged: BTreeSet<(u128, usize)>,
    /// The last tenant to leave the backlog: its counter is the lift value while nobody is
    /// backlogged.
    last_left: Option<usize>,
    /// A lower bound of the lift value, frozen by [`FairQueue::compact`] so that forgetting
    /// tenants never lowers it.
    floor: u128,
}

impl FairQueue {
    /// An empty fair queue.
    ///
    /// # Errors
    /// [`LimitError::InvalidConfig`] for a zero default weight or a zero queue bound.
    pub fn new(config: FairQueueConfig) -> Result<Self, LimitError> {
        if config.default_weight == 0 {
            return Err(LimitError::InvalidConfig(
                "fair queue weights must be at least 1",
            ));
        }
        if config.max_queued_per_tenant == 0 {
            return Err(LimitError::InvalidConfig(
                "fair queue bound must be at least 1",
            ));
        }
        Ok(Self {
            config,
            tenants: Vec::new(),
            index: HashMap::new(),
            backlogged: BTreeSet::new(),
            last_left: None,
            floor: 0,
        })
    }

    /// The counter a tenant becoming backlogged is lifted to: the smallest backlogged
    /// counter, or when nobody is backlogged the current counter of the last tenant to
    /// leave. This value never decreases (joiners are lifted to at least it, leavers are at
    /// least it, charges only raise counters), which is what makes [`FairQueue::compact`]
    /// exact.
    fn lift(&self) -> u128 {
        let live = match self.backlogged.first() {
            Some(&(c, _)) => c,
            None => self.last_left.map_or(0, |i| self.tenants[i].counter),
        };
        live.max(self.floor)
    }

    fn slot(&mut self, tenant: &str) -> usize {
        if let Some(&i) = self.index.get(tenant) {
            return i;
        }
        let name: Arc<str> = Arc::from(tenant);
        let i = self.tenants.len();
        self.tenants.push(Tenant {
            name: Arc::clone(&name),
            weight: self.config.default_weight,
            // A tenant never seen is lifted when it first queues; starting at zero is
            // therefore the same as starting at the floor.
            counter: 0,
            queued: 0,
        });
        self.index.insert(name, i);
        i
    }

    /// Sets `tenant`'s weight: with weight 2 it receives twice the service of a weight-1
    /// tenant when both are backlogged. Takes effect for service charged from now on.
    ///
    /// # Errors
    /// [`LimitError::InvalidConfig`] for weight zero.
    pub fn set_weight(&mut self, tenant: &str, weight: u32) -> Result<(), LimitError> {
        if weight == 0 {
            return Err(LimitError::InvalidConfig(
                "fair queue weights must be at least 1",
            ));
        }
        let i = self.slot(tenant);
        self.tenants[i].weight = weight;
        Ok(())
    }

    /// Counts one more queued request for `tenant`; returns how many it has queued.
    ///
    /// # Errors
    /// [`LimitError::QueueFull`] when the tenant is at `max_queued_per_tenant`.
    pub fn enqueue(&mut self, tenant: &str) -> Result<u32, LimitError> {
        let i = self.slot(tenant);
        let lift = self.lift();
        let t = &mut self.tenants[i];
        if t.queued >= self.config.max_queued_per_tenant {
            return Err(LimitError::QueueFull(tenant.to_owned()));
        }
        if t.queued == 0 {
            // Becoming backlogged: lift, so that idle time earns no credit.
            t.counter = t.counter.max(lift);
            self.backlogged.insert((t.counter, i));
        }
        t.queued += 1;
        Ok(t.queued)
    }

    /// Picks the tenant whose request should be served next, counting that request as
    /// dequeued, or `None` when nothing is queued. The caller charges its service with
    /// [`FairQueue::charge`] (at dispatch, as it streams, or at completion).
    pub fn pick_next(&mut self) -> Option<Arc<str>> {
        let &(counter, i) = self.backlogged.first()?;
        let t = &mut self.tenants[i];
        t.queued -= 1;
        if t.queued == 0 {
            self.backlogged.remove(&(counter, i));
            self.last_left = Some(i);
        }
        Some(Arc::clone(&self.tenants[i].name))
    }

    /// Removes one queued request of `tenant` without serving it (a queue timeout, a client
    /// that went away).
    ///
    /// # Errors
    /// [`LimitError::NothingQueued`] when the tenant has nothing queued.
    pub fn cancel(&mut self, tenant: &str) -> Result<u32, LimitError> {
        let Some(&i) = self.index.get(tenant) else {
            return Err(LimitError::NothingQueued(tenant.to_owned()));
        };
        let t = &mut self.tenants[i];
        if t.queued == 0 {
            return Err(LimitError::NothingQueued(tenant.to_owned()));
        }
        t.queued -= 1;
        let left = t.queued;
        if left == 0 {
            self.backlogged.remove(&(t.counter, i));
            self.last_left = Some(i);
        }
        Ok(left)
    }

    /// Charges `cost` units of service (weighted tokens) to `tenant`.
    pub fn charge(&mut self, tenant: &str, cost: u64) {
        let i = self.slot(tenant);
        let t = &mut self.tenants[i];
        let add = (u128::from(cost) * COUNTER_SCALE).div_ceil(u128::from(t.weight));
        let old = t.counter;
        t.counter = old.saturating_add(add);
        if t.queued > 0 {
            self.backlogged.remove(&(old, i));
            self.backlogged.insert((t.counter, i));
        }
    }

    /// `tenant`'s virtual counter (weighted service, in units of 1/[`COUNTER_SCALE`]
    /// token), `None` for a tenant never seen.
    pub fn counter(&self, tenant: &str) -> Option<u128> {
        self.index.get(tenant).map(|&i| self.tenants[i].counter)
    }

    /// Requests queued for `tenant`.
    pub fn queued(&self, tenant: &str) -> u32 {
        self.index
            .get(tenant)
            .map_or(0, |&i| self.tenants[i].queued)
    }

    /// Requests queued over all tenants. O(backlogged tenants).
    pub fn total_queued(&self) -> u64 {
        self.backlogged
            .iter()
            .map(|&(_, i)| u64::from(self.tenants[i].queued))
            .sum()
    }

    /// Tenants known (queued, recently served, or with an explicit weight).
    pub fn tenants(&self) -> usize {
        self.tenants.len()
    }

    /// Forgets tenants whose state is equivalent to absence: nothing queued, default
    /// weight, and a counter at or below the lift value (their next enqueue would lift them
    /// to at least the floor anyway). O(tenants); call it periodically, off the hot path.
    /// Returns how many were forgotten.
    pub fn compact(&mut self) -> usize {
        let before = self.tenants.len();
        self.floor = self.lift();
        let (floor, default_weight) = (self.floor, self.config.default_weight);
        let last_left = self.last_left.map(|i| Arc::clone(&self.tenants[i].name));
        self.tenants
            .retain(|t| t.queued > 0 || t.weight != default_weight || t.counter > floor);
        self.index.clear();
        self.backlogged.clear();
        for (i, t) in self.tenants.iter().enumerate() {
            self.index.insert(Arc::clone(&t.name), i);
            if t.queued > 0 {
                self.backlogged.insert((t.counter, i));
            }
        }
        self.last_left = last_left.and_then(|name| self.index.get(&name).copied());
        before - self.tenants.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> FairQueue {
        FairQueue::new(FairQueueConfig::default()).unwrap()
    }

    /// Serves `n` requests at unit cost and returns who was served, as one letter each.
    fn serve(q: &mut FairQueue, n: usize, cost: u64) -> String {
        let mut out = String::new();
        for _ in 0..n {
            let t = q.pick_next().expect("something queued");
            q.charge(&t, cost);
            out.push_str(&t);
        }
        out
    }

    fn check(q: &mut FairQueue, n: usize, expected: &str) {
        assert_eq!(serve(q, n, 10), expected);
    }

    #[test]
    fn equal_weights_alternate() {
        let mut q = queue();
        for _ in 0..4 {
            q.enqueue("a").unwrap();
            q.enqueue("b").unwrap();
        }
        check(&mut q, 8, "abababab");
        assert!(q.pick_next().is_none());
    }

    #[test]
    fn weights_share_service_proportionally() {
        let mut q = queue();
        q.set_weight("a", 2).unwrap();
        for _ in 0..6 {
            q.enqueue("a").unwrap();
            q.enqueue("b").unwrap();
        }
        let s = serve(&mut q, 9, 10);
        assert_eq!(s.matches('a').count(), 6, "{s}");
        assert_eq!(s.matches('b').count(), 3, "{s}");
    }

    #[test]
    fn idle_tenant_banks_no_credit() {
        let mut q = queue();
        for _ in 0..20 {
            q.enqueue("a").unwrap();
        }
        check(&mut q, 10, "aaaaaaaaaa");
        // b arrives after a has had 100 tokens of service: it is lifted to a's counter and
        // then shares, rather than being served ten times in a row.
        for _ in 0..5 {
            q.enqueue("b").unwrap();
        }
        assert_eq!(q.counter("b"), q.counter("a"));
        check(&mut q, 6, "ababab");
    }

    #[test]
    fn lift_uses_last_leaver_when_nobody_is_backlogged() {
        let mut q = queue();
        q.enqueue("a").unwrap();
        check(&mut q, 1, "a");
        q.enqueue("b").unwrap();
        assert_eq!(q.counter("b"), Some(10 * COUNTER_SCALE));
    }

    #[test]
    fn bounded_queues_and_cancel() {
        let mut q = FairQueue::new(FairQueueConfig {
            default_weight: 1,
            max_queued_per_tenant: 2,
        })
        .unwrap();
        assert_eq!(q.enqueue("a"), Ok(1));
        assert_eq!(q.enqueue("a"), Ok(2));
        assert_eq!(q.enqueue("a"), Err(LimitError::QueueFull("a".into())));
        assert_eq!(q.cancel("a"), Ok(1));
        assert_eq!(q.cancel("a"), Ok(0));
        assert_eq!(q.cancel("a"), Err(LimitError::NothingQueued("a".into())));
        assert_eq!(q.cancel("zz"), Err(LimitError::NothingQueued("zz".into())));
        assert_eq!(q.total_queued(), 0);
        assert!(q.pick_next().is_none());
    }

    #[test]
    fn compact_forgets_only_what_lifting_would_erase() {
        let mut q = queue();
        q.set_weight("vip", 3).unwrap();
        q.enqueue("a").unwrap();
        q.enqueue("b").unwrap();
        assert_eq!(serve(&mut q, 2, 1), "ab");
        // a keeps streaming after it left the queue; c arrives and is lifted to b's counter.
        q.charge("a", 1_000);
        q.enqueue("c").unwrap();
        assert_eq!(q.counter("c"), Some(COUNTER_SCALE));
        assert_eq!(q.compact(), 1, "b is idle at the lift value");
        assert_eq!(
            q.tenants(),
            3,
            "a (ahead of the floor), c (queued), vip (weight)"
        );
        assert_eq!(serve(&mut q, 1, 1), "c");
        // a's debt survived compaction: queued behind c, it waits for c's three requests.
        for _ in 0..3 {
            q.enqueue("c").unwrap();
        }
        q.enqueue("a").unwrap();
        assert_eq!(serve(&mut q, 4, 1), "ccca");
    }
}
