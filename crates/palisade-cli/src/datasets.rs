//! Where `palisade eval` and `palisade train` find their data by default,
//! and their progress lines.
//!
//! The shared datasets sit next to the repository
//! (`<repo>/../shared/datasets/{train,eval}`); the defaults are resolved
//! from the repository root (the nearest ancestor of the working directory
//! holding `crates/palisade-cli`, else the root this binary was built in),
//! so they work from any directory of a fresh clone, and a missing
//! directory is an error that names it and says what to pass instead.
//!
//! Must not: guess beyond those two roots, or print progress into a pipe
//! (it goes to stderr, only on a terminal, at most a few times a second).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// The repository root: from the working directory up, else the build's.
pub(crate) fn repo_root() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf);
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            cwd.ancestors()
                .find(|d| d.join("crates/palisade-cli").is_dir())
                .map(Path::to_path_buf)
        })
        .or(built)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `given`, or the shared dataset `split` (`train` or `eval`) beside the
/// repository; an error naming the path when it is not a directory.
pub(crate) fn dataset_dir(given: Option<PathBuf>, split: &str, flag: &str) -> Result<PathBuf> {
    let explicit = given.is_some();
    let dir = given.unwrap_or_else(|| repo_root().join("../shared/datasets").join(split));
    if !dir.is_dir() {
        if explicit {
            bail!("no dataset directory at {}", dir.display());
        }
        bail!(
            "no dataset directory at {} (the default: the shared `{split}` set beside the repository); \
             pass {flag} DIR with a directory of *.jsonl files",
            dir.display()
        );
    }
    Ok(dir)
}

/// Progress lines on stderr: only on a terminal and without `--quiet`, at
/// most every 250 ms (a fast run prints nothing but its last line).
pub(crate) struct Progress {
    on: bool,
    last: Option<Instant>,
}

impl Progress {
    const EVERY: Duration = Duration::from_millis(250);

    pub(crate) fn new(quiet: bool) -> Self {
        Self {
            on: !quiet && std::io::stderr().is_terminal(),
            last: None,
        }
    }

    /// Overwrites the line with `text` unless one was shown very recently.
    pub(crate) fn tick(&mut self, text: &str) {
        if !self.on || self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
    }

    /// The final line, always shown (when on).
    pub(crate) fn done(&mut self, text: &str) {
        if self.on {
            let _ = writeln!(std::io::stderr().lock(), "\r\x1b[2K{text}");
        }
    }
}
