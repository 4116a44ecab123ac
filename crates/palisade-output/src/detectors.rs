//! The credential, PII and canary finders, driven over the stripped text.
//!
//! The finders themselves are palisade-detect's; this module only decides how they are run:
//! secrets piece by piece (so the detector's per-rule cap of 64 matches per call cannot be
//! exhausted by padding), token-shaped keys also when glued to other word characters (the
//! whole word is redacted), PEM private-key blocks with or without their END line, and
//! every occurrence of each canary rather than the first, forwards or reversed.

use std::ops::Range;
use std::sync::LazyLock;

use palisade_detect::{find_pii, find_secrets, find_secrets_glued, Canary, Finding};
use regex::Regex;

/// Secrets are scanned in pieces of at most this many bytes. palisade-detect stops each
/// rule after 64 matches per call, and the shortest match of any rule plus its separator is
/// 16 bytes (`xoxb-` and ten characters), so a piece this size can never hit the cap: a
/// list of 64 decoys cannot hide the 65th key.
const PIECE_BYTES: usize = 896;
/// Consecutive pieces overlap by at least this much, so a match whose context spans
/// tokens (`api_key = "…"`, `"type": "service_account"`) lies whole in some piece.
const PIECE_OVERLAP: usize = 96;
/// Pieces start and end only after these bytes (or ASCII whitespace), none of which occurs
/// in any secret value: a key is never cut in two, whatever its length.
const SPLIT_AFTER: &[u8] = b",;|&\"'()<>[]{}";

fn split_point(b: &[u8], p: usize) -> bool {
    p == 0 || p == b.len() || b[p - 1].is_ascii_whitespace() || SPLIT_AFTER.contains(&b[p - 1])
}

/// A run of word characters (and `-`, `.`) longer than this may hold a glued token: the
/// shortest token rule match (`xoxb-` and ten characters) is 15 bytes, and glued means at
/// least one more.
const GLUED_MIN_RUN: usize = 15;

/// The pieces `text` is scanned in: at most [`PIECE_BYTES`] unless one unsplittable run
/// is longer, overlapping by [`PIECE_OVERLAP`].
struct Pieces<'a> {
    b: &'a [u8],
    start: Option<usize>,
}

impl Iterator for Pieces<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let start = self.start?;
        let n = self.b.len();
        if n - start <= PIECE_BYTES {
            self.start = None;
            return Some(start..n);
        }
        let hi = start + PIECE_BYTES;
        let lo = start + PIECE_OVERLAP + 1;
        let end = (lo..=hi)
            .rev()
            .find(|&p| split_point(self.b, p))
            .or_else(|| (hi + 1..=n).find(|&p| split_point(self.b, p)))
            .unwrap_or(n);
        if end >= n {
            self.start = None;
            return Some(start..n);
        }
        let from = end.saturating_sub(PIECE_OVERLAP).max(start + 1);
        self.start = (from..end).find(|&p| split_point(self.b, p)).or(Some(end));
        Some(start..end)
    }
}

/// Every secret palisade-detect finds in `text`, with spans into `text`.
pub(crate) fn secrets(text: &str) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    let pieces = Pieces {
        b: text.as_bytes(),
        start: Some(0),
    };
    let mut glued: Vec<Finding> = Vec::new();
    for piece in pieces {
        // Pieces start and end after ASCII bytes, so they are char boundaries.
        let Some(part) = text.get(piece.clone()) else {
            continue;
        };
        for mut f in find_secrets(part) {
            // PEM blocks are found by `pem_blocks`, which also sees keys without an END
            // line and never runs one block's END into the next one's BEGIN.
            if f.rule == "private-key" {
                continue;
            }
            f.span = f.span.start + piece.start..f.span.end + piece.start;
            out.push(f);
        }
    }
    // Glued keys live inside long word-like runs (every token rule's match is at least 16
    // bytes): only those are searched, so prose costs nothing here.
    let b = text.as_bytes();
    let run_byte = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.');
    let mut i = 0;
    while i < b.len() {
        if !run_byte(b[i]) {
            i += 1;
            continue;
        }
        let len = b[i..].iter().take_while(|&&c| run_byte(c)).count();
        // A run that is exactly a key the anchored rules found holds nothing glued.
        let known = out.iter().any(|k| k.span == (i..i + len));
        if len > GLUED_MIN_RUN && !known {
            for mut f in find_secrets_glued(&text[i..i + len]) {
                f.span = f.span.start + i..f.span.end + i;
                glued.push(f);
            }
        }
        i += len;
    }
    // A key glued to word characters (`xAKIA…`, `ghp_…Z`) takes the whole word with it.
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    for mut f in glued {
        if out
            .iter()
            .any(|k| k.span.start < f.span.end && f.span.start < k.span.end)
        {
            continue;
        }
        let (mut s, mut e) = (f.span.start, f.span.end);
        if (s > 0 && word(b[s - 1])) || (e < b.len() && word(b[e])) {
            while s > 0 && word(b[s - 1]) {
                s -= 1;
            }
            while e < b.len() && word(b[e]) {
                e += 1;
            }
            f.span = s..e;
            out.push(f);
        }
    }
    out.sort_by(|a, b| {
        a.span
            .start
            .cmp(&b.span.start)
            .then(b.span.end.cmp(&a.span.end))
    });
    // Overlapping pieces find the same key twice; keep one.
    out.dedup_by(|later, kept| later.span.start < kept.span.end && later.span.end <= kept.span.end);
    out
}

// Lazy label repetitions: greedy ones (as in palisade-detect's rule) run from one block's
// END line into the next block's BEGIN line when the two touch.
static PEM_BEGIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-----BEGIN[ A-Z0-9_-]{0,100}?PRIVATE KEY(?: BLOCK)?-----").expect("static regex")
});
static PEM_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-----END[ A-Z0-9_-]{0,100}?PRIVATE KEY(?: BLOCK)?-----").expect("static regex")
});

/// The longest `-----END … PRIVATE KEY BLOCK-----` line, for scanning a stream's tail.
pub(crate) const PEM_END_MAX: usize = 140;

/// PEM private-key blocks: from the BEGIN line to the END line or, with none, to the end of
/// the text (a truncated key is still a key; palisade-detect's rule needs both lines).
/// Returns the blocks and, when `at_eof` is false, the start of a block still open.
pub(crate) fn pem_blocks(text: &str, at_eof: bool) -> (Vec<Range<usize>>, Option<usize>) {
    let mut blocks = Vec::new();
    let mut from = 0;
    while let Some(m) = PEM_BEGIN.find_at(text, from) {
        match PEM_END.find_at(text, m.end()) {
            Some(e) => {
                blocks.push(m.start()..e.end());
                from = e.end();
            }
            None if at_eof => {
                blocks.push(m.start()..text.len());
                break;
            }
            None => return (blocks, Some(m.start())),
        }
    }
    if !at_eof {
        // A BEGIN line still arriving (`-----BEGIN RSA PRIV`): it holds spaces, so only
        // this keeps a forced cut from splitting it and releasing the key body unseen.
        if let Some(p) = text[from..].rfind("-----BEGIN").map(|p| p + from) {
            let rest = &text[p + 10..];
            let could_grow = rest.len() <= 100 + " PRIVATE KEY BLOCK-----".len()
                && rest
                    .bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || b" _-".contains(&c));
            if could_grow {
                return (blocks, Some(p));
            }
        }
    }
    (blocks, None)
}

/// End (exclusive) of the first PEM END line in `text`.
pub(crate) fn pem_end(text: &str) -> Option<usize> {
    PEM_END.find(text).map(|m| m.end())
}

/// Every PII item in `text`.
pub(crate) fn pii(text: &str) -> Vec<Finding> {
    find_pii(text)
}

/// At most this many occurrences of one canary are located (each search rescans the rest
/// of the text); any hit already stops a stream and marks the text as leaked.
const MAX_CANARY_HITS: usize = 16;

/// The lowercase ASCII-alphanumeric skeleton of `text`, each character with its byte
/// offset: what canaries are matched in (any other character may separate a canary's).
pub(crate) fn skeleton(text: &str) -> Vec<(usize, u8)> {
    text.bytes()
        .enumerate()
        .filter(|(_, c)| c.is_ascii_alphanumeric())
        .map(|(i, c)| (i, c.to_ascii_lowercase()))
        .collect()
}

/// Occurrences of `canary` written backwards (in its skeleton): `tzh3dv8c…` for
/// `…c8vd3hzt`. At most [`MAX_CANARY_HITS`].
pub(crate) fn reversed_hits(canary: &Canary, text: &str, skel: &[(usize, u8)]) -> Vec<Finding> {
    let rev: Vec<u8> = canary_core(canary).bytes().rev().collect();
    let mut out = Vec::new();
    if rev.is_empty() || skel.len() < rev.len() {
        return out;
    }
    let chars: Vec<u8> = skel.iter().map(|&(_, c)| c).collect();
    let mut from = 0;
    while out.len() < MAX_CANARY_HITS {
        let Some(k) = find(&chars[from..], &rev) else {
            break;
        };
        let s = skel[from + k].0;
        let e = skel[from + k + rev.len() - 1].0 + 1;
        let e = (e..=text.len())
            .find(|&e| text.is_char_boundary(e))
            .unwrap_or(text.len());
        out.push(Finding {
            kind: palisade_detect::FindingKind::Canary,
            rule: "canary-token-reversed",
            span: s..e,
        });
        from += k + rev.len();
    }
    out
}

/// First occurrence of `needle` in `hay` (linear for the short needles used here: a canary
/// core is 16 bytes).
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Every occurrence of `canary` in `text`. An encoded occurrence (base64, hex, …) cannot be
/// located by palisade-detect: it is reported with a span covering the text searched.
pub(crate) fn canary_hits(canary: &Canary, text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut from = 0;
    while out.len() < MAX_CANARY_HITS && from < text.len() {
        let Some(rest) = text.get(from..) else { break };
        let Some(mut f) = canary.detect(rest) else {
            break;
        };
        let encoded = f.span == (0..rest.len()) && f.rule != "canary-token";
        f.span = f.span.start + from..f.span.end + from;
        let next = f.span.end;
        out.push(f);
        if encoded || next <= from {
            break;
        }
        from = next;
    }
    out
}

/// The lowercase alphanumeric core palisade-detect matches a canary by (its token without
/// the `pls-` prefix and separators). Used to hold back a possible canary prefix at the end
/// of a stream's window.
pub(crate) fn canary_core(canary: &Canary) -> String {
    canary
        .token
        .trim_start_matches("pls-")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_and_overlap() {
        let text = "word ".repeat(1000);
        let ps: Vec<_> = Pieces {
            b: text.as_bytes(),
            start: Some(0),
        }
        .collect();
        assert_eq!(ps.first().map(|p| p.start), Some(0));
        assert_eq!(ps.last().map(|p| p.end), Some(text.len()));
        for w in ps.windows(2) {
            assert!(w[1].start < w[0].end, "{ps:?}");
            assert!(w[0].end - w[1].start >= PIECE_OVERLAP - 8, "{ps:?}");
            assert!(w[0].len() <= PIECE_BYTES);
        }
        // One long run is never cut.
        let run = "A".repeat(3000);
        let ps: Vec<_> = Pieces {
            b: run.as_bytes(),
            start: Some(0),
        }
        .collect();
        assert_eq!(ps, vec![0..3000]);
    }

    #[test]
    fn decoys_do_not_exhaust_the_rule_cap() {
        // 80 low-entropy look-alikes (rejected by the entropy check, but each consumes one of
        // the 64 matches a single call allows) and then a real key.
        let mut text = String::new();
        for _ in 0..80 {
            text.push_str("AKIAAAAAAAAAAAAAAAAA ");
        }
        text.push_str("AKIAZ7Q2LM4XK3PT6WRB end");
        let hits = secrets(&text);
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(&text[hits[0].span.clone()], "AKIAZ7Q2LM4XK3PT6WRB");
    }

    #[test]
    fn pem_with_and_without_end() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----";
        let t = format!("a\n{key}\nb");
        assert_eq!(pem_blocks(&t, true).0, vec![2..2 + key.len()]);
        let cut = "x -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk";
        assert_eq!(pem_blocks(cut, true).0, vec![2..cut.len()]);
        assert_eq!(pem_blocks(cut, false), (vec![], Some(2)));
        assert_eq!(
            pem_blocks("a -----BEGIN RSA PRIV", false),
            (vec![], Some(2))
        );
        assert_eq!(pem_blocks("a -----BEGIN RSA PRIV", true), (vec![], None));
        let two = format!("{key}{key}");
        assert_eq!(
            pem_blocks(&two, true).0,
            vec![0..key.len(), key.len()..2 * key.len()]
        );
    }

    #[test]
    fn all_canary_occurrences() {
        let c = Canary::from_random(&[9; 16]);
        let t = format!("a {} b {} c", c.token, c.token);
        let hits = canary_hits(&c, &t);
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert!(canary_hits(&c, "nothing here").is_empty());
    }
}
