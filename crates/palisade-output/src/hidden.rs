//! Hidden markup: what a reader does not see but the next model (or a parser) does.
//!
//! Removed: HTML comments (`<!-- … -->`, also `<!-->`, `<!--->` and `--!>` endings; an
//! unclosed comment hides everything after it, so it runs to the end), zero-width
//! characters, Unicode tag characters (U+E0000–E007F), bidi embedding/override/isolate
//! controls, invisible marks (LRM, RLM, ALM and the other format characters of
//! `palisade_detect::chars::is_invisible_mark`), and variation selectors beyond the first
//! after a visible character. The character classes are palisade-detect's, shared with the
//! input side's normalization.
//!
//! Kept, because they are how real text is written: a zero-width joiner or non-joiner
//! between two non-ASCII characters (emoji ZWJ sequences, Indic and Persian shaping), one
//! variation selector after a character (emoji presentation), and the tag characters of a
//! well-formed subdivision flag (🏴 + 2–6 tag letters/digits + cancel tag). Each of these
//! carries at most a bit or two per visible character, which is not a usable channel.
//!
//! This runs before every other detector: the others see the text with hidden characters
//! gone, so `AK\u{200B}IA…` is still a key and `[x]<!-- -->(javascript:…)` is still a link.

use std::borrow::Cow;

use palisade_detect::chars::{
    is_bidi_control, is_invisible_mark, is_tag, is_variation_selector, is_zero_width,
};

use crate::edit::{Edit, OffsetMap};
use crate::findings::Applied;
use crate::options::Class;

/// The text with hidden markup deleted, and how to get back to the original.
#[derive(Debug)]
pub(crate) struct Stripped<'a> {
    pub text: Cow<'a, str>,
    pub map: OffsetMap,
    /// Deletions, in original coordinates (one per run of one rule).
    pub edits: Vec<Edit>,
    pub findings: Vec<Applied>,
    /// Start (original) of a comment whose end has not arrived yet (streaming only).
    pub open: Option<usize>,
}

impl<'a> Stripped<'a> {
    pub fn identity(text: &'a str) -> Self {
        Stripped {
            text: Cow::Borrowed(text),
            map: OffsetMap::default(),
            edits: Vec::new(),
            findings: Vec::new(),
            open: None,
        }
    }
}

/// Characters a joiner may legitimately sit between: anything outside ASCII that is not
/// itself invisible (emoji, Indic and Arabic-script letters and marks).
fn joinable(c: char) -> bool {
    !c.is_ascii()
        && !c.is_whitespace()
        && !is_zero_width(c)
        && !is_bidi_control(c)
        && !is_tag(c)
        && !is_variation_selector(c)
        && !is_invisible_mark(c)
}

/// Length in bytes of a well-formed subdivision-flag tag run at the start of `s` (which
/// follows U+1F3F4): 2–6 tag letters or digits and a cancel tag.
fn flag_tags(s: &str) -> Option<usize> {
    let mut n = 0;
    for (i, c) in s.char_indices() {
        match c {
            '\u{E0030}'..='\u{E0039}' | '\u{E0061}'..='\u{E007A}' if n < 6 => n += 1,
            '\u{E007F}' if n >= 2 => return Some(i + c.len_utf8()),
            _ => return None,
        }
    }
    None
}

/// End of the HTML comment starting at `i` (`text[i..]` starts with `<!--`), if it has one.
fn comment_end(text: &str, i: usize) -> Option<usize> {
    let rest = &text[i..];
    if rest.starts_with("<!-->") {
        return Some(i + 5);
    }
    if rest.starts_with("<!--->") {
        return Some(i + 6);
    }
    let body = &rest[4..];
    let a = body.find("-->").map(|k| k + 3);
    let b = body.find("--!>").map(|k| k + 4);
    let end = match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }?;
    Some(i + 4 + end)
}

struct Builder<'a> {
    text: &'a str,
    out: Option<String>,
    /// Original position up to which `out` has copied (or would have copied).
    copied: usize,
    map: OffsetMap,
    edits: Vec<Edit>,
    findings: Vec<Applied>,
}

impl Builder<'_> {
    fn delete(&mut self, span: std::ops::Range<usize>, rule: &'static str) {
        let out = self
            .out
            .get_or_insert_with(|| String::with_capacity(self.text.len()));
        out.push_str(&self.text[self.copied..span.start]);
        self.copied = span.end;
        self.map.delete(out.len(), span.len());
        // One finding and one edit per run of the same rule.
        match (self.edits.last_mut(), self.findings.last_mut()) {
            (Some(e), Some(f)) if e.span.end == span.start && f.rule == rule => {
                e.span.end = span.end;
                f.span_in_original.end = span.end;
            }
            _ => {
                self.edits.push(Edit {
                    span: span.clone(),
                    with: String::new(),
                });
                self.findings.push(Applied {
                    class: Class::Hidden,
                    rule,
                    span_in_original: span,
                });
            }
        }
    }
}

/// Deletes hidden markup from `text`. With `at_eof` false (a stream's window), an unclosed
/// comment is reported in [`Stripped::open`] instead of being final.
pub(crate) fn strip(text: &str, at_eof: bool) -> Stripped<'_> {
    let mut b = Builder {
        text,
        out: None,
        copied: 0,
        map: OffsetMap::default(),
        edits: Vec::new(),
        findings: Vec::new(),
    };
    let mut open = None;
    // The last character kept, and whether it was a variation selector.
    let mut prev: Option<char> = None;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        // Fast path: an ASCII character other than `<` is never hidden markup.
        if bytes[i] < 0x80 && bytes[i] != b'<' {
            prev = Some(bytes[i] as char);
            i += 1;
            continue;
        }
        let Some(c) = text[i..].chars().next() else {
            break;
        };
        let len = c.len_utf8();
        if c == '<' && !at_eof && text.len() - i < 4 && "<!--".starts_with(&text[i..]) {
            // `<`, `<!` or `<!-` at the end of a window may open a comment, and what the
            // comment hides changes what comes before it (a URL runs on past it).
            open = Some(i);
            b.delete(i..text.len(), "html-comment");
            break;
        }
        if c == '<' && text[i..].starts_with("<!--") {
            match comment_end(text, i) {
                Some(end) => {
                    b.delete(i..end, "html-comment");
                    i = end;
                }
                None => {
                    if !at_eof {
                        open = Some(i);
                    }
                    b.delete(i..text.len(), "html-comment");
                    i = text.len();
                }
            }
            continue;
        }
        if is_tag(c) {
            if prev == Some('\u{1F3F4}') {
                if let Some(n) = flag_tags(&text[i..]) {
                    prev = Some('\u{E007F}');
                    i += n;
                    continue;
                }
            }
            let run = text[i..]
                .char_indices()
                .find(|&(_, c)| !is_tag(c))
                .map_or(text.len(), |(k, _)| i + k);
            b.delete(i..run, "unicode-tag");
            i = run;
            continue;
        }
        if is_bidi_control(c) {
            b.delete(i..i + len, "bidi-control");
            i += len;
            continue;
        }
        if is_invisible_mark(c) {
            b.delete(i..i + len, "invisible-mark");
            i += len;
            continue;
        }
        if is_zero_width(c) {
            let next = text[i + len..].chars().next();
            let legit = matches!(c, '\u{200C}' | '\u{200D}')
                && prev.is_some_and(|p| joinable(p) || (p == '\u{FE0F}'))
                && next.is_some_and(joinable);
            if legit {
                prev = Some(c);
            } else {
                b.delete(i..i + len, "zero-width");
            }
            i += len;
            continue;
        }
        if is_variation_selector(c) {
            let after_base = prev.is_some_and(|p| {
                !is_variation_selector(p) && !is_zero_width(p) && !p.is_whitespace()
            });
            if after_base {
                prev = Some(c);
            } else {
                b.delete(i..i + len, "variation-selector");
            }
            i += len;
            continue;
        }
        prev = Some(c);
        i += len;
    }
    let Builder {
        out,
        copied,
        map,
        edits,
        findings,
        ..
    } = b;
    let text = match out {
        None => Cow::Borrowed(text),
        Some(mut s) => {
            s.push_str(&text[copied..]);
            Cow::Owned(s)
        }
    };
    Stripped {
        text,
        map,
        edits,
        findings,
        open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: &str, rules: &[&str]) {
        let s = strip(input, true);
        assert_eq!(s.text, expect, "{input:?}");
        let got: Vec<_> = s.findings.iter().map(|f| f.rule).collect();
        assert_eq!(got, rules, "{input:?}");
        // Every deletion is a span of the original that, removed, gives the output.
        let mut rebuilt = String::new();
        let mut at = 0;
        for e in &s.edits {
            rebuilt.push_str(&input[at..e.span.start]);
            at = e.span.end;
        }
        rebuilt.push_str(&input[at..]);
        assert_eq!(rebuilt, expect);
    }

    #[test]
    fn comments() {
        check("a<!-- do X -->b", "ab", &["html-comment"]);
        check("a<!-->b<!--->c", "abc", &["html-comment", "html-comment"]);
        check("a<!-- x --!>b", "ab", &["html-comment"]);
        check("keep <!-- unclosed\nrest", "keep ", &["html-comment"]);
        let s = strip("keep <!-- unclosed", false);
        assert_eq!(s.open, Some(5));
        for partial in ["x <", "x <!", "x <!-"] {
            assert_eq!(strip(partial, false).open, Some(2), "{partial:?}");
            assert_eq!(strip(partial, true).text, partial);
        }
    }

    #[test]
    fn invisible_characters() {
        check("ig\u{200B}nore", "ignore", &["zero-width"]);
        check(
            "a\u{202E}b\u{2066}c",
            "abc",
            &["bidi-control", "bidi-control"],
        );
        let tags: String = "run rm -rf"
            .chars()
            .map(|c| char::from_u32(0xE0000 + c as u32).unwrap())
            .collect();
        check(&format!("hi{tags}!"), "hi!", &["unicode-tag"]);
        check("\u{FEFF}start", "start", &["zero-width"]);
        check(
            "AK\u{200E}IA\u{200F}Z7\u{061C}Q2",
            "AKIAZ7Q2",
            &["invisible-mark", "invisible-mark", "invisible-mark"],
        );
        check(
            "x\u{FE01}\u{FE02}\u{FE03}",
            "x\u{FE01}",
            &["variation-selector"],
        );
    }

    #[test]
    fn legitimate_joiners_flags_and_emoji_stay() {
        for s in [
            "family 👨\u{200D}👩\u{200D}👧 ok",
            "heart on fire ❤\u{FE0F}\u{200D}🔥",
            "می\u{200C}خواهم",
            "क्\u{200D}ष",
            "flag \u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F} ok",
            "keycap 1\u{FE0F}\u{20E3}",
        ] {
            check(s, s, &[]);
        }
        // A joiner between ASCII letters is smuggling, and a joiner run is not a sequence.
        check("a\u{200D}b", "ab", &["zero-width"]);
        check("é\u{200D}\u{200D}é", "é\u{200D}é", &["zero-width"]);
        // A flag cannot carry a payload: a long tag run after it goes.
        let long: String = "ignoreallrules"
            .chars()
            .map(|c| char::from_u32(0xE0000 + c as u32).unwrap())
            .collect();
        check(&format!("\u{1F3F4}{long}"), "\u{1F3F4}", &["unicode-tag"]);
    }

    #[test]
    fn nothing_hidden_borrows() {
        let s = strip("plain text, <b>bold</b> and <!", true);
        assert!(matches!(s.text, Cow::Borrowed(_)));
        assert!(s.edits.is_empty());
    }
}
