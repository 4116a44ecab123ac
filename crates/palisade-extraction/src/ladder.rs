//! The action ladder: observe → flag → slow → reverify → block, read from a
//! key's *extraction score*. Every evaluation adds one point per detector
//! that fired; the score halves every `half_life_ms`, so a key that stops
//! looking like an extractor climbs down on its own, and one noisy window
//! never blocks anyone (the same shape as `palisade-limits`' offence
//! ladder).
//!
//! Must not: read the clock; `now_ms` comes from the caller.

use serde::{Deserialize, Serialize};

/// Thresholds and timings of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LadderConfig {
    /// Score at which the key is flagged (logged, audited, visible to a hunt).
    pub flag_at: f64,
    /// Score at which its requests are delayed by `slow_delay_ms`.
    pub slow_at: f64,
    /// Score at which it must re-verify (403 until the score decays).
    pub reverify_at: f64,
    /// Score at which it is blocked (429 until the score decays).
    pub block_at: f64,
    /// Time for the score to halve.
    pub half_life_ms: u64,
    /// Delay on the slow rung (never past the request's deadline).
    pub slow_delay_ms: u64,
}

impl Default for LadderConfig {
    /// Rationale: a flag needs two detector firings (one may be noise); a
    /// block needs eight, i.e. several windows of consistent evidence. A
    /// one-hour half-life forgets a bad afternoon by the next morning but
    /// keeps a patient extractor (one query a minute) climbing.
    fn default() -> Self {
        Self {
            flag_at: 2.0,
            slow_at: 4.0,
            reverify_at: 6.0,
            block_at: 8.0,
            half_life_ms: 60 * 60 * 1000,
            slow_delay_ms: 1500,
        }
    }
}

/// A rung.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Record only.
    #[default]
    Observe,
    /// Flag for an operator.
    Flag,
    /// Delay each request.
    Slow,
    /// Refuse until the key re-verifies (403).
    Reverify,
    /// Refuse (429).
    Block,
}

impl Action {
    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Observe => "observe",
            Self::Flag => "flag",
            Self::Slow => "slow",
            Self::Reverify => "reverify",
            Self::Block => "block",
        }
    }

    /// Parses a stable code.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "observe" => Self::Observe,
            "flag" => Self::Flag,
            "slow" => Self::Slow,
            "reverify" => Self::Reverify,
            "block" => Self::Block,
            _ => return None,
        })
    }
}

/// A key's score as of `at_ms`. `Copy`, so a shared store can hold it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Standing {
    /// The score when last written.
    pub score: f64,
    /// When it was written, Unix milliseconds.
    pub at_ms: i64,
}

impl Standing {
    /// The decayed score at `now_ms` (never grows; a clock going backwards
    /// is treated as no time passing).
    pub fn score_at(&self, now_ms: i64, config: &LadderConfig) -> f64 {
        let dt = (now_ms - self.at_ms).max(0) as f64;
        let half_life = config.half_life_ms.max(1) as f64;
        self.score * (-dt / half_life * std::f64::consts::LN_2).exp()
    }

    /// Adds `points` at `now_ms`.
    pub fn add(&mut self, points: f64, now_ms: i64, config: &LadderConfig) {
        let now_ms = now_ms.max(self.at_ms);
        self.score = self.score_at(now_ms, config) + points.max(0.0);
        self.at_ms = now_ms;
    }

    /// The rung at `now_ms`.
    pub fn action(&self, now_ms: i64, config: &LadderConfig) -> Action {
        let s = self.score_at(now_ms, config);
        if s >= config.block_at {
            Action::Block
        } else if s >= config.reverify_at {
            Action::Reverify
        } else if s >= config.slow_at {
            Action::Slow
        } else if s >= config.flag_at {
            Action::Flag
        } else {
            Action::Observe
        }
    }

    /// Seconds until the score decays below the threshold of `action`
    /// (rounded up, at least 1): the `Retry-After` of a refusal.
    pub fn retry_after_secs(&self, action: Action, now_ms: i64, config: &LadderConfig) -> u64 {
        let threshold = match action {
            Action::Block => config.block_at,
            Action::Reverify => config.reverify_at,
            Action::Slow => config.slow_at,
            Action::Flag => config.flag_at,
            Action::Observe => return 0,
        };
        let s = self.score_at(now_ms, config);
        if s < threshold || threshold <= 0.0 {
            return 0;
        }
        let ms = config.half_life_ms as f64 * (s / threshold).log2();
        ((ms / 1000.0).ceil() as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let c = LadderConfig::default();
        let cases = [
            (0.0, Action::Observe),
            (1.99, Action::Observe),
            (2.0, Action::Flag),
            (4.0, Action::Slow),
            (6.5, Action::Reverify),
            (8.0, Action::Block),
            (100.0, Action::Block),
        ];
        for (score, want) in cases {
            let s = Standing { score, at_ms: 1000 };
            assert_eq!(s.action(1000, &c), want, "score {score}");
        }
    }

    #[test]
    fn decays_by_half_per_half_life_and_retry_after_matches() {
        let c = LadderConfig::default();
        let mut s = Standing::default();
        s.add(16.0, 0, &c);
        assert_eq!(s.action(0, &c), Action::Block);
        let hl = c.half_life_ms as i64;
        assert!((s.score_at(hl, &c) - 8.0).abs() < 1e-9);
        assert_eq!(
            s.retry_after_secs(Action::Block, 0, &c),
            c.half_life_ms / 1000
        );
        assert_eq!(s.action(hl + 1, &c), Action::Reverify);
        assert_eq!(s.action(3 * hl, &c), Action::Flag);
        // The clock going backwards neither grows the score nor panics.
        assert!((s.score_at(-5, &c) - 16.0).abs() < 1e-9);
    }
}
