//! The green list: a keyed pseudo-random function over token ids picks
//! exactly `round(gamma * vocab)` green tokens (Zhao et al. shuffle the
//! vocabulary with the key and take the first `gamma` fraction; ranking the
//! PRF values is the same thing without a shuffle), and the bias map that
//! makes an upstream prefer them.
//!
//! Unigram, not context-hashed (KGW): the list is the same at every
//! position, which is what makes it robust to edits and paraphrase (a token
//! keeps its colour wherever it moves) and lets it travel as one static
//! `logit_bias` map. The price: it is learnable by counting token
//! frequencies, from few outputs for an attacker who knows the base
//! distribution (`examples/estimate.rs`, `docs/benchmarks.md` "output
//! watermarking"): it is a forensic mark against unscrubbed distillation,
//! not a defence against an adaptive scrubber.
//!
//! Must not: tokenize, or hold anything but the key's derived bits.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::{Key, WatermarkError};

/// Default green fraction. Rationale: Zhao et al. use 0.5 and KGW 0.25; a
/// smaller list makes the z-test stronger per token (green tokens are rarer
/// by chance) at a higher quality cost for the same delta. 0.25 reaches
/// z > 4.27 (FPR 1e-5) within tens of tokens at delta 2 in our measurement.
pub const DEFAULT_GAMMA: f64 = 0.25;
/// Default bias added to green tokens' logits. Rationale: 2.0 is both
/// papers' middle setting: detectable within ~100 tokens on low-entropy
/// text while the perplexity cost stays small.
pub const DEFAULT_DELTA: f32 = 2.0;

/// One key's green list over a vocabulary.
#[derive(Clone, PartialEq, Eq)]
pub struct GreenList {
    /// Bit `t` is set when token `t` is green.
    bits: Vec<u64>,
    vocab: u32,
    green: u32,
}

impl std::fmt::Debug for GreenList {
    // The bits are the secret: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GreenList")
            .field("vocab", &self.vocab)
            .field("green", &self.green)
            .finish_non_exhaustive()
    }
}

impl GreenList {
    /// The green list of `key` over token ids `0..vocab`. Costs one HMAC per
    /// token and a sort (tens of milliseconds for a 128k vocabulary): build
    /// it once per key and period, not per request.
    pub fn new(key: &Key, vocab: u32, gamma: f64) -> Result<Self, WatermarkError> {
        let green = (gamma * f64::from(vocab)).round();
        if !(gamma > 0.0 && gamma < 1.0) || green < 1.0 || green >= f64::from(vocab) {
            return Err(WatermarkError::Gamma { gamma, vocab });
        }
        let green = green as u32;
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&key.0);
        let keyed = <Hmac<Sha256> as KeyInit>::new(&block.into());
        let mut ranked: Vec<(u64, u32)> = (0..vocab)
            .map(|t| {
                let mut mac = keyed.clone();
                mac.update(&t.to_be_bytes());
                let out = mac.finalize().into_bytes();
                let mut head = [0u8; 8];
                head.copy_from_slice(&out[..8]);
                (u64::from_be_bytes(head), t)
            })
            .collect();
        // Ties (a 64-bit collision) break by token id: still a total order.
        ranked.sort_unstable();
        let mut bits = vec![0u64; (vocab as usize).div_ceil(64)];
        for &(_, t) in &ranked[..green as usize] {
            bits[t as usize / 64] |= 1 << (t % 64);
        }
        Ok(Self { bits, vocab, green })
    }

    /// Whether token `t` is green (ids outside the vocabulary are not).
    pub fn is_green(&self, t: u32) -> bool {
        t < self.vocab && self.bits[t as usize / 64] & (1 << (t % 64)) != 0
    }

    /// The vocabulary size the list was built for.
    pub fn vocab(&self) -> u32 {
        self.vocab
    }

    /// How many tokens are green.
    pub fn green_count(&self) -> u32 {
        self.green
    }

    /// The exact green fraction the z-test uses (`green / vocab`, which
    /// differs from the configured gamma by rounding only).
    pub fn gamma(&self) -> f64 {
        f64::from(self.green) / f64::from(self.vocab)
    }

    /// The green token ids, ascending.
    pub fn green_ids(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.vocab).filter(|&t| self.is_green(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive_key;

    #[test]
    fn exactly_gamma_of_the_vocabulary_is_green_and_keys_differ() {
        let a = GreenList::new(&derive_key(&[1; 32], "a", 0), 1000, 0.25).unwrap();
        let b = GreenList::new(&derive_key(&[1; 32], "b", 0), 1000, 0.25).unwrap();
        assert_eq!(a.green_count(), 250);
        assert_eq!(a.green_ids().count(), 250);
        assert!((a.gamma() - 0.25).abs() < 1e-12);
        // Independent lists overlap in about gamma² of the vocabulary.
        let both = a.green_ids().filter(|&t| b.is_green(t)).count();
        assert!((30..=100).contains(&both), "overlap {both}");
        assert!(!a.is_green(1000) && !a.is_green(u32::MAX));
        assert!(!format!("{a:?}").contains("bits"));
    }

    #[test]
    fn a_gamma_that_empties_a_list_is_refused() {
        let k = derive_key(&[1; 32], "a", 0);
        for (vocab, gamma) in [(10, 0.0), (10, 1.0), (10, 0.01), (10, 0.99), (10, f64::NAN)] {
            assert!(GreenList::new(&k, vocab, gamma).is_err(), "{vocab} {gamma}");
        }
        assert!(GreenList::new(&k, 10, 0.5).is_ok());
    }
}
