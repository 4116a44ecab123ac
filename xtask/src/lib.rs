//! Tidy checks: the workspace's house rules, checked rather than only stated.
//!
//! Each module holds one rule as a pure function over file text, so the rule
//! itself is unit-tested on small inputs; `tests/tidy.rs` applies every rule
//! to the real tree and fails naming each file and rule it finds broken.
//!
//! This crate reads the tree as plain files (with a few documented textual
//! heuristics). It must not build, run or edit the crates it checks, and no
//! crate may depend on it.

pub mod clock;
pub mod deps;
pub mod error_codes;
pub mod file_size;
pub mod module_docs;
pub mod tree;

use std::fmt;
use std::path::{Path, PathBuf};

/// The crates that hold pure logic: no I/O framework, no clock reads (the
/// caller passes time in), so they stay deterministic and testable.
/// `palisade-eval` is not one: it is detection's I/O side (it reads the
/// datasets, writes artifacts and times scans).
pub const PURE_CRATES: &[&str] = &[
    "palisade-detect",
    "palisade-policy",
    "palisade-limits",
    "palisade-tools",
    "palisade-output",
    "palisade-openai",
    "palisade-config",
    "palisade-fleet",
    "palisade-bundle",
    "palisade-extraction",
    "palisade-anomaly",
    "palisade-routing",
    "palisade-bpe",
    "palisade-replay",
    "palisade-watermark",
    "palisade-canary",
];

/// One broken rule at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The offending file, relative to the workspace root where possible.
    pub path: PathBuf,
    /// 1-based line, when the rule points at one.
    pub line: Option<usize>,
    /// Which rule (a short stable name, e.g. `pure-crate-deps`).
    pub rule: &'static str,
    /// What is wrong, in a sentence.
    pub detail: String,
}

impl Violation {
    /// A violation of `rule` in the file at `path`.
    pub fn new(path: &Path, rule: &'static str, detail: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            line: None,
            rule,
            detail: detail.into(),
        }
    }

    /// Points the violation at a 1-based line.
    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": [{}] {}", self.rule, self.detail)
    }
}

/// Why a check could not run at all (as opposed to finding violations).
#[derive(Debug, thiserror::Error)]
pub enum TidyError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// What was being read.
        path: PathBuf,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// A `Cargo.toml` is not valid TOML.
    #[error("cannot parse {path}: {source}")]
    Toml {
        /// The manifest.
        path: PathBuf,
        /// The parser's complaint.
        source: Box<toml::de::Error>,
    },
    /// A source file lacks the shape a check relies on (e.g. no `ErrorCode`
    /// enum): the check must be updated, not silently pass.
    #[error("{path}: {what}")]
    Shape {
        /// The file that was searched.
        path: PathBuf,
        /// What was expected and not found.
        what: String,
    },
}

/// Renders violations as one failure message: the rule's purpose, then one
/// line per offender. `Ok` when there are none.
pub fn report(rule_summary: &str, violations: &[Violation]) -> Result<(), String> {
    if violations.is_empty() {
        return Ok(());
    }
    let mut msg = format!("{rule_summary}\n{} violation(s):\n", violations.len());
    for v in violations {
        msg.push_str(&format!("  {v}\n"));
    }
    Err(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_name_file_line_and_rule() {
        let v = Violation::new(Path::new("a/b.rs"), "rule-x", "bad").at_line(3);
        assert_eq!(v.to_string(), "a/b.rs:3: [rule-x] bad");
        let msg = report("Rule X: things must be good.", &[v]).unwrap_err();
        assert!(msg.starts_with("Rule X: things must be good.\n1 violation(s):\n"));
        assert!(msg.contains("  a/b.rs:3: [rule-x] bad\n"));
        assert_eq!(report("Rule X", &[]), Ok(()));
    }
}
