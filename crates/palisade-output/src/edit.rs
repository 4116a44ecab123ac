//! Edits on the original text, and the map from the stripped text back to it.
//!
//! Every decision ends up as an [`Edit`]: a byte span of the ORIGINAL text and what to put
//! there instead. The output is the original with its (resolved, non-overlapping) edits
//! applied, so text no edit touches is copied byte for byte.

use std::borrow::Cow;
use std::ops::Range;

/// Replace `span` of the original text by `with` (empty: delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edit {
    pub span: Range<usize>,
    pub with: String,
}

/// Sorts edits and makes them disjoint: an edit inside another is dropped (the outer one
/// already removes its text), two that partly overlap become one covering both, with both
/// replacements. Partial overlaps only arise between independent detectors (say a phone
/// number that starts inside a URL), where keeping both notices is the honest outcome.
pub(crate) fn resolve(mut edits: Vec<Edit>) -> Vec<Edit> {
    edits.sort_by(|a, b| {
        a.span
            .start
            .cmp(&b.span.start)
            .then(b.span.end.cmp(&a.span.end))
    });
    let mut out: Vec<Edit> = Vec::with_capacity(edits.len());
    for e in edits {
        match out.last_mut() {
            Some(last) if e.span.start < last.span.end => {
                if e.span.end > last.span.end {
                    last.span.end = e.span.end;
                    last.with.push_str(&e.with);
                }
            }
            _ => out.push(e),
        }
    }
    out
}

/// Applies the resolved `edits` that fall in `range` to `text[range]`. An edit that starts
/// before `range` but ends inside it contributes its replacement (the guard's last-resort
/// path for a construct that straddled an earlier release). Borrows when nothing applies.
pub(crate) fn render<'a>(text: &'a str, edits: &[Edit], range: Range<usize>) -> Cow<'a, str> {
    let first = edits.partition_point(|e| e.span.end <= range.start);
    let relevant = edits[first..]
        .iter()
        .take_while(|e| e.span.start < range.end);
    let mut out: Option<String> = None;
    let mut at = range.start;
    for e in relevant {
        let s = out.get_or_insert_with(|| String::with_capacity(range.len() + 32));
        let start = e.span.start.max(range.start);
        if start > at {
            s.push_str(&text[at..start]);
        }
        s.push_str(&e.with);
        at = e.span.end.min(range.end).max(at);
    }
    match out {
        None => Cow::Borrowed(&text[range]),
        Some(mut s) => {
            if at < range.end {
                s.push_str(&text[at..range.end]);
            }
            Cow::Owned(s)
        }
    }
}

/// Maps positions of the stripped text (hidden characters and comments deleted) back to
/// the original. Stored as one entry per deletion: where it happened in the stripped text
/// and how many bytes had been deleted up to and including it.
#[derive(Debug, Clone, Default)]
pub(crate) struct OffsetMap {
    shifts: Vec<(usize, usize)>,
}

impl OffsetMap {
    /// Records that `len` original bytes were deleted at stripped position `at`.
    pub fn delete(&mut self, at: usize, len: usize) {
        match self.shifts.last_mut() {
            Some(last) if last.0 == at => last.1 += len,
            last => {
                let cum = last.map_or(0, |l| l.1) + len;
                self.shifts.push((at, cum));
            }
        }
    }

    /// Original position of the stripped position `p` seen as the START of a span:
    /// deletions at `p` come before it.
    pub fn start(&self, p: usize) -> usize {
        let i = self.shifts.partition_point(|s| s.0 <= p);
        p + if i == 0 { 0 } else { self.shifts[i - 1].1 }
    }

    /// Original position of the stripped position `p` seen as the END of a span:
    /// deletions at `p` come after it.
    pub fn end(&self, p: usize) -> usize {
        let i = self.shifts.partition_point(|s| s.0 < p);
        p + if i == 0 { 0 } else { self.shifts[i - 1].1 }
    }

    /// Both ends of a stripped span.
    pub fn span(&self, r: &Range<usize>) -> Range<usize> {
        if r.is_empty() {
            let s = self.start(r.start);
            return s..s;
        }
        self.start(r.start)..self.end(r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(a: usize, b: usize, w: &str) -> Edit {
        Edit {
            span: a..b,
            with: w.to_string(),
        }
    }

    #[test]
    fn resolve_drops_nested_and_merges_crossing() {
        let r = resolve(vec![
            e(5, 8, "y"),
            e(0, 10, "x"),
            e(12, 15, "a"),
            e(14, 20, "b"),
        ]);
        assert_eq!(r, vec![e(0, 10, "x"), e(12, 20, "ab")]);
    }

    #[test]
    fn render_borrows_when_untouched() {
        let t = "hello world";
        assert!(matches!(render(t, &[], 0..t.len()), Cow::Borrowed(_)));
        let edits = [e(6, 11, "there")];
        assert_eq!(render(t, &edits, 0..t.len()), "hello there");
        assert!(matches!(render(t, &edits, 0..6), Cow::Borrowed("hello ")));
        assert_eq!(render(t, &edits, 8..11), "there");
    }

    #[test]
    fn offset_map() {
        // original "ab<X>cd<YY>e" with <X> (3 bytes) and <YY> (4 bytes) deleted: "abcde"
        let mut m = OffsetMap::default();
        m.delete(2, 3);
        m.delete(4, 4);
        assert_eq!(m.start(0), 0);
        assert_eq!(m.start(2), 5); // 'c'
        assert_eq!(m.end(2), 2); // end just after 'b'
        assert_eq!(m.span(&(2..4)), 5..7); // "cd"
        assert_eq!(m.start(4), 11); // 'e'
        assert_eq!(m.end(5), 12);
    }
}
