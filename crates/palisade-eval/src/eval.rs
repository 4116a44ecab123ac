//! The `eval` report: per-file AUC, TPR at fixed FPR, flag rates and latency (p50/p95/p99 per
//! row and p99 per 1,000 characters against [`BUDGET_US_PER_1K`]), in markdown.
//!
//! Scoring protocol (issue 4): direct attack files (`injection_*`, `jailbreak_*`) are scored
//! against every `benign` row of the directory pooled (scanned as `user`); indirect files
//! (`indirect_*`) against the pooled `benign_context` rows (scanned as `retrieved`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use palisade_detect::{Channel, Detector, ScanInput, Verdict};

use crate::data::{read_jsonl, Row};
use crate::EvalError;

/// A scored row.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Row label.
    pub label: String,
    /// Score.
    pub score: f32,
    /// Verdict at the operating thresholds.
    pub flagged: bool,
    /// Latency in microseconds.
    pub us: f64,
    /// Length of the scanned text in characters.
    pub chars: usize,
    /// Whether the detector's second stage was consulted.
    pub second_stage: bool,
}

/// Latency budget per 1,000 characters (issue 14): a row's latency divided by
/// `max(1, chars / 1000)` must stay at or under this at the 99th percentile of every file.
pub const BUDGET_US_PER_1K: f64 = 1_000.0;

impl Scored {
    /// Latency per 1,000 characters: the row's latency divided by `max(1, chars / 1000)`, so
    /// short rows are held to the whole budget and long ones to a budget per character.
    pub fn us_per_1k(&self) -> f64 {
        self.us / (self.chars as f64 / 1000.0).max(1.0)
    }
}

/// One file's results.
#[derive(Debug, Clone)]
pub struct FileResult {
    /// File stem.
    pub name: String,
    /// Scored rows in file order.
    pub rows: Vec<Scored>,
}

fn is_attack(label: &str) -> bool {
    matches!(label, "injection" | "jailbreak" | "indirect_injection")
}

/// Area under the ROC curve (Mann-Whitney, ties count one half).
pub fn auc(pos: &[f32], neg: &[f32]) -> f64 {
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f32, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let avg = (i + j + 1) as f64 / 2.0; // ranks are 1-based
        rank_sum += all[i..j].iter().filter(|x| x.1).count() as f64 * avg;
        i = j;
    }
    let np = pos.len() as f64;
    let nn = neg.len() as f64;
    (rank_sum - np * (np + 1.0) / 2.0) / (np * nn)
}

/// TPR at the threshold that keeps FPR at or below `fpr`: positives scoring strictly above
/// the `(floor(fpr * n) + 1)`-th highest negative.
pub fn tpr_at_fpr(pos: &[f32], neg: &[f32], fpr: f64) -> f64 {
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut n: Vec<f32> = neg.to_vec();
    n.sort_by(|a, b| b.total_cmp(a));
    let k = ((fpr * n.len() as f64).floor() as usize).min(n.len() - 1);
    let t = n[k];
    pos.iter().filter(|&&s| s > t).count() as f64 / pos.len() as f64
}

/// Percentile (nearest rank) of latencies.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let idx = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[idx.clamp(1, v.len()) - 1]
}

/// Channel a row is scanned on in eval.
fn eval_channel(row: &Row) -> Channel {
    row.channel(None).unwrap_or(Channel::User)
}

/// Scans every `*.jsonl` file of `dir` (sorted by name).
pub fn score_dir(dir: &Path, detector: &Detector) -> Result<Vec<FileResult>, EvalError> {
    score_dir_with(dir, detector, &mut |_, _, _| {})
}

/// [`score_dir`], telling `progress` before each file: its index, the
/// number of files, its name (the CLI's progress line).
pub fn score_dir_with(
    dir: &Path,
    detector: &Detector,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Vec<FileResult>, EvalError> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| EvalError::Io {
            path: dir.display().to_string(),
            source: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(EvalError::NoData(dir.display().to_string()));
    }
    let mut out = Vec::new();
    let total = paths.len();
    for (i, p) in paths.into_iter().enumerate() {
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        progress(i, total, &name);
        let rows = read_jsonl(&p)?;
        let mut scored = Vec::with_capacity(rows.len());
        for row in &rows {
            let input = ScanInput {
                text: &row.text,
                channel: eval_channel(row),
                system_prompt: row.system_prompt.as_deref(),
            };
            let t = Instant::now();
            let s = detector.scan(&input);
            let us = t.elapsed().as_secs_f64() * 1e6;
            scored.push(Scored {
                label: row.label().to_string(),
                score: s.score,
                flagged: s.verdict != Verdict::Allow,
                us,
                chars: row.text.chars().count(),
                second_stage: s.second_stage.is_some(),
            });
        }
        out.push(FileResult { name, rows: scored });
    }
    Ok(out)
}

/// Runs the evaluation over `dir` and returns the markdown report.
pub fn run_eval(dir: &Path, detector: &Detector) -> Result<String, EvalError> {
    let files = score_dir(dir, detector)?;
    Ok(report(&files, detector))
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{:.1}%", x * 100.0)
    }
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{x:.3}")
    }
}

fn flag_rate(rows: &[&Scored]) -> f64 {
    if rows.is_empty() {
        return f64::NAN;
    }
    rows.iter().filter(|r| r.flagged).count() as f64 / rows.len() as f64
}

/// Renders the markdown report from scored files.
pub fn report(files: &[FileResult], detector: &Detector) -> String {
    let benign: Vec<f32> = files
        .iter()
        .flat_map(|f| f.rows.iter())
        .filter(|r| r.label == "benign")
        .map(|r| r.score)
        .collect();
    let context: Vec<f32> = files
        .iter()
        .flat_map(|f| f.rows.iter())
        .filter(|r| r.label == "benign_context")
        .map(|r| r.score)
        .collect();
    let t = detector.thresholds();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Detector `{}`, thresholds flag {:.3} / block {:.3}.",
        detector.version(),
        t.flag,
        t.block
    );
    let _ = writeln!(
        md,
        "Direct files vs {} pooled benign user prompts; indirect files vs {} benign_context rows (retrieved).\n",
        benign.len(),
        context.len()
    );
    let _ = writeln!(md, "| file | rows | scored as | flag rate | AUC | TPR@1%FPR | TPR@0.1%FPR | p50 µs | p95 µs | p99 µs | p99 µs/1k chars | ≤ {BUDGET_US_PER_1K:.0} µs/1k |");
    let _ = writeln!(
        md,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let mut macro_ = (0.0, 0.0, 0.0, 0usize);
    let mut all_lat = Vec::new();
    let mut all_per_1k = Vec::new();
    for f in files {
        let lat: Vec<f64> = f.rows.iter().map(|r| r.us).collect();
        all_lat.extend_from_slice(&lat);
        let per_1k: Vec<f64> = f.rows.iter().map(Scored::us_per_1k).collect();
        all_per_1k.extend_from_slice(&per_1k);
        let p99_1k = percentile(&per_1k, 99.0);
        let attack_rows: Vec<&Scored> = f.rows.iter().filter(|r| is_attack(&r.label)).collect();
        let (what, flag, a, t1, t01) = if !attack_rows.is_empty() {
            let pos: Vec<f32> = attack_rows.iter().map(|r| r.score).collect();
            let (neg, what) = if f.name.starts_with("indirect") {
                (&context, "attacks vs benign_context")
            } else {
                (&benign, "attacks vs pooled benign")
            };
            let a = auc(&pos, neg);
            let t1 = tpr_at_fpr(&pos, neg, 0.01);
            let t01 = tpr_at_fpr(&pos, neg, 0.001);
            macro_.0 += a;
            macro_.1 += t1;
            macro_.2 += t01;
            macro_.3 += 1;
            (what.to_string(), flag_rate(&attack_rows), a, t1, t01)
        } else {
            let b: Vec<&Scored> = f
                .rows
                .iter()
                .filter(|r| r.label == "benign" || r.label == "benign_context")
                .collect();
            (
                "benign rows".to_string(),
                flag_rate(&b),
                f64::NAN,
                f64::NAN,
                f64::NAN,
            )
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            f.name,
            f.rows.len(),
            what,
            pct(flag),
            num(a),
            pct(t1),
            pct(t01),
            percentile(&lat, 50.0),
            percentile(&lat, 95.0),
            percentile(&lat, 99.0),
            p99_1k,
            meets(p99_1k)
        );
        // Files that mix labels get an extra line per secondary label.
        for extra in ["harmful_request", "benign_context"] {
            let rows: Vec<&Scored> = f.rows.iter().filter(|r| r.label == extra).collect();
            if !rows.is_empty() && (extra == "harmful_request" || !attack_rows.is_empty()) {
                let _ = writeln!(
                    md,
                    "| {} ({extra} rows) | {} | {extra} | {} | | | | | | | | |",
                    f.name,
                    rows.len(),
                    pct(flag_rate(&rows))
                );
            }
        }
    }
    let pooled: Vec<&Scored> = files
        .iter()
        .flat_map(|f| f.rows.iter())
        .filter(|r| r.label == "benign")
        .collect();
    let ctx: Vec<&Scored> = files
        .iter()
        .flat_map(|f| f.rows.iter())
        .filter(|r| r.label == "benign_context")
        .collect();
    let _ = writeln!(
        md,
        "| **pooled benign (user)** | {} | benign rows | {} | | | | | | | | |",
        pooled.len(),
        pct(flag_rate(&pooled))
    );
    let _ = writeln!(
        md,
        "| **pooled benign_context** | {} | retrieved | {} | | | | | | | | |",
        ctx.len(),
        pct(flag_rate(&ctx))
    );
    if macro_.3 > 0 {
        let n = macro_.3 as f64;
        let _ = writeln!(
            md,
            "| **macro-average ({} attack files)** | | | | **{}** | **{}** | **{}** | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            macro_.3,
            num(macro_.0 / n),
            pct(macro_.1 / n),
            pct(macro_.2 / n),
            percentile(&all_lat, 50.0),
            percentile(&all_lat, 95.0),
            percentile(&all_lat, 99.0),
            percentile(&all_per_1k, 99.0),
            meets(percentile(&all_per_1k, 99.0))
        );
    }
    if let Some(stage) = detector.second_stage() {
        second_stage_section(&mut md, files, stage.version(), &pooled, &ctx);
    }
    md
}

/// The same measurements as [`report`], as one JSON object (for scripts and
/// CI): the detector and its thresholds, one entry per file (rows, what its
/// scores were compared with, flag rate, AUC and TPR at 1% and 0.1% FPR for
/// attack files, latency percentiles in µs and p99 µs per 1,000
/// characters), the pooled benign flag rates and the macro-average over the
/// attack files. Undefined figures (no attack rows) are `null`.
pub fn report_json(files: &[FileResult], detector: &Detector) -> serde_json::Value {
    use serde_json::json;
    let rows_of = |label: &str| -> Vec<&Scored> {
        files
            .iter()
            .flat_map(|f| f.rows.iter())
            .filter(|r| r.label == label)
            .collect()
    };
    let pooled = rows_of("benign");
    let ctx = rows_of("benign_context");
    let benign: Vec<f32> = pooled.iter().map(|r| r.score).collect();
    let context: Vec<f32> = ctx.iter().map(|r| r.score).collect();
    let t = detector.thresholds();
    let mut out = Vec::new();
    let (mut sum_auc, mut sum_t1, mut sum_t01, mut attack_files) = (0.0, 0.0, 0.0, 0u32);
    let mut all_lat = Vec::new();
    let mut all_per_1k = Vec::new();
    for f in files {
        let lat: Vec<f64> = f.rows.iter().map(|r| r.us).collect();
        let per_1k: Vec<f64> = f.rows.iter().map(Scored::us_per_1k).collect();
        all_lat.extend_from_slice(&lat);
        all_per_1k.extend_from_slice(&per_1k);
        let attacks: Vec<&Scored> = f.rows.iter().filter(|r| is_attack(&r.label)).collect();
        let mut entry = json!({
            "file": f.name,
            "rows": f.rows.len(),
            "latency_us": {"p50": percentile(&lat, 50.0), "p95": percentile(&lat, 95.0),
                           "p99": percentile(&lat, 99.0)},
            "p99_us_per_1k_chars": percentile(&per_1k, 99.0),
        });
        if attacks.is_empty() {
            let b: Vec<&Scored> = f
                .rows
                .iter()
                .filter(|r| r.label == "benign" || r.label == "benign_context")
                .collect();
            entry["scored_as"] = json!("benign rows");
            entry["flag_rate"] = json!(flag_rate(&b));
        } else {
            let pos: Vec<f32> = attacks.iter().map(|r| r.score).collect();
            let (neg, what) = if f.name.starts_with("indirect") {
                (&context, "attacks vs benign_context")
            } else {
                (&benign, "attacks vs pooled benign")
            };
            let (a, t1, t01) = (
                auc(&pos, neg),
                tpr_at_fpr(&pos, neg, 0.01),
                tpr_at_fpr(&pos, neg, 0.001),
            );
            sum_auc += a;
            sum_t1 += t1;
            sum_t01 += t01;
            attack_files += 1;
            entry["scored_as"] = json!(what);
            entry["flag_rate"] = json!(flag_rate(&attacks));
            entry["auc"] = json!(a);
            entry["tpr_at_1pct_fpr"] = json!(t1);
            entry["tpr_at_0_1pct_fpr"] = json!(t01);
        }
        out.push(entry);
    }
    let n = f64::from(attack_files);
    let macro_average = (attack_files > 0).then(|| {
        json!({"attack_files": attack_files, "auc": sum_auc / n,
               "tpr_at_1pct_fpr": sum_t1 / n, "tpr_at_0_1pct_fpr": sum_t01 / n,
               "latency_us": {"p50": percentile(&all_lat, 50.0), "p95": percentile(&all_lat, 95.0),
                              "p99": percentile(&all_lat, 99.0)},
               "p99_us_per_1k_chars": percentile(&all_per_1k, 99.0),
               "budget_us_per_1k_chars": BUDGET_US_PER_1K})
    });
    json!({
        "detector": detector.version(),
        "thresholds": {"flag": t.flag, "block": t.block},
        "files": out,
        "pooled_benign": {"rows": pooled.len(), "flag_rate": flag_rate(&pooled)},
        "pooled_benign_context": {"rows": ctx.len(), "flag_rate": flag_rate(&ctx)},
        "macro_average": macro_average,
    })
}

/// How much traffic reached the second stage and what it cost there.
fn second_stage_section(
    md: &mut String,
    files: &[FileResult],
    version: &str,
    pooled: &[&Scored],
    ctx: &[&Scored],
) {
    let share = |rows: &[&Scored]| {
        if rows.is_empty() {
            f64::NAN
        } else {
            rows.iter().filter(|r| r.second_stage).count() as f64 / rows.len() as f64
        }
    };
    let consulted: Vec<f64> = files
        .iter()
        .flat_map(|f| f.rows.iter())
        .filter(|r| r.second_stage)
        .map(|r| r.us / (r.chars.max(1000) as f64 / 1000.0))
        .collect();
    let _ = writeln!(
        md,
        "\nSecond stage `{version}`: consulted for {} of pooled benign user prompts and {} of benign documents; \
         {} rows in all, whole-scan latency of those rows p50 {:.0} µs, p95 {:.0} µs per 1,000 characters.",
        pct(share(pooled)),
        pct(share(ctx)),
        consulted.len(),
        percentile(&consulted, 50.0),
        percentile(&consulted, 95.0),
    );
    for f in files {
        let rows: Vec<&Scored> = f.rows.iter().collect();
        let _ = writeln!(md, "- {}: consulted {}", f.name, pct(share(&rows)));
    }
}

fn meets(p99_per_1k: f64) -> &'static str {
    if p99_per_1k <= BUDGET_US_PER_1K {
        "yes"
    } else {
        "**no**"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_and_tpr() {
        assert!((auc(&[0.9, 0.8], &[0.1, 0.2]) - 1.0).abs() < 1e-9);
        assert!((auc(&[0.5], &[0.5]) - 0.5).abs() < 1e-9);
        assert!((auc(&[0.1], &[0.9]) - 0.0).abs() < 1e-9);
        let neg: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        // 1% FPR on 100 negatives: one negative may be above; threshold is the 2nd highest (0.98).
        assert!((tpr_at_fpr(&[0.985, 0.5], &neg, 0.01) - 0.5).abs() < 1e-9);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.0);
    }

    #[test]
    fn latency_per_1k_chars() {
        let row = |us: f64, chars: usize| Scored {
            label: "benign".into(),
            score: 0.0,
            flagged: false,
            us,
            chars,
            second_stage: false,
        };
        // Short rows are held to the whole budget; long ones per 1,000 characters.
        assert_eq!(row(300.0, 20).us_per_1k(), 300.0);
        assert_eq!(row(300.0, 1_000).us_per_1k(), 300.0);
        assert_eq!(row(3_000.0, 10_000).us_per_1k(), 300.0);
        assert_eq!(meets(1_000.0), "yes");
        assert_eq!(meets(1_000.5), "**no**");
    }
}
