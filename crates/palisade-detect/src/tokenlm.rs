//! A token-level language model of benign text: windowed perplexity over BPE tokens.
//!
//! Optimizer-made suffixes (GCG, DSN, random search) are runs of sub-word fragments glued
//! across scripts and punctuation. Under a bigram model of ordinary text their tokens are
//! both rare and rarely adjacent, so a short window of them has a far higher mean surprisal
//! than prose, code or markup, which the character LM ([`crate::charlm`]) cannot tell apart
//! from soup (Jain et al. 2023; Alon & Kamfonas 2023).
//!
//! Tokens are OpenAI's `cl100k_base` BPE (packed and compiled in by `palisade-bpe`). The model
//! is a Witten-Bell interpolated bigram: a dense unigram table, a dense per-context back-off
//! table and hashed bigram buckets with an 8-bit fingerprint (a colliding bigram falls back to
//! the back-off estimate instead of borrowing another bigram's probability). All tables hold
//! quantized bits, so a lookup is two or three array reads.
//!
//! Must not: do I/O, read the clock, spawn threads, or look at more than [`MAX_SCAN_BYTES`]
//! of a text (head and tail), so its cost stays bounded on any input.

use crate::hash::mix64;

/// Dense table size: every `cl100k_base` rank `encode_ordinary` can produce (< 100 256).
pub const VOCAB: usize = 100_256;
/// log2 of the number of bigram buckets.
pub const BI_BITS: u32 = 19;
/// Tokens per window for the windowed surprisal.
pub const WINDOW: usize = 12;
/// Tokens at the end of the text whose mean surprisal is the tail signal.
pub const TAIL: usize = 24;
/// Window mean (bits/token) above which a window counts as high-surprisal.
pub const HIGH_BITS: f32 = 14.0;
/// Bytes of text tokenized at most: the first and the last half of this (suffixes sit at
/// the end, prefixes at the start; the middle of a long document adds cost, not signal:
/// BPE through `tiktoken-rs` costs a few µs per token, and 4 KiB put long prompts' p99 over budget).
pub const MAX_SCAN_BYTES: usize = 1024;

/// Quantized tables. A stored byte `q > 0` means `(q - 1) / 8` bits.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLm {
    /// Unigram bits per token id (length [`VOCAB`]; empty for an untrained model).
    pub uni: Vec<u8>,
    /// Back-off bits per context token id (length [`VOCAB`]): the cost of leaving the
    /// context's seen continuations.
    pub backoff: Vec<u8>,
    /// Hashed bigram entries `fingerprint << 8 | q` (0 = empty), `1 << BI_BITS` of them.
    pub bi: Vec<u16>,
}

/// Surprisal statistics of one text, in bits per token.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TokStats {
    /// Number of tokens scored.
    pub tokens: usize,
    /// Mean bits per token.
    pub mean: f32,
    /// Highest mean over any window of [`WINDOW`] tokens.
    pub max_window: f32,
    /// Fraction of windows whose mean exceeds [`HIGH_BITS`].
    pub high_frac: f32,
    /// Mean bits per token of the last [`TAIL`] tokens.
    pub tail_mean: f32,
    /// Mean bits per token of the first [`TAIL`] tokens.
    pub head_mean: f32,
    /// Lowest mean over any window of [`WINDOW`] tokens: the most fluent stretch. Text in a
    /// language or notation the model knows little of is surprising everywhere, a suffix
    /// only where it sits, so `max_window - min_window` is the contrast that separates them.
    pub min_window: f32,
}

/// Quantizes bits to a table byte (1/8-bit steps, at most ~31.6 bits).
pub fn quantize(bits: f32) -> u8 {
    ((bits * 8.0).round().clamp(0.0, 253.0) as u8) + 1
}

fn dq(q: u8) -> f32 {
    f32::from(q.saturating_sub(1)) / 8.0
}

/// Bucket index and fingerprint of a bigram.
pub fn bigram_slot(prev: u32, cur: u32) -> (usize, u8) {
    let h = mix64((0xb16a_u64 << 48) ^ (u64::from(prev) << 24) ^ u64::from(cur));
    ((h >> (64 - BI_BITS)) as usize, (h >> 8) as u8)
}

/// Packs a bigram entry.
pub fn bigram_entry(fingerprint: u8, q: u8) -> u16 {
    (u16::from(fingerprint) << 8) | u16::from(q.max(1))
}

/// The `cl100k_base` token ids of `text` (head and tail when it exceeds [`MAX_SCAN_BYTES`]).
pub fn tokens(text: &str) -> Vec<u32> {
    // The vocabulary is compiled in and checked by palisade-bpe's tests; should it ever fail
    // to build, the token LM sees no tokens (its signals read zero) instead of panicking.
    let Ok(bpe) = palisade_bpe::cl100k() else {
        return Vec::new();
    };
    if text.len() <= MAX_SCAN_BYTES {
        return bpe.encode_ordinary(text);
    }
    let half = MAX_SCAN_BYTES / 2;
    let mut head_end = half;
    while !text.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = text.len() - half;
    while !text.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    let mut ids = bpe.encode_ordinary(&text[..head_end]);
    ids.extend(bpe.encode_ordinary(&text[tail_start..]));
    ids
}

/// Compiles the tokenizer now (~100 ms once per process) so the first scan does not pay it.
pub fn warm_up() {
    let _ = palisade_bpe::cl100k();
}

impl TokenLm {
    /// An untrained model: [`TokenLm::stats`] returns zeros without tokenizing.
    pub fn empty() -> TokenLm {
        TokenLm {
            uni: Vec::new(),
            backoff: Vec::new(),
            bi: Vec::new(),
        }
    }

    /// True for the untrained model.
    pub fn is_empty(&self) -> bool {
        self.uni.is_empty()
    }

    /// Bits for `cur` after `prev`.
    #[inline]
    pub fn bits(&self, prev: u32, cur: u32) -> f32 {
        self.bits_seen(prev, cur).0
    }

    /// Bits for `cur` after `prev`, and whether the bigram was seen in training (a stored
    /// bucket) rather than estimated by back-off: optimizer soup is made of pairs no benign
    /// text contains, even where each token alone is common.
    #[inline]
    pub fn bits_seen(&self, prev: u32, cur: u32) -> (f32, bool) {
        let (slot, fp) = bigram_slot(prev, cur);
        // An untrained model has no buckets: everything is unseen.
        if let Some(&e) = self.bi.get(slot) {
            if e != 0 && (e >> 8) as u8 == fp {
                return (dq(e as u8), true);
            }
        }
        let back = self.backoff.get(prev as usize).map_or(0.0, |&q| dq(q));
        // Ids outside the table (none today) cost as much as the rarest known token.
        let uni = self.uni.get(cur as usize).map_or(31.0, |&q| dq(q));
        (back + uni, false)
    }

    /// Bits of a sequence's first token, scored by its unigram cost alone.
    #[inline]
    pub fn first_bits(&self, cur: u32) -> f32 {
        self.uni.get(cur as usize).map_or(31.0, |&q| dq(q))
    }

    /// Surprisal statistics of `text` (zeros for an untrained model or an empty text).
    pub fn stats(&self, text: &str) -> TokStats {
        if self.is_empty() || text.is_empty() {
            return TokStats::default();
        }
        self.stats_of(&tokens(text))
    }

    /// Surprisal statistics of a token sequence (linear time). The first token is scored
    /// by its unigram cost alone.
    pub fn stats_of(&self, ids: &[u32]) -> TokStats {
        if self.is_empty() || ids.len() < 2 {
            return TokStats::default();
        }
        let mut costs = Vec::with_capacity(ids.len());
        costs.push(self.uni.get(ids[0] as usize).map_or(31.0, |&q| dq(q)));
        for pair in ids.windows(2) {
            costs.push(self.bits(pair[0], pair[1]));
        }
        let n = costs.len();
        let total: f32 = costs.iter().sum();
        let w = WINDOW.min(n);
        let mut sum: f32 = costs[..w].iter().sum();
        let mut max = sum;
        let mut min = sum;
        let mut windows = 1usize;
        let mut high = usize::from(sum / w as f32 > HIGH_BITS);
        for i in w..n {
            sum += costs[i] - costs[i - w];
            max = max.max(sum);
            min = min.min(sum);
            windows += 1;
            high += usize::from(sum / w as f32 > HIGH_BITS);
        }
        let t = TAIL.min(n);
        let tail: f32 = costs[n - t..].iter().sum();
        let head: f32 = costs[..t].iter().sum();
        TokStats {
            tokens: n,
            mean: total / n as f32,
            max_window: max / w as f32,
            high_frac: high as f32 / windows as f32,
            tail_mean: tail / t as f32,
            head_mean: head / t as f32,
            min_window: min / w as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_and_caps() {
        assert!(!tokens("hello world").is_empty());
        let long = "word ".repeat(10_000);
        assert!(tokens(&long).len() < 2 * MAX_SCAN_BYTES);
        // A multi-byte character across the cut does not panic.
        let wide = "ж".repeat(5_000);
        assert!(!tokens(&wide).is_empty());
    }

    #[test]
    fn empty_model_is_silent() {
        let lm = TokenLm::empty();
        assert_eq!(lm.stats("anything at all"), TokStats::default());
    }

    #[test]
    fn quantization_roundtrips() {
        for bits in [0.0f32, 1.0, 7.5, 20.25] {
            assert!((dq(quantize(bits)) - bits).abs() < 0.07);
        }
        let (slot, fp) = bigram_slot(1, 2);
        assert!(slot < 1 << BI_BITS);
        assert_eq!(bigram_entry(fp, 0) & 0xff, 1);
    }
}
