//! Threat hunting across keys and accounts: clusters keys into *campaigns*
//! from their stored telemetry, for the extractor who spreads one campaign
//! over many keys (and tenants) so that no key's window looks like
//! extraction. Four signals link two keys:
//!
//! - **timing**: active in the same time buckets (Jaccard of the sets);
//! - **template**: near-duplicate prompts (a shared MinHash band) in the
//!   same time slot, the shape of a perturbation extractor's seed groups
//!   fanned out over keys;
//! - **distribution**: a group of keys linked by timing alone whose pooled
//!   query features sit off the baseline, each key's deviation pointing
//!   the way the rest of the group's does (a group test: one key's twenty
//!   queries say little about its distribution, a hundred keys' say a lot);
//! - **fingerprint**: a shared client fingerprint that is not generic
//!   (seen in at most `fingerprint_max_tenants` tenants).
//!
//! A pair becomes an edge when at least `min_signals` pairwise kinds pass
//! (default two: one coincidence links nobody), or when it is a timing link
//! inside a group that passes the distribution test; campaigns are the
//! connected components with at least `min_keys` keys (two campaigns
//! linked by timing are joined: one operation run in lockstep), ranked by
//! the kinds of evidence and their size.
//!
//! Invariants (tests in `hunt/tests.rs`): the result does not depend on the
//! order rows arrive in or keys are named in (below the caps); campaigns
//! are disjoint and each holds `min_keys` keys or more; keys operators
//! marked benign are never in a campaign; the output is bounded by
//! `top_k` campaigns (and [`Campaign::listed`] by `max_listed_keys`); the work is
//! bounded by the bucket caps and `max_pairs`, never quadratic in keys.
//! Campaigns may span tenants on purpose: an extractor opening many
//! accounts is the case this exists for.
//!
//! Must not: do I/O, read the clock or draw randomness; the caller brings
//! the rows, the operators' marks and `now_ms`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::sketch::hash_bytes;

mod link;
mod profile;
#[cfg(test)]
mod tests;

pub use link::LinkKind;
pub use profile::{features, Baseline, HuntRow, KeyProfile, ProfileSet, FEATURE_DIMS};

use link::{candidates, score, Prepared, UnionFind};

/// Settings and bounds of a hunt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HuntConfig {
    /// Width of an activity bucket for the timing signal.
    pub timing_bucket_ms: i64,
    /// Activity Jaccard at which two keys are linked by timing.
    pub timing_min_jaccard: f64,
    /// Width of the time slot in which shared templates count.
    pub template_slot_ms: i64,
    /// Shared template buckets needed for the template signal.
    pub template_min_shared: usize,
    /// Shared fraction of the smaller key's template buckets needed.
    pub template_min_fraction: f64,
    /// Pooled `n·|effect|²/dims` at which a co-active group's distribution
    /// is off baseline (about 1 for normal traffic).
    pub off_baseline_ratio: f64,
    /// Mean cosine of each member's effect with the rest of its group's
    /// for the distribution signal (unrelated keys: about 0).
    pub distribution_min_cosine: f64,
    /// Keys with more requests in the hunted rows take no part in the
    /// distribution test: the per-key window detectors have judged their
    /// distribution many times over, and heavy legitimate jobs replaying
    /// the same dataset at the same hours deviate alike (the test's false
    /// positives). They still link by templates, fingerprints and timing.
    pub distribution_max_key_requests: u64,
    /// A fingerprint seen in more tenants than this is generic (a popular
    /// SDK behind a big NAT) and links nobody.
    pub fingerprint_max_tenants: usize,
    /// Signal kinds a pair needs to be linked.
    pub min_signals: usize,
    /// Keys a campaign needs.
    pub min_keys: usize,
    /// Keys with fewer requests are not hunted (too little to link on).
    pub min_requests: u64,
    /// Keys held at most.
    pub max_keys: usize,
    /// Rows read per key at most.
    pub max_rows_per_key: u64,
    /// Keys in a bucket beyond which it is chained, not expanded pairwise.
    pub max_bucket: usize,
    /// Successors each key of an oversized bucket is paired with.
    pub chain: usize,
    /// Candidate pairs scored at most.
    pub max_pairs: usize,
    /// Campaigns reported at most.
    pub top_k: usize,
    /// Keys listed per campaign at most (all are counted).
    pub max_listed_keys: usize,
    /// Requests of benign-marked keys needed before they are the baseline.
    pub baseline_min_requests: u64,
}

impl Default for HuntConfig {
    /// Rationale: one-minute activity buckets survive seconds of jitter and
    /// still separate keys active in different minutes; a key past 512
    /// requests has filled the per-key window (64) eight times, so the
    /// group test is left to the thin keys it exists for; a 10-minute
    /// template slot is how long a seed group's perturbations take to fan
    /// out, while two people sending the same popular prompt rarely do it
    /// in the same ten minutes. The off-baseline ratio of 3 is three times
    /// the chi-square mean of normal traffic. Caps keep a 10k-key hunt in
    /// the low millions of pair scores.
    fn default() -> Self {
        Self {
            timing_bucket_ms: 60_000,
            timing_min_jaccard: 0.4,
            template_slot_ms: 600_000,
            template_min_shared: 2,
            template_min_fraction: 0.1,
            off_baseline_ratio: 3.0,
            distribution_min_cosine: 0.5,
            distribution_max_key_requests: 512,
            fingerprint_max_tenants: 16,
            min_signals: 2,
            min_keys: 3,
            min_requests: 5,
            max_keys: 20_000,
            max_rows_per_key: 2_000,
            max_bucket: 64,
            chain: 3,
            max_pairs: 2_000_000,
            top_k: 100,
            max_listed_keys: 200,
            baseline_min_requests: 1_000,
        }
    }
}

/// An operator's judgement of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// An extraction campaign: its keys move up the ladder.
    Confirmed,
    /// Legitimate: its keys are left out of later hunts and feed the baseline.
    Benign,
}

impl Mark {
    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Benign => "benign",
        }
    }

    /// Parses a stable code.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confirmed" => Some(Self::Confirmed),
            "benign" => Some(Self::Benign),
            _ => None,
        }
    }
}

/// A campaign found by an earlier hunt, as persisted: the id and mark a
/// new campaign inherits when it shares keys with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorCampaign {
    /// Its id.
    pub id: String,
    /// Its keys.
    pub keys: Vec<String>,
    /// The operators' mark, if any.
    pub mark: Option<Mark>,
}

/// What operators decided so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Marks {
    /// Campaigns found before (ids and marks carry over by shared keys).
    pub prior: Vec<PriorCampaign>,
}

impl Marks {
    /// Keys of campaigns marked benign.
    pub fn benign_keys(&self) -> BTreeSet<&str> {
        self.prior
            .iter()
            .filter(|c| c.mark == Some(Mark::Benign))
            .flat_map(|c| c.keys.iter().map(String::as_str))
            .collect()
    }
}

/// The evidence of one signal kind inside a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkEvidence {
    /// The signal.
    pub kind: LinkKind,
    /// Edges of the campaign this signal passed on.
    pub edges: u64,
    /// Mean score of the signal on those edges.
    pub mean_score: f64,
    /// Up to three linked pairs, as examples.
    pub examples: Vec<(String, String)>,
}

/// A group of keys the hunt believes act together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    /// Stable id (inherited from an overlapping prior campaign).
    pub id: String,
    /// Ranking score: kinds of evidence plus ln(keys).
    pub score: f64,
    /// Keys in the campaign.
    pub key_count: usize,
    /// All of them, sorted (campaigns are disjoint, so all campaigns
    /// together hold at most `max_keys`); [`Campaign::listed`] bounds the
    /// list for display.
    pub keys: Vec<String>,
    /// Tenants the keys belong to, sorted.
    pub tenants: Vec<String>,
    /// Requests of its keys in the hunted rows.
    pub requests: u64,
    /// First arrival of any of its keys.
    pub first_ms: i64,
    /// Last arrival.
    pub last_ms: i64,
    /// Linked pairs.
    pub edges: u64,
    /// Evidence per signal kind that linked keys.
    pub evidence: Vec<LinkEvidence>,
    /// Mean off-baseline ratio of its keys (≈1 is normal traffic).
    pub off_baseline: f64,
    /// The operators' mark, inherited by id.
    pub mark: Option<Mark>,
}

impl Campaign {
    /// A copy listing at most `max` keys and tenants (`key_count` still
    /// counts them all): what an endpoint or a webhook shows.
    pub fn listed(&self, max: usize) -> Self {
        let mut c = self.clone();
        c.keys.truncate(max);
        c.tenants.truncate(max);
        c
    }
}

/// The result of one hunt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HuntReport {
    /// When the hunt ran (the caller's clock).
    pub at_ms: i64,
    /// Keys hunted (past `min_requests`, not benign-marked).
    pub keys: usize,
    /// Keys skipped as benign-marked.
    pub benign_keys: usize,
    /// Candidate pairs scored.
    pub pairs_scored: usize,
    /// Candidate generation stopped at `max_pairs`.
    pub truncated: bool,
    /// Campaigns, best first, at most `top_k`.
    pub campaigns: Vec<Campaign>,
    /// Campaigns found beyond `top_k`.
    pub campaigns_left_off: usize,
}

/// Hunts the profiles. `baseline`, when given, is the normal traffic the
/// distribution signal compares with; otherwise it is the tenant-median of
/// the benign-marked keys' profiles once they hold
/// `baseline_min_requests` requests, else the tenant-median of all
/// profiles.
pub fn hunt(
    profiles: &ProfileSet,
    marks: &Marks,
    baseline: Option<&Baseline>,
    config: &HuntConfig,
    now_ms: i64,
) -> HuntReport {
    let benign = marks.benign_keys();
    let (benign_profiles, hunted): (Vec<&KeyProfile>, Vec<&KeyProfile>) = profiles
        .profiles()
        .partition(|p| benign.contains(p.key.as_str()));
    let hunted: Vec<&KeyProfile> = hunted
        .into_iter()
        .filter(|p| p.requests >= config.min_requests)
        .collect();
    let benign_requests: u64 = benign_profiles.iter().map(|p| p.requests).sum();
    let own;
    let baseline = match baseline {
        Some(b) => Some(b),
        None => {
            own = if benign_requests >= config.baseline_min_requests {
                Baseline::from_profiles(benign_profiles.iter().copied())
            } else {
                Baseline::from_profiles(profiles.profiles())
            };
            own.as_ref()
        }
    };
    let prepared: Vec<Prepared<'_>> = hunted
        .iter()
        .map(|p| {
            let effect = baseline.map_or_else(|| vec![0.0; FEATURE_DIMS], |b| b.effect(p));
            let off_ratio =
                p.requests as f64 * effect.iter().map(|z| z * z).sum::<f64>() / FEATURE_DIMS as f64;
            Prepared {
                profile: p,
                effect,
                off_ratio,
            }
        })
        .collect();

    let mut fp_tenants: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for p in &hunted {
        for f in &p.fingerprints {
            let t = fp_tenants.entry(*f).or_default();
            if t.len() <= config.fingerprint_max_tenants {
                t.insert(p.tenant.as_str());
            }
        }
    }
    let generic: BTreeSet<u64> = fp_tenants
        .into_iter()
        .filter(|(_, t)| t.len() > config.fingerprint_max_tenants)
        .map(|(f, _)| f)
        .collect();

    let (pairs, truncated) = candidates(&prepared, &generic, config);
    let mut uf = UnionFind::new(prepared.len());
    let mut edges = Vec::new();
    let mut co_active = UnionFind::new(prepared.len());
    let mut timing_only = Vec::new();
    for &(a, b) in &pairs {
        let signals = score(&prepared[a], &prepared[b], &generic, config);
        if signals.len() >= config.min_signals {
            uf.union(a, b);
            edges.push(link::Edge { a, b, signals });
        } else if signals.iter().any(|(k, _)| *k == LinkKind::Timing) {
            co_active.union(a, b);
            timing_only.push(link::Edge { a, b, signals });
        }
    }
    // The distribution test, per group of keys linked by timing alone.
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for e in &timing_only {
        groups.entry(co_active.find(e.a)).or_default().push(e.a);
        groups.entry(co_active.find(e.b)).or_default().push(e.b);
    }
    let mut passed: BTreeMap<usize, f64> = BTreeMap::new();
    let thin = |i: usize| prepared[i].profile.requests <= config.distribution_max_key_requests;
    for (root, mut members) in groups {
        members.sort_unstable();
        members.dedup();
        members.retain(|&i| thin(i));
        if members.len() < config.min_keys.max(2) {
            continue;
        }
        if let Some(h) = group_distribution(&prepared, &members, config) {
            passed.insert(root, h);
        }
    }
    let mut still_timing_only = Vec::new();
    for mut e in timing_only {
        let tested = thin(e.a) && thin(e.b);
        if let Some(h) = passed.get(&co_active.find(e.a)).filter(|_| tested) {
            e.signals.push((LinkKind::Distribution, *h));
            if e.signals.len() >= config.min_signals {
                uf.union(e.a, e.b);
                edges.push(e);
                continue;
            }
        }
        still_timing_only.push(e);
    }
    // Campaigns active in lockstep are one operation: a timing link joins
    // two components that are each a campaign already on their own
    // evidence (it never makes a campaign of keys that are not in one).
    let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
    for i in 0..prepared.len() {
        *sizes.entry(uf.find(i)).or_default() += 1;
    }
    let min_keys = config.min_keys.max(2);
    let mut joins = Vec::new();
    for e in still_timing_only {
        let (ra, rb) = (uf.find(e.a), uf.find(e.b));
        if ra != rb
            && sizes.get(&ra).copied().unwrap_or(0) >= min_keys
            && sizes.get(&rb).copied().unwrap_or(0) >= min_keys
        {
            joins.push(e);
        }
    }
    for e in joins {
        uf.union(e.a, e.b);
        edges.push(e);
    }

    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..prepared.len() {
        groups.entry(uf.find(i)).or_default().push(i);
    }
    let mut group_edges: BTreeMap<usize, Vec<&link::Edge>> = BTreeMap::new();
    for e in &edges {
        group_edges.entry(uf.find(e.a)).or_default().push(e);
    }
    let mut campaigns: Vec<Campaign> = groups
        .into_iter()
        .filter(|(_, m)| m.len() >= config.min_keys.max(2))
        .map(|(root, members)| {
            let edges = group_edges.remove(&root).unwrap_or_default();
            assemble(&prepared, &members, &edges)
        })
        .collect();
    assign_ids(&mut campaigns, marks);
    campaigns.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.key_count.cmp(&a.key_count))
            .then(a.id.cmp(&b.id))
    });
    let left_off = campaigns.len().saturating_sub(config.top_k);
    campaigns.truncate(config.top_k);
    HuntReport {
        at_ms: now_ms,
        keys: prepared.len(),
        benign_keys: benign_profiles.len(),
        pairs_scored: pairs.len(),
        truncated,
        campaigns,
        campaigns_left_off: left_off,
    }
}

/// The group test: the members' pooled effect is off baseline and each
/// member's effect points the way the rest of the group's does (mean
/// leave-one-out cosine). `Some(mean cosine)` when both hold.
fn group_distribution(
    prepared: &[Prepared<'_>],
    members: &[usize],
    config: &HuntConfig,
) -> Option<f64> {
    let mut total = vec![0.0; FEATURE_DIMS];
    let mut n = 0.0;
    for &i in members {
        let w = prepared[i].profile.requests as f64;
        n += w;
        for (t, e) in total.iter_mut().zip(&prepared[i].effect) {
            *t += w * e;
        }
    }
    if n == 0.0 {
        return None;
    }
    let pooled: f64 =
        total.iter().map(|t| (t / n) * (t / n)).sum::<f64>() * n / FEATURE_DIMS as f64;
    if pooled < config.off_baseline_ratio {
        return None;
    }
    let mut cos = 0.0;
    for &i in members {
        let w = prepared[i].profile.requests as f64;
        let rest: Vec<f64> = total
            .iter()
            .zip(&prepared[i].effect)
            .map(|(t, e)| t - w * e)
            .collect();
        cos += link::cosine(&prepared[i].effect, &rest);
    }
    let cos = cos / members.len() as f64;
    if std::env::var_os("HUNT_DEBUG").is_some() {
        eprintln!(
            "GROUP keys={} n={} pooled={:.2} rms={:.4} cos={:.3}",
            members.len(),
            n,
            pooled,
            (pooled / n).sqrt(),
            cos
        );
    }
    (cos >= config.distribution_min_cosine).then_some(cos)
}

fn assemble(prepared: &[Prepared<'_>], members: &[usize], edges: &[&link::Edge]) -> Campaign {
    let mut keys: Vec<String> = members
        .iter()
        .map(|&i| prepared[i].profile.key.clone())
        .collect();
    keys.sort();
    let tenants: BTreeSet<&str> = members
        .iter()
        .map(|&i| prepared[i].profile.tenant.as_str())
        .collect();
    let mut evidence = Vec::new();
    for kind in LinkKind::ALL {
        let mut n = 0u64;
        let mut sum = 0.0;
        let mut examples: Vec<(String, String)> = Vec::new();
        for e in edges {
            if let Some((_, s)) = e.signals.iter().find(|(k, _)| *k == kind) {
                n += 1;
                sum += s;
                let (a, b) = (&prepared[e.a].profile.key, &prepared[e.b].profile.key);
                examples.push(if a <= b {
                    (a.clone(), b.clone())
                } else {
                    (b.clone(), a.clone())
                });
            }
        }
        if n > 0 {
            examples.sort();
            examples.truncate(3);
            evidence.push(LinkEvidence {
                kind,
                edges: n,
                mean_score: sum / n as f64,
                examples,
            });
        }
    }
    let score = evidence.len() as f64 + (members.len() as f64).ln();
    let off = members.iter().map(|&i| prepared[i].off_ratio).sum::<f64>() / members.len() as f64;
    Campaign {
        id: format!("c{:016x}", hash_bytes(keys[0].as_bytes())),
        score,
        key_count: members.len(),
        keys,
        tenants: tenants.into_iter().map(str::to_owned).collect(),
        requests: members.iter().map(|&i| prepared[i].profile.requests).sum(),
        first_ms: members
            .iter()
            .map(|&i| prepared[i].profile.first_ms)
            .min()
            .unwrap_or(0),
        last_ms: members
            .iter()
            .map(|&i| prepared[i].profile.last_ms)
            .max()
            .unwrap_or(0),
        edges: edges.len() as u64,
        evidence,
        off_baseline: off,
        mark: None,
    }
}

/// Gives each campaign the id and mark of the prior campaign it shares the
/// most keys with (each prior id to one campaign at most, larger overlaps
/// first); the rest keep the id derived from their smallest key.
fn assign_ids(campaigns: &mut [Campaign], marks: &Marks) {
    let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in marks.prior.iter().enumerate() {
        for k in &p.keys {
            owner.entry(k.as_str()).or_insert(i);
        }
    }
    // (overlap, campaign, prior) for every overlapping pair.
    let mut overlaps: Vec<(usize, usize, usize)> = Vec::new();
    for (ci, c) in campaigns.iter().enumerate() {
        let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
        for k in &c.keys {
            if let Some(&pi) = owner.get(k.as_str()) {
                *counts.entry(pi).or_default() += 1;
            }
        }
        overlaps.extend(counts.into_iter().map(|(pi, n)| (n, ci, pi)));
    }
    overlaps.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut taken_prior = BTreeSet::new();
    let mut done = BTreeSet::new();
    for (_, ci, pi) in overlaps {
        if done.contains(&ci) || taken_prior.contains(&pi) {
            continue;
        }
        done.insert(ci);
        taken_prior.insert(pi);
        campaigns[ci].id = marks.prior[pi].id.clone();
        campaigns[ci].mark = marks.prior[pi].mark;
    }
}
