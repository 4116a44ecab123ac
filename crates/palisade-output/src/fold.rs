//! The matching view: compatibility forms folded to ASCII, as the input side's NFKC does,
//! so that `ＡＫＩＡ…` (fullwidth), `𝐀𝐊𝐈𝐀…` (mathematical bold) or `ⓐ` are matched like the
//! ASCII they render as. Only characters whose NFKC form is one ASCII character are folded
//! (ligatures and other expansions are left alone), so every folded character stands for
//! exactly one original character and spans map back exactly.
//!
//! Credentials, PII and canaries are matched in this view; links are parsed in the text
//! as written (no renderer reads `［x］（…）` as a link).

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

/// A folded text and the way back to the text it was folded from.
#[derive(Debug)]
pub(crate) struct Folded<'a> {
    pub text: Cow<'a, str>,
    /// One entry per folded character: its end in the folded text, and how many bytes
    /// shorter the folded text is than the source up to there.
    shrink: Vec<(usize, usize)>,
}

/// Blocks that hold compatibility characters folding to ASCII: Latin-1 superscripts and
/// fractions' neighbours, letterlike symbols through enclosed alphanumerics, the
/// ideographic space, halfwidth and fullwidth forms, mathematical alphanumerics, and the
/// enclosed alphanumeric supplement. Everything else is passed over without a lookup.
fn may_fold(c: char) -> bool {
    matches!(
        c,
        '\u{00A0}'..='\u{00BF}'
            | '\u{2000}'..='\u{2BFF}'
            | '\u{3000}'
            | '\u{FF00}'..='\u{FFEF}'
            | '\u{1D400}'..='\u{1D7FF}'
            | '\u{1F100}'..='\u{1F1FF}'
    )
}

/// The ASCII character `c` reads as, if it is a compatibility form of one.
pub(crate) fn fold_char(c: char) -> Option<char> {
    if c.is_ascii() || !may_fold(c) {
        return None;
    }
    if ('\u{FF01}'..='\u{FF5E}').contains(&c) {
        return char::from_u32(c as u32 - 0xFEE0);
    }
    if c == '\u{3000}' {
        return Some(' ');
    }
    let mut n = std::iter::once(c).nfkc();
    let first = n.next()?;
    if n.next().is_some() || !first.is_ascii() || first.is_ascii_control() {
        return None;
    }
    Some(first)
}

/// Folds `text`; borrows it when nothing folds.
pub(crate) fn fold(text: &str) -> Folded<'_> {
    if text.is_ascii() {
        return Folded {
            text: Cow::Borrowed(text),
            shrink: Vec::new(),
        };
    }
    let mut out: Option<String> = None;
    let mut shrink = Vec::new();
    let mut copied = 0;
    let mut total = 0usize;
    for (i, c) in text.char_indices() {
        let Some(a) = fold_char(c) else { continue };
        let s = out.get_or_insert_with(|| String::with_capacity(text.len()));
        s.push_str(&text[copied..i]);
        s.push(a);
        copied = i + c.len_utf8();
        total += c.len_utf8() - 1;
        shrink.push((s.len(), total));
    }
    let text = match out {
        None => Cow::Borrowed(text),
        Some(mut s) => {
            s.push_str(&text[copied..]);
            Cow::Owned(s)
        }
    };
    Folded { text, shrink }
}

impl Folded<'_> {
    /// The source position of folded position `p` (a character boundary).
    pub fn to_source(&self, p: usize) -> usize {
        let i = self.shrink.partition_point(|&(end, _)| end <= p);
        p + if i == 0 { 0 } else { self.shrink[i - 1].1 }
    }

    /// The source span of a folded span.
    pub fn span(&self, r: &std::ops::Range<usize>) -> std::ops::Range<usize> {
        self.to_source(r.start)..self.to_source(r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: &str) {
        let f = fold(input);
        assert_eq!(f.text, expect, "{input:?}");
        // Every character maps back to one source character.
        for (i, _) in f.text.char_indices() {
            assert!(input.is_char_boundary(f.to_source(i)), "{input:?} at {i}");
        }
        assert_eq!(f.to_source(f.text.len()), input.len());
    }

    #[test]
    fn compatibility_forms_fold_to_ascii() {
        check("ＡＫＩＡ１２", "AKIA12");
        check("a\u{3000}b", "a b");
        check("𝐀𝐊𝐈𝐀 ⓐ ²", "AKIA a 2");
        check("ﬁ stays, 日本語 too, é too", "ﬁ stays, 日本語 too, é too");
        assert!(matches!(fold("plain").text, Cow::Borrowed(_)));
        let f = fold("xＡＫy");
        assert_eq!(f.span(&(1..3)), 1..7);
        assert_eq!(f.to_source(3), 7);
    }
}
