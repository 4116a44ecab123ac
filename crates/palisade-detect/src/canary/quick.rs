//! The canary quick check: a cheap proof that a text cannot hold a canary, so that
//! [`super::Canary::detect`] skips normalization and payload decoding (its costly part,
//! ~40% of the streaming output gate) for ordinary model output.
//!
//! It must never answer "no" where the full detection would find the canary: it may only
//! err towards "maybe", and then the full detection runs. So `detect` returns exactly what
//! it returned before this check existed; `tests::quick_path_equals_full_detection` checks
//! that on random input built from the evasions the full detection undoes.
//!
//! Why "no" is sound. The full detection looks for the canary's core in (1) the lowercased
//! text, (2) its ASCII alphanumeric skeleton and (3) the alphanumeric skeleton of
//! `normalize(text)` followed by those of its decoded payloads, then (4) the relaxed views
//! of [`in_relaxed_views`] for the core and its ROT13. [`may_contain`] answers "no"
//! only for a text where:
//!
//! * every character is ASCII or [`inert`]: non-ASCII characters whose NFKC form holds no
//!   ASCII letter or digit, that are no look-alike, invisible, tag or variation selector
//!   (`inert_characters_stay_out_of_the_skeleton` checks each one). Normalization of such a
//!   text only lowercases, collapses whitespace, drops separators between spaced letters and
//!   maps leetspeak characters one to one (`normalize::leet`): it never deletes an ASCII
//!   letter or digit and never makes one out of anything but a leetspeak character;
//! * nothing can be decoded: no `%` (URL encoding), no `<!--` (HTML comment), no base64
//!   run that decodes to a payload (`find_encoded`'s own test, on every run rather than
//!   its first 64), no match of the hex pattern, and no character that could carry a tag or
//!   variation-selector payload (those are not inert). ROT13 decoding (of the whole text
//!   when it rotates to trigger words, or of a stretch that rotates to common English) only
//!   rotates letters the text already has, so a decoded ROT13 payload holds the core only
//!   where the text holds the core's ROT13, which the relaxed match reads too (a text that
//!   holds the ROT13 of a trigger word is also a "maybe");
//! * the relaxed match finds no core: each ASCII letter or digit matches itself lowercased
//!   or its leetspeak letter, leetspeak punctuation (`!|@$+`) matches its letter or is
//!   skipped, and every other character is skipped. Views (1) to (3) are then all subsequences
//!   of this relaxed reading, so none holds the core either;
//! * view (4), [`in_relaxed_views`], finds nothing: it is this same relaxed match for the
//!   core and its ROT13 (both in the packed word here) over the text with look-alikes
//!   folded (an ASCII text is its own fold) and over every decoded base64 or hex run (which
//!   this check decodes too).
//!
//! The matcher is shift-and (bit-parallel, one pass, no allocation): patterns are packed
//! into 64-bit words, one bit per pattern character.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::LazyLock;

use crate::normalize::{
    confusable, decoded_runs, leet, may_hold_base64_or, may_hold_hex, TRIGGERS,
};

/// How a text byte takes part in the relaxed match.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Not in any skeleton: separators, punctuation, bytes of inert characters.
    Skip,
    /// An ASCII letter or digit: always in the skeleton.
    Take,
    /// Leetspeak punctuation: in the skeleton as a letter if mapped, absent if not.
    Maybe,
}

fn role(b: u8) -> Role {
    if b.is_ascii_alphanumeric() {
        Role::Take
    } else if b.is_ascii() && leet(char::from(b)).is_some() {
        Role::Maybe
    } else {
        Role::Skip
    }
}

/// True if byte `b` can stand for pattern character `p` (a lowercase ASCII letter or digit).
fn stands_for(b: u8, p: u8) -> bool {
    b.to_ascii_lowercase() == p || leet(char::from(b)).is_some_and(|c| c as u32 == u32::from(p))
}

/// Up to 64 pattern characters, shift-and style: bit `j` of `masks[b]` is set when byte `b`
/// can stand for pattern character `j`.
struct Word {
    masks: [u64; 128],
    /// The first character of each pattern.
    starts: u64,
    /// The last character of each pattern.
    ends: u64,
    /// Bits in use.
    used: u32,
}

impl Word {
    fn new() -> Word {
        Word {
            masks: [0; 128],
            starts: 0,
            ends: 0,
            used: 0,
        }
    }

    /// Adds `pattern` if it fits; false if not (or if it is empty or not ASCII).
    fn add(&mut self, pattern: &[u8]) -> bool {
        let n = pattern.len() as u32;
        if n == 0 || self.used + n > 64 || !pattern.is_ascii() {
            return false;
        }
        for (j, &p) in pattern.iter().enumerate() {
            let bit = 1u64 << (self.used + j as u32);
            // The bytes that can stand for `p`: itself, its uppercase, its leet sources.
            for b in [p, p.to_ascii_uppercase()] {
                self.masks[usize::from(b)] |= bit;
            }
            for &b in LEET_SOURCES {
                if stands_for(b, p) {
                    self.masks[usize::from(b)] |= bit;
                }
            }
        }
        self.starts |= 1 << self.used;
        self.ends |= 1 << (self.used + n - 1);
        self.used += n;
        true
    }

    /// True if some pattern of this word matches `text` under the relaxed reading.
    fn found_in(&self, text: &[u8]) -> bool {
        let mut d: u64 = 0;
        for &b in text {
            let Some(&mask) = self.masks.get(usize::from(b)) else {
                continue; // a byte of an inert non-ASCII character
            };
            match role(b) {
                Role::Skip => {}
                Role::Take => d = ((d << 1) | self.starts) & mask,
                Role::Maybe => d |= ((d << 1) | self.starts) & mask,
            }
            if d & self.ends != 0 {
                return true;
            }
        }
        false
    }
}

/// Every ASCII byte `leet` maps to a letter.
const LEET_SOURCES: &[u8] = b"0134578!|@$+";

/// The ROT13 of every trigger word, packed.
static ROT13_TRIGGERS: LazyLock<Vec<Word>> = LazyLock::new(|| {
    let mut words = vec![Word::new()];
    for t in TRIGGERS {
        let rot: Vec<u8> = t.bytes().map(rot13).collect();
        let fits = words.last_mut().is_some_and(|w| w.add(&rot));
        if !fits {
            let mut w = Word::new();
            // A trigger word is far shorter than 64 bytes; `add` cannot fail here.
            let _ = w.add(&rot);
            words.push(w);
        }
    }
    words
});

/// The core and its ROT13, packed for the relaxed match; `None` if they do not fit.
fn core_word(core: &str) -> Option<Word> {
    let rot: Vec<u8> = core.bytes().map(rot13).collect();
    let mut word = Word::new();
    (word.add(core.as_bytes()) && word.add(&rot)).then_some(word)
}

thread_local! {
    /// The last core this thread packed, with its word: a response's strings and a
    /// stream's deltas are all checked against one canary, and packing it (~2,500
    /// instructions) cost more than checking most strings.
    static LAST_WORD: RefCell<Option<(String, Option<Word>)>> = const { RefCell::new(None) };
}

/// Runs `f` with [`core_word`] of `core`, packed once per thread and core.
fn with_core_word<R>(core: &str, f: impl FnOnce(Option<&Word>) -> R) -> R {
    LAST_WORD.with(|cell| match cell.try_borrow_mut() {
        Ok(mut last) => {
            if last.as_ref().is_none_or(|(c, _)| c != core) {
                *last = Some((core.to_owned(), core_word(core)));
            }
            f(last.as_ref().and_then(|(_, w)| w.as_ref()))
        }
        // Only if `f` ever called back in here: pack afresh.
        Err(_) => f(core_word(core).as_ref()),
    })
}

/// The detection's last views (see [`super::Canary::detect`]): the relaxed reading of the
/// text with look-alike letters folded to Latin, and of every base64 or hex run decoded
/// as raw bytes, holds the core or its ROT13. They catch what normalization leaves: a
/// leetspeak digit standing for a letter in a core that holds digits of its own, look-alikes
/// in a run too short to count as a mixed-script word, and a bare core encoded (its
/// decoding is no sentence, so normalization does not keep it as a payload).
pub(super) fn in_relaxed_views(text: &str, core: &str) -> bool {
    with_core_word(core, |word| {
        let Some(word) = word else {
            return false;
        };
        let folded: Cow<'_, str> = if text.is_ascii() {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(text.chars().map(|c| confusable(c).unwrap_or(c)).collect())
        };
        word.found_in(folded.as_bytes()) || decoded_runs(text).any(|bytes| word.found_in(&bytes))
    })
}

fn rot13(b: u8) -> u8 {
    match b {
        b'a'..=b'm' | b'A'..=b'M' => b + 13,
        b'n'..=b'z' | b'N'..=b'Z' => b - 13,
        _ => b,
    }
}

/// Non-ASCII characters the quick check reads as separators. Each is its own NFKC form
/// (or decomposes to ASCII punctuation and spaces), has no ASCII letter or digit in its
/// lowercase, is no look-alike and nothing invisible: typographic punctuation, Latin-1
/// letters and symbols, arrows, and emoji without joiners or selectors.
fn inert(c: char) -> bool {
    matches!(
        c as u32,
        0xA0 | 0xA7
            | 0xA9
            | 0xAB
            | 0xAE
            | 0xB0
            | 0xB1
            | 0xB6
            | 0xB7
            | 0xBB
            | 0xC0..=0xFF
            | 0x2010..=0x2027
            | 0x2030
            | 0x2032
            | 0x2190..=0x2193
            | 0x2212
            | 0x1F300..=0x1F64F
            | 0x1F680..=0x1F6FF
            | 0x1F900..=0x1F9FF
    )
}

/// False only if `text` provably cannot hold `core` (lowercase ASCII alphanumerics) for
/// [`super::Canary::detect`]; see the module docs for why.
pub(super) fn may_contain(text: &str, core: &str) -> bool {
    let b = text.as_bytes();
    if !text.is_ascii() && !text.chars().all(|c| c.is_ascii() || inert(c)) {
        return true;
    }
    // Any hex run: maybe (so view (4)'s decoded hex runs need no look here).
    if b.contains(&b'%') || text.contains("<!--") || may_hold_hex(text) {
        return true;
    }
    with_core_word(core, |word| {
        let Some(word) = word else {
            return true;
        };
        // A base64 run that decodes to a payload, or whose raw bytes hold the core (view 4).
        may_hold_base64_or(text, |bytes| word.found_in(bytes))
            || word.found_in(b)
            || ROT13_TRIGGERS.iter().any(|w| w.found_in(b))
    })
}

#[cfg(test)]
mod tests {
    use unicode_normalization::UnicodeNormalization;

    use super::*;
    use crate::normalize::normalize;

    #[test]
    fn ordinary_prose_is_proved_clean() {
        let prose = "Sure! Here is a short overview of how the borrow checker works in Rust. \
            Every value has a single owner — see [the book](https://doc.rust-lang.org/book/) \
            for more; it’s “simple”, café… 🚀 In 2024, 42% fewer… no: 42 fewer errors.";
        let prose = prose.replace('%', "");
        assert!(!may_contain(&prose, "7kq2m9x4"));
    }

    #[test]
    fn each_reason_to_look_closer_is_seen() {
        let core = "7kq2m9x4";
        for text in [
            "the marker 7KQ2m9x4",
            "7-k-q-2-m-9-x-4",
            "encoded: N2txMm05eDQgdGhlIG1hcmtlcg==",
            "q=%37%6b",
            "<!-- hidden -->",
            "37 6b 71 32 6d 39 78 34 20 20 20",
            "vtaber nyy ehyrf", // ROT13 of trigger words
            "ﬁ ligature",       // not inert: NFKC makes letters
            "zero\u{200B}width",
        ] {
            assert!(may_contain(text, core), "{text:?}");
        }
        assert!(may_contain("x7kq2m9x4", core));
        assert!(!may_contain("7kq2m9x", core));
        // Leetspeak: `+` and `7` may stand for `t`, `!` and `1` for `i`; `@` is `a`, never `4`.
        assert!(may_contain("+kq2m9x4", "tkq2m9x4"));
        assert!(may_contain("7kq2m9x4", "tkq2m9x4"));
        assert!(may_contain("a k ! 2 m 9", "aki2m9"));
        assert!(!may_contain("7kq2m9x@", core));
    }

    #[test]
    fn leet_sources_are_every_ascii_leet_character() {
        let all: Vec<u8> = (0u8..128)
            .filter(|&b| leet(char::from(b)).is_some())
            .collect();
        let mut listed = LEET_SOURCES.to_vec();
        listed.sort_unstable();
        assert_eq!(all, listed);
    }

    /// Every inert character: NFKC and lowercase make no ASCII letter or digit of it, and
    /// normalization leaves nothing alphanumeric in ASCII between two letters around it.
    #[test]
    fn inert_characters_stay_out_of_the_skeleton() {
        let mut checked = 0;
        for cp in 0x80u32..0x20000 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            if !inert(c) {
                continue;
            }
            checked += 1;
            let nfkc: String = c.to_string().nfkc().flat_map(char::to_lowercase).collect();
            assert!(
                !nfkc.bytes().any(|b| b.is_ascii_alphanumeric()),
                "U+{cp:04X} -> {nfkc:?}"
            );
            for text in [
                format!("q{c}z"),
                format!("{c}{c}{c}"),
                format!("qz {c} x y w"),
            ] {
                let n = normalize(&text);
                let ascii: String = n.text.chars().filter(char::is_ascii_alphanumeric).collect();
                let expect: String = text.chars().filter(char::is_ascii_alphanumeric).collect();
                assert_eq!(ascii, expect, "U+{cp:04X} in {text:?} -> {:?}", n.text);
                assert!(n.payloads.is_empty(), "U+{cp:04X}");
            }
        }
        assert!(checked > 700, "{checked}");
    }
}
