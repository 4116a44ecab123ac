//! Rule `module-docs`: every Rust file starts with a `//!` doc comment.
//!
//! Each crate root and module says what it is for (and what it must not do)
//! before any code, so a reader opening any file knows where they are.
//! Blank lines before the doc are allowed; `#![doc = …]` counts as a doc.

use std::path::Path;

use crate::Violation;

/// The rule's name in messages.
pub const RULE: &str = "module-docs";

/// A violation when the first non-blank line of `text` is not an inner doc.
pub fn missing_module_doc(path: &Path, text: &str) -> Option<Violation> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    let documented = first.is_some_and(|l| l.starts_with("//!") || l.starts_with("#![doc"));
    (!documented).then(|| {
        let (line, found) = text
            .lines()
            .enumerate()
            .find(|(_, l)| !l.trim().is_empty())
            .map_or((1, "an empty file"), |(i, l)| (i + 1, l.trim()));
        Violation::new(
            path,
            RULE,
            format!("file must start with a `//!` doc saying what it is for; found {found:?}"),
        )
        .at_line(line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> bool {
        missing_module_doc(Path::new("m.rs"), text).is_none()
    }

    #[test]
    fn inner_docs_pass() {
        assert!(ok("//! The module.\nfn a() {}\n"));
        assert!(ok("\n\n//! After blank lines.\n"));
        assert!(ok("#![doc = include_str!(\"../README.md\")]\n"));
    }

    #[test]
    fn anything_else_first_fails() {
        assert!(!ok("use std::io;\n//! Too late.\n"));
        assert!(!ok("/// An item doc, not a module doc.\nfn a() {}\n"));
        assert!(!ok("// A plain comment.\n"));
        assert!(!ok(""));
        let v = missing_module_doc(Path::new("m.rs"), "\nuse x;\n").unwrap();
        assert_eq!(v.line, Some(2));
    }
}
