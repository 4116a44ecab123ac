//! Rule `pure-crate-clock`: pure crates do not read the clock.
//!
//! Time is passed in by the caller so that pure logic is deterministic and
//! its tests need no sleeping. The check is textual, with a deliberately
//! simple heuristic:
//! - everything after a line that is exactly `#[cfg(test)]` is test code and
//!   is ignored (inline test modules sit at the end of a file by convention),
//!   except when the item it gates is one line ending in `;` (an out-of-line
//!   `mod tests;`, a `use`): then only that line is skipped;
//! - files named `tests.rs`, or under `tests/` or `benches/`, are ignored;
//! - comment lines (starting with `//`) are ignored, so docs may name the
//!   calls they warn about.
//!
//! A clock read placed after an early `#[cfg(test)]` item would slip through;
//! keep test modules last.

use std::path::Path;

use crate::Violation;

/// The rule's name in messages.
pub const RULE: &str = "pure-crate-clock";

/// Calls that read the wall or monotonic clock (`Local::now` covers
/// `chrono::Local::now`).
pub const CLOCK_READS: &[&str] = &["Instant::now", "SystemTime::now", "Utc::now", "Local::now"];

/// The clock reads in one source file's text, outside test code.
pub fn clock_reads(path: &Path, text: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        let trimmed = line.trim();
        if trimmed == "#[cfg(test)]" {
            // Attributes and blank lines between the gate and its item.
            while lines
                .next_if(|(_, l)| l.trim().is_empty() || l.trim().starts_with("#["))
                .is_some()
            {}
            match lines.next() {
                Some((_, item)) if item.trim_end().ends_with(';') => continue,
                _ => break,
            }
        }
        if trimmed.starts_with("//") {
            continue;
        }
        for call in CLOCK_READS {
            if contains_path(line, call) {
                out.push(
                    Violation::new(
                        path,
                        RULE,
                        format!(
                            "pure crate reads the clock (`{call}`); take the time as a parameter"
                        ),
                    )
                    .at_line(index + 1),
                );
            }
        }
    }
    out
}

/// Whether `line` contains `call` not preceded by an identifier character
/// (`MyInstant::now` is not `Instant::now`).
fn contains_path(line: &str, call: &str) -> bool {
    line.match_indices(call).any(|(at, _)| {
        !line[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(text: &str) -> Vec<usize> {
        clock_reads(Path::new("x.rs"), text)
            .into_iter()
            .filter_map(|v| v.line)
            .collect()
    }

    #[test]
    fn clock_reads_outside_tests_are_found_with_their_line() {
        let text = "fn a() {\n    let t = std::time::Instant::now();\n}\nfn b() { SystemTime::now(); chrono::Utc::now(); }\n";
        assert_eq!(lines_of(text), vec![2, 4, 4]);
    }

    #[test]
    fn chrono_local_now_is_a_clock_read() {
        assert_eq!(lines_of("let d = chrono::Local::now();"), vec![1]);
    }

    #[test]
    fn text_after_cfg_test_and_comments_are_ignored() {
        let text = "/// Never call `Instant::now` here.\n// Instant::now\nfn a() {}\n#[cfg(test)]\nmod tests { fn t() { Instant::now(); } }\n";
        assert!(lines_of(text).is_empty());
    }

    #[test]
    fn an_out_of_line_test_module_gates_only_its_declaration() {
        let text = "//! M.\n#[cfg(test)]\nmod tests;\n\nfn a() { Instant::now(); }\n";
        assert_eq!(lines_of(text), vec![5]);
        let text = "#[cfg(test)]\n#[path = \"t.rs\"]\nmod t;\nfn a() { Instant::now(); }\n";
        assert_eq!(lines_of(text), vec![4]);
    }

    #[test]
    fn longer_identifiers_are_not_clock_reads() {
        assert!(lines_of("let t = MyInstant::now();").is_empty());
        assert_eq!(lines_of("let t = (Instant::now)();"), vec![1]);
    }
}
