//! The cascade: the microsecond first stage decides the clear cases, a slower second stage
//! (a fine-tuned encoder, see `palisade-encoder`) is consulted only for inputs whose
//! first-stage score lies in the uncertain band, and its opinion is mapped onto the first
//! stage's calibrated score scale.
//!
//! This module holds the contract ([`SecondStage`]) and the arithmetic; it must not know how
//! a second stage computes its logit, load files or keep state between scans.

use std::fmt;

use crate::types::{Channel, Thresholds};

/// Second-stage logits that correspond to the first stage's calibrated flag and block
/// thresholds on one channel group (measured on benign rows the encoder never trained on).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogitScale {
    /// Logit at which the second stage alone would flag (its benign 99th percentile).
    pub flag: f32,
    /// Logit at which the second stage alone would block (above every benign row seen).
    pub block: f32,
}

/// Where the second stage is consulted and how its logit joins the first stage's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CascadeCalibration {
    /// First-stage score from which a `user`/`system` input goes to the second stage.
    pub consult_user: f32,
    /// First-stage score from which a `retrieved`/`tool_output` input goes to the second stage.
    pub consult_data: f32,
    /// Logit scale for `user`/`system` inputs.
    pub user: LogitScale,
    /// Logit scale for `retrieved`/`tool_output` inputs.
    pub data: LogitScale,
}

impl CascadeCalibration {
    /// Whether an input with first-stage score `s1` on `channel` is sent to the second stage:
    /// inside the band from the consult score up to (not including) a block.
    pub fn consults(&self, channel: Channel, s1: f32, block: f32) -> bool {
        let from = if channel.is_data() {
            self.consult_data
        } else {
            self.consult_user
        };
        s1 >= from && s1 < block
    }

    /// The scale for a channel.
    pub fn scale(&self, channel: Channel) -> LogitScale {
        if channel.is_data() {
            self.data
        } else {
            self.user
        }
    }
}

/// Why a second stage gave no opinion. The scan then keeps the first stage's score.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("second stage failed: {0}")]
pub struct SecondStageError(pub String);

/// A slower, stronger scorer consulted for uncertain inputs. Implementations must be pure
/// computations (no I/O per call) and `Send + Sync`.
pub trait SecondStage: Send + Sync + fmt::Debug {
    /// The attack logit of `text` arriving on `channel`.
    fn attack_logit(&self, channel: Channel, text: &str) -> Result<f32, SecondStageError>;
    /// Where to consult it and how to read its logit.
    fn calibration(&self) -> CascadeCalibration;
    /// Version of the second stage's weights, for audit.
    fn version(&self) -> &str;
}

/// The second stage's logit as a score on the first stage's calibrated scale: the flag
/// logit maps to `t.flag`, the block logit to `t.block`, linear in between; below the flag
/// logit it decays towards 0, above the block logit it approaches 1. Monotone, continuous.
pub fn mapped_score(logit: f32, scale: LogitScale, t: Thresholds) -> f32 {
    if !logit.is_finite() {
        return 0.0;
    }
    let span = (scale.block - scale.flag).max(1e-3);
    if logit < scale.flag {
        t.flag * (-(scale.flag - logit) / span).exp()
    } else if logit <= scale.block {
        t.flag + (t.block - t.flag) * (logit - scale.flag) / span
    } else {
        1.0 - (1.0 - t.block) * (-(logit - scale.block) / span).exp()
    }
}

/// The cascade's score: the larger of the first stage's score and the second stage's mapped
/// score. A second stage can raise a verdict, never lower one: a known attack shape the
/// first stage flags stays flagged whatever the encoder thinks.
pub fn combine(s1: f32, logit: f32, scale: LogitScale, t: Thresholds) -> f32 {
    s1.max(mapped_score(logit, scale, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        flag: 0.86,
        block: 0.97,
    };
    const S: LogitScale = LogitScale {
        flag: 1.0,
        block: 3.0,
    };

    #[test]
    fn flag_and_block_logits_land_on_the_thresholds() {
        assert!((mapped_score(1.0, S, T) - T.flag).abs() < 1e-6);
        assert!((mapped_score(3.0, S, T) - T.block).abs() < 1e-6);
        assert!(mapped_score(0.99, S, T) < T.flag);
        assert!(mapped_score(3.01, S, T) > T.block);
        assert!(mapped_score(50.0, S, T) <= 1.0);
        assert_eq!(mapped_score(f32::NAN, S, T), 0.0);
    }

    #[test]
    fn the_mapping_is_monotone() {
        let mut last = -1.0;
        for i in -400..400 {
            let s = mapped_score(i as f32 / 20.0, S, T);
            assert!(s >= last, "not monotone at {i}");
            assert!((0.0..=1.0).contains(&s));
            last = s;
        }
    }

    #[test]
    fn a_second_stage_only_raises() {
        assert_eq!(combine(0.9, -10.0, S, T), 0.9);
        assert!(combine(0.5, 2.0, S, T) > T.flag);
    }

    #[test]
    fn the_band_excludes_clear_cases() {
        let c = CascadeCalibration {
            consult_user: 0.3,
            consult_data: 0.2,
            user: S,
            data: S,
        };
        assert!(!c.consults(Channel::User, 0.29, T.block));
        assert!(c.consults(Channel::User, 0.3, T.block));
        assert!(c.consults(Channel::Retrieved, 0.25, T.block));
        assert!(!c.consults(Channel::User, T.block, T.block));
    }
}
