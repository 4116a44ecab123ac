//! The training report (`TRAINING.md`): per-source out-of-fold quality, the calibrated
//! thresholds and the final layers' weights.

use std::collections::HashMap;
use std::fmt::Write as _;

use palisade_detect::features::STAGE2_NAMES;

use super::calibration::Calibration;
use super::dataset::Prepared;
use super::stacking::FinalLayers;
use super::FOLDS;
use crate::eval::{auc, tpr_at_fpr};
use crate::synth::Kind;

/// The markdown report and the example count per source (sorted by source).
pub(super) fn training_report(
    seed: u64,
    prepared: &[Prepared],
    layers: &FinalLayers,
    cal: &Calibration,
    corpus_note: Option<&str>,
) -> (String, Vec<(String, usize)>) {
    let flag = cal.thresholds.flag;
    let mut md = String::new();
    let _ = writeln!(md, "# palisade-detect model: training report\n");
    let _ = writeln!(
        md,
        "Trained by `palisade-eval` (`run_train`, seed {seed}) on `train/` only, plus reproducible synthetic data. \
         Metrics below are out-of-fold ({FOLDS}-fold cross-validation on train, folds grouped by source family \
         for user-channel rows so each score comes from heads that never saw that source; ordinary folds for \
         data-channel rows); eval/ is never read.\n\n\
         Reproduce: `cargo run --release -p palisade-eval --example train -- ../shared/datasets/train \
         crates/palisade-detect/model/palisade-detect.model {seed}` (or `palisade train`).\n"
    );
    if let Some(note) = corpus_note {
        let _ = writeln!(md, "{note}\n");
    }
    let mut by_source: HashMap<String, usize> = HashMap::new();
    for x in prepared {
        *by_source.entry(x.ex.source.clone()).or_default() += 1;
    }
    let mut by_source: Vec<(String, usize)> = by_source.into_iter().collect();
    by_source.sort();
    let _ = writeln!(
        md,
        "| source | examples | kind | OOF flag rate | OOF AUC vs benign | OOF TPR@1%FPR |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|");
    for (src, count) in &by_source {
        let rows: Vec<(usize, &Prepared)> = prepared
            .iter()
            .enumerate()
            .filter(|(_, x)| &x.ex.source == src)
            .collect();
        let kind = rows[0].1.ex.kind;
        let s: Vec<f32> = rows.iter().map(|(i, _)| layers.scores[*i]).collect();
        let fr = s.iter().filter(|&&v| v >= flag).count() as f64 / s.len() as f64;
        let (a, t) = if kind == Kind::Attack {
            let neg = if rows[0].1.ex.channel.is_data() {
                &cal.benign_context
            } else {
                &cal.benign_user
            };
            (
                format!("{:.3}", auc(&s, neg)),
                format!("{:.1}%", 100.0 * tpr_at_fpr(&s, neg, 0.01)),
            )
        } else {
            ("".into(), "".into())
        };
        let _ = writeln!(
            md,
            "| {src} | {count} | {kind:?} | {:.1}% | {a} | {t} |",
            fr * 100.0
        );
    }
    token_lm_table(&mut md, prepared, layers, &by_source);
    let _ = writeln!(md, "\nThresholds (99th / 99.9th percentile of out-of-fold benign scores): flag {:.4}, block {:.4}; data-channel logit offset {:.3}.\n", flag, cal.thresholds.block, cal.data_offset);
    let _ = writeln!(
        md,
        "Final layer weights (standardized inputs), one layer per channel group:\n"
    );
    let _ = writeln!(
        md,
        "| input | user/system | retrieved/tool_output |\n|---|---:|---:|"
    );
    for (i, name) in STAGE2_NAMES.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {name} | {:+.3} | {:+.3} |",
            layers.user.weights[i], layers.data.weights[i]
        );
    }
    let _ = writeln!(
        md,
        "| bias | {:+.3} | {:+.3} |",
        layers.user.bias, layers.data.bias
    );
    (md, by_source)
}

/// Out-of-fold token-LM surprisal per source: where benign text sits (code and non-English
/// prose are the hard negatives) against suffix attacks.
fn token_lm_table(
    md: &mut String,
    prepared: &[Prepared],
    layers: &FinalLayers,
    by_source: &[(String, usize)],
) {
    let _ = writeln!(
        md,
        "\nToken-LM surprisal out-of-fold (grouped folds; bits/token; window {} tokens, tail {}):\n",
        palisade_detect::tokenlm::WINDOW,
        palisade_detect::tokenlm::TAIL
    );
    let _ = writeln!(
        md,
        "| source | max window p50 | p90 | p99 | tail p50 | tail p99 | high-window share > 0 |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    for (src, _) in by_source {
        let rows: Vec<_> = prepared
            .iter()
            .zip(&layers.tok)
            .filter(|(x, _)| &x.ex.source == src)
            .map(|(_, t)| *t)
            .collect();
        let q = |f: &dyn Fn(&palisade_detect::tokenlm::TokStats) -> f32, p: f64| {
            let mut v: Vec<f32> = rows.iter().map(f).collect();
            v.sort_by(f32::total_cmp);
            v.get(((p * (v.len().max(1) - 1) as f64).round()) as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let high =
            rows.iter().filter(|t| t.high_frac > 0.0).count() as f64 / rows.len().max(1) as f64;
        let _ = writeln!(
            md,
            "| {src} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}% |",
            q(&|t| t.max_window, 0.5),
            q(&|t| t.max_window, 0.9),
            q(&|t| t.max_window, 0.99),
            q(&|t| t.tail_mean, 0.5),
            q(&|t| t.tail_mean, 0.99),
            100.0 * high
        );
    }
}
