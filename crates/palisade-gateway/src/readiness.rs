//! `/readyz` as a registry of named conditions.
//!
//! A replica must not take traffic until everything its config needs is in
//! place: the routing table, the detector (warmed), the policy or the signed
//! bundle (verified and active), the ledger and audit store (opened), the
//! shared limits backend (gating in `deny` mode, advisory with the local
//! fallback) and the listener. Each component registers a condition at
//! start and flips it when ready, so adding a component never means editing
//! the readiness endpoint. Draining for shutdown is one more condition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// A named condition and its current state.
type NamedCondition = (String, Arc<AtomicBool>);

/// The set of conditions; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    conditions: Arc<RwLock<Vec<NamedCondition>>>,
    /// Reported by `/readyz` but not gating: a degraded component the replica
    /// can serve without (e.g. the shared limits backend with a local fallback).
    advisories: Arc<RwLock<Vec<NamedCondition>>>,
}

/// A handle a component uses to report its state.
#[derive(Debug, Clone)]
pub struct Condition {
    ready: Arc<AtomicBool>,
}

impl Condition {
    /// Marks the component ready (or not).
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

impl Readiness {
    /// Registers a condition, initially not ready.
    pub fn register(&self, name: &str) -> Condition {
        let ready = Arc::new(AtomicBool::new(false));
        let mut conditions = self
            .conditions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        conditions.push((name.to_owned(), ready.clone()));
        Condition { ready }
    }

    /// Registers an advisory condition: reported, never gating. Initially not ok.
    pub fn register_advisory(&self, name: &str) -> Condition {
        let ready = Arc::new(AtomicBool::new(false));
        self.advisories
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((name.to_owned(), ready.clone()));
        Condition { ready }
    }

    /// Every advisory with its state.
    pub fn advisories(&self) -> Vec<(String, bool)> {
        self.advisories
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(n, r)| (n.clone(), r.load(Ordering::Acquire)))
            .collect()
    }

    /// Every condition with its state, in registration order.
    pub fn report(&self) -> Vec<(String, bool)> {
        self.conditions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(n, r)| (n.clone(), r.load(Ordering::Acquire)))
            .collect()
    }

    /// True when every condition is ready (and at least one is registered).
    pub fn is_ready(&self) -> bool {
        let report = self.report();
        !report.is_empty() && report.iter().all(|(_, r)| *r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_condition_is() {
        let r = Readiness::default();
        assert!(!r.is_ready(), "nothing registered is not ready");
        let a = r.register("routes");
        let b = r.register("policy");
        a.set(true);
        assert!(!r.is_ready());
        b.set(true);
        assert!(r.is_ready());
        let advisory = r.register_advisory("redis");
        assert!(r.is_ready(), "advisories never gate");
        advisory.set(true);
        assert_eq!(r.advisories(), vec![("redis".to_owned(), true)]);
        b.set(false);
        assert_eq!(
            r.report(),
            vec![("routes".to_owned(), true), ("policy".to_owned(), false)]
        );
    }
}
