//! Links and images: one left-to-right pass over the stripped text that finds everything a
//! renderer might turn into a request or a click, judges its destination, and neutralizes
//! what is denied. By concern:
//!
//! * [`markdown`]: inline links and images, reference definitions, and any `](…)` or `]:`
//!   whose opening bracket the parser could not match (too long, or hidden by code spans);
//! * [`html`]: autolinks, start tags with URL attributes, `<style>` elements;
//! * [`bare`]: bare `http(s)://`, `www.` and `//host` URLs, and bare domains with a path.
//!
//! Each parser answers yes, no, "more" (the text ended before it could decide: in a
//! stream's window that means "hold from here", at the end of the text it means no) or
//! "over" (a part exceeded its limit). Every attempt is bounded by the limits below, so the
//! cost is linear in the text, and **a construct over a limit is neutralized, never
//! passed**: a gate that gives up on a 600-byte title must not relay the image in front of
//! it. The parse is a close, deliberately more permissive relative of CommonMark's.

mod bare;
mod html;
mod markdown;

pub(crate) use markdown::BLOCK_PREFIX_MAX;
#[cfg(test)]
mod tests;

use std::ops::Range;

use crate::findings::{Applied, Phase2};
use crate::options::{BareDomains, Class, LinkAllow};
use crate::url::{judge, Src, Verdict, MAX_URL_BYTES};

/// Longest link text (or image alt text, or reference label) parsed as such.
pub(crate) const MAX_LINK_TEXT: usize = 512;
/// Longest link title.
pub(crate) const MAX_TITLE: usize = 512;
/// Longest run of whitespace inside a link's `(…)` or after a definition's `:`.
pub(crate) const MAX_WS: usize = 128;
/// Longest HTML start tag.
pub(crate) const MAX_TAG: usize = 1024;
/// How far after `<a href=…>` its `</a>` is looked for.
pub(crate) const MAX_ELEMENT: usize = 1024;
/// Longest `<style>` element content judged.
pub(crate) const MAX_STYLE: usize = 2048;
/// Deepest parenthesis nesting inside a destination.
const MAX_PARENS: usize = 32;

/// The longest text any parser here reads before it decides: an inline image with the
/// longest alt text, whitespace runs, destination and title. The stream guard never holds
/// less than this, so it never has to cut through a construct it could still judge.
pub(crate) const MAX_CONSTRUCT_BYTES: usize =
    2 + MAX_LINK_TEXT + 2 + MAX_WS + (MAX_URL_BYTES + 2) + MAX_WS + MAX_TITLE + MAX_WS + 1;

const _: () = assert!(MAX_TAG + MAX_STYLE + 16 <= MAX_CONSTRUCT_BYTES);
const _: () = assert!(MAX_TAG + MAX_ELEMENT + 16 <= MAX_CONSTRUCT_BYTES);

/// A parser's answer.
#[derive(Debug)]
enum P<T> {
    Yes(T),
    No,
    More,
    /// A limit was exceeded at this position: the construct cannot be judged whole.
    Over(usize),
}

/// What the main loop does next.
enum Step {
    Next,
    Jump(usize),
    /// Scan from `from` inside a construct's text (up to `limit`), then continue at `resume`.
    Enter {
        from: usize,
        limit: usize,
        resume: usize,
    },
    Open,
}

struct Scan<'t, 'o> {
    t: &'t str,
    b: &'t [u8],
    at_eof: bool,
    allow: &'o LinkAllow,
    domains: BareDomains,
    /// Backtick runs (code spans), computed when a link text first needs them.
    runs: std::cell::OnceCell<Vec<markdown::Run>>,
}

impl Scan<'_, '_> {
    fn more_possible(&self, end: usize) -> bool {
        end == self.b.len() && !self.at_eof
    }

    fn eot<T>(&self, end: usize) -> P<T> {
        if self.more_possible(end) {
            P::More
        } else {
            P::No
        }
    }

    fn deny(
        &self,
        out: &mut Phase2,
        rule: &'static str,
        whole: Range<usize>,
        edits: &[(Range<usize>, String)],
    ) {
        for (span, with) in edits {
            out.edit(span.clone(), with.clone());
        }
        out.findings.push(Applied {
            class: Class::Link,
            rule,
            span_in_original: whole,
        });
    }

    fn verdict(&self, url: &str, src: Src) -> Option<(&'static str, String)> {
        match judge(url, src, self.allow) {
            Verdict::Allow => None,
            Verdict::Deny { rule, label } => Some((rule, label)),
        }
    }
}

/// Scans the stripped text `t` for links, images and URLs.
pub(crate) fn scan(
    t: &str,
    at_eof: bool,
    allow: &LinkAllow,
    domains: BareDomains,
    out: &mut Phase2,
) {
    let s = Scan {
        t,
        b: t.as_bytes(),
        at_eof,
        allow,
        domains,
        runs: std::cell::OnceCell::new(),
    };
    let b = s.b;
    let n = b.len();
    let mut i = 0;
    let mut stack: Vec<(usize, usize)> = Vec::new();
    loop {
        while let Some(&(limit, resume)) = stack.last() {
            if i >= limit {
                i = resume.max(i);
                stack.pop();
            } else {
                break;
            }
        }
        if i >= n {
            break;
        }
        let end = stack.last().map_or(n, |s| s.0);
        let step = match b[i] {
            b'!' if i + 1 < end && b[i + 1] == b'[' => s.image(i, end, out),
            b'[' => s.bracket(i, end, out),
            b']' => s.close_bracket(i, end, out),
            b'<' => s.angle(i, end, out),
            c if bare::may_start(b, i, c) => s.bare(i, end, out),
            _ => Step::Next,
        };
        match step {
            Step::Next => i += 1,
            Step::Jump(j) => i = j.max(i + 1),
            Step::Enter {
                from,
                limit,
                resume,
            } => {
                stack.push((limit, resume));
                i = from.max(i + 1);
            }
            Step::Open => {
                // Keep scanning: when the guard must cut past an incomplete construct (it
                // outgrew the hold bound), what follows it still needs its own edits.
                out.open_at(i);
                i += 1;
            }
        }
    }
}

/// After a replacement that reads `[…]` (a redaction or a removed image), a following
/// `(…)` or, at a line start, `:` would make the notice itself a link or a link
/// definition: `AKIA…(javascript:…)` must not become `[REDACTED:…](javascript:…)`. Such a
/// tail is judged like any destination.
pub(crate) fn marker_tails(t: &str, at_eof: bool, allow: &LinkAllow, out: &mut Phase2) {
    let s = Scan {
        t,
        b: t.as_bytes(),
        at_eof,
        allow,
        domains: BareDomains::Off,
        runs: std::cell::OnceCell::new(),
    };
    let n = t.len();
    let markers = std::mem::take(&mut out.markers);
    for m in &markers {
        let e = m.end;
        if e >= n {
            if s.more_possible(n) {
                out.open_at(m.start);
            }
            continue;
        }
        if matches!(s.b[e], b'(' | b':') {
            s.marker_tail(m.start, e, out);
        }
    }
    out.markers = markers;
}
