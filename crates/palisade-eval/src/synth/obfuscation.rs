//! The obfuscations attackers use to slip an instruction past a filter, applied to a text:
//! look-alike letters, invisible characters, spacing, leetspeak, encodings, tag characters.
//!
//! Each transform draws from the caller's seeded [`Rng`] in a fixed order; changing that
//! order (or a probability) changes the generated training data.

use base64::Engine as _;

use super::lexicon::attacks::{DECODE_ASKS, TAG_COVERS};
use super::lexicon::benign::BENIGN_DECODE_ASKS;
use super::pick;
use crate::rng::Rng;

/// Latin letters and the Cyrillic look-alike each may be swapped for.
const CYRILLIC_LOOKALIKES: &[(char, char)] = &[
    ('a', 'а'),
    ('e', 'е'),
    ('o', 'о'),
    ('p', 'р'),
    ('c', 'с'),
    ('x', 'х'),
    ('y', 'у'),
    ('i', 'і'),
    ('s', 'ѕ'),
    ('j', 'ј'),
];

/// The invisible characters inserted between letters: a generator's choice of the common
/// ones, not the detector's class (that is `palisade_detect::chars::is_zero_width`).
const INSERTED_ZERO_WIDTH: [char; 5] = ['\u{200B}', '\u{200C}', '\u{2060}', '\u{FEFF}', '\u{200D}'];

/// What spaced-out letters are separated by.
const LETTER_SEPARATORS: &[&str] = &[" ", ".", "-", " ", "*"];

fn homoglyph(s: &str, rng: &mut Rng) -> String {
    s.chars()
        .map(
            |c| match CYRILLIC_LOOKALIKES.iter().find(|(l, _)| *l == c) {
                Some((_, g)) if rng.chance(0.4) => *g,
                _ => c,
            },
        )
        .collect()
}

fn zero_width(s: &str, rng: &mut Rng) -> String {
    let mut out = String::new();
    for c in s.chars() {
        out.push(c);
        if c.is_ascii_alphabetic() && rng.chance(0.3) {
            out.push(INSERTED_ZERO_WIDTH[rng.below(INSERTED_ZERO_WIDTH.len())]);
        }
    }
    out
}

fn spaced(s: &str, rng: &mut Rng) -> String {
    // Space out the first few words (where the attack verb usually is).
    let sep = pick(rng, LETTER_SEPARATORS);
    let words: Vec<&str> = s.split(' ').collect();
    let k = 2 + rng.below(4);
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if i < k && w.chars().count() >= 3 {
            out.push(
                w.chars()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(sep),
            );
        } else {
            out.push(w.to_string());
        }
    }
    out.join("   ")
}

fn leetify(s: &str, rng: &mut Rng) -> String {
    s.chars()
        .map(|c| match c.to_ascii_lowercase() {
            'o' if rng.chance(0.7) => '0',
            'i' if rng.chance(0.7) => '1',
            'e' if rng.chance(0.7) => '3',
            'a' if rng.chance(0.6) => '4',
            's' if rng.chance(0.5) => '5',
            't' if rng.chance(0.4) => '7',
            _ => c,
        })
        .collect()
}

fn tags(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control())
        .map(|c| char::from_u32(0xE0000 + c as u32).unwrap_or(' '))
        .collect()
}

fn rot13(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='m' | 'A'..='M' => ((c as u8) + 13) as char,
            'n'..='z' | 'N'..='Z' => ((c as u8) - 13) as char,
            _ => c,
        })
        .collect()
}

fn url_encode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Applies one random obfuscation. Returns the new text and the trick used.
pub fn obfuscate(s: &str, rng: &mut Rng, benign: bool) -> (String, &'static str) {
    let kind = rng.below(OBFUSCATIONS);
    obfuscate_as(s, kind, rng, benign)
}

/// Number of obfuscation kinds for [`obfuscate_as`].
pub const OBFUSCATIONS: usize = 10;

/// Applies obfuscation number `kind` (0..[`OBFUSCATIONS`]): homoglyph, zero_width, spaced,
/// leet, base64, hex, rot13, url, unicode_tags, upper.
pub fn obfuscate_as(s: &str, kind: usize, rng: &mut Rng, benign: bool) -> (String, &'static str) {
    let b64 = base64::engine::general_purpose::STANDARD;
    // An encoded attack comes with a request to obey it; an encoded benign text with an
    // honest request to decode it.
    let ask = |rng: &mut Rng| {
        if benign {
            pick(rng, BENIGN_DECODE_ASKS)
        } else {
            pick(rng, DECODE_ASKS)
        }
    };
    match kind {
        0 => (homoglyph(s, rng), "homoglyph"),
        1 => (zero_width(s, rng), "zero_width"),
        2 => (spaced(s, rng), "spaced"),
        3 => (leetify(s, rng), "leet"),
        4 => (format!("{} {}", ask(rng), b64.encode(s)), "base64"),
        5 => (format!("{} {}", ask(rng), hex::encode(s)), "hex"),
        6 => (format!("{} {}", ask(rng), rot13(s)), "rot13"),
        7 => (format!("{} {}", ask(rng), url_encode(s)), "url"),
        8 => {
            let cover = pick(rng, TAG_COVERS);
            (format!("{cover}{}", tags(s)), "unicode_tags")
        }
        _ => (s.to_uppercase(), "upper"),
    }
}
