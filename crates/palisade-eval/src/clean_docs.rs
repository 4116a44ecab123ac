//! The committed clean-document corpus (`data/clean_docs.jsonl.gz`): chunks of Debian's own
//! documentation (man pages, READMEs, NEWS, changelogs), built once by
//! `scripts/build_clean_docs.py` so training reproduces on any machine.
//!
//! Used as training statistics only: benign_context negatives and data-channel calibration
//! (the `train` split), and a measure of the clean-document flag rate (the `heldout` split,
//! whole packages training never sees). Must not read `/usr/share` or `eval/`.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::EvalError;

/// One chunk of the corpus.
#[derive(Debug, Clone, Deserialize)]
pub struct CleanDoc {
    /// The chunk (300–1,500 characters, paragraph-aligned).
    pub text: String,
    /// `debian/<package>`.
    pub source: String,
    /// `man`, `readme` or `changelog`.
    pub subtype: String,
    /// `train` or `heldout` (decided per package).
    pub split: String,
}

impl CleanDoc {
    /// Whether the chunk belongs to a held-out package (never trained or calibrated on).
    pub fn is_heldout(&self) -> bool {
        self.split == "heldout"
    }
}

/// Where the committed corpus lives.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/clean_docs.jsonl.gz")
}

/// Reads the gzipped corpus; a missing file or malformed row is an error (training would
/// silently change without it).
pub fn read_clean_docs(path: &Path) -> Result<Vec<CleanDoc>, EvalError> {
    let io = |e| EvalError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .map_err(io)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| EvalError::BadRow(format!("{}:{}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// The build command of the corpus, for the training report.
pub const BUILD_COMMAND: &str = "python3 crates/palisade-eval/scripts/build_clean_docs.py";

/// One markdown paragraph naming the corpus file, its sha256 and how it was built (the
/// training report carries it so a retrain can check it read the same corpus).
pub fn provenance(path: &Path) -> Result<String, EvalError> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| EvalError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    let docs = read_clean_docs(path)?;
    let heldout = docs.iter().filter(|d| d.is_heldout()).count();
    Ok(format!(
        "Clean-document corpus: `crates/palisade-eval/data/clean_docs.jsonl.gz` (sha256 `{}`), \
         {} chunks of Debian man pages, READMEs and changelogs ({} in held-out packages, never \
         trained or calibrated on), built once by `{BUILD_COMMAND}`; packages and licences in \
         `data/clean_docs_packages.tsv`, used as training statistics only. Trained with it: \
         append `--clean-docs` to the reproduce command.",
        hex::encode(Sha256::digest(&bytes)),
        docs.len(),
        heldout
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_corpus_reads_whole_with_both_splits() {
        let docs = read_clean_docs(&default_path()).expect("committed corpus");
        assert_eq!(docs.len(), 7402);
        assert_eq!(docs.iter().filter(|d| d.is_heldout()).count(), 1324);
        assert!(docs.iter().all(|d| d.source.starts_with("debian/")
            && ["man", "readme", "changelog"].contains(&d.subtype.as_str())
            && (300..=1500).contains(&d.text.chars().count())));
        // A package is wholly in one split, so held-out packages are unseen by training.
        let train: std::collections::HashSet<&str> = docs
            .iter()
            .filter(|d| !d.is_heldout())
            .map(|d| d.source.as_str())
            .collect();
        assert!(docs
            .iter()
            .filter(|d| d.is_heldout())
            .all(|d| !train.contains(d.source.as_str())));
    }
}
