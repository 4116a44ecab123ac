//! The escalation ladder for repeat offenders: warn, then slow down, then block.
//!
//! Each key (an API key, a tenant, a client address) carries an *offence score*. Every
//! offence (a request blocked by a detector, a rate-limit hit, an auth failure) adds points,
//! and the score decays exponentially with a configured half-life, so an offender who stops
//! climbs back down without anyone resetting anything. The rung is read from the decayed
//! score: at `warn_at` the gateway warns (a header, a log line), at `slow_at` it adds a
//! delay before serving, and an offence that lifts the score to `block_at` blocks the key
//! for `block_for`.
//!
//! Scores are `f64`: unlike the rate limits, nothing here needs exactness, only monotonic
//! decay that does not depend on how often it is observed (decay is computed from the
//! stored time on read, never written back by reads). Redis Lua numbers are doubles, so a
//! shared backend can apply the same formula.

use serde::{Deserialize, Serialize};

use crate::decision::{Decision, Denial, LimitKind};
use crate::error::LimitError;
use crate::store::{KeyedStore, SWEEP_STEP};
use crate::time::Nanos;

/// Thresholds and timings of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LadderConfig {
    /// Score at which requests are served with a warning.
    pub warn_at: f64,
    /// Score at which requests are served after `slow_delay`.
    pub slow_at: f64,
    /// Score which, reached by an offence, blocks the key for `block_for`.
    pub block_at: f64,
    /// Time for a score to halve.
    pub half_life: Nanos,
    /// Delay added on the slow rung.
    pub slow_delay: Nanos,
    /// How long a block lasts.
    pub block_for: Nanos,
}

impl Default for LadderConfig {
    /// Rationale: one offence is a warning (honest clients trip a detector now and then);
    /// three within a few minutes earn a two-second delay, which costs a human little and a
    /// script that probes in a loop a lot; five block the key for fifteen minutes. A
    /// ten-minute half-life forgets a single offence within the hour.
    fn default() -> Self {
        Self {
            warn_at: 1.0,
            slow_at: 3.0,
            block_at: 5.0,
            half_life: Nanos::from_secs(10 * 60),
            slow_delay: Nanos::from_secs(2),
            block_for: Nanos::from_secs(15 * 60),
        }
    }
}

/// A key's ladder state. `Copy`, like every backend state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OffenceState {
    /// The score as of `at`.
    pub score: f64,
    /// When `score` was last written.
    pub at: Nanos,
    /// Blocked until this time (zero when never blocked).
    pub blocked_until: Nanos,
}

/// A rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rung {
    /// No action.
    Clear,
    /// Serve, with a warning.
    Warn,
    /// Serve after a delay.
    Slow,
    /// Refuse.
    Block,
}

/// Where a key stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    /// The rung.
    pub rung: Rung,
    /// The decayed score now.
    pub score: f64,
    /// What the admission path should do.
    pub decision: Decision,
}

/// `score` decayed over `dt` with half-life `half_life`. Never increases; exact halving at
/// one half-life up to rounding.
pub fn decay(score: f64, dt: Nanos, half_life: Nanos) -> f64 {
    // Converting u64 to f64 loses at most 1e-16 relative precision: irrelevant here.
    let halvings = dt.get() as f64 / half_life.get() as f64;
    score * (-halvings).exp2()
}

/// Per-key offence scores with one configuration.
#[derive(Debug)]
pub struct EscalationLadder {
    config: LadderConfig,
    store: KeyedStore<OffenceState>,
}

impl EscalationLadder {
    /// Scores below this fraction of `warn_at` are forgotten by the sweep. Rationale: such
    /// a score needs about ten more half-lives to matter to no threshold at all; forgetting
    /// it can make a later threshold crossing happen at most 0.1% of `warn_at` later.
    pub const FORGET_FRACTION: f64 = 1.0 / 1024.0;

    /// An empty ladder.
    ///
    /// # Errors
    /// [`LimitError::InvalidConfig`] unless `0 < warn_at <= slow_at <= block_at` (all
    /// finite) and the half-life is positive.
    pub fn new(config: LadderConfig) -> Result<Self, LimitError> {
        let LadderConfig {
            warn_at,
            slow_at,
            block_at,
            ..
        } = config;
        let ordered = warn_at > 0.0 && warn_at <= slow_at && slow_at <= block_at;
        if !(ordered && block_at.is_finite()) {
            return Err(LimitError::InvalidConfig(
                "ladder thresholds must satisfy 0 < warn_at <= slow_at <= block_at",
            ));
        }
        if config.half_life == Nanos::ZERO {
            return Err(LimitError::InvalidConfig(
                "ladder half-life must be positive",
            ));
        }
        Ok(Self {
            config,
            store: KeyedStore::default(),
        })
    }

    /// The configuration.
    pub const fn config(&self) -> LadderConfig {
        self.config
    }

    fn score_at(&self, s: &OffenceState, now: Nanos) -> f64 {
        decay(s.score, now.saturating_sub(s.at), self.config.half_life)
    }

    fn standing_of(&self, s: Option<OffenceState>, now: Nanos) -> Standing {
        let Some(s) = s else {
            return Standing {
                rung: Rung::Clear,
                score: 0.0,
                decision: Decision::Allow,
            };
        };
        let score = self.score_at(&s, now);
        let c = &self.config;
        let (rung, decision) = if s.blocked_until > now {
            let denial = Denial {
                kind: LimitKind::BlockedOffender,
                retry_after: Some(s.blocked_until.saturating_sub(now)),
            };
            (Rung::Block, Decision::Deny(denial))
        } else if score >= c.slow_at {
            // Also a score still at `block_at` after the block ran out: a block starts only
            // with a new offence.
            (Rung::Slow, Decision::Delay(c.slow_delay))
        } else if score >= c.warn_at {
            (Rung::Warn, Decision::Allow)
        } else {
            (Rung::Clear, Decision::Allow)
        };
        Standing {
            rung,
            score,
            decision,
        }
    }

    /// Where `key` stands at `now`. Reads only: decay is computed, not stored.
    pub fn standing(&self, key: &str, now: Nanos) -> Standing {
        self.standing_of(self.store.get(key).copied(), now)
    }

    /// Records an offence worth `points` for `key` at `now` and returns the new standing.
    pub fn offend(&mut self, key: &str, points: u32, now: Nanos) -> Standing {
        self.sweep(now);
        let prev = self.store.get(key).copied();
        let decayed = prev.map_or(0.0, |s| self.score_at(&s, now));
        let score = decayed + f64::from(points);
        let mut blocked_until = prev.map_or(Nanos::ZERO, |s| s.blocked_until);
        if score >= self.config.block_at {
            blocked_until = blocked_until.max(now.saturating_add(self.config.block_for));
        }
        let state = OffenceState {
            score,
            // A clock that stepped back must not make the score decay twice.
            at: prev.map_or(now, |s| s.at.max(now)),
            blocked_until,
        };
        self.store.put(key, state);
        self.standing_of(Some(state), now)
    }

    /// Keys held, including idle ones not yet swept.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.store.len() == 0
    }

    fn sweep(&mut self, now: Nanos) {
        let forget_below = self.config.warn_at * Self::FORGET_FRACTION;
        let half_life = self.config.half_life;
        self.store.sweep(SWEEP_STEP, |s| {
            s.blocked_until <= now
                && decay(s.score, now.saturating_sub(s.at), half_life) < forget_below
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000_000_000;

    /// Runs `(minute, points offended (0 = just look), expected rung)` against one key with
    /// the default config (warn 1, slow 3, block 5, half-life 10 min, block 15 min).
    fn check(steps: &[(u64, u32, Rung)]) {
        let mut l = EscalationLadder::new(LadderConfig::default()).unwrap();
        for &(minute, points, rung) in steps {
            let now = Nanos(minute * MIN);
            let s = if points > 0 {
                l.offend("k", points, now)
            } else {
                l.standing("k", now)
            };
            assert_eq!(s.rung, rung, "minute {minute}: {s:?}");
        }
    }

    #[test]
    fn climbs_and_decays() {
        check(&[
            (0, 0, Rung::Clear),
            (0, 1, Rung::Warn),
            (0, 1, Rung::Warn),
            (0, 1, Rung::Slow),
            // Score 3 halves to 1.5 after ten minutes.
            (10, 0, Rung::Warn),
            // And to 0.75 after twenty.
            (20, 0, Rung::Clear),
        ]);
    }

    #[test]
    fn block_lasts_block_for_then_steps_down() {
        check(&[
            (0, 5, Rung::Block),
            (14, 0, Rung::Block),
            // Fifteen minutes later the block ends; 5 * 2^-1.5 = 1.77 is still a warning.
            (15, 0, Rung::Warn),
            (60, 0, Rung::Clear),
        ]);
    }

    #[test]
    fn block_decision_and_slow_delay() {
        let mut l = EscalationLadder::new(LadderConfig::default()).unwrap();
        let s = l.offend("k", 3, Nanos::ZERO);
        assert_eq!(s.decision, Decision::Delay(Nanos::from_secs(2)));
        // A minute later 3 has decayed to 2.80; two more points are not yet a block.
        let s = l.offend("k", 2, Nanos::from_secs(60));
        assert_eq!(s.rung, Rung::Slow);
        let s = l.offend("k", 1, Nanos::from_secs(60));
        match s.decision {
            Decision::Deny(d) => {
                assert_eq!(d.kind, LimitKind::BlockedOffender);
                assert_eq!(d.retry_after, Some(Nanos::from_secs(15 * 60)));
            }
            other => panic!("expected a block, got {other:?}"),
        }
    }

    #[test]
    fn invalid_thresholds() {
        fn check(warn_at: f64, slow_at: f64, block_at: f64) {
            let c = LadderConfig {
                warn_at,
                slow_at,
                block_at,
                ..LadderConfig::default()
            };
            assert!(EscalationLadder::new(c).is_err(), "{c:?}");
        }
        check(0.0, 1.0, 2.0);
        check(2.0, 1.0, 3.0);
        check(1.0, 3.0, 2.0);
        check(1.0, 2.0, f64::INFINITY);
        check(f64::NAN, 2.0, 3.0);
    }

    #[test]
    fn forgotten_scores_are_swept() {
        let mut l = EscalationLadder::new(LadderConfig::default()).unwrap();
        for i in 0..10 {
            l.offend(&format!("k{i}"), 1, Nanos::ZERO);
        }
        // Eleven half-lives later every score is below 1/1024.
        for _ in 0..10 {
            l.offend("fresh", 1, Nanos(110 * MIN));
        }
        assert_eq!(l.len(), 1);
    }
}
