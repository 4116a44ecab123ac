//! The window detectors. Each reads a [`KeyWindow`] and says whether it
//! fires, with the statistic as evidence:
//!
//! - **prada**: Shapiro–Wilk on the arrivals' minimum distances to earlier
//!   queries (Juuti et al., PRADA, 2019). Natural prompts give a unimodal,
//!   roughly normal spread; perturbation and synthetic queries pile up near
//!   zero next to their seeds, which bends the distribution.
//! - **mmd**: a kernel two-sample test of the window against the tenant's
//!   benign baseline on the sketch space (SimHash bits, length, entropy),
//!   with a permutation p-value and a minimum effect size, so a window must
//!   differ both significantly and by much.
//! - **coverage**: the type/token ratio of the last block of words. Natural
//!   language repeats its words (Heaps' law); queries drawn to cover the
//!   input space do not.
//! - **probing**: the share of requests a gate flagged or refused, or whose
//!   parameters hardening refused.
//! - **perturbation**: the share of queries that are one- or two-word edits
//!   of an earlier query of the same length (PRADA's synthetic samples,
//!   decision-boundary probing); templated product traffic varies whole
//!   slots, not single words.
//! - **sweep**: log-probability requests whose sampling configuration keeps
//!   changing over near-identical prompts (a logprob or logit-bias sweep).
//!
//! Must not: read the clock or draw randomness (the permutation seed comes
//! from the caller).

use serde::{Deserialize, Serialize};

use crate::stats::{mmd_test, shapiro_wilk};
use crate::window::{Entry, KeyWindow};

/// Thresholds of the detectors. Defaults were set on the training split of
/// the shared benign datasets (see `examples/campaigns.rs`), never on eval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Entries a window holds.
    pub window: usize,
    /// Entries needed before any detector runs.
    pub min_queries: usize,
    /// Evaluate after this many new requests.
    pub evaluate_every: u32,
    /// PRADA fires below this Shapiro–Wilk p-value…
    pub prada_p: f64,
    /// …and this W.
    pub prada_w: f64,
    /// MMD fires at or below this permutation p-value…
    pub mmd_p: f64,
    /// …with at least this MMD².
    pub mmd_min_effect: f64,
    /// Permutations of the MMD test.
    pub mmd_permutations: usize,
    /// Baseline points drawn (by the seed) into one MMD test; bounds its
    /// cost at O((window + sample)² · permutations).
    pub mmd_baseline_sample: usize,
    /// Words per coverage block.
    pub coverage_block_words: u32,
    /// Coverage fires above this type/token ratio.
    pub coverage_ratio: f64,
    /// Probing fires above this share of flagged or refused requests…
    pub probe_rate: f64,
    /// …counting at least this many of them.
    pub probe_min: usize,
    /// Perturbation fires above this share of small-edit queries…
    pub perturbation_rate: f64,
    /// …counting at least this many of them.
    pub perturbation_min: usize,
    /// Sweep fires with at least this many distinct sampling configurations
    /// among log-probability requests…
    pub sweep_configs: usize,
    /// …whose prompts are near duplicates (median minimum distance below).
    pub sweep_max_distance: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            window: 64,
            min_queries: 32,
            evaluate_every: 16,
            prada_p: 1e-6,
            prada_w: 0.70,
            mmd_p: 0.01,
            mmd_min_effect: 0.35,
            mmd_permutations: 99,
            mmd_baseline_sample: 64,
            coverage_block_words: 600,
            coverage_ratio: 0.80,
            probe_rate: 0.30,
            probe_min: 8,
            perturbation_rate: 0.6,
            perturbation_min: 12,
            sweep_configs: 8,
            sweep_max_distance: 0.08,
        }
    }
}

/// A detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// Inter-query distance normality.
    Prada,
    /// Two-sample test against the baseline.
    Mmd,
    /// Vocabulary coverage.
    Coverage,
    /// Filter probing.
    Probing,
    /// Sampling-parameter sweep.
    Sweep,
    /// Small-edit perturbations.
    Perturbation,
}

impl DetectorKind {
    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prada => "prada",
            Self::Mmd => "mmd",
            Self::Coverage => "coverage",
            Self::Probing => "probing",
            Self::Sweep => "sweep",
            Self::Perturbation => "perturbation",
        }
    }
}

/// One detector's finding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Which detector.
    pub kind: DetectorKind,
    /// Its statistic (W, MMD², ratio, rate, configurations).
    pub value: f64,
    /// Its p-value, where it has one.
    pub p_value: Option<f64>,
    /// It fired.
    pub fired: bool,
}

/// A point of the benign baseline on the sketch space.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// SimHash.
    pub simhash: u64,
    /// Length, characters.
    pub chars: u32,
    /// Entropy, bits per character.
    pub entropy_bits: f32,
}

impl From<&Entry> for Point {
    fn from(e: &Entry) -> Self {
        Self {
            simhash: e.simhash,
            chars: e.chars,
            entropy_bits: e.entropy_bits,
        }
    }
}

/// The MMD kernel: Gaussian in SimHash distance (bandwidth 0.25), with a
/// weak term in entropy. Unrelated prompts (half the bits differ) sit near
/// 0.02 and near duplicates near 1, so the statistic measures how much
/// near-duplicate and template structure a window has beyond the
/// baseline's. Length is left out on purpose: a user's topic sets their
/// prompts' lengths, and a length test flags every specialised user.
pub fn kernel(a: &Point, b: &Point) -> f64 {
    let bits = f64::from((a.simhash ^ b.simhash).count_ones()) / 64.0 / 0.25;
    let ent = f64::from(a.entropy_bits - b.entropy_bits) / 2.0;
    (-(bits * bits + ent * ent)).exp()
}

/// Runs every detector on `window` (enough entries assumed; see
/// [`DetectorConfig::min_queries`]). `baseline` may be empty (MMD then does
/// not run); `seed` drives the permutations.
pub fn evaluate(
    window: &KeyWindow,
    baseline: &[Point],
    config: &DetectorConfig,
    seed: u64,
) -> Vec<Signal> {
    let mut signals = Vec::with_capacity(5);
    // Exact repeats (distance 0) are people re-asking and batch jobs
    // looping, not synthetic perturbations (those are close but never
    // identical); repeats are the sweep detector's business.
    let distances: Vec<f64> = window
        .entries()
        .filter_map(|e| e.min_distance.map(f64::from))
        .filter(|d| *d > 0.0)
        .collect();
    if let Ok(sw) = shapiro_wilk(&distances) {
        signals.push(Signal {
            kind: DetectorKind::Prada,
            value: sw.w,
            p_value: Some(sw.p_value),
            fired: sw.p_value < config.prada_p && sw.w < config.prada_w,
        });
    } else if distances.len() >= 3 {
        // Zero range: every query is as close to its predecessors as the
        // others. All zeros is one prompt replayed: the sweep detector's
        // case, not PRADA's; report it without firing.
        signals.push(Signal {
            kind: DetectorKind::Prada,
            value: 1.0,
            p_value: None,
            fired: false,
        });
    }
    if !baseline.is_empty() {
        // Distinct prompts only: a repeat carries no new information for an
        // extractor, and people and batch jobs repeat themselves.
        let mut xs: Vec<Point> = window.entries().map(Point::from).collect();
        xs.sort_by_key(|p| p.simhash);
        xs.dedup_by_key(|p| p.simhash);
        let ys = sample(baseline, config.mmd_baseline_sample, seed);
        // Below `mmd_min_effect` the signal cannot fire, so the permutation
        // test (most of the detectors' cost) is skipped: p-value `None`.
        let test = mmd_test(
            &xs,
            &ys,
            kernel,
            config.mmd_permutations,
            seed,
            config.mmd_min_effect,
        );
        signals.push(Signal {
            kind: DetectorKind::Mmd,
            value: test.mmd2,
            p_value: test.p_value,
            fired: test.p_value.is_some_and(|p| p <= config.mmd_p)
                && test.mmd2 >= config.mmd_min_effect,
        });
    }
    if let Some(ratio) = window.vocabulary.last_ratio {
        signals.push(Signal {
            kind: DetectorKind::Coverage,
            value: ratio,
            p_value: None,
            fired: ratio > config.coverage_ratio,
        });
    }
    let probes = window.entries().filter(|e| e.probe).count();
    let rate = probes as f64 / window.len().max(1) as f64;
    signals.push(Signal {
        kind: DetectorKind::Probing,
        value: rate,
        p_value: None,
        fired: probes >= config.probe_min && rate > config.probe_rate,
    });
    let perturbations = window.entries().filter(|e| e.perturbation).count();
    let share = perturbations as f64 / window.len().max(1) as f64;
    signals.push(Signal {
        kind: DetectorKind::Perturbation,
        value: share,
        p_value: None,
        fired: perturbations >= config.perturbation_min && share > config.perturbation_rate,
    });
    let logprob_entries: Vec<&Entry> = window.entries().filter(|e| e.logprobs).collect();
    let mut configs: Vec<u64> = logprob_entries.iter().map(|e| e.config_hash).collect();
    configs.sort_unstable();
    configs.dedup();
    let mut near: Vec<f32> = logprob_entries
        .iter()
        .filter_map(|e| e.min_distance)
        .collect();
    near.sort_by(f32::total_cmp);
    let median = near.get(near.len() / 2).map_or(1.0, |d| f64::from(*d));
    signals.push(Signal {
        kind: DetectorKind::Sweep,
        value: configs.len() as f64,
        p_value: None,
        fired: configs.len() >= config.sweep_configs && median <= config.sweep_max_distance,
    });
    signals
}

/// `count` points of `baseline` chosen by `seed` (a partial Fisher–Yates
/// shuffle), or all of them when there are no more.
fn sample(baseline: &[Point], count: usize, seed: u64) -> Vec<Point> {
    let mut points = baseline.to_vec();
    if points.len() <= count {
        return points;
    }
    let mut rng = crate::stats::SplitMix::new(seed ^ 0x5eed);
    for i in 0..count {
        let j = i + rng.below(points.len() - i);
        points.swap(i, j);
    }
    points.truncate(count);
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{GateOutcome, RequestFeatures, SamplingSignature};
    use crate::sketch::sketch;

    fn push(w: &mut KeyWindow, text: &str, sampling: SamplingSignature, outcome: GateOutcome) {
        let f = RequestFeatures {
            at_ms: w.seen as i64,
            sketch: sketch(text),
            sampling,
            outcome,
        };
        w.push(&f, DetectorConfig::default().coverage_block_words);
    }

    fn fired(signals: &[Signal]) -> Vec<DetectorKind> {
        signals.iter().filter(|s| s.fired).map(|s| s.kind).collect()
    }

    #[test]
    fn a_logprob_sweep_over_one_prompt_fires_the_sweep_detector() {
        let mut w = KeyWindow::new(64);
        for i in 0..64u64 {
            let sampling = SamplingSignature {
                logprobs: true,
                logit_bias_entries: 1,
                config_hash: i,
            };
            push(
                &mut w,
                "The capital of France is",
                sampling,
                GateOutcome::Passed,
            );
        }
        let s = evaluate(&w, &[], &DetectorConfig::default(), 1);
        assert_eq!(fired(&s), vec![DetectorKind::Sweep]);
    }

    #[test]
    fn refused_probes_fire_the_probing_detector() {
        let mut w = KeyWindow::new(64);
        for i in 0..40 {
            let outcome = if i % 2 == 0 {
                GateOutcome::ProbeRefused
            } else {
                GateOutcome::Passed
            };
            push(
                &mut w,
                &format!("question {i}: what is {} plus {}?", i * 7, i * 13),
                SamplingSignature::default(),
                outcome,
            );
        }
        let s = evaluate(&w, &[], &DetectorConfig::default(), 1);
        assert!(fired(&s).contains(&DetectorKind::Probing), "{s:?}");
    }

    #[test]
    fn random_strings_fire_coverage() {
        let mut w = KeyWindow::new(64);
        let mut rng = crate::stats::SplitMix::new(3);
        for _ in 0..64 {
            let words: Vec<String> = (0..20)
                .map(|_| {
                    (0..6)
                        .map(|_| char::from(b'a' + rng.below(26) as u8))
                        .collect()
                })
                .collect();
            push(
                &mut w,
                &words.join(" "),
                SamplingSignature::default(),
                GateOutcome::Passed,
            );
        }
        let s = evaluate(&w, &[], &DetectorConfig::default(), 1);
        assert!(fired(&s).contains(&DetectorKind::Coverage), "{s:?}");
    }

    #[test]
    fn kernel_is_one_on_the_diagonal_and_symmetric() {
        let a = Point {
            simhash: 0xdead_beef,
            chars: 100,
            entropy_bits: 4.2,
        };
        let b = Point {
            simhash: 0x1234,
            chars: 30,
            entropy_bits: 3.9,
        };
        assert!((kernel(&a, &a) - 1.0).abs() < 1e-12);
        assert_eq!(kernel(&a, &b), kernel(&b, &a));
        assert!(kernel(&a, &b) < 1.0);
    }
}
