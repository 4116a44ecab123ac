//! In-flight limits: at most `max` requests (or streams) at once per key.
//!
//! The API is explicit acquire/release rather than an RAII guard: this crate is shared by
//! the in-memory and the Redis backends and cannot know how a release reaches the store.
//! The gateway wraps a [`Permit`] in its own guard whose `Drop` calls
//! [`ConcurrencyLimiter::release`], so a cancelled request (client gone mid-stream) still
//! frees its slot. A `Permit` is neither `Clone` nor `Copy` and release consumes it, so a
//! double release does not type-check. A permit carries only its key, so it must go back to
//! the limiter it came from; the gateway's guard holds both.

use crate::decision::{Denial, LimitKind};
use crate::error::LimitError;
use crate::store::KeyedStore;

/// Proof of one acquired slot, to be handed back to [`ConcurrencyLimiter::release`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a permit that is never released holds its slot forever"]
pub struct Permit {
    key: Box<str>,
}

impl Permit {
    /// The key the slot belongs to.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The outcome of an acquire.
#[derive(Debug, PartialEq, Eq)]
pub enum Acquire {
    /// A slot was taken.
    Acquired {
        /// Release it with this.
        permit: Permit,
        /// In flight for the key, this one included.
        in_flight: u32,
    },
    /// The key is at its maximum.
    Full {
        /// In flight for the key.
        in_flight: u32,
        /// The refusal. `retry_after` is `None`: a slot frees when some other request
        /// ends, which no arithmetic here can predict.
        denial: Denial,
    },
}

/// Per-key in-flight counters with one maximum.
#[derive(Debug)]
pub struct ConcurrencyLimiter {
    max: u32,
    store: KeyedStore<u32>,
}

impl ConcurrencyLimiter {
    /// A limiter admitting `max` in flight per key.
    ///
    /// # Errors
    /// [`LimitError::InvalidConfig`] for a zero maximum (which would admit nothing).
    pub fn new(max: u32) -> Result<Self, LimitError> {
        if max == 0 {
            return Err(LimitError::InvalidConfig(
                "concurrency max must be at least 1",
            ));
        }
        Ok(Self {
            max,
            store: KeyedStore::default(),
        })
    }

    /// The per-key maximum.
    pub const fn max(&self) -> u32 {
        self.max
    }

    /// Takes a slot for `key` if one is free.
    pub fn try_acquire(&mut self, key: &str) -> Acquire {
        self.try_acquire_up_to(key, self.max)
    }

    /// Takes a slot for `key` under a per-call maximum (a tier's own limit, or an adaptive
    /// limit toward an upstream that moves with its latency). Lowering `max` below what is
    /// in flight admits nothing new until enough slots are released.
    pub fn try_acquire_up_to(&mut self, key: &str, max: u32) -> Acquire {
        let in_flight = self.store.get(key).copied().unwrap_or(0);
        if in_flight >= max {
            return Acquire::Full {
                in_flight,
                denial: Denial {
                    kind: LimitKind::ConcurrencyLimited,
                    retry_after: None,
                },
            };
        }
        self.store.put(key, in_flight + 1);
        Acquire::Acquired {
            permit: Permit { key: key.into() },
            in_flight: in_flight + 1,
        }
    }

    /// Frees the slot held by `permit`; returns what is still in flight for its key.
    ///
    /// # Errors
    /// [`LimitError::NotAcquired`] when the key holds no slot here: the permit came from
    /// another limiter (for example one replaced by a config reload).
    pub fn release(&mut self, permit: Permit) -> Result<u32, LimitError> {
        let key = &*permit.key;
        match self.store.get_mut(key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                Ok(*n)
            }
            Some(_) => {
                // Nothing left in flight: forget the key, so idle keys take no memory and
                // no sweep is needed.
                self.store.remove(key);
                Ok(0)
            }
            None => Err(LimitError::NotAcquired(permit.key.into())),
        }
    }

    /// In flight for `key`.
    pub fn in_flight(&self, key: &str) -> u32 {
        self.store.get(key).copied().unwrap_or(0)
    }

    /// Keys with something in flight.
    pub fn active_keys(&self) -> usize {
        self.store.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acquired(a: Acquire) -> Permit {
        match a {
            Acquire::Acquired { permit, .. } => permit,
            Acquire::Full { .. } => panic!("expected a slot"),
        }
    }

    #[test]
    fn acquire_up_to_max_then_refuse_then_release() {
        let mut l = ConcurrencyLimiter::new(2).unwrap();
        let a = acquired(l.try_acquire("t"));
        let b = acquired(l.try_acquire("t"));
        match l.try_acquire("t") {
            Acquire::Full { in_flight, denial } => {
                assert_eq!(in_flight, 2);
                assert_eq!(denial.kind.code(), "concurrency_limited");
                assert_eq!(denial.retry_after, None);
            }
            other => panic!("expected full, got {other:?}"),
        }
        // Another key is unaffected.
        let c = acquired(l.try_acquire("u"));
        assert_eq!(l.release(a), Ok(1));
        let d = acquired(l.try_acquire("t"));
        assert_eq!(l.release(b), Ok(1));
        assert_eq!(l.release(d), Ok(0));
        assert_eq!(l.release(c), Ok(0));
        assert_eq!(l.active_keys(), 0, "idle keys are forgotten");
    }

    #[test]
    fn per_call_max_and_foreign_permits() {
        let mut l = ConcurrencyLimiter::new(10).unwrap();
        let p = acquired(l.try_acquire_up_to("t", 1));
        assert!(matches!(l.try_acquire_up_to("t", 1), Acquire::Full { .. }));
        assert_eq!(l.in_flight("t"), 1);
        let mut other = ConcurrencyLimiter::new(10).unwrap();
        assert_eq!(other.release(p), Err(LimitError::NotAcquired("t".into())));
        assert!(ConcurrencyLimiter::new(0).is_err());
    }
}
