//! Canonical text: NFKC, lowercase, look-alike letters, spaced-out letters and leetspeak
//! mapped back, whitespace collapsed. Genuine non-Latin text and ordinary digits in words
//! ("mp3") are left alone; only what spells a trigger word (or text written wholly in
//! leetspeak) is mapped.
//!
//! Every pass is linear; the fixed-point loop is capped at `MAX_CANON_PASSES`.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use unicode_normalization::UnicodeNormalization;

/// Which tricks canonicalization undid.
#[derive(Default)]
pub(super) struct CanonFlags {
    pub homoglyph: bool,
    pub spaced: bool,
    pub leet: bool,
}

/// Maps common Cyrillic/Greek/other look-alikes to the Latin letter they imitate.
/// Applied only inside words that mix scripts, or to whole look-alike words inside
/// mostly-Latin text, so genuine Russian or Greek text is left alone.
pub(crate) fn confusable(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' | 'ɑ' => 'a',
        'в' | 'β' => 'b',
        'с' | 'ϲ' | 'ⅽ' => 'c',
        'ԁ' | 'ⅾ' => 'd',
        'е' | 'ё' | 'ε' | 'ҽ' => 'e',
        'ɡ' | 'ց' => 'g',
        'һ' | 'н' => 'h',
        'і' | 'ι' | 'ı' | 'ӏ' | 'ⅰ' => 'i',
        'ј' | 'ϳ' => 'j',
        'κ' | 'к' => 'k',
        'ⅼ' | 'ℓ' => 'l',
        'м' | 'ⅿ' => 'm',
        'η' | 'п' | 'ո' => 'n',
        'о' | 'ο' | 'σ' | 'օ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'г' => 'r',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' | 'ս' => 'u',
        'ν' | 'ѵ' | 'ⅴ' => 'v',
        'ѡ' | 'ω' | 'ԝ' => 'w',
        'х' | 'χ' | 'ⅹ' => 'x',
        'у' | 'γ' => 'y',
        'ʐ' => 'z',
        _ => return None,
    })
}

pub(crate) fn leet(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' | '!' | '|' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' | '+' => 't',
        '8' => 'b',
        _ => return None,
    })
}

/// Canonical form, iterated to a fixed point (each step can expose work for the next: a
/// leetspeak or homoglyph mapping changes the script census, joined letters form new words).
/// Two passes almost always suffice; the cap keeps the cost bounded.
/// Extra canonicalization passes after the first (each one only runs when the previous one
/// changed something; ordinary text stops after one or two).
const MAX_CANON_PASSES: usize = 8;

pub(super) fn canonicalize(stripped: &str) -> (String, CanonFlags) {
    let (mut cur, mut flags) = canonicalize_once(stripped);
    // Fast path: for ASCII output with nothing mapped, one pass is already a fixed point.
    if cur.is_ascii() && !flags.homoglyph && !flags.spaced && !flags.leet {
        return (cur, flags);
    }
    for _ in 0..MAX_CANON_PASSES {
        let (next, f) = canonicalize_once(&cur);
        flags.homoglyph |= f.homoglyph;
        flags.spaced |= f.spaced;
        flags.leet |= f.leet;
        if next == cur {
            break;
        }
        cur = next;
    }
    (cur, flags)
}

fn canonicalize_once(stripped: &str) -> (String, CanonFlags) {
    crate::work::add(crate::work::Unit::CanonBytes, stripped.len());
    let mut flags = CanonFlags::default();
    // NFKC folds full-width, mathematical alphanumerics, ligatures and the like; lowercase
    // folds case so "IGNORE" and "ignore" share features.
    // ASCII is already in NFKC and lowercases to ASCII: skip the decomposition machinery.
    let nfkc: String = if stripped.is_ascii() {
        stripped.to_ascii_lowercase()
    } else {
        stripped.nfkc().flat_map(char::to_lowercase).collect()
    };

    // Every confusable is non-ASCII: ASCII text has no look-alike word to map.
    let s = if nfkc.is_ascii() {
        nfkc
    } else {
        map_homoglyph_words(&nfkc, &mut flags)
    };

    // Whitespace is collapsed before letters are joined: "i\x0bg\x0cn..." must join in the
    // same pass as "i g n ...", or the next pass (seeing plain spaces) joins it and the
    // canonical form is not a fixed point. A wider gap stays two spaces until the letters
    // are joined: it is the word break in "p l e a s e   s e n d" ("please send", not
    // "pleasesend", which no word feature reads).
    let s = collapse_ws_keep_gaps(&s);
    let s = join_spaced(&s, &mut flags);
    let s = map_leet(&s, &mut flags);
    (collapse_ws(&s).into_owned(), flags)
}

/// Maps look-alike letters back to Latin, per word: in words that mix scripts, or whole
/// look-alike words inside mostly-Latin text (so genuine Russian or Greek text stays).
fn map_homoglyph_words(nfkc: &str, flags: &mut CanonFlags) -> String {
    // Script census: decides whether whole look-alike words are imitations of Latin.
    let (mut latin, mut letters) = (0usize, 0usize);
    for c in nfkc.chars() {
        if crate::ctype::is_alphabetic(c) {
            letters += 1;
            if c.is_ascii_alphabetic() {
                latin += 1;
            }
        }
    }
    let mostly_latin = letters > 0 && latin * 10 >= letters * 6;

    let mut s = String::with_capacity(nfkc.len());
    for word in split_keep(nfkc) {
        let is_word = word.chars().next().is_some_and(crate::ctype::is_alphabetic);
        if !is_word || word.is_ascii() {
            s.push_str(word);
            continue;
        }
        let has_ascii = word.chars().any(|c| c.is_ascii_alphabetic());
        let n_conf = word.chars().filter(|&c| confusable(c).is_some()).count();
        let n = word.chars().count();
        let map = n_conf > 0 && ((has_ascii && n >= 2) || (mostly_latin && n_conf == n && n >= 3));
        if map {
            flags.homoglyph = true;
            s.extend(word.chars().map(|c| confusable(c).unwrap_or(c)));
        } else {
            s.push_str(word);
        }
    }
    s
}

/// Splits into alternating alphabetic runs and other runs, keeping everything.
fn split_keep(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let alpha = crate::ctype::is_alphabetic(first);
        let end = rest
            .char_indices()
            .find(|&(_, c)| crate::ctype::is_alphabetic(c) != alpha)
            .map_or(rest.len(), |(i, _)| i);
        let (head, tail) = rest.split_at(end);
        rest = tail;
        Some(head)
    })
}

fn is_spacer(c: char) -> bool {
    matches!(c, ' ' | '.' | '-' | '_' | '*' | '|' | '/' | '+' | '~')
}

/// Joins runs like "i g n o r e" or "i.g.n.o.r.e" (at least five single letters with one
/// separator between each). A word break is kept where the gap is wider (two or more
/// separators, or two spaces) or other than the run's first gap ("s-e-n-d a-l-l").
fn join_spaced<'a>(s: &'a str, flags: &mut CanonFlags) -> Cow<'a, str> {
    // A run needs five lone characters: text with fewer has nothing to join (most prose).
    if single_letters(s) < 5 {
        return Cow::Borrowed(s);
    }
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let single_at = |i: usize| -> bool {
        crate::ctype::is_alphanumeric(chars[i])
            && (i == 0 || !crate::ctype::is_alphanumeric(chars[i - 1]))
            && (i + 1 >= n || !crate::ctype::is_alphanumeric(chars[i + 1]))
    };
    while i < n {
        if single_at(i) && crate::ctype::is_alphabetic(chars[i]) {
            // Extend a run: letter, separator(s), letter...
            let mut letters = vec![(i, false)];
            let mut j = i;
            let mut first_gap: Option<(usize, usize)> = None;
            loop {
                // A run of spaces is one separator: whether a run continues must not
                // depend on how wide its gaps are, because the pass's last collapse narrows
                // them and the next pass must decide the same (the fixed point).
                let mut k = j + 1;
                let mut seps = 0;
                let mut wide_space = false;
                while k < n && is_spacer(chars[k]) && seps < 4 {
                    let start = k;
                    k += 1;
                    while chars[start] == ' ' && k < n && chars[k] == ' ' {
                        k += 1;
                    }
                    wide_space |= k - start >= 2;
                    seps += 1;
                }
                if seps >= 1 && k < n && single_at(k) {
                    let gap = (j + 1, k);
                    let first = *first_gap.get_or_insert(gap);
                    let other = chars[gap.0..gap.1] != chars[first.0..first.1];
                    let wide = seps >= 3 || wide_space || (seps >= 2 && chars[j + 1] == ' ');
                    letters.push((k, wide || other));
                    j = k;
                } else {
                    break;
                }
            }
            if letters.len() >= 5 {
                flags.spaced = true;
                for (idx, (pos, brk)) in letters.iter().enumerate() {
                    if *brk && idx > 0 {
                        out.push(' ');
                    }
                    out.push(chars[*pos]);
                }
                i = j + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// How many letters or digits stand alone (no letter or digit on either side), up to five:
/// a joinable run starts at a lone letter and continues over lone letters or digits.
fn single_letters(s: &str) -> usize {
    let mut count = 0;
    let mut prev_alnum = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let alnum = crate::ctype::is_alphanumeric(c);
        if alnum
            && !prev_alnum
            && !chars
                .peek()
                .is_some_and(|&n| crate::ctype::is_alphanumeric(n))
        {
            count += 1;
            if count >= 5 {
                break;
            }
        }
        prev_alnum = alnum;
    }
    count
}

pub(crate) static TRIGGERS: &[&str] = &[
    "ignore",
    "disregard",
    "forget",
    "previous",
    "instruction",
    "instructions",
    "system",
    "prompt",
    "password",
    "secret",
    "reveal",
    "bypass",
    "override",
    "jailbreak",
    "pretend",
    "unrestricted",
    "unfiltered",
    "developer",
    "admin",
    "confidential",
    "hack",
    "exploit",
    "malware",
    "bomb",
    "weapon",
    "kill",
    "drugs",
    "steal",
    "rules",
    "restrictions",
    "policy",
    "filter",
    "censor",
    "illegal",
];

static TRIGGER_AC: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::LeftmostLongest)
        .build(TRIGGERS)
        .expect("static trigger list compiles")
});

pub(super) fn count_triggers(s: &str) -> usize {
    crate::work::add(crate::work::Unit::SearchBytes, s.len());
    TRIGGER_AC.find_iter(s).count()
}

/// Maps leetspeak inside tokens that mix letters with leet digits/symbols ("1gn0r3"),
/// but only if the result spells a trigger word, so "mp3" or "b2b" stay as they are.
///
/// In text *written* in leetspeak (at least three words, and a quarter of all words, mix
/// letters with leet digits) every such word is mapped: the words around the trigger
/// ("4ll pr3v10u5") carry the meaning the classifier needs, and ordinary text never has
/// that density.
fn map_leet<'a>(s: &'a str, flags: &mut CanonFlags) -> Cow<'a, str> {
    // Both mappings below need a leet character in the word: text without one is unchanged.
    if !s.chars().any(|c| leet(c).is_some()) {
        return Cow::Borrowed(s);
    }
    let tokens: Vec<&str> = s.split_inclusive(crate::ctype::is_whitespace).collect();
    let words = tokens.iter().filter(|t| !t.trim().is_empty()).count();
    let leet_words = tokens
        .iter()
        .filter(|t| leet_word(t.trim_end_matches(crate::ctype::is_whitespace)).is_some())
        .count();
    let dense = leet_words >= 3 && leet_words * 4 >= words;
    let mut out = String::with_capacity(s.len());
    for tok in tokens {
        let body = tok.trim_end_matches(crate::ctype::is_whitespace);
        let tail = &tok[body.len()..];
        let letters = body
            .chars()
            .filter(|&c| crate::ctype::is_alphabetic(c))
            .count();
        let leets = body.chars().filter(|&c| leet(c).is_some()).count();
        if letters >= 2 && leets >= 1 && body.len() <= 40 {
            // Sentence punctuation after the word stays ("pr0mpt!" is "prompt!"); a leet
            // symbol inside or in front of it is a letter ("$y$tem", "!gnore").
            let word = body.trim_end_matches(|c: char| c.is_ascii_punctuation());
            let mut mapped: String = word.chars().map(|c| leet(c).unwrap_or(c)).collect();
            let core = mapped.trim_matches(|c: char| !crate::ctype::is_alphabetic(c));
            if core.chars().all(crate::ctype::is_alphabetic) && count_triggers(core) > 0 {
                flags.leet = true;
                mapped.push_str(&body[word.len()..]);
                out.push_str(&mapped);
                out.push_str(tail);
                continue;
            }
        }
        if dense {
            if let Some(mapped) = leet_word(body) {
                flags.leet = true;
                out.push_str(&mapped);
                out.push_str(tail);
                continue;
            }
        }
        out.push_str(tok);
    }
    Cow::Owned(out)
}

/// A word that mixes letters with leet *digits* ("pr3v10u5"; surrounding punctuation kept
/// as it is), mapped to letters; `None` for anything else ("mp3" maps too, so callers only
/// use this where the text is dense with such words).
fn leet_word(body: &str) -> Option<String> {
    let inner = body.trim_matches(|c: char| c.is_ascii_punctuation());
    if inner.is_empty() || inner.len() > 40 {
        return None;
    }
    let has_letter = inner.chars().any(crate::ctype::is_alphabetic);
    let has_digit = inner
        .chars()
        .any(|c| c.is_ascii_digit() && leet(c).is_some());
    let all_mappable = inner
        .chars()
        .all(|c| crate::ctype::is_alphabetic(c) || (c.is_ascii_digit() && leet(c).is_some()));
    if !(has_letter && has_digit && all_mappable) {
        return None;
    }
    let start = body.len()
        - body
            .trim_start_matches(|c: char| c.is_ascii_punctuation())
            .len();
    let mut out = String::with_capacity(body.len());
    out.push_str(&body[..start]);
    out.extend(inner.chars().map(|c| leet(c).unwrap_or(c)));
    out.push_str(&body[start + inner.len()..]);
    Some(out)
}

fn collapse_ws(s: &str) -> Cow<'_, str> {
    if is_collapsed(s) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(collapse_ws_owned(s))
    }
}

/// [`collapse_ws`], except that a run of two or more spaces or tabs (no line break) becomes
/// two spaces: [`join_spaced`] reads it as a word break. The pass's last collapse makes it one.
fn collapse_ws_keep_gaps(s: &str) -> Cow<'_, str> {
    if is_collapsed(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut run = 0usize;
    let mut newline = false;
    let flush = |out: &mut String, run: usize, newline: bool| {
        if run == 0 || out.is_empty() {
            return;
        }
        out.push_str(match (newline, run) {
            (true, _) => "\n",
            (false, 1) => " ",
            (false, _) => "  ",
        });
    };
    for c in s.chars() {
        if crate::ctype::is_whitespace(c) {
            // As in `collapse_ws_owned`: the run's first character decides a line break.
            newline |= run == 0 && c == '\n';
            run += 1;
        } else {
            flush(&mut out, run, newline);
            run = 0;
            newline = false;
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn collapse_ws_owned(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut ws = false;
    for c in s.chars() {
        if crate::ctype::is_whitespace(c) {
            if !ws && !out.is_empty() {
                out.push(if c == '\n' { '\n' } else { ' ' });
            }
            ws = true;
        } else {
            ws = false;
            out.push(c);
        }
    }
    while out.ends_with(crate::ctype::is_whitespace) {
        out.pop();
    }
    out
}

/// True when [`collapse_ws`] would change nothing: no leading or trailing whitespace, no
/// whitespace run, and every whitespace character a plain space or newline.
fn is_collapsed(s: &str) -> bool {
    let mut prev_ws = true; // leading whitespace counts as a change
    for c in s.chars() {
        let ws = crate::ctype::is_whitespace(c);
        if ws && (prev_ws || !matches!(c, ' ' | '\n')) {
            return false;
        }
        prev_ws = ws;
    }
    !prev_ws || s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Text built from the characters the shortcuts look at: letters, leet digits and
    /// symbols, spacers and every kind of whitespace.
    fn tricky() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop::sample::select(vec![
                'a', 'b', 'i', 'g', 'Z', '0', '1', '3', '4', '9', '@', '$', '!', '|', '+', '.',
                '-', '_', '*', '/', '~', ' ', ' ', '\n', '\t', '\r', '\u{a0}', 'é', 'а',
            ]),
            0..40,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        /// The shortcuts (borrowed results) are taken only where the full pass changes
        /// nothing, so canonical forms are exactly what they were without them.
        #[test]
        fn shortcuts_change_nothing(s in tricky()) {
            let mut f = CanonFlags::default();
            prop_assert_eq!(is_collapsed(&s), collapse_ws_owned(&s) == s);
            if single_letters(&s) < 5 {
                prop_assert_eq!(join_spaced(&s, &mut f), s.as_str());
            }
            if !s.chars().any(|c| leet(c).is_some()) {
                prop_assert_eq!(map_leet(&s, &mut f), s.as_str());
            }
        }
    }
}
