//! The weighted rollout of a new deployment, after Argo Rollouts' and
//! Flagger's canary steps: analysis before any traffic, then a share of
//! the route's traffic stepped up while the canary stays healthy, and
//! rolled back to zero the moment it drifts.
//!
//! ```text
//!            clean, judged              clean, judged, step_every passed
//! Analysing ──────────────▶ Stepping(start) ──────────▶ Stepping(+step) … ──▶ Promoted
//!     │                        │
//!     └── drift ──▶ RolledBack ◀┘ drift      (rollback_on_drift)
//! ```
//!
//! `Analysing` sends the new deployment no user traffic: its first canary
//! run must pass before a user request reaches it. `RolledBack` and
//! `Promoted` are terminal: a rolled-back deployment never comes back by
//! itself (no flapping); a changed deployment (new identity on reload)
//! starts a new rollout. With `rollback_on_drift = false` a drift holds the
//! rollout where it is (and alerts) instead.
//!
//! The share is realised by the caller (the gateway draws `p` % of the
//! route's first attempts for the canary before load balancing; 0 % takes
//! it out of the route).
//!
//! Must not: read the clock (`now` is passed in) or decide drift (the
//! caller passes the drift verdict of [`crate::evaluate`]).

use crate::Nanos;

/// How a rollout moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutSpec {
    /// Share of traffic after the first clean analysis, percent (1..=100).
    pub start_pct: u32,
    /// Added per step, percent (1..=100).
    pub step_pct: u32,
    /// Least time between two steps.
    pub step_every: Nanos,
    /// Drift sets the share to 0 for good (else it holds the rollout).
    pub rollback_on_drift: bool,
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the first clean, judged canary run; no user traffic.
    Analysing,
    /// Serving `pct` % of the route's traffic since `since`.
    Stepping {
        /// Current share, percent.
        pct: u32,
        /// When this share was set.
        #[serde(skip)]
        since: Nanos,
    },
    /// At full (configured) weight: an established deployment now.
    Promoted,
    /// Drifted during the rollout: no user traffic.
    RolledBack {
        /// Why (the drift findings).
        reason: String,
    },
}

/// A change of phase, for audit and alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The share went from `from` % to `to` % (100: promoted).
    Stepped {
        /// Previous share.
        from: u32,
        /// New share.
        to: u32,
    },
    /// Set to 0 after drift.
    RolledBack {
        /// The share it had.
        from: u32,
        /// Why.
        reason: String,
    },
}

/// One deployment's rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    spec: RolloutSpec,
    phase: Phase,
}

impl Rollout {
    /// A rollout at its start (analysis, no traffic).
    pub fn new(spec: RolloutSpec) -> Self {
        Self {
            spec: RolloutSpec {
                start_pct: spec.start_pct.clamp(1, 100),
                step_pct: spec.step_pct.clamp(1, 100),
                ..spec
            },
            phase: Phase::Analysing,
        }
    }

    /// The phase now.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The canary's share of the route's traffic, percent; `None` once
    /// promoted (the configured weights apply).
    pub fn traffic_pct(&self) -> Option<u32> {
        match self.phase {
            Phase::Analysing | Phase::RolledBack { .. } => Some(0),
            Phase::Stepping { pct, .. } => Some(pct),
            Phase::Promoted => None,
        }
    }

    /// Takes the verdict of a canary run that ended at `now`: `drift` is
    /// the findings' summary when it drifted, `judged` whether the window
    /// held enough results to vouch for it.
    pub fn observe(&mut self, now: Nanos, drift: Option<&str>, judged: bool) -> Option<Transition> {
        let from = self.traffic_pct().unwrap_or(100);
        match (&self.phase, drift) {
            (Phase::Promoted | Phase::RolledBack { .. }, _) => None,
            (_, Some(reason)) if self.spec.rollback_on_drift => {
                self.phase = Phase::RolledBack {
                    reason: reason.to_owned(),
                };
                Some(Transition::RolledBack {
                    from,
                    reason: reason.to_owned(),
                })
            }
            // Drift without rollback holds the rollout where it is.
            (_, Some(_)) => None,
            (_, None) if !judged => None,
            (Phase::Analysing, None) => Some(self.set(self.spec.start_pct, now, from)),
            (Phase::Stepping { pct, since }, None) => {
                if now.saturating_sub(*since) < self.spec.step_every {
                    return None;
                }
                let to = pct.saturating_add(self.spec.step_pct).min(100);
                Some(self.set(to, now, from))
            }
        }
    }

    fn set(&mut self, to: u32, now: Nanos, from: u32) -> Transition {
        self.phase = if to >= 100 {
            Phase::Promoted
        } else {
            Phase::Stepping {
                pct: to,
                since: now,
            }
        };
        Transition::Stepped {
            from,
            to: to.min(100),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rollback_on_drift: bool) -> RolloutSpec {
        RolloutSpec {
            start_pct: 5,
            step_pct: 40,
            step_every: 100,
            rollback_on_drift,
        }
    }

    /// Drives a rollout through `(now, drift, judged)` events and checks the
    /// share after each.
    fn check(rollback: bool, events: &[(Nanos, Option<&str>, bool, Option<u32>)]) {
        let mut r = Rollout::new(spec(rollback));
        assert_eq!(r.traffic_pct(), Some(0));
        for (now, drift, judged, want) in events {
            r.observe(*now, *drift, *judged);
            assert_eq!(r.traffic_pct(), *want, "at {now}: {:?}", r.phase());
        }
    }

    #[test]
    fn a_healthy_rollout_steps_up_to_full_weight() {
        check(
            true,
            &[
                (0, None, false, Some(0)), // not judged yet: no traffic
                (10, None, true, Some(5)),
                (50, None, true, Some(5)), // too early for a step
                (110, None, true, Some(45)),
                (210, None, true, Some(85)),
                (310, None, true, None), // promoted: configured weights
                (400, Some("late drift"), true, None),
            ],
        );
    }

    #[test]
    fn drift_rolls_back_for_good() {
        check(
            true,
            &[
                (10, None, true, Some(5)),
                (20, Some("answer pass rate 0.2"), true, Some(0)),
                (500, None, true, Some(0)),
            ],
        );
        // Drift in analysis: never any traffic.
        check(
            true,
            &[(0, Some("x"), false, Some(0)), (999, None, true, Some(0))],
        );
        let mut r = Rollout::new(spec(true));
        r.observe(10, None, true);
        let t = r.observe(20, Some("why"), true);
        assert_eq!(
            t,
            Some(Transition::RolledBack {
                from: 5,
                reason: "why".into()
            })
        );
    }

    #[test]
    fn without_rollback_drift_holds_the_rollout() {
        check(
            false,
            &[
                (10, None, true, Some(5)),
                (200, Some("x"), true, Some(5)),
                (300, None, true, Some(45)),
            ],
        );
    }
}
