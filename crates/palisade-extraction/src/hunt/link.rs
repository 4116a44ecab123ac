//! Which keys are linked, and by what: candidate pairs come from shared
//! buckets (template bands per time slot, MinHash bands of activity sets,
//! fingerprints), each candidate pair is then scored on the pairwise
//! signals (timing, template, fingerprint). The distribution signal is a
//! group test over keys linked by timing (in `mod.rs`): one key's few
//! queries say too little about its distribution, a group's say enough.
//!
//! Bounded: a bucket holding more than `max_bucket` keys is not expanded
//! pairwise (that is the quadratic blow-up); its keys, ordered by first
//! arrival, are chained to their `chain` successors instead, which keeps a
//! large campaign connected at linear cost. Candidate pairs stop at
//! `max_pairs` (reported as truncated).
//!
//! Must not: read the clock or draw randomness (hyperplanes and MinHash
//! seeds are fixed constants).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::sketch::mix64;

use super::profile::KeyProfile;
use super::HuntConfig;

/// A signal that can link two keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// Active in the same time buckets (lockstep or coordinated activity).
    Timing,
    /// Near-duplicate prompts (shared MinHash bands) in the same time slot.
    Template,
    /// A co-active group whose queries sit off the baseline, each key in
    /// the same direction as the rest of the group.
    Distribution,
    /// A shared, non-generic client fingerprint.
    Fingerprint,
}

impl LinkKind {
    /// Every kind, in a fixed order.
    pub const ALL: [Self; 4] = [
        Self::Timing,
        Self::Template,
        Self::Distribution,
        Self::Fingerprint,
    ];

    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timing => "timing",
            Self::Template => "template",
            Self::Distribution => "distribution",
            Self::Fingerprint => "fingerprint",
        }
    }
}

/// What the hunt computed for one key before linking.
#[derive(Debug, Clone)]
pub(crate) struct Prepared<'a> {
    pub(crate) profile: &'a KeyProfile,
    /// Effect per dimension: `(mean − baseline) / sd`.
    pub(crate) effect: Vec<f64>,
    /// `n · |effect|² / dims`: about 1 for a key sending normal traffic.
    pub(crate) off_ratio: f64,
}

/// One linked pair and the score of each signal that passed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Edge {
    pub(crate) a: usize,
    pub(crate) b: usize,
    pub(crate) signals: Vec<(LinkKind, f64)>,
}

/// Slots of the activity MinHash: 6 bands of 2, so keys with activity
/// Jaccard 0.5 collide with probability 0.82, at 0.7 with 0.98.
const ACTIVITY_BANDS: usize = 6;
const ACTIVITY_ROWS: usize = 2;
/// Candidate pairs, deduplicated, each with the number of buckets sharing it.
pub(crate) fn candidates(
    keys: &[Prepared<'_>],
    generic_fingerprints: &BTreeSet<u64>,
    config: &HuntConfig,
) -> (Vec<(usize, usize)>, bool) {
    // Bucket id → key indices. Bucket ids are tagged by kind so kinds never
    // share a bucket.
    let mut buckets: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        let p = k.profile;
        for t in &p.templates {
            buckets.entry(mix64(t ^ 0x7e11)).or_default().push(i);
        }
        for band in 0..ACTIVITY_BANDS {
            let mut h = 0xac71_u64 ^ band as u64;
            for row in 0..ACTIVITY_ROWS {
                let seed = mix64((band * ACTIVITY_ROWS + row) as u64 + 1);
                let min = p
                    .active
                    .iter()
                    .map(|b| mix64(*b as u64 ^ seed))
                    .min()
                    .unwrap_or(0);
                h = mix64(h ^ min);
            }
            buckets.entry(h).or_default().push(i);
        }
        for f in &p.fingerprints {
            if !generic_fingerprints.contains(f) {
                buckets.entry(mix64(f ^ 0xf1)).or_default().push(i);
            }
        }
    }
    let mut pairs: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut truncated = false;
    // Buckets in a fixed order (by id) so truncation is deterministic.
    let ordered: BTreeMap<u64, Vec<usize>> = buckets.into_iter().collect();
    for (_, mut members) in ordered {
        members.sort_unstable();
        members.dedup();
        if members.len() < 2 {
            continue;
        }
        if members.len() <= config.max_bucket {
            for (x, &a) in members.iter().enumerate() {
                for &b in &members[x + 1..] {
                    pairs.insert((a, b));
                }
            }
        } else {
            members.sort_by(|&a, &b| {
                (keys[a].profile.first_ms, &keys[a].profile.key)
                    .cmp(&(keys[b].profile.first_ms, &keys[b].profile.key))
            });
            for (x, &a) in members.iter().enumerate() {
                for &b in members.iter().skip(x + 1).take(config.chain) {
                    pairs.insert((a.min(b), a.max(b)));
                }
            }
        }
        if pairs.len() >= config.max_pairs {
            truncated = true;
            break;
        }
    }
    (pairs.into_iter().collect(), truncated)
}

/// Scores a candidate pair on the pairwise signals; returns those that
/// passed with their scores.
pub(crate) fn score(
    a: &Prepared<'_>,
    b: &Prepared<'_>,
    generic_fingerprints: &BTreeSet<u64>,
    config: &HuntConfig,
) -> Vec<(LinkKind, f64)> {
    let (pa, pb) = (a.profile, b.profile);
    let mut signals = Vec::new();
    let timing = jaccard(&pa.active, &pb.active);
    if timing >= config.timing_min_jaccard {
        signals.push((LinkKind::Timing, timing));
    }
    let exact = pa.exact.intersection(&pb.exact).count();
    let shared = pa
        .templates
        .intersection(&pb.templates)
        .count()
        .saturating_sub(exact * super::profile::TEMPLATE_BANDS);
    let smaller = pa.templates.len().min(pb.templates.len()).max(1);
    let template = shared as f64 / smaller as f64;
    if shared >= config.template_min_shared && template >= config.template_min_fraction {
        signals.push((LinkKind::Template, template));
    }
    let fp = pa
        .fingerprints
        .intersection(&pb.fingerprints)
        .filter(|f| !generic_fingerprints.contains(f))
        .count();
    if fp > 0 {
        let union = pa.fingerprints.union(&pb.fingerprints).count().max(1);
        signals.push((LinkKind::Fingerprint, fp as f64 / union as f64));
    }
    signals
}

fn jaccard<T: Ord>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> f64 {
    let inter = a.intersection(b).count();
    let union = a.len() + b.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

pub(crate) fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Disjoint sets over key indices (union by size, path halving).
#[derive(Debug, Clone)]
pub(crate) struct UnionFind {
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl UnionFind {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
            size: vec![1; n],
        }
    }

    pub(crate) fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    pub(crate) fn union(&mut self, a: usize, b: usize) {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        if self.size[ra] < self.size[rb] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb] = ra;
        self.size[ra] += self.size[rb];
    }
}
