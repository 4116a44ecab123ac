//! Stacking: out-of-fold head logits and LM statistics (two fold schemes), and the final
//! logistic layers fitted on them, one for user/system rows and one for data rows.
//!
//! Everything here is deterministic for a seed; the fold schemes and the row weights are
//! part of what the shipped model reproduces from.

use palisade_detect::charlm::LmStats;
use palisade_detect::features::{stage2_vector, STAGE2_DIM, STAGE2_NAMES};
use palisade_detect::model::Stage2;
use palisade_detect::tokenlm::TokStats;

use super::calibration::sigmoid;
use super::dataset::{text_fold, training_prefix, Prepared};
use super::heads::train_heads;
use super::language_model::{lm_text, train_lm};
use super::token_model::train_token_lm;
use super::FOLDS;
use crate::synth::Kind;

/// Fits the final logistic layer (standardized inputs, full-batch gradient descent).
fn fit_stage2(xs: &[[f32; STAGE2_DIM]], ys: &[f32], ws: &[f32]) -> Stage2 {
    let n = xs.len() as f32;
    let mut mean = vec![0.0f32; STAGE2_DIM];
    let mut std = vec![0.0f32; STAGE2_DIM];
    for x in xs {
        for i in 0..STAGE2_DIM {
            mean[i] += x[i] / n;
        }
    }
    for x in xs {
        for i in 0..STAGE2_DIM {
            std[i] += (x[i] - mean[i]).powi(2) / n;
        }
    }
    for s in &mut std {
        *s = s.sqrt().max(1e-3);
    }
    let z: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| (0..STAGE2_DIM).map(|i| (x[i] - mean[i]) / std[i]).collect())
        .collect();
    let wsum: f32 = ws.iter().sum();
    let mut w = vec![0.0f32; STAGE2_DIM];
    let mut b = 0.0f32;
    // Adam on the weighted log loss.
    let (mut m, mut v) = (vec![0.0f32; STAGE2_DIM + 1], vec![0.0f32; STAGE2_DIM + 1]);
    let (b1, b2, lr, l2) = (0.9f32, 0.999f32, 0.05f32, 1e-3f32);
    for step in 1..=1500 {
        let mut g = [0.0f32; STAGE2_DIM + 1];
        for (k, x) in z.iter().enumerate() {
            let s: f32 = b + x.iter().zip(&w).map(|(a, c)| a * c).sum::<f32>();
            let p = 1.0 / (1.0 + (-s).exp());
            let e = (p - ys[k]) * ws[k] / wsum;
            for i in 0..STAGE2_DIM {
                g[i] += e * x[i];
            }
            g[STAGE2_DIM] += e;
        }
        for i in 0..STAGE2_DIM {
            g[i] += l2 * w[i];
        }
        for i in 0..=STAGE2_DIM {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let mh = m[i] / (1.0 - b1.powi(step));
            let vh = v[i] / (1.0 - b2.powi(step));
            let d = lr * mh / (vh.sqrt() + 1e-8);
            if i < STAGE2_DIM {
                w[i] -= d;
            } else {
                b -= d;
            }
        }
    }
    Stage2 {
        names: STAGE2_NAMES.iter().map(|s| s.to_string()).collect(),
        mean,
        std,
        weights: w,
        bias: b,
    }
}

/// Out-of-fold logits of the heads the final layer reads, for one example (the
/// jailbreak-vs-injection head only names the category, it is not a final-layer input).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct HeadLogits {
    pub attack: f32,
    pub harm: f32,
    /// The attack head's highest logit over the text and each of its segments.
    pub best_segment: f32,
}

/// Out-of-fold head logits and LM statistics, indexed like the prepared examples.
pub(super) struct OutOfFold {
    pub heads: Vec<HeadLogits>,
    pub lm: Vec<LmStats>,
    pub tok: Vec<TokStats>,
}

/// Trains heads and LM on all folds but one, `FOLDS` times, and scores each example with
/// the models that did not see its fold.
fn out_of_fold(
    prepared: &[Prepared],
    fold_of: impl Fn(&Prepared) -> usize,
    seed: u64,
) -> OutOfFold {
    let n = prepared.len();
    let mut heads_oof = vec![HeadLogits::default(); n];
    let mut lm_oof = vec![LmStats::default(); n];
    let mut tok_oof = vec![TokStats::default(); n];
    for k in 0..FOLDS {
        let heads = train_heads(
            prepared,
            |i| fold_of(&prepared[i]) != k,
            seed.wrapping_add(k as u64),
        );
        let lm = train_lm(
            prepared
                .iter()
                .filter(|x| fold_of(x) != k && lm_text(x))
                .map(|x| x.ex.text.as_str()),
        );
        let tok = train_token_lm(
            prepared
                .iter()
                .filter(|x| fold_of(x) != k && lm_text(x))
                .map(|x| x.tokens.as_slice()),
        );
        for (i, x) in prepared.iter().enumerate().filter(|(_, x)| fold_of(x) == k) {
            let attack = heads.attack.logit(&x.idx);
            let best_segment = x
                .seg_idx
                .iter()
                .map(|v| heads.attack.logit(v))
                .fold(attack, f32::max);
            heads_oof[i] = HeadLogits {
                attack,
                harm: heads.harm.logit(&x.idx),
                best_segment,
            };
            lm_oof[i] = lm.stats(training_prefix(&x.ex.text));
            tok_oof[i] = tok.stats_of(&x.tokens);
        }
    }
    OutOfFold {
        heads: heads_oof,
        lm: lm_oof,
        tok: tok_oof,
    }
}

/// The two final layers and the out-of-fold probability of every prepared example.
pub(super) struct FinalLayers {
    /// For `user` / `system` rows.
    pub user: Stage2,
    /// For `retrieved` / `tool_output` rows.
    pub data: Stage2,
    /// Out-of-fold probability per prepared example: grouped view for user rows, text-fold
    /// view for data rows.
    pub scores: Vec<f32>,
    /// Out-of-fold probability per prepared example from the grouped view only (heads that
    /// never saw the example's source family), for every channel: what a new source gets.
    /// Not used for training or calibration; exported for the cascade's calibration.
    pub scores_grouped: Vec<f32>,
    /// Out-of-fold token-LM statistics per prepared example (grouped folds), for the report.
    pub tok: Vec<TokStats>,
}

/// Fits the final layers on out-of-fold signals (stacking).
///
/// Out-of-fold head scores and LM stats come from folds by source group: the final layer
/// learns how far the n-gram heads transfer to sources they never saw (folds by text hash
/// made it over-trust them and raised false positives on unfamiliar benign prompts).
///
/// Data channels are the exception: their n-gram evidence (instructions inside documents)
/// transfers well across sources, and grouped folds taught the final layer to distrust it.
/// For `retrieved`/`tool_output` rows the final layer sees ordinary (text-hash) folds.
pub(super) fn fit_final_layers(prepared: &[Prepared], seed: u64) -> FinalLayers {
    let n = prepared.len();
    let by_group = out_of_fold(prepared, |x| x.fold, seed);
    let by_text = out_of_fold(prepared, |x| text_fold(&x.ex.text), seed ^ 0x5eed);
    let mut xs = Vec::with_capacity(2 * n);
    let mut ys = Vec::with_capacity(2 * n);
    let mut ws = Vec::with_capacity(2 * n);
    let pos = prepared
        .iter()
        .filter(|x| x.ex.kind == Kind::Attack)
        .count() as f32;
    let neg = n as f32 - pos;
    let weight = |x: &Prepared, y: f32| {
        // Balanced classes; benign user prompts count double to favour a low false-positive rate.
        let base = if y > 0.5 {
            n as f32 / (2.0 * pos)
        } else {
            n as f32 / (2.0 * neg)
        };
        if x.ex.kind == Kind::BenignUser {
            base * 2.0
        } else {
            base
        }
    };
    let mut extra = Vec::new();
    let mut row_is_data: Vec<bool> = prepared.iter().map(|x| x.ex.channel.is_data()).collect();
    for (i, x) in prepared.iter().enumerate() {
        let y = f32::from(u8::from(x.ex.kind == Kind::Attack));
        let row = |oof: &OutOfFold| {
            let mut s = x.signals.clone();
            s.lm = oof.lm[i];
            s.tok = oof.tok[i];
            let h = oof.heads[i];
            stage2_vector(&s, h.attack, h.best_segment, h.harm)
        };
        if x.ex.channel.is_data() {
            // Both views for data rows, half weight each.
            xs.push(row(&by_text));
            ys.push(y);
            ws.push(weight(x, y) * 0.5);
            extra.push((row(&by_group), y, weight(x, y) * 0.5));
        } else {
            xs.push(row(&by_group));
            ys.push(y);
            ws.push(weight(x, y));
        }
    }
    // Grouped view of data rows, in row order (the `extra` rows hold it).
    let grouped_data: Vec<[f32; STAGE2_DIM]> = extra.iter().map(|(v, _, _)| *v).collect();
    for (v, y, w) in extra {
        xs.push(v);
        ys.push(y);
        ws.push(w);
        row_is_data.push(true);
    }
    // One final layer per channel group.
    let pick = |data: bool| {
        let idx: Vec<usize> = (0..xs.len()).filter(|&i| row_is_data[i] == data).collect();
        let sx: Vec<[f32; STAGE2_DIM]> = idx.iter().map(|&i| xs[i]).collect();
        let sy: Vec<f32> = idx.iter().map(|&i| ys[i]).collect();
        let sw: Vec<f32> = idx.iter().map(|&i| ws[i]).collect();
        fit_stage2(&sx, &sy, &sw)
    };
    let user = pick(false);
    let data = pick(true);
    // Calibration and the report use the first n rows: grouped view for user rows, text-fold
    // view for data rows.
    let scores: Vec<f32> = xs[..n]
        .iter()
        .zip(&row_is_data)
        .map(|(x, &d)| sigmoid(if d { data.logit(x) } else { user.logit(x) }))
        .collect();
    let mut grouped_data = grouped_data.iter();
    let mut scores_grouped = Vec::with_capacity(n);
    for (x, &d) in xs[..n].iter().zip(&row_is_data) {
        let p = if d {
            // One `extra` row was pushed per data row, in order.
            sigmoid(data.logit(grouped_data.next().unwrap_or(x)))
        } else {
            sigmoid(user.logit(x))
        };
        scores_grouped.push(p);
    }
    FinalLayers {
        user,
        data,
        scores,
        scores_grouped,
        tok: by_group.tok,
    }
}
