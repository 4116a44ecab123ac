//! Cheap per-request features of a prompt: length, character entropy, word
//! hashes (for vocabulary coverage), a 64-bit SimHash of character 4-gram
//! shingles (near duplicates are a few bits apart) and a MinHash signature
//! (template detection, Jaccard estimates across keys for a hunt job).
//!
//! Must not: keep the text. Every output is a hash or a count, so the
//! telemetry store never becomes a second copy of users' prompts.

use serde::{Deserialize, Serialize};

/// Slots in a MinHash signature: Jaccard estimates within ±0.12 (1σ at
/// J=0.5), enough to tell "same template" from "different prompt".
pub const MINHASH_SLOTS: usize = 16;

/// Most words a request contributes to the coverage measure; a 100 kB prompt
/// costs no more than a long one.
pub const MAX_WORDS: usize = 256;

/// Position buckets of [`TextSketch::word_positions`].
pub const POSITION_BUCKETS: usize = 32;

/// Most characters read for the sketches; the tail of a huge prompt changes
/// nothing about whether it is a near duplicate.
pub const MAX_SKETCH_CHARS: usize = 4096;

/// What one prompt looks like, as hashes and counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextSketch {
    /// Length in characters (all of them, not only the sketched prefix).
    pub chars: u32,
    /// Shannon entropy of the character distribution, bits per character.
    pub entropy_bits: f32,
    /// SimHash of character 4-gram shingles.
    pub simhash: u64,
    /// MinHash of the same shingles.
    pub minhash: [u32; MINHASH_SLOTS],
    /// 32-bit hashes of the first [`MAX_WORDS`] lower-cased words.
    pub word_hashes: Vec<u32>,
    /// The word sequence in [`POSITION_BUCKETS`] position buckets (bucket =
    /// position × 32 / words), each an 8-bit hash of its words: two
    /// prompts of the same length that differ in k words differ in at most
    /// k buckets, unrelated ones in nearly all. A perturbation extractor's
    /// one-or-two-word edits show up here.
    pub word_positions: [u8; POSITION_BUCKETS],
}

/// SplitMix64's finalizer: a fast, well-mixed 64-bit hash step.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over bytes, then mixed; stable across runs and platforms (the
/// store and the hunt job compare hashes written by other processes).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}

/// Sketches `text`.
pub fn sketch(text: &str) -> TextSketch {
    // ASCII counted in an array (most prompts are mostly ASCII), the rest in
    // a map; summed in a fixed order, so the entropy is deterministic.
    let mut ascii = [0u32; 128];
    let mut other: std::collections::BTreeMap<char, u32> = std::collections::BTreeMap::new();
    let mut chars = 0u32;
    for c in text.chars() {
        chars = chars.saturating_add(1);
        match usize::try_from(u32::from(c)).ok().filter(|&i| i < 128) {
            Some(i) => ascii[i] += 1,
            None => *other.entry(c).or_insert(0) += 1,
        }
    }
    let entropy_bits = entropy(ascii.into_iter().chain(other.into_values()), chars);

    // Shingles over the lower-cased, whitespace-collapsed prefix, so "Hello
    // world" and "hello  world" are the same prompt to an extractor's eye.
    let normalized: Vec<char> = normalize(text).chars().take(MAX_SKETCH_CHARS).collect();
    let mut votes = BitTally::default();
    let mut minhash = [u32::MAX; MINHASH_SLOTS];
    let mut shingle = |h: u64| {
        votes.add(h);
        for (slot, min) in minhash.iter_mut().enumerate() {
            let v = (mix64(h ^ SLOT_SEEDS[slot]) >> 32) as u32;
            *min = (*min).min(v);
        }
    };
    if normalized.len() < 4 {
        let s: String = normalized.iter().collect();
        shingle(hash_bytes(s.as_bytes()));
    } else {
        let mut buf = [0u8; 16];
        for w in normalized.windows(4) {
            let mut len = 0;
            for c in w {
                len += c.encode_utf8(&mut buf[len..]).len();
            }
            shingle(hash_bytes(&buf[..len]));
        }
    }
    let simhash = votes.simhash();
    let word_hashes: Vec<u32> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .map(|w| (word_hash(w) >> 32) as u32)
        .collect();
    let word_positions = positions(&word_hashes);
    TextSketch {
        chars,
        entropy_bits,
        simhash,
        minhash,
        word_hashes,
        word_positions,
    }
}

/// [`hash_bytes`] of the word lower-cased. ASCII words (nearly all of them)
/// are folded byte by byte, without the `String` that `to_lowercase` makes;
/// for ASCII the two give the same bytes, so the same hash.
fn word_hash(word: &str) -> u64 {
    if !word.is_ascii() {
        return hash_bytes(word.to_lowercase().as_bytes());
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in word.as_bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}

/// `SPREAD[v]` has bit `j` of `v` in the lowest bit of its byte `j`: adding
/// it to a `u64` counts eight bits at once, one per byte lane.
const SPREAD: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut v = 0;
    while v < 256 {
        let mut j = 0;
        while j < 8 {
            table[v] |= ((v as u64 >> j) & 1) << (8 * j);
            j += 1;
        }
        v += 1;
    }
    table
};

/// SimHash's per-bit votes, counted eight bits per addition (SWAR): lane
/// byte `j` of `lanes[k]` counts the shingles with bit `8k + j` set, and is
/// emptied into `ones` before it can overflow (255 shingles). The vote of a
/// bit is `ones − (total − ones)`, exactly the ±1 sum it replaces (eight
/// table additions per shingle instead of 64 votes).
struct BitTally {
    lanes: [u64; 8],
    pending: u32,
    ones: [u32; 64],
    total: u32,
}

impl Default for BitTally {
    fn default() -> Self {
        Self {
            lanes: [0; 8],
            pending: 0,
            ones: [0; 64],
            total: 0,
        }
    }
}

impl BitTally {
    fn add(&mut self, h: u64) {
        for (k, lane) in self.lanes.iter_mut().enumerate() {
            *lane += SPREAD[((h >> (8 * k)) & 0xff) as usize];
        }
        self.total = self.total.saturating_add(1);
        self.pending += 1;
        if self.pending == 255 {
            self.flush();
        }
    }

    fn flush(&mut self) {
        for (k, lane) in self.lanes.iter_mut().enumerate() {
            for j in 0..8 {
                self.ones[8 * k + j] += ((*lane >> (8 * j)) & 0xff) as u32;
            }
            *lane = 0;
        }
        self.pending = 0;
    }

    /// Bit `b` set when more shingles have it set than not (a tie is unset).
    fn simhash(mut self) -> u64 {
        self.flush();
        let mut simhash = 0u64;
        for (bit, &ones) in self.ones.iter().enumerate() {
            if u64::from(ones) * 2 > u64::from(self.total) {
                simhash |= 1 << bit;
            }
        }
        simhash
    }
}

fn positions(words: &[u32]) -> [u8; POSITION_BUCKETS] {
    let mut buckets = [0u64; POSITION_BUCKETS];
    for (i, w) in words.iter().enumerate() {
        let b = i * POSITION_BUCKETS / words.len();
        buckets[b] = mix64(buckets[b] ^ u64::from(*w));
    }
    let mut out = [0u8; POSITION_BUCKETS];
    for (o, b) in out.iter_mut().zip(buckets) {
        *o = (b >> 56) as u8;
    }
    out
}

/// Buckets in which two position sketches differ.
pub fn positions_differing(a: &[u8; POSITION_BUCKETS], b: &[u8; POSITION_BUCKETS]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_SKETCH_CHARS * 4));
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.extend(c.to_lowercase());
    }
    out
}

/// Shannon entropy in bits of a distribution given by its counts.
pub fn entropy(counts: impl Iterator<Item = u32>, total: u32) -> f32 {
    if total == 0 {
        return 0.0;
    }
    let total = f64::from(total);
    let h: f64 = counts
        .filter(|&c| c > 0)
        .map(|c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum();
    h as f32
}

/// SimHash distance in `[0, 1]`: the fraction of differing bits.
pub fn simhash_distance(a: u64, b: u64) -> f64 {
    f64::from((a ^ b).count_ones()) / 64.0
}

/// Estimated Jaccard similarity of two MinHash signatures.
pub fn minhash_similarity(a: &[u32; MINHASH_SLOTS], b: &[u32; MINHASH_SLOTS]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / MINHASH_SLOTS as f64
}

const SLOT_SEEDS: [u64; MINHASH_SLOTS] = [
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
    0x85eb_ca77_c2b2_ae63,
    0x27d4_eb2f_1656_67c5,
    0x94d0_49bb_1331_11eb,
    0xbf58_476d_1ce4_e5b9,
    0x2545_f491_4f6c_dd1d,
    0xd6e8_feb8_6659_fd93,
    0xa076_1d64_78bd_642f,
    0xe703_7ed1_a0b4_28db,
    0x8ebc_6af0_9c88_c6e3,
    0x5899_65cc_7537_4cc3,
    0x1d8e_4e27_c47d_124f,
    0x7a1f_5c2e_3b9d_8e61,
    0x3c6e_f372_fe94_f82b,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_duplicates_are_close_and_strangers_far() {
        let a =
            sketch("Summarize the following customer review in one sentence: the shoes were great");
        let b =
            sketch("Summarize the following customer review in one sentence: the shoes were good");
        let c = sketch("Write a haiku about autumn leaves falling on a quiet pond at dusk");
        let near = simhash_distance(a.simhash, b.simhash);
        let far = simhash_distance(a.simhash, c.simhash);
        assert!(near < 0.25 && far > 0.3, "near {near} far {far}");

        assert!(minhash_similarity(&a.minhash, &b.minhash) > 0.5);
        assert!(minhash_similarity(&a.minhash, &c.minhash) < 0.3);
    }

    #[test]
    fn one_word_edits_touch_one_position_bucket() {
        let a = sketch(
            "Classify the sentiment of this review: the delivery was quick and the box was intact",
        );
        let b = sketch(
            "Classify the sentiment of this review: the delivery was slow and the box was intact",
        );
        let c = sketch(
            "Write a short poem about the sea at night with stars reflecting on the waves below",
        );
        assert_eq!(a.word_hashes.len(), b.word_hashes.len());
        assert_eq!(positions_differing(&a.word_positions, &b.word_positions), 1);
        assert!(positions_differing(&a.word_positions, &c.word_positions) > 8);
    }

    #[test]
    fn case_and_spacing_do_not_change_the_sketch() {
        assert_eq!(
            sketch("Hello   World, how are you").simhash,
            sketch("hello world,\nhow are you").simhash
        );
    }

    #[test]
    fn entropy_of_known_distributions() {
        assert_eq!(sketch("aaaa").entropy_bits, 0.0);
        assert!((sketch("abab").entropy_bits - 1.0).abs() < 1e-6);
        assert!((sketch("abcd").entropy_bits - 2.0).abs() < 1e-6);
        assert_eq!(sketch("").chars, 0);
    }

    /// The ±1 vote per bit and shingle that [`BitTally`] replaces.
    fn simhash_by_votes(text: &str) -> u64 {
        let normalized: Vec<char> = normalize(text).chars().take(MAX_SKETCH_CHARS).collect();
        let mut votes = [0i64; 64];
        let mut vote = |h: u64| {
            for (bit, v) in votes.iter_mut().enumerate() {
                *v += if (h >> bit) & 1 == 1 { 1 } else { -1 };
            }
        };
        if normalized.len() < 4 {
            let s: String = normalized.iter().collect();
            vote(hash_bytes(s.as_bytes()));
        } else {
            for w in normalized.windows(4) {
                let s: String = w.iter().collect();
                vote(hash_bytes(s.as_bytes()));
            }
        }
        (0..64)
            .filter(|&b| votes[b] > 0)
            .fold(0, |acc, b| acc | 1 << b)
    }

    #[test]
    fn the_tally_gives_the_simhash_of_the_votes() {
        let long: String = (0..3000)
            .map(|i| format!("w{} ", i * 7919 % 1000))
            .collect();
        for text in [
            "",
            "ab",
            "abcd",
            "Summarize the following customer review in one sentence",
            "Ünïcödé — 日本語のテキスト, mixed with ASCII words",
            "aaaa aaaa aaaa aaaa aaaa aaaa aaaa aaaa aaaa aaaa",
            &"x".repeat(300),
            &"abcdefgh".repeat(100),
            &long,
        ] {
            assert_eq!(sketch(text).simhash, simhash_by_votes(text), "{text:.40}");
        }
    }

    #[test]
    fn words_hash_as_lower_cased() {
        for w in ["Hello", "HELLO", "hello", "Straße", "ÉCOLE", "x1Y2"] {
            assert_eq!(word_hash(w), hash_bytes(w.to_lowercase().as_bytes()), "{w}");
        }
    }

    #[test]
    fn words_are_bounded() {
        let long = "word ".repeat(10_000);
        assert_eq!(sketch(&long).word_hashes.len(), MAX_WORDS);
        assert_eq!(sketch(&long).chars, 50_000);
    }
}
