//! The token-level language model of ordinary text (Witten-Bell interpolated BPE bigrams),
//! whose windowed surprisal flags optimizer-made suffixes.
//!
//! Bucket writes go in a fixed order (most frequent bigram first, ties by key), so the
//! artifact bytes are reproducible and a collision keeps the bigram that matters most.

use std::collections::HashMap;

use palisade_detect::tokenlm::{bigram_entry, bigram_slot, quantize, TokenLm, BI_BITS, VOCAB};

/// Witten-Bell interpolated bigram model over token-id sequences.
pub fn train_token_lm<'a>(seqs: impl Iterator<Item = &'a [u32]>) -> TokenLm {
    let mut c1 = vec![0u64; VOCAB];
    let mut c2: HashMap<u64, u64> = HashMap::new();
    for s in seqs {
        for (i, &t) in s.iter().enumerate() {
            if (t as usize) < VOCAB {
                c1[t as usize] += 1;
            }
            if i >= 1 {
                *c2.entry(u64::from(s[i - 1]) << 32 | u64::from(t))
                    .or_default() += 1;
            }
        }
    }
    // Per context: total continuations n and distinct continuations t.
    let mut ctx: HashMap<u32, (u64, u64)> = HashMap::new();
    for (&k, &c) in &c2 {
        let e = ctx.entry((k >> 32) as u32).or_default();
        e.0 += c;
        e.1 += 1;
    }
    let total: u64 = c1.iter().sum::<u64>() + VOCAB as u64;
    let p1 = |w: u32| (c1.get(w as usize).copied().unwrap_or(0) + 1) as f64 / total as f64;
    let mut lm = TokenLm {
        uni: (0..VOCAB as u32)
            .map(|w| quantize(-p1(w).log2() as f32))
            .collect(),
        backoff: vec![quantize(0.0); VOCAB],
        bi: vec![0; 1 << BI_BITS],
    };
    for (&v, &(n, t)) in &ctx {
        if (v as usize) < VOCAB {
            let gamma = t as f64 / (n + t) as f64;
            lm.backoff[v as usize] = quantize(-gamma.log2() as f32);
        }
    }
    let mut bigrams: Vec<(u64, u64)> = c2.into_iter().collect();
    bigrams.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (k, c) in bigrams {
        let (v, w) = ((k >> 32) as u32, k as u32);
        let (n, t) = ctx[&v];
        let p = (c as f64 + t as f64 * p1(w)) / (n + t) as f64;
        let (slot, fp) = bigram_slot(v, w);
        if lm.bi[slot] == 0 {
            lm.bi[slot] = bigram_entry(fp, quantize(-p.log2() as f32));
        }
    }
    lm
}

#[cfg(test)]
mod tests {
    use palisade_detect::tokenlm::tokens;

    use super::*;

    /// Phrases written for this test (not from any dataset).
    const PROSE: &[&str] = &[
        "The library opens at nine in the morning and closes at six in the evening.",
        "Please summarize the meeting notes and send them to the team before Friday.",
        "Our garden has tomatoes, beans and a small apple tree near the fence.",
        "How do I convert a list of strings to integers in Python?",
        "fn main() { let total: u32 = items.iter().map(|x| x.len() as u32).sum(); println!(\"{total}\"); }",
        "The weather was cold, so we stayed inside and read books by the fire.",
        "Write a short poem about the sea at night and the lights of the harbour.",
        "for i in range(10):\n    print(i * 2)\n",
    ];

    #[test]
    fn soup_scores_far_above_prose_and_code() {
        let seqs: Vec<Vec<u32>> = PROSE.iter().cycle().take(400).map(|t| tokens(t)).collect();
        let lm = train_token_lm(seqs.iter().map(Vec::as_slice));
        let sentence = lm.stats("Please summarize the notes from the library meeting.");
        let code = lm.stats("for x in items.iter() { println!(\"{x}\"); }");
        let soup =
            lm.stats("zx}]vo Kraft!!--( Regiment }}); quadrat\\\\ ^[pb ><?? oppositeNow shoes(%");
        assert!(
            soup.max_window > sentence.max_window + 4.0,
            "{soup:?} {sentence:?}"
        );
        assert!(soup.max_window > code.max_window + 2.0, "{soup:?} {code:?}");
        assert!(soup.tail_mean > sentence.tail_mean);
    }

    #[test]
    fn deterministic() {
        let seqs: Vec<Vec<u32>> = PROSE.iter().map(|t| tokens(t)).collect();
        let a = train_token_lm(seqs.iter().map(Vec::as_slice));
        let b = train_token_lm(seqs.iter().rev().map(Vec::as_slice));
        assert_eq!(a, b);
    }
}
