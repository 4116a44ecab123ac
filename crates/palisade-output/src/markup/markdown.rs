//! Markdown links and images: `![alt](dest "title")`, `[text](dest)`, reference
//! definitions `[label]: dest "title"` (at a line start, or after blockquote and list
//! markers), and the closing half alone: any `](dest…)` or `]:` dest whose opening bracket
//! was not matched. Renderers match brackets in ways a bounded parser cannot always follow
//! (alt text over the limit, code spans with `]` inside, definitions nested in containers),
//! but no renderer makes a link without a `]` directly followed by `(` or `:`, so judging
//! every such destination is what makes the bracket matcher's limits fail closed.
//!
//! Code spans bind tighter than brackets, as in CommonMark: in `` ![a`]`](u) `` the first
//! `]` is inside the code span and the image's text is `` a`]` ``.

use std::ops::Range;

use super::{Phase2, Scan, Step, MAX_LINK_TEXT, MAX_PARENS, MAX_TITLE, MAX_WS, P};
use crate::url::{host_label, Src, MAX_URL_BYTES};

/// What follows a `]`: the `(…)` of an inline link, or a definition's destination.
#[derive(Debug)]
pub(super) enum Tail {
    /// Parsed whole: the end (after `)` or at the line end) and the destination.
    Whole { end: usize, dest: Range<usize> },
    /// A destination was read, but what follows it is not a valid tail (a title over its
    /// limit, stray text): where reading stopped, and the destination.
    Cut { end: usize, dest: Range<usize> },
    /// A limit was exceeded before a whole destination was read (whitespace run,
    /// destination over [`MAX_URL_BYTES`]): where reading stopped, and the destination's
    /// start when known.
    Overlong {
        end: usize,
        dest_start: Option<usize>,
    },
}

/// A backtick run inside a link text.
#[derive(Debug)]
pub(super) struct Run {
    start: usize,
    len: usize,
    /// False if the run touches the end of what was looked at (it may be longer).
    known: bool,
    /// Index of the run that closes it.
    close: Option<usize>,
}

/// How far back from a `[` the line start is looked for (container markers are short):
/// the stream guard keeps more context than this, so a window's start is never taken for
/// a line start that the whole text does not have.
pub(crate) const BLOCK_PREFIX_MAX: usize = 64;

/// A `\n` at `nl`: is the next line blank? Only looked at up to `stop`.
fn blank_after_newline(b: &[u8], nl: usize, end: usize, stop: usize) -> P<bool> {
    let mut k = nl + 1;
    let lim = end.min(stop.max(nl + 1));
    while k < lim && matches!(b[k], b' ' | b'\t' | b'\r') {
        k += 1;
    }
    if k == end {
        return P::More;
    }
    if k == lim {
        return P::Over(k);
    }
    P::Yes(b[k] == b'\n')
}

impl Scan<'_, '_> {
    /// A `[` at `i` begins a block (a line start after up to three spaces, blockquote `>`
    /// markers and list markers): where a reference definition may stand.
    fn at_block_start(&self, i: usize) -> bool {
        // Only a short prefix can be container markers: look back a bounded distance.
        let lo = i.saturating_sub(BLOCK_PREFIX_MAX);
        let line = match self.b[lo..i].iter().rposition(|&c| c == b'\n') {
            Some(p) => lo + p + 1,
            None if lo == 0 => 0,
            None => return false,
        };
        let mut p = &self.b[line..i];
        loop {
            let before = p.len();
            let spaces = p.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
            p = &p[spaces..];
            if let Some(rest) = p.strip_prefix(b">") {
                p = rest;
            } else if p.len() >= 2 && matches!(p[0], b'-' | b'*' | b'+') && p[1] == b' ' {
                p = &p[1..];
            } else {
                let digits = p.iter().take_while(|c| c.is_ascii_digit()).count();
                if (1..=9).contains(&digits)
                    && p.len() > digits + 1
                    && matches!(p[digits], b'.' | b')')
                    && p[digits + 1] == b' '
                {
                    p = &p[digits + 1..];
                }
            }
            if p.is_empty() {
                return true;
            }
            if p.len() == before {
                return false;
            }
        }
    }

    /// Skips spaces and tabs (at most [`MAX_WS`]) and at most one line ending (not a blank
    /// line). `Err` when the run is over the limit.
    fn skip_ws(&self, mut j: usize, end: usize) -> Result<usize, usize> {
        let b = self.b;
        let start = j;
        let mut nl_seen = false;
        loop {
            while j < end && matches!(b[j], b' ' | b'\t') {
                j += 1;
                if j - start > MAX_WS {
                    return Err(j);
                }
            }
            let nl = if j + 1 < end && b[j] == b'\r' && b[j + 1] == b'\n' {
                Some(j + 1)
            } else if j < end && b[j] == b'\n' {
                Some(j)
            } else {
                None
            };
            match nl {
                Some(nl) if !nl_seen => {
                    let mut k = nl + 1;
                    while k < end && matches!(b[k], b' ' | b'\t') {
                        k += 1;
                        if k - start > MAX_WS {
                            return Err(k);
                        }
                    }
                    if k < end && matches!(b[k], b'\n' | b'\r') {
                        // A blank line: stop at it, the caller sees a character it does
                        // not expect.
                        return Ok(nl);
                    }
                    nl_seen = true;
                    j = k;
                }
                _ => return Ok(j),
            }
        }
    }

    /// The text's backtick runs, each with the run that closes it as a code span (the
    /// next run of the same length), computed once per scan. A run at the end of a window
    /// that may still grow neither opens nor closes anything.
    fn backtick_runs(&self) -> &[Run] {
        self.runs.get_or_init(|| {
            let b = self.b;
            let mut runs = Vec::new();
            let mut k = 0;
            while let Some(p) = b[k..].iter().position(|&c| c == b'`') {
                let start = k + p;
                let len = b[start..].iter().take_while(|&&c| c == b'`').count();
                runs.push(Run {
                    start,
                    len,
                    known: start + len != b.len() || self.at_eof,
                    close: None,
                });
                k = start + len;
            }
            let mut next: std::collections::HashMap<usize, usize> =
                std::collections::HashMap::new();
            for r in (0..runs.len()).rev() {
                if !runs[r].known {
                    continue;
                }
                runs[r].close = next.get(&runs[r].len).copied();
                next.insert(runs[r].len, r);
            }
            runs
        })
    }

    /// `[` at `open` to its matching `]` (nested brackets balanced, escapes and code spans
    /// skipped, no blank line, at most [`MAX_LINK_TEXT`] bytes). A `label` (reference)
    /// may not contain brackets.
    pub(super) fn link_text(&self, open: usize, end: usize, label: bool) -> P<usize> {
        let b = self.b;
        let stop = end.min(open + 1 + MAX_LINK_TEXT);
        let mut depth = 1usize;
        let mut j = open + 1;
        while j < stop {
            match b[j] {
                b'\\' => {
                    j += 2;
                    continue;
                }
                b'`' => {
                    let runs = self.backtick_runs();
                    let r = runs.partition_point(|r| r.start + r.len <= j);
                    let Some(run) = runs.get(r) else {
                        j += 1;
                        continue;
                    };
                    if run.start != j {
                        // Inside a run whose first backtick was escaped: literal.
                        j = run.start + run.len;
                        continue;
                    }
                    match run.close.map(|c| &runs[c]) {
                        // A code span inside the link text: skipped whole.
                        Some(c) if c.start + c.len <= stop => j = c.start + c.len,
                        // The closing run may still come (or the run may still grow).
                        None if !run.known || (stop == end && self.more_possible(end)) => {
                            return P::More
                        }
                        _ => j += run.len,
                    }
                    continue;
                }
                b'[' if label => return P::No,
                b'[' => depth += 1,
                b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return P::Yes(j);
                    }
                }
                b'\n' => match blank_after_newline(b, j, end, stop) {
                    P::Yes(true) => return P::No,
                    P::Yes(false) => {}
                    P::More => return self.eot(end),
                    P::No | P::Over(_) => return P::No,
                },
                _ => {}
            }
            j += 1;
        }
        if stop < end {
            P::No
        } else {
            self.eot(end)
        }
    }

    /// A destination at `j`: `<…>` or a raw run without spaces, parentheses balanced.
    fn destination(&self, j: usize, end: usize) -> P<(Range<usize>, usize)> {
        let b = self.b;
        if j >= end {
            return self.eot(end);
        }
        if b[j] == b'<' {
            let s = j + 1;
            let mut k = s;
            loop {
                if k >= end {
                    return self.eot(end);
                }
                if k - s > MAX_URL_BYTES {
                    return P::Over(k);
                }
                match b[k] {
                    b'>' => return P::Yes((s..k, k + 1)),
                    b'\n' | b'<' => return P::No,
                    b'\\' => k += 2,
                    _ => k += 1,
                }
            }
        }
        let s = j;
        let mut k = j;
        let mut depth = 0usize;
        loop {
            if k >= end {
                return self.eot(end);
            }
            if k - s > MAX_URL_BYTES {
                return P::Over(k);
            }
            let c = b[k];
            if c <= b' ' || c == 0x7f {
                break;
            }
            match c {
                b'\\' if k + 1 < end && b[k + 1].is_ascii_punctuation() => {
                    k += 2;
                    continue;
                }
                b'(' => {
                    depth += 1;
                    if depth > MAX_PARENS {
                        return P::Over(k);
                    }
                }
                b')' => {
                    if depth == 0 {
                        break;
                    }
                    depth -= 1;
                }
                _ => {}
            }
            k += 1;
        }
        P::Yes((s..k, k))
    }

    /// A title starting at `j` (`"…"`, `'…'` or `(…)`); returns the position after it.
    fn title(&self, j: usize, end: usize) -> P<usize> {
        let b = self.b;
        let close = match b[j] {
            b'(' => b')',
            q => q,
        };
        let mut k = j + 1;
        loop {
            if k >= end {
                return self.eot(end);
            }
            if k - j > MAX_TITLE {
                return P::Over(k);
            }
            match b[k] {
                c if c == close => return P::Yes(k + 1),
                b'\\' => {
                    k += 2;
                    continue;
                }
                b'(' if close == b')' => return P::No,
                b'\n' => match blank_after_newline(b, k, end, j + 1 + MAX_TITLE) {
                    P::Yes(true) => return P::No,
                    P::Yes(false) => {}
                    P::More => return self.eot(end),
                    P::No => return P::No,
                    P::Over(p) => return P::Over(p),
                },
                _ => {}
            }
            k += 1;
        }
    }

    /// The destination and optional title after `j` (the `(` of an inline link, or a
    /// definition's `:`), ending where `close` accepts: `)` for a link, the line end for a
    /// definition.
    fn tail(&self, j: usize, end: usize, inline: bool) -> P<Tail> {
        let b = self.b;
        let j = match self.skip_ws(j + 1, end) {
            Ok(j) => j,
            Err(p) => {
                return P::Yes(Tail::Overlong {
                    end: p,
                    dest_start: None,
                })
            }
        };
        if j >= end {
            return self.eot(end);
        }
        if inline && b[j] == b')' {
            return P::Yes(Tail::Whole {
                end: j + 1,
                dest: j..j,
            });
        }
        let (dest, after) = match self.destination(j, end) {
            P::Yes(x) => x,
            P::No => return P::No,
            P::More => return P::More,
            P::Over(p) => {
                return P::Yes(Tail::Overlong {
                    end: p,
                    dest_start: Some(j),
                })
            }
        };
        if !inline && dest.is_empty() && b.get(j) != Some(&b'<') {
            return P::No;
        }
        let cut = |at: usize| {
            P::Yes(Tail::Cut {
                end: at,
                dest: dest.clone(),
            })
        };
        // The end: `)` for a link; for a definition, spaces then the line's end.
        let finish = |k: usize| -> P<Tail> {
            if inline {
                return if b[k] == b')' {
                    P::Yes(Tail::Whole {
                        end: k + 1,
                        dest: dest.clone(),
                    })
                } else {
                    cut(after)
                };
            }
            let mut m = k;
            while m < end && matches!(b[m], b' ' | b'\t' | b'\r') {
                m += 1;
            }
            if m >= end {
                return if self.more_possible(end) {
                    P::More
                } else {
                    P::Yes(Tail::Whole {
                        end,
                        dest: dest.clone(),
                    })
                };
            }
            if b[m] == b'\n' {
                P::Yes(Tail::Whole {
                    end: m,
                    dest: dest.clone(),
                })
            } else {
                cut(after)
            }
        };
        // A definition's title must start on the same line or the next; a link's title may
        // too. Whitespace (one line ending at most) separates it from the destination.
        let k = match self.skip_ws(after, end) {
            Ok(k) => k,
            Err(p) => return cut(p.min(after + MAX_WS)),
        };
        if k >= end {
            return if self.more_possible(end) {
                P::More
            } else if inline {
                cut(after)
            } else {
                finish(after.min(end))
            };
        }
        if k > after && matches!(b[k], b'"' | b'\'' | b'(') {
            let t = match self.title(k, end) {
                P::Yes(t) => t,
                P::More => return P::More,
                // A title that is not one (or is over its limit): the destination was
                // read, and it alone decides.
                P::No | P::Over(_) => return cut(after),
            };
            let m = if inline {
                match self.skip_ws(t, end) {
                    Ok(m) => m,
                    Err(_) => return cut(after),
                }
            } else {
                t
            };
            if m >= end {
                return if self.more_possible(end) {
                    P::More
                } else if inline {
                    cut(after)
                } else {
                    finish(m)
                };
            }
            return finish(m);
        }
        if inline {
            finish(k)
        } else {
            // A definition without a title ends on the destination's line.
            finish(after)
        }
    }

    /// Where a destination starts as written: at its `<` in the `<…>` form.
    fn dest_from(&self, dest: &Range<usize>) -> usize {
        if dest.start > 0 && self.b[dest.start - 1] == b'<' {
            dest.start - 1
        } else {
            dest.start
        }
    }

    /// The verdict on a tail: `None` to leave it, or the rule and label to remove it with.
    fn tail_verdict(&self, tail: &Tail) -> Option<(&'static str, String)> {
        match tail {
            Tail::Whole { dest, .. } | Tail::Cut { dest, .. } => {
                self.verdict(&self.t[dest.clone()], Src::Markdown)
            }
            Tail::Overlong {
                end,
                dest_start: Some(s),
            } => Some((
                "exfil-url",
                host_label(&crate::url::host_of_prefix(&self.t[*s..*end])),
            )),
            Tail::Overlong {
                dest_start: None, ..
            } => Some(("oversized-link", "oversized link".to_string())),
        }
    }

    /// `![alt](dest)` with `!` at `i`.
    pub(super) fn image(&self, i: usize, end: usize, out: &mut Phase2) -> Step {
        let close = match self.link_text(i + 1, end, false) {
            P::Yes(c) => c,
            P::No | P::Over(_) => return Step::Next,
            P::More => return Step::Open,
        };
        if close + 1 >= end {
            return if self.more_possible(end) {
                Step::Open
            } else {
                Step::Next
            };
        }
        if self.b[close + 1] != b'(' {
            return Step::Next;
        }
        let tail = match self.tail(close + 1, end, true) {
            P::Yes(t) => t,
            P::No | P::Over(_) => return Step::Next,
            P::More => return Step::Open,
        };
        let (e, whole) = match &tail {
            Tail::Whole { end, .. } => (*end, true),
            Tail::Cut { dest, .. } => (dest.end, false),
            Tail::Overlong { end, .. } => (*end, false),
        };
        out.zones.push(i..e);
        match self.tail_verdict(&tail) {
            Some((rule, label)) => {
                self.deny(
                    out,
                    rule,
                    i..e,
                    &[(i..e, format!("[image removed: {label}]"))],
                );
                out.markers.push(i..e);
                Step::Jump(e)
            }
            // An allowed image: its alt text is scanned too.
            None if whole => Step::Enter {
                from: i + 2,
                limit: close,
                resume: e,
            },
            None => Step::Jump(e),
        }
    }

    /// `[` at `i`: a reference definition (at a block start) or an inline link.
    pub(super) fn bracket(&self, i: usize, end: usize, out: &mut Phase2) -> Step {
        if self.at_block_start(i) {
            match self.link_text(i, end, true) {
                P::Yes(close) if close + 1 < end && self.b[close + 1] == b':' && close > i + 1 => {
                    match self.tail(close + 1, end, false) {
                        P::Yes(tail) => return self.definition(i, tail, out),
                        P::More => return Step::Open,
                        P::No | P::Over(_) => {}
                    }
                }
                P::Yes(close) if close + 1 >= end && self.more_possible(end) => return Step::Open,
                P::More => return Step::Open,
                _ => {}
            }
        }
        let close = match self.link_text(i, end, false) {
            P::Yes(c) => c,
            P::No | P::Over(_) => return Step::Next,
            P::More => return Step::Open,
        };
        if close + 1 >= end {
            return if self.more_possible(end) {
                Step::Open
            } else {
                Step::Next
            };
        }
        if self.b[close + 1] != b'(' {
            return Step::Next;
        }
        let tail = match self.tail(close + 1, end, true) {
            P::Yes(t) => t,
            P::No | P::Over(_) => return Step::Next,
            P::More => return Step::Open,
        };
        let Tail::Whole { end: e, .. } = tail else {
            // Not a whole link: the `](…` is judged on its own when the scan reaches it.
            return Step::Next;
        };
        out.zones.push(i..e);
        if let Some((rule, label)) = self.tail_verdict(&tail) {
            // The text stays (and is scanned: it may hold an image); the brackets and
            // destination go.
            self.deny(
                out,
                rule,
                i..e,
                &[
                    (i..i + 1, String::new()),
                    (close..e, format!(" (link removed: {label})")),
                ],
            );
        }
        Step::Enter {
            from: i + 1,
            limit: close,
            resume: e,
        }
    }

    /// A reference definition from `i` with its parsed tail.
    fn definition(&self, i: usize, tail: Tail, out: &mut Phase2) -> Step {
        let (e, dest_start) = match &tail {
            Tail::Whole { end, dest } | Tail::Cut { end, dest } => (*end, self.dest_from(dest)),
            Tail::Overlong { end, dest_start } => (*end, dest_start.unwrap_or(*end)),
        };
        let dest_start = dest_start.min(e);
        out.zones.push(i..e);
        if let Some((rule, label)) = self.tail_verdict(&tail) {
            let from = if matches!(
                tail,
                Tail::Overlong {
                    dest_start: None,
                    ..
                }
            ) {
                e
            } else {
                dest_start
            };
            self.deny(
                out,
                rule,
                i..e,
                &[(from.min(e)..e, format!("(link removed: {label})"))],
            );
        }
        Step::Jump(e.max(i + 1))
    }

    /// A `]` the bracket matcher left alone, at `i`: a following `(` or `:` still makes a
    /// link or a definition to some renderer, so the destination is judged.
    pub(super) fn close_bracket(&self, i: usize, end: usize, out: &mut Phase2) -> Step {
        let b = self.b;
        if i + 1 >= end {
            return if self.more_possible(end) {
                Step::Open
            } else {
                Step::Next
            };
        }
        let inline = match b[i + 1] {
            b'(' => true,
            b':' => false,
            _ => return Step::Next,
        };
        let tail = match self.tail(i + 1, end, inline) {
            P::Yes(t) => t,
            P::No | P::Over(_) => return Step::Next,
            P::More => return Step::Open,
        };
        let (e, from) = match &tail {
            Tail::Whole { end, dest } | Tail::Cut { end, dest } => (*end, self.dest_from(dest)),
            Tail::Overlong { end, .. } => (*end, i + 1),
        };
        let e = e.max(i + 2);
        out.zones.push(i..e);
        if let Some((rule, label)) = self.tail_verdict(&tail) {
            let (from, with) = if inline {
                (i + 1, format!(" (link removed: {label})"))
            } else if from == i + 1 {
                // Over a limit before the destination: the `:` stays, what was read goes.
                ((i + 2).min(e), format!(" (link removed: {label})"))
            } else {
                (from.min(e), format!("(link removed: {label})"))
            };
            self.deny(out, rule, i..e, &[(from..e, with)]);
        }
        Step::Jump(e)
    }

    /// A `(…)` or `:…` tail at `e` right after a replacement that reads `[…]` at `start`.
    pub(super) fn marker_tail(&self, start: usize, e: usize, out: &mut Phase2) {
        let n = self.b.len();
        let inline = self.b[e] == b'(';
        match self.tail(e, n, inline) {
            P::Yes(tail) => {
                let (end, from) = match &tail {
                    Tail::Whole { end, dest } | Tail::Cut { end, dest } => {
                        (*end, if inline { e } else { self.dest_from(dest) })
                    }
                    Tail::Overlong { end, .. } => (*end, e),
                };
                if let Some((rule, label)) = self.tail_verdict(&tail) {
                    out.zones.push(start..end);
                    let with = if inline {
                        format!(" (link removed: {label})")
                    } else {
                        format!("(link removed: {label})")
                    };
                    self.deny(out, rule, start..end, &[(from.min(end)..end, with)]);
                }
            }
            P::More => out.open_at(start),
            P::No | P::Over(_) => {}
        }
    }
}
