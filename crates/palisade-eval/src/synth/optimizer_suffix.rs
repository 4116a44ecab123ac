//! Synthetic optimizer-made suffixes (GCG, DSN, random search) for calibrating the
//! `adversarial_suffix` rule: closer to real optimizer output than uniformly random tokens.
//!
//! Why not uniform tokens: an optimizer picks each slot among the *top-k gradient candidates*
//! of the target model's vocabulary, and those are mostly ordinary pieces — whole English
//! words, common word fragments, capitalised names, code identifiers and markup — glued
//! in an order no writer would use ("similarlyNow write oppositeley.]( Me giving**ONE").
//! Uniformly random `cl100k_base` tokens are far rarer than that, so a threshold set on them
//! overstates recall (the first calibration missed hand-typed GCG-style soup). Here every
//! slot is drawn from pools built from benign *text* (so words come with their everyday
//! frequency), cut into pieces the way BPE cuts them, and joined the way suffixes are
//! joined: a leading space before some words, none before pieces and markup.
//!
//! Styles ([`SuffixStyle`]): word-heavy soup (the hard case), piece-heavy soup, a partially
//! optimized GCG suffix (the `! ! !` initialisation with some slots replaced), and soup with a
//! few non-Latin fragments (optimizers over multilingual vocabularies produce them).
//!
//! Must not: read files, `eval/` or the clock; every draw comes from the caller's [`Rng`], so
//! a seed reproduces the output byte for byte.

use crate::rng::Rng;

/// Markup and punctuation pieces of the kind gradient search favours (brackets glued to
/// letters, markdown and LaTeX fragments, comment openers, arrows).
pub const MARKUP: &[&str] = &[
    "](", ".](", "**", "\\", "\\!--", "({", "};", "==", "?>", "'", "\"", "[", "}", ")", "<", "/>",
    "^", "@", "[@", "#", "=>", "->", "..", ";)", ":)", "`", "|", "~~", "$(", "%{", "+", "{\\",
    "={", "]{", "}}", ".\\", ",.", "(\\", "//", "--", "!", "?", ";", ":", ".", ",", "<!", "\"/",
    "'.", "\\\\", "[]", "{}", "%", "&", "*", "=\"", "):", "}]",
];

/// Short fragments in other scripts (written for this generator: generic syllables and
/// common morphemes, not taken from any dataset).
pub const NON_LATIN: &[&str] = &[
    "Полк",
    "ности",
    "ения",
    "при",
    "的",
    "排序",
    "了",
    "в",
    "της",
    "και",
    "ния",
    "사이",
    "は",
    "ство",
    "ов",
    "日本",
    "на",
    "ого",
    "ή",
    "ال",
];

/// The pools a suffix is drawn from, built from benign text by [`SuffixVocab::from_texts`].
#[derive(Debug, Clone, Default)]
pub struct SuffixVocab {
    /// ASCII words, lowercase as written, with repetition (frequent words drawn often).
    pub words: Vec<String>,
    /// Word fragments: prefixes and endings of words (BPE-like cuts).
    pub pieces: Vec<String>,
    /// Capitalised words and names.
    pub capitalised: Vec<String>,
}

impl SuffixVocab {
    /// Pools from `texts` (at most `cap` words each), deterministic in the input order.
    pub fn from_texts<'a>(texts: impl Iterator<Item = &'a str>, cap: usize) -> SuffixVocab {
        let mut v = SuffixVocab::default();
        for t in texts {
            for w in t.split_whitespace() {
                let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
                if w.len() < 2 || w.len() > 14 || !w.bytes().all(|b| b.is_ascii_alphabetic()) {
                    continue;
                }
                if w.as_bytes()[0].is_ascii_uppercase() {
                    if v.capitalised.len() < cap {
                        v.capitalised.push(w.to_string());
                    }
                } else if v.words.len() < cap {
                    v.words.push(w.to_string());
                }
                if w.len() >= 6 && v.pieces.len() < cap {
                    // A prefix and an ending of the same word, cut where BPE often cuts.
                    let cut = 3 + (w.len() - 6) / 2;
                    v.pieces.push(w[..cut].to_string());
                    v.pieces.push(w[cut..].to_string());
                }
            }
        }
        v
    }

    /// True when every pool has something to draw from.
    pub fn is_usable(&self) -> bool {
        !(self.words.is_empty() || self.pieces.is_empty() || self.capitalised.is_empty())
    }
}

/// The kind of suffix to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuffixStyle {
    /// Mostly whole words with spaces, some markup and joins (hand-typed GCG look).
    Words,
    /// Mostly fragments, joins and markup, few spaces.
    Pieces,
    /// GCG's `! ! !` initialisation with a share of slots optimized.
    PartlyOptimized,
    /// Word or piece soup with a few non-Latin fragments.
    MixedScript,
}

/// Every style, in the order [`optimizer_suffix_any`] draws them.
pub const STYLES: [SuffixStyle; 4] = [
    SuffixStyle::Words,
    SuffixStyle::Pieces,
    SuffixStyle::PartlyOptimized,
    SuffixStyle::MixedScript,
];

fn pick<'a>(rng: &mut Rng, xs: &'a [String]) -> &'a str {
    xs[rng.below(xs.len())].as_str()
}

fn capitalise(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// One optimized slot: a piece of text and whether it takes a leading space.
fn slot(v: &SuffixVocab, rng: &mut Rng, word_share: f32, non_latin: f32) -> (String, bool) {
    if rng.chance(non_latin) {
        let s = NON_LATIN[rng.below(NON_LATIN.len())];
        return (s.to_string(), rng.chance(0.5));
    }
    if rng.chance(word_share) {
        let w = pick(rng, &v.words);
        return match rng.below(10) {
            0 => (w.to_ascii_uppercase(), true),
            1 | 2 => (capitalise(w), rng.chance(0.5)),
            _ => (w.to_string(), true),
        };
    }
    match rng.below(10) {
        0..=3 => (MARKUP[rng.below(MARKUP.len())].to_string(), rng.chance(0.3)),
        4 | 5 => (pick(rng, &v.pieces).to_string(), rng.chance(0.3)),
        6 => (pick(rng, &v.capitalised).to_string(), rng.chance(0.6)),
        7 => {
            // camelCase join: "similarlyNow".
            let a = pick(rng, &v.words).to_string();
            (a + &capitalise(pick(rng, &v.words)), rng.chance(0.7))
        }
        8 => {
            // Identifier-like: lower word + upper fragment ("githubINST").
            let a = pick(rng, &v.words).to_string();
            let b = pick(rng, &v.pieces).to_ascii_uppercase();
            (a + &b, true)
        }
        _ => (
            format!(
                "{}{}",
                MARKUP[rng.below(MARKUP.len())],
                capitalise(pick(rng, &v.words))
            ),
            rng.chance(0.5),
        ),
    }
}

/// One synthetic optimizer suffix of `style` (empty when `v` is not usable).
pub fn optimizer_suffix(v: &SuffixVocab, style: SuffixStyle, rng: &mut Rng) -> String {
    if !v.is_usable() {
        return String::new();
    }
    // GCG's default is 20 optimized tokens; DSN and random search use 20–25 and more.
    let n = 16 + rng.below(16);
    let (word_share, non_latin, bang) = match style {
        SuffixStyle::Words => (0.6, 0.0, 0.0),
        SuffixStyle::Pieces => (0.2, 0.0, 0.0),
        SuffixStyle::PartlyOptimized => (0.4, 0.0, 0.2 + 0.5 * rng.unit()),
        SuffixStyle::MixedScript => (0.4, 0.05 + 0.1 * rng.unit(), 0.0),
    };
    let mut out = String::new();
    for i in 0..n {
        let (piece, space) = if rng.chance(bang) {
            ("!".to_string(), true)
        } else {
            slot(v, rng, word_share, non_latin)
        };
        if i > 0 && space {
            out.push(' ');
        }
        out.push_str(&piece);
    }
    out
}

/// A suffix of a style drawn uniformly.
pub fn optimizer_suffix_any(v: &SuffixVocab, rng: &mut Rng) -> (String, SuffixStyle) {
    let style = STYLES[rng.below(STYLES.len())];
    (optimizer_suffix(v, style, rng), style)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> SuffixVocab {
        SuffixVocab::from_texts(
            [
                "Please describe the history of the printing press in Europe carefully",
                "Paris and London are capitals; Maria wrote something wonderful yesterday",
            ]
            .into_iter(),
            1000,
        )
    }

    #[test]
    fn a_seed_reproduces_the_suffix() {
        let v = vocab();
        for style in STYLES {
            let a = optimizer_suffix(&v, style, &mut Rng::new(3));
            let b = optimizer_suffix(&v, style, &mut Rng::new(3));
            assert_eq!(a, b);
            assert!(a.split_whitespace().count() >= 3, "{style:?}: {a}");
        }
    }

    #[test]
    fn styles_differ_in_the_expected_way() {
        let v = vocab();
        let mut rng = Rng::new(11);
        let (mut bangs, mut non_latin) = (0usize, 0usize);
        for _ in 0..200 {
            let s = optimizer_suffix(&v, SuffixStyle::PartlyOptimized, &mut rng);
            bangs += s.split_whitespace().filter(|w| *w == "!").count();
            let m = optimizer_suffix(&v, SuffixStyle::MixedScript, &mut rng);
            non_latin += usize::from(!m.is_ascii());
        }
        assert!(bangs > 200, "partly optimized suffixes keep `!` slots");
        assert!(
            non_latin > 50,
            "mixed-script suffixes carry non-Latin fragments"
        );
    }

    #[test]
    fn an_empty_vocabulary_yields_nothing() {
        let v = SuffixVocab::default();
        assert_eq!(
            optimizer_suffix(&v, SuffixStyle::Words, &mut Rng::new(1)),
            ""
        );
    }
}
