//! The I/O side of Palisade's detection engine: reading JSONL datasets, training the model
//! artifact (reproducibly, from `train/` only), the `scan` runner and the `eval` report.
//!
//! The CLI (`palisade scan|eval|train`) is a thin wrapper over [`run_scan`], [`run_eval`] and
//! [`run_train`].
//!
//! **Invariant:** detection logic lives in `palisade-detect`; this crate only feeds it and
//! measures it. Training never reads `eval/`, and eval never feeds back into training.

pub mod clean_docs;
pub mod data;
pub mod eval;
pub mod rng;
pub mod scan;
pub mod synth;
pub mod train;

pub use data::{read_jsonl, read_rows, Row};
pub use eval::{report, report_json, run_eval, score_dir, score_dir_with};
pub use scan::{run_scan, run_scan_with, scan_text, ScanLine, ScanOptions, ScanSummary};
pub use train::{
    out_of_fold_scores, run_train, run_train_with, train_model, train_model_with,
    training_examples, TrainOptions, TrainReport,
};

/// Errors of the eval crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Reading or writing a file or stream failed (missing file, permissions, closed pipe).
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or stream.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSONL row is not valid JSON, lacks `text`, or names an unknown channel.
    #[error("bad row: {0}")]
    BadRow(String),
    /// A dataset directory has no usable `*.jsonl` rows.
    #[error("no data in {0}")]
    NoData(String),
    /// The train set lacks rows the synthetic generators draw from.
    #[error("the train data has no rows of {0} (the synthetic attacks are built from every one of them)")]
    MissingPools(String),
    /// The model artifact could not be loaded.
    #[error(transparent)]
    Detect(#[from] palisade_detect::DetectError),
}
