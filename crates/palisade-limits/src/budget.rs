//! Token budgets with reservations: reserve at admission, reconcile at completion.
//!
//! Counting tokens after the response (as most gateways do) lets every request that is in
//! flight when the budget runs out overshoot it. Here admission *reserves* the worst case,
//! `prompt_estimate + max_tokens`, and is refused unless `spent + reserved + amount <=
//! limit`. On completion the gateway *reconciles* with the upstream's reported usage: the
//! unused part of the reservation is released, and if the upstream used more than reserved
//! (a bad prompt estimate, a backend that ignores `max_tokens`) the excess is charged anyway
//! and recorded as *overshoot*.
//!
//! ## Invariants (property-tested in `tests/properties.rs`)
//!
//! - At every admission, `spent + reserved <= limit` after the new reservation.
//! - Always, per key and window, `spent + reserved <= limit + overshoot`, where `overshoot`
//!   is the sum of `actual - reserved` over the reconciliations that exceeded their
//!   reservation. So the budget is overshot by no more than what the upstream used beyond
//!   what was reserved; when every request stays within its reservation, never.
//! - Reconcile and cancel are idempotent per reservation id: repeating one returns the first
//!   outcome and changes nothing.
//!
//! ## Windows
//!
//! A budget is either windowed (for example tokens per minute: windows aligned to the
//! clock's epoch, so every replica sharing Redis `TIME` agrees on the boundaries) or a hard
//! quota that never refills by waiting (monthly quotas, seeded from the ledger with
//! [`TokenBudget::seed_spent`]). When a window turns, `spent` and `overshoot` restart at
//! zero but open reservations carry over: they are work in flight that will be charged to
//! the window in which it completes.
//!
//! ## Lost reservations
//!
//! A reservation that is neither reconciled nor cancelled within `reservation_ttl` (a
//! crashed replica, a bug) is settled by charging it in full: the tokens may well have been
//! used, and failing in the strict direction keeps the invariant. A late reconcile still
//! corrects the charge once.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::decision::{Denial, LimitKind, RateLimitInfo};
use crate::error::LimitError;
use crate::store::{KeyedStore, SWEEP_STEP};
use crate::time::Nanos;

/// A token budget's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetConfig {
    /// Tokens per window, or in total for a hard quota.
    pub limit: u64,
    /// The window length; `None` for a hard quota that never refills by waiting.
    pub window: Option<Nanos>,
    /// How long a reservation may stay open before it is charged in full.
    pub reservation_ttl: Nanos,
    /// How long a settled reservation's outcome is remembered, so that repeated reconcile
    /// or cancel calls are recognised as duplicates.
    pub settled_ttl: Nanos,
}

impl BudgetConfig {
    /// Default lifetime of an open reservation: 15 minutes.
    ///
    /// Rationale: longer than any request the gateway lets run (stream duration limits are
    /// minutes), so only a genuinely lost reservation reaches it, yet short enough that a
    /// crashed replica's reservations stop blocking a tokens-per-minute budget within one
    /// coffee break rather than never.
    pub const DEFAULT_RESERVATION_TTL: Nanos = Nanos::from_secs(15 * 60);
    /// Default memory of settled reservations: 15 minutes.
    ///
    /// Rationale: as long as a reservation can live, so a retried reconcile arriving any
    /// time a live reservation could have is still recognised.
    pub const DEFAULT_SETTLED_TTL: Nanos = Nanos::from_secs(15 * 60);

    /// `limit` tokens per `window`, with the default TTLs.
    pub const fn windowed(limit: u64, window: Nanos) -> Self {
        Self {
            limit,
            window: Some(window),
            reservation_ttl: Self::DEFAULT_RESERVATION_TTL,
            settled_ttl: Self::DEFAULT_SETTLED_TTL,
        }
    }

    /// A hard quota of `limit` tokens, with the default TTLs.
    pub const fn quota(limit: u64) -> Self {
        Self {
            limit,
            window: None,
            reservation_ttl: Self::DEFAULT_RESERVATION_TTL,
            settled_ttl: Self::DEFAULT_SETTLED_TTL,
        }
    }
}

/// A key's accounting in its current window. Small and `Copy`, like every backend state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BudgetState {
    /// Start of the window `spent` and `overshoot` belong to (zero for a hard quota).
    pub window_start: Nanos,
    /// Tokens charged by settled requests in this window.
    pub spent: u64,
    /// Tokens held by open reservations (of any window).
    pub reserved: u64,
    /// Tokens charged in this window beyond what their requests had reserved.
    pub overshoot: u64,
}

/// A key's usage as seen at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetUsage {
    /// The configured limit.
    pub limit: u64,
    /// Charged in the current window.
    pub spent: u64,
    /// Held by open reservations.
    pub reserved: u64,
    /// Charged in the current window beyond reservations.
    pub overshoot: u64,
    /// `limit - spent - reserved`, floored at zero: the largest reservation that fits now.
    pub remaining: u64,
    /// Time until the window turns; `None` for a hard quota.
    pub reset_after: Option<Nanos>,
}

impl BudgetUsage {
    /// The `x-ratelimit-*-tokens` values; `None` for a hard quota, which has no reset.
    pub const fn info(&self) -> Option<RateLimitInfo> {
        match self.reset_after {
            Some(reset_after) => Some(RateLimitInfo {
                limit: self.limit,
                remaining: self.remaining,
                reset_after,
            }),
            None => None,
        }
    }
}

/// The outcome of a reservation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// Whether the tokens were reserved.
    pub granted: bool,
    /// True when this id was already reserved with the same key and amount: nothing new was
    /// reserved and `granted` is true.
    pub duplicate: bool,
    /// The key's usage after the decision.
    pub usage: BudgetUsage,
    /// When refused, why and for how long.
    pub denial: Option<Denial>,
}

/// How a reservation was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SettleKind {
    /// Reconciled with actual usage.
    Reconciled,
    /// Cancelled: the request never used tokens (refused later, upstream not reached).
    Cancelled,
    /// Open past `reservation_ttl`: charged in full.
    Expired,
}

/// The outcome of settling a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// How it was settled.
    pub kind: SettleKind,
    /// What had been reserved.
    pub reserved: u64,
    /// What was charged to the budget.
    pub charged: u64,
    /// `charged - reserved` when positive: the overshoot this settlement caused.
    pub overshoot: u64,
    /// True when this repeats an earlier settlement: nothing changed.
    pub duplicate: bool,
}

#[derive(Debug, Clone)]
enum Phase {
    Open {
        expires_at: Nanos,
    },
    Settled {
        settlement: Settlement,
        /// The window the charge went to.
        window_start: Nanos,
        forget_at: Nanos,
    },
}

#[derive(Debug, Clone)]
struct Held {
    key: Arc<str>,
    amount: u64,
    phase: Phase,
}

/// The window `now` falls in (zero for a hard quota).
fn window_start(window: Option<Nanos>, now: Nanos) -> Nanos {
    match window {
        Some(w) => Nanos(now.get() - now.get() % w.get()),
        None => Nanos::ZERO,
    }
}

/// `state` as of `now`: a newer window restarts `spent` and `overshoot`; open reservations
/// carry over. A window in the past (the clock stepped back) keeps the state, which is the
/// strict choice.
fn roll(window: Option<Nanos>, state: Option<BudgetState>, now: Nanos) -> BudgetState {
    let ws = window_start(window, now);
    let s = state.unwrap_or(BudgetState {
        window_start: ws,
        ..BudgetState::default()
    });
    if ws > s.window_start {
        BudgetState {
            window_start: ws,
            reserved: s.reserved,
            ..BudgetState::default()
        }
    } else {
        s
    }
}

/// An in-memory set of token budgets over string keys, all with one configuration.
#[derive(Debug)]
pub struct TokenBudget {
    config: BudgetConfig,
    keys: KeyedStore<BudgetState>,
    reservations: KeyedStore<Held>,
}

impl TokenBudget {
    /// An empty set of budgets.
    ///
    /// # Errors
    /// [`LimitError::InvalidConfig`] for a zero limit, a zero window or zero TTLs.
    pub fn new(config: BudgetConfig) -> Result<Self, LimitError> {
        if config.limit == 0 {
            return Err(LimitError::InvalidConfig("budget limit must be at least 1"));
        }
        if config.window == Some(Nanos::ZERO) {
            return Err(LimitError::InvalidConfig("budget window must be positive"));
        }
        if config.reservation_ttl == Nanos::ZERO || config.settled_ttl == Nanos::ZERO {
            return Err(LimitError::InvalidConfig("budget ttls must be positive"));
        }
        Ok(Self {
            config,
            keys: KeyedStore::default(),
            reservations: KeyedStore::default(),
        })
    }

    /// The configuration.
    pub const fn config(&self) -> BudgetConfig {
        self.config
    }

    fn rolled(&self, state: Option<BudgetState>, now: Nanos) -> BudgetState {
        roll(self.config.window, state, now)
    }

    fn usage_of(&self, s: &BudgetState, now: Nanos) -> BudgetUsage {
        self.usage_under(s, self.config.limit, now)
    }

    fn usage_under(&self, s: &BudgetState, limit: u64, now: Nanos) -> BudgetUsage {
        BudgetUsage {
            limit,
            spent: s.spent,
            reserved: s.reserved,
            overshoot: s.overshoot,
            remaining: limit.saturating_sub(s.spent.saturating_add(s.reserved)),
            reset_after: self
                .config
                .window
                .map(|w| s.window_start.saturating_add(w).saturating_sub(now)),
        }
    }

    /// The usage of `key` at `now`, changing nothing.
    pub fn usage(&self, key: &str, now: Nanos) -> BudgetUsage {
        let s = self.rolled(self.keys.get(key).copied(), now);
        self.usage_of(&s, now)
    }

    /// Sets what `key` has spent in the current window, for example a monthly quota's
    /// spend read from the ledger at start. Open reservations are kept.
    pub fn seed_spent(&mut self, key: &str, spent: u64, now: Nanos) {
        let mut s = self.rolled(self.keys.get(key).copied(), now);
        s.spent = spent;
        self.keys.put(key, s);
    }

    /// The usage of `key` at `now` measured against `limit` (capped at the configured
    /// limit), changing nothing: the report of a per-key budget.
    pub fn usage_with_limit(&self, key: &str, limit: u64, now: Nanos) -> BudgetUsage {
        let s = self.rolled(self.keys.get(key).copied(), now);
        self.usage_under(&s, limit.min(self.config.limit), now)
    }

    /// Forgets `key` (a per-key budget's finished period) unless a reservation on it is
    /// still open; returns whether it did. A hard quota's state is otherwise never evicted
    /// (forgetting it would refill it), so the caller names the keys whose period is over.
    pub fn forget(&mut self, key: &str) -> bool {
        if self.keys.get(key).is_some_and(|s| s.reserved > 0) {
            return false;
        }
        self.keys.remove(key).is_some()
    }

    /// Raises what `key` has spent in the current window to at least `spent` (a refresh
    /// from the ledger, which other replicas write to): never lowers it, so a ledger that
    /// lags behind this process' own count cannot hand tokens back.
    pub fn raise_spent(&mut self, key: &str, spent: u64, now: Nanos) {
        let mut s = self.rolled(self.keys.get(key).copied(), now);
        s.spent = s.spent.max(spent);
        self.keys.put(key, s);
    }

    /// Reserves `amount` tokens for request `id` on `key`.
    ///
    /// Repeating a granted reservation (same id, key and amount) is a no-op that reports
    /// `duplicate`. A refused reservation leaves no trace, so it may be retried.
    ///
    /// # Errors
    /// [`LimitError::CostExceedsCapacity`] when `amount > limit` (no wait can help);
    /// [`LimitError::ReservationConflict`] when `id` is held with another key or amount, or
    /// was already settled.
    pub fn reserve(
        &mut self,
        key: &str,
        id: &str,
        amount: u64,
        now: Nanos,
    ) -> Result<Reservation, LimitError> {
        self.reserve_with_limit(key, id, amount, self.config.limit, now)
    }

    /// [`TokenBudget::reserve`] against `limit` (capped at the configured limit) instead of
    /// the configured limit: for budgets whose size is a per-key setting that may change
    /// between calls (per-key budgets). The admission invariant holds for the limit in
    /// force at each call; a lowered limit refuses the next reservation, it never claws
    /// back what is spent or held.
    ///
    /// # Errors
    /// As [`TokenBudget::reserve`], against `limit`.
    pub fn reserve_with_limit(
        &mut self,
        key: &str,
        id: &str,
        amount: u64,
        limit: u64,
        now: Nanos,
    ) -> Result<Reservation, LimitError> {
        self.sweep(now);
        let limit = limit.min(self.config.limit);
        if amount > limit {
            return Err(LimitError::CostExceedsCapacity {
                cost: amount,
                capacity: limit,
            });
        }
        if let Some(held) = self.reservations.get(id) {
            return match held.phase {
                Phase::Open { .. } if *held.key == *key && held.amount == amount => {
                    Ok(Reservation {
                        granted: true,
                        duplicate: true,
                        usage: {
                            let s = self.rolled(self.keys.get(key).copied(), now);
                            self.usage_under(&s, limit, now)
                        },
                        denial: None,
                    })
                }
                _ => Err(LimitError::ReservationConflict(id.to_owned())),
            };
        }
        let mut s = self.rolled(self.keys.get(key).copied(), now);
        let fits = s
            .spent
            .checked_add(s.reserved)
            .and_then(|used| used.checked_add(amount))
            .is_some_and(|total| total <= limit);
        if fits {
            s.reserved += amount;
            self.keys.put(key, s);
            self.reservations.put(
                id,
                Held {
                    key: Arc::from(key),
                    amount,
                    phase: Phase::Open {
                        expires_at: now.saturating_add(self.config.reservation_ttl),
                    },
                },
            );
        }
        let usage = self.usage_under(&s, limit, now);
        let denial = if fits {
            None
        } else if let Some(reset) = usage.reset_after {
            Some(Denial {
                kind: LimitKind::TokensExhausted,
                retry_after: Some(reset),
            })
        } else {
            Some(Denial {
                kind: LimitKind::QuotaExceeded,
                retry_after: None,
            })
        };
        Ok(Reservation {
            granted: fits,
            duplicate: false,
            usage,
            denial,
        })
    }

    /// Settles reservation `id` with the tokens actually used: releases the rest, or charges
    /// the excess and records it as overshoot.
    ///
    /// A reservation already charged in full on expiry is corrected once, to `actual`.
    ///
    /// # Errors
    /// [`LimitError::UnknownReservation`] for an id never reserved or long forgotten;
    /// [`LimitError::ReservationConflict`] when it was settled differently before.
    pub fn reconcile(
        &mut self,
        id: &str,
        actual: u64,
        now: Nanos,
    ) -> Result<Settlement, LimitError> {
        self.settle(id, SettleKind::Reconciled, actual, now)
    }

    /// Settles reservation `id` without charging anything: the request used no tokens.
    ///
    /// # Errors
    /// As [`TokenBudget::reconcile`].
    pub fn cancel(&mut self, id: &str, now: Nanos) -> Result<Settlement, LimitError> {
        self.settle(id, SettleKind::Cancelled, 0, now)
    }

    fn settle(
        &mut self,
        id: &str,
        kind: SettleKind,
        actual: u64,
        now: Nanos,
    ) -> Result<Settlement, LimitError> {
        self.sweep(now);
        let held = self
            .reservations
            .get(id)
            .cloned()
            .ok_or_else(|| LimitError::UnknownReservation(id.to_owned()))?;
        // What the budget has already been charged for this reservation, and in which window.
        let already_charged = match held.phase {
            Phase::Open { .. } => None,
            Phase::Settled {
                settlement,
                window_start,
                ..
            } => {
                if settlement.kind == kind && settlement.charged == actual {
                    return Ok(Settlement {
                        duplicate: true,
                        ..settlement
                    });
                }
                if settlement.kind != SettleKind::Expired {
                    return Err(LimitError::ReservationConflict(id.to_owned()));
                }
                Some((settlement.charged, window_start))
            }
        };
        let mut s = self.rolled(self.keys.get(&held.key).copied(), now);
        let overshoot = actual.saturating_sub(held.amount);
        match already_charged {
            None => {
                // An open reservation keeps its key's state alive, so `reserved` covers it.
                s.reserved = s.reserved.saturating_sub(held.amount);
                s.spent = s.spent.saturating_add(actual);
                s.overshoot = s.overshoot.saturating_add(overshoot);
            }
            Some((charged, charged_window)) if charged_window == s.window_start => {
                // Correct the full charge made on expiry in this same window.
                s.spent = s.spent.saturating_add(actual).saturating_sub(charged);
                s.overshoot = s.overshoot.saturating_add(overshoot);
            }
            Some(_) => {
                // The expiry was charged to a window that has since turned: a refund would
                // lower this window's spend for tokens it never saw, so only the excess over
                // the reservation is charged here.
                s.spent = s.spent.saturating_add(overshoot);
                s.overshoot = s.overshoot.saturating_add(overshoot);
            }
        }
        self.keys.put(&held.key, s);
        let settlement = Settlement {
            kind,
            reserved: held.amount,
            charged: actual,
            overshoot,
            duplicate: false,
        };
        let window_start = s.window_start;
        if let Some(h) = self.reservations.get_mut(id) {
            h.phase = Phase::Settled {
                settlement,
                window_start,
                forget_at: now.saturating_add(self.config.settled_ttl),
            };
        }
        Ok(settlement)
    }

    /// Open reservations. O(reservations): for metrics and tests, not the request path.
    pub fn open_reservations(&self) -> usize {
        self.reservations
            .values()
            .filter(|h| matches!(h.phase, Phase::Open { .. }))
            .count()
    }

    /// The stored state of `key`, not rolled to `now` (for tests and backend migration).
    pub fn state(&self, key: &str) -> Option<BudgetState> {
        self.keys.get(key).copied()
    }

    /// Applies expiries and forgets old settlements, a bounded number of slots per call.
    fn sweep(&mut self, now: Nanos) {
        let Self {
            config,
            keys,
            reservations,
        } = self;
        let window = config.window;
        let settled_ttl = config.settled_ttl;
        reservations.sweep(SWEEP_STEP, |h| match h.phase {
            Phase::Open { expires_at } if expires_at <= now => {
                let mut ws = window_start(window, now);
                if let Some(s) = keys.get_mut(&h.key) {
                    let mut rolled = roll(window, Some(*s), now);
                    rolled.reserved = rolled.reserved.saturating_sub(h.amount);
                    rolled.spent = rolled.spent.saturating_add(h.amount);
                    ws = rolled.window_start;
                    *s = rolled;
                }
                h.phase = Phase::Settled {
                    window_start: ws,
                    settlement: Settlement {
                        kind: SettleKind::Expired,
                        reserved: h.amount,
                        charged: h.amount,
                        overshoot: 0,
                        duplicate: false,
                    },
                    forget_at: now.saturating_add(settled_ttl),
                };
                false
            }
            Phase::Open { .. } => false,
            Phase::Settled { forget_at, .. } => forget_at <= now,
        });
        keys.sweep(SWEEP_STEP, |s| {
            s.reserved == 0
                && match window {
                    // A window that has turned with nothing reserved is a fresh state.
                    Some(w) => s.window_start.saturating_add(w) <= now,
                    None => s.spent == 0 && s.overshoot == 0,
                }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Nanos = Nanos::from_secs(60);

    /// 1,000 tokens per minute.
    fn tpm() -> TokenBudget {
        TokenBudget::new(BudgetConfig::windowed(1_000, MIN)).unwrap()
    }

    /// `(spent, reserved, overshoot, remaining)` of key "t" at `now`.
    fn check(b: &TokenBudget, now: Nanos, expected: (u64, u64, u64, u64)) {
        let u = b.usage("t", now);
        assert_eq!(
            (u.spent, u.reserved, u.overshoot, u.remaining),
            expected,
            "{u:?}"
        );
    }

    #[test]
    fn reserve_then_reconcile_releases_the_rest() {
        let mut b = tpm();
        let r = b.reserve("t", "r1", 600, Nanos::ZERO).unwrap();
        assert!(r.granted && !r.duplicate);
        check(&b, Nanos::ZERO, (0, 600, 0, 400));
        let s = b.reconcile("r1", 250, Nanos::from_secs(1)).unwrap();
        assert_eq!((s.reserved, s.charged, s.overshoot), (600, 250, 0));
        check(&b, Nanos::ZERO, (250, 0, 0, 750));
        assert_eq!(b.open_reservations(), 0);
    }

    #[test]
    fn refusal_says_when_the_window_turns() {
        let mut b = tpm();
        b.reserve("t", "r1", 600, Nanos::from_secs(15)).unwrap();
        let r = b.reserve("t", "r2", 500, Nanos::from_secs(15)).unwrap();
        assert!(!r.granted);
        let d = r.denial.unwrap();
        assert_eq!(d.kind, LimitKind::TokensExhausted);
        assert_eq!(d.retry_after, Some(Nanos::from_secs(45)));
        assert_eq!(r.usage.info().unwrap().remaining, 400);
        // A refusal leaves no trace: the id can be reserved once there is room.
        b.cancel("r1", Nanos::from_secs(16)).unwrap();
        assert!(
            b.reserve("t", "r2", 500, Nanos::from_secs(16))
                .unwrap()
                .granted
        );
    }

    #[test]
    fn overshoot_is_charged_and_recorded() {
        let mut b = tpm();
        b.reserve("t", "r1", 500, Nanos::ZERO).unwrap();
        b.reserve("t", "r2", 500, Nanos::ZERO).unwrap();
        let s = b.reconcile("r1", 700, Nanos::ZERO).unwrap();
        assert_eq!(s.overshoot, 200);
        check(&b, Nanos::ZERO, (700, 500, 200, 0));
        // spent + reserved = limit + overshoot.
        assert!(!b.reserve("t", "r3", 1, Nanos::ZERO).unwrap().granted);
    }

    #[test]
    fn settling_is_idempotent() {
        let mut b = tpm();
        b.reserve("t", "r1", 100, Nanos::ZERO).unwrap();
        let dup = b.reserve("t", "r1", 100, Nanos::ZERO).unwrap();
        assert!(dup.granted && dup.duplicate);
        check(&b, Nanos::ZERO, (0, 100, 0, 900));
        let first = b.reconcile("r1", 80, Nanos::ZERO).unwrap();
        let again = b.reconcile("r1", 80, Nanos::ZERO).unwrap();
        assert_eq!(
            again,
            Settlement {
                duplicate: true,
                ..first
            }
        );
        check(&b, Nanos::ZERO, (80, 0, 0, 920));
        let conflict = |id: &str| LimitError::ReservationConflict(id.to_owned());
        assert_eq!(b.reconcile("r1", 90, Nanos::ZERO), Err(conflict("r1")));
        assert_eq!(b.cancel("r1", Nanos::ZERO), Err(conflict("r1")));
        assert_eq!(
            b.reserve("t", "r1", 100, Nanos::ZERO).unwrap_err(),
            conflict("r1")
        );

        b.reserve("t", "r2", 100, Nanos::ZERO).unwrap();
        assert_eq!(
            b.reserve("u", "r2", 100, Nanos::ZERO).unwrap_err(),
            conflict("r2")
        );
        assert_eq!(
            b.reserve("t", "r2", 101, Nanos::ZERO).unwrap_err(),
            conflict("r2")
        );
        assert!(!b.cancel("r2", Nanos::ZERO).unwrap().duplicate);
        assert!(b.cancel("r2", Nanos::ZERO).unwrap().duplicate);
        check(&b, Nanos::ZERO, (80, 0, 0, 920));
        assert_eq!(
            b.reconcile("nope", 1, Nanos::ZERO),
            Err(LimitError::UnknownReservation("nope".into()))
        );
    }

    #[test]
    fn reservations_carry_into_the_next_window() {
        let mut b = tpm();
        b.reserve("t", "r1", 300, Nanos::from_secs(59)).unwrap();
        b.reserve("t", "r0", 600, Nanos::from_secs(59)).unwrap();
        b.reconcile("r0", 600, Nanos::from_secs(59)).unwrap();
        check(&b, Nanos::from_secs(59), (600, 300, 0, 100));
        // New window: spent restarts, the open reservation still holds its tokens.
        check(&b, Nanos::from_secs(60), (0, 300, 0, 700));
        b.reconcile("r1", 300, Nanos::from_secs(61)).unwrap();
        check(&b, Nanos::from_secs(61), (300, 0, 0, 700));
    }

    #[test]
    fn lost_reservations_are_charged_then_corrected_once() {
        let mut b = TokenBudget::new(BudgetConfig {
            reservation_ttl: Nanos::from_secs(10),
            ..BudgetConfig::windowed(1_000, MIN)
        })
        .unwrap();
        b.reserve("t", "lost", 400, Nanos::ZERO).unwrap();
        // The sweep runs a few slots per call; one call past the ttl settles it.
        b.reserve("t", "other", 1, Nanos::from_secs(11)).unwrap();
        assert_eq!(b.open_reservations(), 1);
        check(&b, Nanos::from_secs(11), (400, 1, 0, 599));
        // The late reconcile replaces the full charge with the real one.
        let s = b.reconcile("lost", 100, Nanos::from_secs(12)).unwrap();
        assert_eq!(
            (s.kind, s.charged, s.duplicate),
            (SettleKind::Reconciled, 100, false)
        );
        check(&b, Nanos::from_secs(12), (100, 1, 0, 899));
        assert!(
            b.reconcile("lost", 100, Nanos::from_secs(12))
                .unwrap()
                .duplicate
        );
    }

    #[test]
    fn hard_quota_never_refills_by_waiting() {
        let mut b = TokenBudget::new(BudgetConfig::quota(1_000)).unwrap();
        b.seed_spent("t", 900, Nanos::ZERO);
        let r = b
            .reserve("t", "r1", 200, Nanos::from_secs(86_400 * 40))
            .unwrap();
        assert!(!r.granted);
        assert_eq!(
            r.denial,
            Some(Denial {
                kind: LimitKind::QuotaExceeded,
                retry_after: None
            })
        );
        assert_eq!(r.usage.info(), None);
        assert_eq!(
            b.reserve("t", "r2", 1_001, Nanos::ZERO),
            Err(LimitError::CostExceedsCapacity {
                cost: 1_001,
                capacity: 1_000
            })
        );
    }

    #[test]
    fn idle_keys_are_swept() {
        let mut b = tpm();
        for i in 0..20 {
            let id = format!("r{i}");
            b.reserve(&format!("k{i}"), &id, 10, Nanos::ZERO).unwrap();
            b.reconcile(&id, 10, Nanos::ZERO).unwrap();
        }
        // Past the window and the settled ttl, every call sweeps a few slots.
        let later = Nanos::from_secs(3_600);
        for _ in 0..40 {
            b.usage("k0", later);
            b.reserve("hot", "h", 1, later).unwrap();
        }
        assert_eq!(b.state("k3"), None);
        assert!(b.state("hot").is_some());
    }
}
