//! Rule `file-size`: no non-test source file over [`MAX_LINES`] lines.
//!
//! Long files hide structure and make review skim; the limit forces a split
//! along a real seam. Test files (`tests.rs`, anything under `tests/`) are
//! exempt: a long table of cases reads fine.

use std::path::Path;

use crate::Violation;

/// The rule's name in messages.
pub const RULE: &str = "file-size";

/// The most lines a non-test source file may have.
pub const MAX_LINES: usize = 800;

/// A violation when `text` (the content of `path`) is over [`MAX_LINES`].
pub fn oversized(path: &Path, text: &str) -> Option<Violation> {
    let lines = text.lines().count();
    (lines > MAX_LINES).then(|| {
        Violation::new(
            path,
            RULE,
            format!("{lines} lines, over the {MAX_LINES}-line limit for non-test source files; split it"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_inclusive() {
        let at_limit = "x\n".repeat(MAX_LINES);
        assert!(oversized(Path::new("a.rs"), &at_limit).is_none());
        let over = "x\n".repeat(MAX_LINES + 1);
        let v = oversized(Path::new("a.rs"), &over).unwrap();
        assert!(v.detail.starts_with("801 lines"), "{}", v.detail);
    }
}
