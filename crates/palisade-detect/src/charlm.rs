//! A cheap character-level language model of benign text.
//!
//! Adversarial suffixes found by GCG/DSN-style search are token soup ("describing.\ +
//! similarlyNow write oppositeley.]("): natural text of any language has low surprise under a
//! character 4-gram model, soup has high surprise. The model stores quantized bits per
//! character for hashed 4-gram and 3-gram contexts with dense bigram/unigram fallbacks, so a
//! lookup is a few array reads.
//!
//! Non-ASCII letters collapse to one symbol, so other scripts are not penalized for being
//! unseen; what matters is how letters, digits, case and punctuation alternate.

use crate::hash::mix64;

/// Number of symbols: 95 printable ASCII, newline, non-ASCII letter, other.
pub const SYMBOLS: usize = 98;
/// log2 of the number of 4-gram buckets.
pub const QUAD_BITS: u32 = 18;
/// log2 of the number of 3-gram buckets.
pub const TRI_BITS: u32 = 16;
/// Sliding window (in characters) for the local surprise maximum.
pub const WINDOW: usize = 24;

/// Maps a character to its symbol id.
pub fn symbol(c: char) -> u8 {
    match c {
        ' '..='~' => (c as u8) - b' ',
        '\n' | '\r' | '\t' => 95,
        c if crate::ctype::is_alphabetic(c) || c.is_numeric() => 96,
        c if crate::ctype::is_whitespace(c) => 0,
        _ => 97,
    }
}

/// Quantized tables. A stored byte `q > 0` means `(q - 1) / 16` bits; 0 means unseen.
#[derive(Debug, Clone, PartialEq)]
pub struct CharLm {
    /// Unigram bits (always filled).
    pub uni: Vec<u8>,
    /// Dense bigram table `prev * SYMBOLS + cur`.
    pub bi: Vec<u8>,
    /// Hashed trigram table.
    pub tri: Vec<u8>,
    /// Hashed 4-gram table.
    pub quad: Vec<u8>,
}

/// Surprise statistics of one text.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LmStats {
    /// Mean bits per character.
    pub mean: f32,
    /// Highest mean over any window of [`WINDOW`] characters.
    pub max_window: f32,
    /// Fraction of windows whose mean exceeds [`SOUP_BITS`].
    pub soup_frac: f32,
}

/// Window mean (bits/char) above which a window counts as soup.
pub const SOUP_BITS: f32 = 6.5;

/// Table index of a trigram (two symbols of context and the current one).
pub fn tri_index(a: u8, b: u8, c: u8) -> usize {
    (mix64(0x7431 ^ (u64::from(a) << 16) ^ (u64::from(b) << 8) ^ u64::from(c)) >> (64 - TRI_BITS))
        as usize
}

/// Table index of a 4-gram.
pub fn quad_index(a: u8, b: u8, c: u8, d: u8) -> usize {
    (mix64(
        0x9a5d ^ (u64::from(a) << 24) ^ (u64::from(b) << 16) ^ (u64::from(c) << 8) ^ u64::from(d),
    ) >> (64 - QUAD_BITS)) as usize
}

/// Quantizes bits to a table byte.
pub fn quantize(bits: f32) -> u8 {
    ((bits * 16.0).round().clamp(0.0, 253.0) as u8) + 1
}

fn dq(q: u8) -> f32 {
    f32::from(q - 1) / 16.0
}

impl CharLm {
    /// An empty model (everything unseen): every character costs the same, features are flat.
    pub fn empty() -> CharLm {
        CharLm {
            uni: vec![quantize(7.0); SYMBOLS],
            bi: vec![0; SYMBOLS * SYMBOLS],
            tri: vec![0; 1 << TRI_BITS],
            quad: vec![0; 1 << QUAD_BITS],
        }
    }

    /// Bits for `d` given up to three previous symbols (most recent last).
    #[inline]
    fn bits(&self, a: u8, b: u8, c: u8, d: u8) -> f32 {
        let q = self.quad[quad_index(a, b, c, d)];
        if q != 0 {
            return dq(q);
        }
        let t = self.tri[tri_index(b, c, d)];
        if t != 0 {
            return dq(t) + 1.0;
        }
        let bi = self.bi[c as usize * SYMBOLS + d as usize];
        if bi != 0 {
            return dq(bi) + 2.0;
        }
        dq(self.uni[d as usize]) + 3.0
    }

    /// Surprise statistics of `text` (linear time).
    pub fn stats(&self, text: &str) -> LmStats {
        crate::work::add(crate::work::Unit::LmBytes, text.len());
        let syms: Vec<u8> = text.chars().map(symbol).collect();
        if syms.len() < 4 {
            return LmStats::default();
        }
        let mut costs = Vec::with_capacity(syms.len());
        for i in 3..syms.len() {
            costs.push(self.bits(syms[i - 3], syms[i - 2], syms[i - 1], syms[i]));
        }
        let total: f32 = costs.iter().sum();
        let mean = total / costs.len() as f32;
        let w = WINDOW.min(costs.len());
        let mut sum: f32 = costs[..w].iter().sum();
        let mut max = sum;
        let mut windows = 1usize;
        let mut soup = usize::from(sum / w as f32 > SOUP_BITS);
        for i in w..costs.len() {
            sum += costs[i] - costs[i - w];
            max = max.max(sum);
            windows += 1;
            if sum / w as f32 > SOUP_BITS {
                soup += 1;
            }
        }
        LmStats {
            mean,
            max_window: max / w as f32,
            soup_frac: soup as f32 / windows as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_cover_scripts() {
        assert_eq!(symbol('a'), b'a' - b' ');
        assert_eq!(symbol('ж'), 96);
        assert_eq!(symbol('中'), 96);
        assert_eq!(symbol('\n'), 95);
        assert_eq!(symbol('€'), 97);
    }

    #[test]
    fn empty_model_is_flat() {
        let lm = CharLm::empty();
        let s = lm.stats("hello world, this is text");
        assert!((s.mean - 10.0).abs() < 0.1, "{s:?}");
        assert_eq!(lm.stats("ab"), LmStats::default());
    }
}
