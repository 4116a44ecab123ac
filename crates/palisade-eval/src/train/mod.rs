//! Training: builds the model artifact from `train/` (plus reproducible synthetic data).
//!
//! Pipeline (all seeded, single pass, no eval data):
//! 1. load `train/*.jsonl`, synthesize extra examples ([`crate::synth`]);
//! 2. normalize every example and extract hashed n-gram features once;
//! 3. 5-fold cross-validation, twice (folds grouped by source family, and folds by text hash):
//!    per fold, train the three linear heads (attack, harmful request, jailbreak-vs-injection)
//!    with AdaGrad logistic regression, a character LM and a BPE-token LM on the fold's
//!    benign text, and compute out-of-fold head scores and LM surprise. User-channel rows use the grouped view
//!    (how far the heads transfer to unseen sources); data-channel rows contribute both views;
//! 4. fit the final logistic layer on the out-of-fold signals (stacking) and calibrate the
//!    flag/block thresholds on out-of-fold benign scores;
//! 5. retrain heads and LM on everything, write the artifact and `TRAINING.md`.
//!
//! Files: `dataset` (1–2), `heads`, `language_model` and `token_model` (what is trained), `stacking` (3–4),
//! `calibration` (4), `report`, `oof` (exports 3–4's out-of-fold scores); this file runs the pipeline and writes the files.
//!
//! **Invariant:** the same train files and seed give a byte-identical artifact (the shipped
//! model is reproduced with `--example train`). The order of random draws, of floating-point
//! sums and of hash-bucket writes is part of that; a refactor here must keep the artifact's
//! sha256. Training never reads `eval/`.

mod calibration;
mod dataset;
mod heads;
mod language_model;
mod oof;
mod report;
mod stacking;
mod token_model;
pub use token_model::train_token_lm;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use palisade_detect::model::{Model, ModelMeta};
use palisade_detect::tokenlm::TokenLm;
use palisade_detect::{Detector, Thresholds};
use serde::Serialize;

use crate::rng::Rng;
use crate::synth::Example;
use crate::EvalError;

pub use oof::{out_of_fold_scores, OutOfFoldScore, OutOfFoldScores};

/// log2 buckets of the attack head.
pub const ATTACK_BITS: u32 = 18;
/// Folds for cross-validation.
pub const FOLDS: usize = 5;
/// Training texts are cut to this many bytes (inference sees everything).
const MAX_TRAIN_BYTES: usize = 12_000;

/// What training produced.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Artifact version string.
    pub version: String,
    /// Examples used (real + synthetic).
    pub examples: usize,
    /// Examples per source.
    pub by_source: Vec<(String, usize)>,
    /// Calibrated thresholds.
    pub thresholds: Thresholds,
    /// Artifact size in bytes.
    pub artifact_bytes: usize,
    /// The markdown report (also written next to the artifact as `TRAINING.md`).
    pub markdown: String,
}

/// Training inputs beyond `train/` and the built-in synthetic data. The default reproduces
/// the shipped artifact.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// The clean-document corpus ([`crate::clean_docs`]): its train split as clean documents,
    /// synthetic tool outputs with injected twins, instructions planted in its chunks, and a
    /// calibration pool for the data-channel offset.
    pub clean_docs: Option<PathBuf>,
}

impl TrainOptions {
    /// Options from command-line flags (`--clean-docs`); an unknown flag is an error naming it.
    pub fn from_flags<'a>(flags: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut options = TrainOptions::default();
        for flag in flags {
            match flag {
                "--clean-docs" => options.clean_docs = Some(crate::clean_docs::default_path()),
                other => return Err(format!("unknown flag {other}")),
            }
        }
        Ok(options)
    }
}

/// Trains from `train_dir`, writes the artifact to `out_artifact` and `TRAINING.md` beside it.
pub fn run_train(
    train_dir: &Path,
    out_artifact: &Path,
    seed: u64,
) -> Result<TrainReport, EvalError> {
    run_train_with(train_dir, out_artifact, seed, &TrainOptions::default())
}

/// [`run_train`] with extra training inputs.
pub fn run_train_with(
    train_dir: &Path,
    out_artifact: &Path,
    seed: u64,
    options: &TrainOptions,
) -> Result<TrainReport, EvalError> {
    let (model, mut report) = train_model_with(train_dir, seed, options)?;
    let bytes = model.to_bytes()?;
    let io = |p: &Path, e| EvalError::Io {
        path: p.display().to_string(),
        source: e,
    };
    if let Some(dir) = out_artifact.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    std::fs::write(out_artifact, &bytes).map_err(|e| io(out_artifact, e))?;
    report.artifact_bytes = bytes.len();
    let d = Detector::from_model_bytes(&bytes)?;
    report.version = d.version().to_string();
    let _ = writeln!(
        report.markdown,
        "\nArtifact: `{}`, {} bytes, version `{}`.",
        out_artifact.display(),
        bytes.len(),
        report.version
    );
    let md_path = out_artifact.with_file_name("TRAINING.md");
    std::fs::write(&md_path, &report.markdown).map_err(|e| io(&md_path, e))?;
    Ok(report)
}

/// Every example training sees, in training order: the train files, the synthetic examples
/// drawn from them and, when asked, the clean-document corpus with its synthetic tool outputs.
/// The second-stage encoder trainer reads the same list (`examples/dump_examples.rs`).
pub fn training_examples(
    train_dir: &Path,
    seed: u64,
    options: &TrainOptions,
) -> Result<Vec<Example>, EvalError> {
    let mut examples = dataset::load(train_dir)?;
    if examples.is_empty() {
        return Err(EvalError::NoData(train_dir.display().to_string()));
    }
    let mut rng = Rng::new(seed);
    let synthetic = dataset::synthetic_examples(&examples, &mut rng)?;
    examples.extend(synthetic);
    if let Some(path) = &options.clean_docs {
        examples.extend(dataset::clean_document_examples(path, seed)?);
    }
    Ok(examples)
}

/// Trains the model in memory and returns it with a report (artifact size/version unset).
pub fn train_model(train_dir: &Path, seed: u64) -> Result<(Model, TrainReport), EvalError> {
    train_model_with(train_dir, seed, &TrainOptions::default())
}

/// [`train_model`] with extra training inputs.
pub fn train_model_with(
    train_dir: &Path,
    seed: u64,
    options: &TrainOptions,
) -> Result<(Model, TrainReport), EvalError> {
    let examples = training_examples(train_dir, seed, options)?;
    let corpus_note = match &options.clean_docs {
        Some(path) => Some(crate::clean_docs::provenance(path)?),
        None => None,
    };
    let prepared = dataset::prepare_all(examples);

    let mut layers = stacking::fit_final_layers(&prepared, seed);
    let calibration = calibration::calibrate(&prepared, &mut layers.scores);
    let (markdown, by_source) = report::training_report(
        seed,
        &prepared,
        &layers,
        &calibration,
        corpus_note.as_deref(),
    );

    // Final heads and LM on everything.
    let heads = heads::train_heads(&prepared, |_| true, seed.wrapping_add(1000));
    let lm = language_model::train_lm(
        prepared
            .iter()
            .filter(|x| language_model::lm_text(x))
            .map(|x| x.ex.text.as_str()),
    );
    let thresholds = calibration.thresholds;
    let meta = ModelMeta {
        version: format!("seed{seed}"),
        seed,
        thresholds,
        attack_bits: ATTACK_BITS,
        harm_bits: ATTACK_BITS,
        jb_bits: ATTACK_BITS,
        biases: [heads.attack.bias, heads.harm.bias, heads.jb.bias],
        stage2: layers.user,
        stage2_data: Some(layers.data),
        data_offset: calibration.data_offset,
        // The token LM is measured out-of-fold (see the report) but not shipped yet: with
        // its surprisal in the final layer, translated overrides lost their flag.
        token_lm: false,
    };
    let model = Model {
        meta,
        attack: heads.attack,
        harm: heads.harm,
        jb: heads.jb,
        lm,
        tok: TokenLm::empty(),
    };
    let report = TrainReport {
        version: String::new(),
        examples: prepared.len(),
        by_source,
        thresholds,
        artifact_bytes: 0,
        markdown,
    };
    Ok((model, report))
}
