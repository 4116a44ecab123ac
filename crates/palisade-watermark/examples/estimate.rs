//! How many watermarked outputs an attacker needs to learn a unigram green
//! list by counting tokens (the spoofing/scrubbing attack on Zhao et al.'s
//! scheme): simulated, seeded, no I/O.
//!
//! The model: tokens drawn independently from a Zipf(1.1) distribution over
//! `--vocab` ids (natural text's unigram shape), green tokens' logits raised
//! by delta. The attacker knows the unwatermarked frequencies exactly (a
//! public corpus: the strongest realistic attacker) and calls a token green
//! when its watermarked frequency exceeds its base frequency by more than
//! half the green boost. Reported per number of outputs of 200 tokens: the
//! share of generated token mass whose colour the attacker gets right
//! (1.0 = the list is known where it matters; 0.5 would be guessing on a
//! gamma = 0.5 list, 1 - gamma is the "all red" guess here) and the z of
//! fresh watermarked text after the attacker swaps each token it believes
//! green for its most likely believed-red neighbour, as a scrubbing proxy.
//!
//! Run: `cargo run --release -p palisade-watermark --example estimate`.

use palisade_extraction::stats::SplitMix;
use palisade_watermark::{derive_key, score, GreenList, DEFAULT_DELTA, DEFAULT_GAMMA};

const VOCAB: u32 = 32_000;
const TOKENS_PER_OUTPUT: usize = 200;

fn main() {
    let gamma = DEFAULT_GAMMA;
    let delta = f64::from(DEFAULT_DELTA);
    let list = match GreenList::new(&derive_key(&[5; 32], "victim", 0), VOCAB, gamma) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let base: Vec<f64> = (1..=VOCAB).map(|r| (f64::from(r)).powf(-1.1)).collect();
    let total: f64 = base.iter().sum();
    let base: Vec<f64> = base.iter().map(|p| p / total).collect();
    let marked: Vec<f64> = base
        .iter()
        .enumerate()
        .map(|(t, p)| {
            if list.is_green(t as u32) {
                p * delta.exp()
            } else {
                *p
            }
        })
        .collect();
    let mz: f64 = marked.iter().sum();
    let marked: Vec<f64> = marked.iter().map(|p| p / mz).collect();
    let cdf: Vec<f64> = marked
        .iter()
        .scan(0.0, |acc, p| {
            *acc += p;
            Some(*acc)
        })
        .collect();
    let mut rng = SplitMix::new(42);
    let draw = |rng: &mut SplitMix| -> u32 {
        let u = rng.unit();
        cdf.partition_point(|&c| c < u).min(VOCAB as usize - 1) as u32
    };
    // The green boost relative to the base: green tokens appear e^delta / Z
    // times as often, red ones 1 / Z; the attacker splits the difference.
    let cut = (delta.exp() / mz + 1.0 / mz) / 2.0;
    println!("vocab {VOCAB}, gamma {gamma}, delta {delta}, {TOKENS_PER_OUTPUT} tokens per output");
    println!("outputs\ttokens\tmass_correct\tgreen_recall_by_mass\tz_fresh\tz_after_scrub");
    let mut counts = vec![0u64; VOCAB as usize];
    let mut seen = 0u64;
    let mut outputs = 0u64;
    for target in [1u64, 10, 100, 1_000, 10_000, 50_000] {
        while outputs < target {
            for _ in 0..TOKENS_PER_OUTPUT {
                counts[draw(&mut rng) as usize] += 1;
                seen += 1;
            }
            outputs += 1;
        }
        let believed = |t: usize| counts[t] as f64 / seen as f64 > base[t] * cut;
        let (mut right, mut green_mass, mut green_found) = (0.0, 0.0, 0.0);
        for (t, &mass) in marked.iter().enumerate() {
            let green = list.is_green(t as u32);
            if believed(t) == green {
                right += mass;
            }
            if green {
                green_mass += mass;
                if believed(t) {
                    green_found += mass;
                }
            }
        }
        // Scrub: a token believed green is replaced by the next id the
        // attacker believes red (a stand-in for a synonym).
        let fresh: Vec<u32> = (0..TOKENS_PER_OUTPUT).map(|_| draw(&mut rng)).collect();
        let scrubbed: Vec<u32> = fresh
            .iter()
            .map(|&t| {
                let mut u = t as usize;
                while believed(u) && u + 1 < VOCAB as usize {
                    u += 1;
                }
                u as u32
            })
            .collect();
        println!(
            "{outputs}\t{seen}\t{right:.3}\t{:.3}\t{:.2}\t{:.2}",
            green_found / green_mass,
            score(&list, &fresh).z,
            score(&list, &scrubbed).z
        );
    }
}
