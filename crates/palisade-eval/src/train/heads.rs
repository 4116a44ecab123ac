//! The linear heads (attack, harmful request, jailbreak-vs-injection): AdaGrad logistic
//! regression on hashed n-grams with class-balanced weights.
//!
//! Deterministic for a seed (the shuffles come from [`Rng`]); the three heads train on two
//! threads, each with its own seed, so the result does not depend on scheduling.

use palisade_detect::model::Head;
use palisade_detect::Channel;

use super::dataset::Prepared;
use super::ATTACK_BITS;
use crate::rng::Rng;
use crate::synth::Kind;

/// Trains a logistic-regression head with AdaGrad on hashed features.
fn train_head(data: &[(&[u32], f32, f32)], bits: u32, epochs: usize, seed: u64) -> Head {
    let n = 1usize << bits;
    let mut w = vec![0.0f32; n];
    let mut g2 = vec![1e-6f32; n];
    let (mut b, mut gb) = (0.0f32, 1e-6f32);
    let lr = 0.3f32;
    let l2 = 1e-5f32;
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = Rng::new(seed);
    let mask = (n - 1) as u32;
    for _ in 0..epochs {
        rng.shuffle(&mut order);
        for &i in &order {
            let (idx, y, weight) = data[i];
            if idx.is_empty() {
                continue;
            }
            let v = 1.0 / (idx.len() as f32).sqrt();
            let mut z = b;
            for &j in idx {
                z += w[(j & mask) as usize] * v;
            }
            let p = 1.0 / (1.0 + (-z).exp());
            let g = (p - y) * weight;
            for &j in idx {
                let j = (j & mask) as usize;
                let gj = g * v + l2 * w[j];
                g2[j] += gj * gj;
                w[j] -= lr * gj / g2[j].sqrt();
            }
            gb += g * g;
            b -= lr * g / gb.sqrt();
        }
    }
    Head {
        bits,
        bias: b,
        weights: w,
    }
}

/// Balanced weights: each class sums to half the total.
fn balanced(rows: Vec<(&[u32], f32)>) -> Vec<(&[u32], f32, f32)> {
    let pos = rows.iter().filter(|r| r.1 > 0.5).count().max(1) as f32;
    let neg = rows.iter().filter(|r| r.1 <= 0.5).count().max(1) as f32;
    let total = pos + neg;
    rows.into_iter()
        .map(|(i, y)| {
            (
                i,
                y,
                if y > 0.5 {
                    total / (2.0 * pos)
                } else {
                    total / (2.0 * neg)
                },
            )
        })
        .collect()
}

/// The three linear heads over hashed n-grams.
pub(super) struct Heads {
    /// Attack vs everything else.
    pub attack: Head,
    /// Harmful request vs benign user prompt.
    pub harm: Head,
    /// Jailbreak vs injection, among attacks.
    pub jb: Head,
}

/// Trains the three heads on the examples `include` selects (by index).
pub(super) fn train_heads(p: &[Prepared], include: impl Fn(usize) -> bool, seed: u64) -> Heads {
    let sel = |f: &dyn Fn(&Prepared) -> Option<f32>| -> Vec<(&[u32], f32)> {
        p.iter()
            .enumerate()
            .filter(|(i, _)| include(*i))
            .filter_map(|(_, x)| f(x).map(|y| (x.idx.as_slice(), y)))
            .collect()
    };
    // Harmful requests are negatives for the attack head: it must learn the wrapper (role
    // play, persuasion, overrides, soup), not the harmful topic; the harm head covers the topic
    // and the final layer combines the two.
    let attack = sel(&|x| match x.ex.kind {
        Kind::Attack => Some(1.0),
        Kind::BenignUser | Kind::BenignContext | Kind::Harmful => Some(0.0),
    });
    let harm = sel(&|x| match x.ex.kind {
        Kind::Harmful => Some(1.0),
        Kind::BenignUser if x.ex.channel == Channel::User => Some(0.0),
        _ => None,
    });
    let jb = sel(&|x| match (x.ex.kind, x.ex.jb) {
        (Kind::Attack, Some(j)) => Some(if j { 1.0 } else { 0.0 }),
        _ => None,
    });
    let (attack, (harm, jb)) = std::thread::scope(|s| {
        let a = s.spawn(|| train_head(&balanced(attack), ATTACK_BITS, 6, seed));
        let h = train_head(&balanced(harm), ATTACK_BITS, 4, seed ^ 1);
        let j = train_head(&balanced(jb), ATTACK_BITS, 4, seed ^ 2);
        (a.join().expect("training thread"), (h, j))
    });
    Heads { attack, harm, jb }
}
