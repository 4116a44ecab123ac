//! Simulated traffic shared by the extraction harnesses (`campaigns`, per
//! key; `hunt`, across keys): a day of benign users replaying real prompts
//! with think times, and extraction campaigns spread over keys that each
//! stay under a 60 requests/minute limit.
//!
//! Must not: read the clock or the OS's randomness (a seeded `SplitMix`).

#![allow(dead_code)] // each harness uses a subset

use palisade_extraction::stats::SplitMix;
use palisade_extraction::{GateOutcome, SamplingSignature};

pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;
pub const BASELINE_ROWS: usize = 256;

#[derive(Clone)]
pub struct Event {
    pub at_ms: i64,
    pub key: String,
    pub tenant: String,
    pub text: String,
    pub sampling: SamplingSignature,
    pub outcome: GateOutcome,
}

pub fn sampling(logprobs: bool, config: u64) -> SamplingSignature {
    SamplingSignature {
        logprobs,
        logit_bias_entries: 0,
        config_hash: config,
    }
}

/// A user's think time: exponential with the given mean.
pub fn think(rng: &mut SplitMix, mean_ms: f64) -> i64 {
    (-(1.0 - rng.unit()).ln() * mean_ms) as i64 + 200
}

pub fn benign_traffic(prompts: &[String], users: usize, rng: &mut SplitMix) -> Vec<Event> {
    let mut events = Vec::new();
    for u in 0..users {
        let key = format!("benign-{u}");
        let tenant = format!("tenant-{}", u % 40);
        let kind = rng.below(10);
        // 10% heavy batch or evaluation jobs; the rest interactive users.
        let (count, mean_think, slice) = if kind == 0 {
            (1000 + rng.below(2000), 2_000.0, 1500)
        } else {
            (10 + rng.below(150), 120_000.0, 200)
        };
        let start = rng.below(prompts.len().saturating_sub(slice).max(1));
        let pool = &prompts[start..(start + slice).min(prompts.len())];
        let uses_logprobs = kind == 0 && rng.below(3) == 0;
        let temperatures = if kind == 0 && rng.below(3) == 0 { 4 } else { 1 };
        let mut t = rng.below(DAY_MS as usize / 2) as i64;
        for i in 0..count {
            if t >= DAY_MS {
                break;
            }
            // Batch jobs replay their set in order (looping); people pick.
            let text = if kind == 0 {
                pool[(i / temperatures) % pool.len()].clone()
            } else {
                pool[rng.below(pool.len())].clone()
            };
            let outcome = if rng.below(100) < 2 {
                GateOutcome::Flagged
            } else {
                GateOutcome::Passed
            };
            events.push(Event {
                at_ms: t,
                key: key.clone(),
                tenant: tenant.clone(),
                text,
                sampling: sampling(uses_logprobs, (i % temperatures) as u64),
                outcome,
            });
            t += think(rng, mean_think);
        }
    }
    events
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Attack {
    RandomQuery,
    Perturbation,
    LogprobSweepHardened,
    LogprobSweepOpen,
}

impl Attack {
    pub fn name(self) -> &'static str {
        match self {
            Self::RandomQuery => "random-query",
            Self::Perturbation => "prada-perturbation",
            Self::LogprobSweepHardened => "logprob-sweep (hardened tier)",
            Self::LogprobSweepOpen => "logprob-sweep (open tier)",
        }
    }
}

pub fn vocabulary(prompts: &[String]) -> Vec<String> {
    let mut words: Vec<String> = prompts
        .iter()
        .flat_map(|p| p.split_whitespace().map(str::to_owned))
        .filter(|w| w.chars().all(char::is_alphabetic))
        .collect();
    words.sort();
    words.dedup();
    words
}

pub fn attack_traffic(
    attack: Attack,
    keys: usize,
    queries: usize,
    prompts: &[String],
    vocab: &[String],
    rng: &mut SplitMix,
) -> Vec<Event> {
    // Each key stays under 60 requests/minute: one request per ≥ 1 s.
    let mut clocks: Vec<i64> = (0..keys).map(|_| rng.below(60_000) as i64).collect();
    let mut events = Vec::with_capacity(queries);
    let mut seed_text = String::new();
    for q in 0..queries {
        let k = q % keys;
        let text = match attack {
            Attack::RandomQuery => {
                let n = 5 + rng.below(40);
                (0..n)
                    .map(|_| vocab[rng.below(vocab.len())].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            Attack::Perturbation => {
                // A natural seed, then perturbations of it (one or two words
                // swapped), PRADA's synthetic-sample pattern.
                if q % 8 == 0 {
                    seed_text = prompts[rng.below(prompts.len())].clone();
                    seed_text.clone()
                } else {
                    let mut words: Vec<&str> = seed_text.split_whitespace().collect();
                    for _ in 0..1 + rng.below(2) {
                        if !words.is_empty() {
                            let i = rng.below(words.len());
                            words[i] = vocab[rng.below(vocab.len())].as_str();
                        }
                    }
                    words.join(" ")
                }
            }
            Attack::LogprobSweepHardened | Attack::LogprobSweepOpen => {
                prompts[(q / 64) % prompts.len()].clone()
            }
        };
        let (sampling, outcome) = match attack {
            Attack::LogprobSweepHardened => (
                SamplingSignature {
                    logprobs: true,
                    logit_bias_entries: 1,
                    config_hash: q as u64,
                },
                GateOutcome::ProbeRefused,
            ),
            Attack::LogprobSweepOpen => (
                SamplingSignature {
                    logprobs: true,
                    logit_bias_entries: 1,
                    config_hash: q as u64,
                },
                GateOutcome::Passed,
            ),
            _ => (SamplingSignature::default(), GateOutcome::Passed),
        };
        events.push(Event {
            at_ms: clocks[k],
            key: format!("attack-{}-{k}", attack.name()),
            tenant: "attacker".into(),
            text,
            sampling,
            outcome,
        });
        clocks[k] += 1_000 + think(rng, 2_000.0);
    }
    events
}
