//! Finding and reading the workspace's files.
//!
//! Paths come back relative to the workspace root so messages stay short and
//! stable across checkouts. This module only reads; it must not write.

use std::fs;
use std::path::{Path, PathBuf};

use crate::TidyError;

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().unwrap_or(xtask_dir).to_path_buf()
}

/// Reads a file as text.
pub fn read(path: &Path) -> Result<String, TidyError> {
    fs::read_to_string(path).map_err(|source| TidyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and parses a TOML file (a `Cargo.toml`).
pub fn read_toml(path: &Path) -> Result<toml::Table, TidyError> {
    read(path)?
        .parse::<toml::Table>()
        .map_err(|source| TidyError::Toml {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
}

/// The workspace members' directories, relative to `root`, as listed in the
/// root `Cargo.toml` (`[workspace] members`; the list holds plain paths, no
/// globs).
pub fn member_dirs(root: &Path) -> Result<Vec<PathBuf>, TidyError> {
    let manifest = root.join("Cargo.toml");
    let table = read_toml(&manifest)?;
    let members = table
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .ok_or_else(|| TidyError::Shape {
            path: manifest.clone(),
            what: "no [workspace] members list".into(),
        })?;
    Ok(members
        .iter()
        .filter_map(|m| m.as_str())
        .map(PathBuf::from)
        .collect())
}

/// The directory of the member crate named `name` (`crates/<name>`).
pub fn crate_dir(name: &str) -> PathBuf {
    Path::new("crates").join(name)
}

/// Every `.rs` file under `root/dir`, recursively, sorted, relative to
/// `root`. Build output (`target/`) and hidden directories are skipped; a
/// missing `dir` yields nothing.
pub fn rust_files(root: &Path, dir: &Path) -> Result<Vec<PathBuf>, TidyError> {
    let mut out = Vec::new();
    let start = root.join(dir);
    if start.is_dir() {
        walk(&start, &mut out)?;
    }
    out.sort();
    Ok(out
        .into_iter()
        .map(|p| p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p))
        .collect())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), TidyError> {
    let io = |source| TidyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Whether `path` holds only test or bench code: a file named `tests.rs`, or
/// any file under a `tests/` or `benches/` directory.
pub fn is_test_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "tests.rs")
        || path
            .components()
            .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "benches")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_files_are_recognised_by_name_and_folder() {
        assert!(is_test_file(Path::new("crates/a/src/tests.rs")));
        assert!(is_test_file(Path::new(
            "crates/a/src/proxy/tests/streams.rs"
        )));
        assert!(is_test_file(Path::new("crates/a/tests/http.rs")));
        assert!(is_test_file(Path::new("crates/a/benches/scan.rs")));
        assert!(!is_test_file(Path::new("crates/a/src/lib.rs")));
        assert!(!is_test_file(Path::new("crates/a/src/latest.rs")));
    }

    #[test]
    fn the_real_workspace_lists_its_members() {
        let members = member_dirs(&workspace_root()).unwrap();
        assert!(members.contains(&PathBuf::from("xtask")));
        assert!(members.contains(&crate_dir("palisade-openai")));
    }

    #[test]
    fn rust_files_are_relative_and_sorted() {
        let root = workspace_root();
        let files = rust_files(&root, Path::new("xtask/src")).unwrap();
        assert!(files.contains(&PathBuf::from("xtask/src/lib.rs")));
        assert!(files.windows(2).all(|w| w[0] < w[1]));
        assert!(rust_files(&root, Path::new("no/such/dir"))
            .unwrap()
            .is_empty());
    }
}
