//! Out-of-fold first-stage scores for every training example, for calibrating what sits on
//! top of the first stage (the cascade's consult band and the second stage's flag logit).
//!
//! A training row scanned by the shipped artifact gets an *in-sample* score: its heads saw
//! the row, so benign rows score lower than new benign text does. These scores instead come
//! from the cross-validation heads that never saw the row (the same final layers, data
//! offset and rule floor the artifact applies), so their distribution is what a new source
//! gets. This module computes; it does not write files or train the artifact.

use std::path::Path;

use palisade_detect::rules::ATTACK_RULES;
use palisade_detect::{normalize, Thresholds};

use super::calibration::{calibrate, sigmoid};
use super::dataset::{prepare_all, training_prefix, Prepared};
use super::stacking::fit_final_layers;
use super::{training_examples, TrainOptions};
use crate::synth::Example;
use crate::EvalError;

/// One example's out-of-fold first-stage scores.
#[derive(Debug, Clone)]
pub struct OutOfFoldScore {
    /// The example, as [`training_examples`] lists it (same order).
    pub example: Example,
    /// The first stage's fold of the example (by source family).
    pub fold: usize,
    /// The score training calibrated on: folds by source family for user/system rows, by
    /// text hash for data rows.
    pub score: f32,
    /// Folds by source family for every row: heads that never saw the row's source.
    pub score_grouped: f32,
}

/// The out-of-fold scores and the operating point they were calibrated to.
#[derive(Debug, Clone)]
pub struct OutOfFoldScores {
    /// One per training example, in training order.
    pub rows: Vec<OutOfFoldScore>,
    /// The thresholds training derives (equal to the artifact's for the same inputs).
    pub thresholds: Thresholds,
    /// The data-channel logit offset training derives.
    pub data_offset: f32,
}

/// Runs training's cross-validation and stacking (not the final retraining) and returns
/// every example's out-of-fold score. Same inputs as [`super::run_train_with`]; reads only
/// `train/` (and the clean-document corpus when asked), never `eval/`.
pub fn out_of_fold_scores(
    train_dir: &Path,
    seed: u64,
    options: &TrainOptions,
) -> Result<OutOfFoldScores, EvalError> {
    let prepared = prepare_all(training_examples(train_dir, seed, options)?);
    let mut layers = fit_final_layers(&prepared, seed);
    let cal = calibrate(&prepared, &mut layers.scores);
    let t = cal.thresholds;
    let rows = prepared
        .into_iter()
        .zip(layers.scores)
        .zip(layers.scores_grouped)
        .map(|((x, score), grouped)| {
            let grouped = if x.ex.channel.is_data() {
                sigmoid(logit(grouped) + cal.data_offset)
            } else {
                grouped
            };
            let floor = rule_floor(&x, t);
            OutOfFoldScore {
                fold: x.fold,
                score: score.max(floor),
                score_grouped: grouped.max(floor),
                example: x.ex,
            }
        })
        .collect();
    Ok(OutOfFoldScores {
        rows,
        thresholds: t,
        data_offset: cal.data_offset,
    })
}

/// The detector's floor for a high-precision rule hit or smuggled characters (halfway between
/// flag and block; see `Detector::analyze`), or 0.
fn rule_floor(x: &Prepared, t: Thresholds) -> f32 {
    let rule = x.signals.rules.iter().any(|&i| ATTACK_RULES[i].floor);
    let smuggled = || {
        normalize(training_prefix(&x.ex.text))
            .reasons
            .iter()
            .any(|r| {
                matches!(
                    r.code,
                    "unicode_tag_smuggling" | "variation_selector_smuggling"
                )
            })
    };
    if rule || smuggled() {
        0.5 * (t.flag + t.block)
    } else {
        0.0
    }
}

fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-7, 1.0 - 1e-7);
    (p / (1.0 - p)).ln()
}
