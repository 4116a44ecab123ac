//! Calibration: the flag and block thresholds from out-of-fold benign user scores, and the
//! logit offset that keeps every pool of real clean documents at that flag rate or below on
//! data channels.

use palisade_detect::Thresholds;

use super::dataset::Prepared;
use crate::synth::Kind;

/// The clean-document sources the data-channel offset is calibrated on.
const REAL_DOCUMENT_POOLS: &[&str] = &["train/benign_context", super::dataset::CLEAN_DOCS_SOURCE];

/// The calibrated operating point, and the benign score pools the report measures against.
pub(super) struct Calibration {
    pub thresholds: Thresholds,
    /// Added to the logit of data-channel scores (never positive).
    pub data_offset: f32,
    /// Out-of-fold scores of benign user prompts.
    pub benign_user: Vec<f32>,
    /// Out-of-fold scores of every clean document, after the data-channel offset.
    pub benign_context: Vec<f32>,
}

/// Calibrates on the out-of-fold `scores` (one per prepared example) and applies the
/// data-channel offset to them in place.
pub(super) fn calibrate(prepared: &[Prepared], scores: &mut [f32]) -> Calibration {
    let benign_user: Vec<f32> = prepared
        .iter()
        .zip(scores.iter())
        .filter(|(x, _)| x.ex.kind == Kind::BenignUser)
        .map(|(_, &s)| s)
        .collect();
    let flag = quantile(&benign_user, 0.99).clamp(0.05, 0.95);
    let block = quantile(&benign_user, 0.999)
        .max(flag + 0.5 * (1.0 - flag))
        .clamp(flag, 0.99);
    // Shift data channels so each pool of real clean documents (train's own, and the Debian
    // documentation chunks full of legitimate imperatives) is flagged at most 1%: the
    // strictest pool sets the offset. Synthetic clean documents stay out: templated prose is
    // easy, and pooling it in once let real documents reach ~3% where 1% was meant.
    let ctx_q = REAL_DOCUMENT_POOLS
        .iter()
        .filter_map(|&pool| {
            let s: Vec<f32> = prepared
                .iter()
                .zip(scores.iter())
                .filter(|(x, _)| x.ex.kind == Kind::BenignContext && x.ex.source == pool)
                .map(|(_, &s)| s)
                .collect();
            // A pool absent from this training run (no corpus given) does not vote.
            (!s.is_empty()).then(|| quantile(&s, 0.99))
        })
        .fold(0.0f32, f32::max)
        .clamp(1e-4, 1.0 - 1e-4);
    let data_offset = (logit(flag) - logit(ctx_q)).min(0.0);
    for (x, s) in prepared.iter().zip(scores.iter_mut()) {
        if x.ex.channel.is_data() {
            *s = sigmoid(logit(*s) + data_offset);
        }
    }
    let benign_context: Vec<f32> = prepared
        .iter()
        .zip(scores.iter())
        .filter(|(x, _)| x.ex.kind == Kind::BenignContext)
        .map(|(_, &s)| s)
        .collect();
    Calibration {
        thresholds: Thresholds { flag, block },
        data_offset,
        benign_user,
        benign_context,
    }
}

/// The `q` quantile (nearest rank) of `xs`; 0.5 when empty.
fn quantile(xs: &[f32], q: f64) -> f32 {
    let mut v = xs.to_vec();
    v.sort_by(f32::total_cmp);
    if v.is_empty() {
        return 0.5;
    }
    v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)]
}

fn logit(p: f32) -> f32 {
    (p / (1.0 - p)).ln()
}

pub(super) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}
