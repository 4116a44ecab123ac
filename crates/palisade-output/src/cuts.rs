//! Where a stream's window may be cut: the analysis of a window says up to where its text
//! may be released (before an unresolved construct and, while more may come, before the
//! last token) and which cut points inside that are safe (no construct, edit, detector
//! match or canary skeleton spans them). Three kinds: semantic (sentence and line ends),
//! quiet (any token boundary from which nothing could still complete: used when text has
//! been held too long) and forced (the hold bound is full).

use crate::findings::{Analysis, Applied};
use crate::options::{Class, ClassSet};

/// How many skeleton characters around a cut the canary check looks at (more than any
/// canary core).
const CORE_WINDOW: usize = 32;

/// Ends of a sentence or clause in CJK text (no space follows them).
const CJK_STOPS: &[char] = &['。', '！', '？'];
/// CJK punctuation after which a forced cut may fall.
const CJK_BREAKS: &[char] = &['。', '！', '？', '，', '、', '；', '：'];

/// Start of the last whitespace-delimited token of `t` (`t.len()` if `t` ends in
/// whitespace): it may still grow, so nothing from it is released.
pub(crate) fn trailing_token(t: &str) -> usize {
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

    /// Where (original) the context starts that a window cut at `b` must keep for the next
    /// analysis: `chars` characters of the text the detectors read (hidden marks and
    /// comments removed, so invisible padding cannot push a key's name out of reach) before
    /// `b`, or the window's start if it holds fewer.
    pub fn context_start(&self, b: usize, chars: usize) -> usize {
        let q = self.to_stripped(b).min(self.stripped.len());
        let before = &self.stripped[..q];
        match before.char_indices().rev().nth(chars.saturating_sub(1)) {
            Some((p, _)) if chars > 0 => self.map.start(p).min(b),
            Some(_) => b,
            None => 0,
        }
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
        // The rule reads any whitespace around the colon, blank lines too: a release point
        // in it would need context reaching back arbitrarily far.
        !after_type_key(line)
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

/// True if the text before `p` (which follows a whitespace character) may be the start
/// of a number a PII finder reads across whitespace: the token ends in a run of digits,
/// capitals and `+()-./` with a digit in it that is not simply glued to a word (`+1`,
/// `(415)`, `x+44`, `-415`: the phone pattern may start inside a token; `word12` is
/// fine), or the whole token is such a run of at most 8 bytes (`GB82`, `WEST`). `4111 1111 1111 1111`, `+1 (415) 555 0134` and `GB82 WEST 1234 5698` are one
/// finding each.
fn after_group(b: &[u8], p: usize) -> bool {
    let end = p - 1;
    let group = |c: &u8| c.is_ascii_digit() || c.is_ascii_uppercase() || b"+()-./".contains(c);
    let lo = end.saturating_sub(9);
    let run = b[lo..end].iter().rev().take_while(|c| group(c)).count();
    if run == 0 {
        return false;
    }
    let start = end - run;
    let tail = &b[start..end];
    if tail.iter().any(u8::is_ascii_digit) {
        // Digits glued to a word (`word12`) start no number: the finders need a word
        // boundary, except the phone pattern's `+` (and `(`, `-`, `.` make boundaries).
        let glued = start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        return !glued || !tail.iter().all(u8::is_ascii_alphanumeric);
    }
    // A capitals-only run counts when it is the whole token.
    run <= 8 && (start == 0 || b[start - 1].is_ascii_whitespace())
}

/// True if `before` ends in a JSON `"type"` key (and its colon): the
/// `gcp-service-account` rule continues across the whitespace after it.
fn after_type_key(before: &str) -> bool {
    // `\s` in the rule is Unicode whitespace.
    let key = before.trim_end_matches(char::is_whitespace);
    let key = key
        .strip_suffix(':')
        .unwrap_or(key)
        .trim_end_matches(char::is_whitespace);
    key.ends_with("\"type\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_backoff_keeps_groups_together() {
        let t = b"card 4111 1111 1111 1111";
        assert_eq!(numeric_backoff(t, t.len() - 4), 5);
        let t = b"hello world again";
        assert_eq!(numeric_backoff(t, 12), 12);
    }
}
