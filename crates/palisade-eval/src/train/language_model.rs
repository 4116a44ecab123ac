//! The character language model of ordinary text (Witten-Bell interpolated 4-grams), whose
//! surprise flags adversarial token soup.
//!
//! Hash-bucket writes happen in sorted key order so the artifact bytes are reproducible.

use std::collections::HashMap;

use palisade_detect::charlm::{quad_index, quantize, symbol, tri_index, CharLm, SYMBOLS};

use super::dataset::Prepared;
use crate::synth::Kind;

/// Witten-Bell interpolated character 4-gram model of benign text.
pub(super) fn train_lm<'a>(texts: impl Iterator<Item = &'a str>) -> CharLm {
    let mut c1 = [0u64; SYMBOLS];
    let mut c2: HashMap<u32, u64> = HashMap::new();
    let mut c3: HashMap<u32, u64> = HashMap::new();
    let mut c4: HashMap<u32, u64> = HashMap::new();
    for t in texts {
        let s: Vec<u8> = t.chars().map(symbol).collect();
        for i in 0..s.len() {
            c1[s[i] as usize] += 1;
            if i >= 1 {
                *c2.entry(u32::from(s[i - 1]) << 8 | u32::from(s[i]))
                    .or_default() += 1;
            }
            if i >= 2 {
                *c3.entry(
                    u32::from(s[i - 2]) << 16 | u32::from(s[i - 1]) << 8 | u32::from(s[i]),
                )
                .or_default() += 1;
            }
            if i >= 3 {
                *c4.entry(
                    u32::from(s[i - 3]) << 24
                        | u32::from(s[i - 2]) << 16
                        | u32::from(s[i - 1]) << 8
                        | u32::from(s[i]),
                )
                .or_default() += 1;
            }
        }
    }
    // Context totals and distinct-continuation counts.
    let ctx = |m: &HashMap<u32, u64>| {
        let mut t: HashMap<u32, (u64, u64)> = HashMap::new();
        for (&k, &v) in m {
            let e = t.entry(k >> 8).or_default();
            e.0 += v;
            e.1 += 1;
        }
        t
    };
    let (x2, x3, x4) = (ctx(&c2), ctx(&c3), ctx(&c4));
    let total1: u64 = c1.iter().sum::<u64>() + SYMBOLS as u64;
    let p1 = |d: u8| (c1[d as usize] + 1) as f64 / total1 as f64;
    let p2 = |b: u8, d: u8| {
        let (n, t) = x2.get(&u32::from(b)).copied().unwrap_or((0, 0));
        let c = c2
            .get(&(u32::from(b) << 8 | u32::from(d)))
            .copied()
            .unwrap_or(0);
        if n == 0 {
            p1(d)
        } else {
            (c as f64 + t as f64 * p1(d)) / (n + t) as f64
        }
    };
    let p3 = |a: u8, b: u8, d: u8| {
        let key = u32::from(a) << 8 | u32::from(b);
        let (n, t) = x3.get(&key).copied().unwrap_or((0, 0));
        let c = c3.get(&(key << 8 | u32::from(d))).copied().unwrap_or(0);
        if n == 0 {
            p2(b, d)
        } else {
            (c as f64 + t as f64 * p2(b, d)) / (n + t) as f64
        }
    };
    let mut lm = CharLm::empty();
    for d in 0..SYMBOLS as u8 {
        lm.uni[d as usize] = quantize(-p1(d).log2() as f32);
        for b in 0..SYMBOLS as u8 {
            lm.bi[b as usize * SYMBOLS + d as usize] = quantize(-p2(b, d).log2() as f32);
        }
    }
    // Sorted so hash-bucket collisions resolve the same way on every run (reproducible bytes).
    let mut k3: Vec<u32> = c3.keys().copied().collect();
    k3.sort_unstable();
    for k in k3 {
        let (a, b, d) = ((k >> 16) as u8, (k >> 8) as u8, k as u8);
        lm.tri[tri_index(a, b, d)] = quantize(-p3(a, b, d).log2() as f32);
    }
    let mut k4: Vec<(u32, u64)> = c4.iter().map(|(&k, &c)| (k, c)).collect();
    k4.sort_unstable();
    for (k, c) in k4 {
        let (a, b, cc, d) = ((k >> 24) as u8, (k >> 16) as u8, (k >> 8) as u8, k as u8);
        let (n, t) = x4[&(k >> 8)];
        let p = (c as f64 + t as f64 * p3(b, cc, d)) / (n + t) as f64;
        lm.quad[quad_index(a, b, cc, d)] = quantize(-p.log2() as f32);
    }
    lm
}

/// Texts the LM learns "ordinary" from: everything benign or merely harmful, except the
/// obfuscated benign prompts (obfuscation is what the LM should find surprising).
pub(super) fn lm_text(x: &Prepared) -> bool {
    matches!(
        x.ex.kind,
        Kind::BenignUser | Kind::BenignContext | Kind::Harmful
    ) && x.ex.source != "synth/obfuscated_benign"
}
