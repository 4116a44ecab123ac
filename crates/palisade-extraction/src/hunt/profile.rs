//! What the hunt knows about one key: a bounded digest of its stored
//! telemetry rows (activity buckets, template buckets, client fingerprints,
//! the running mean of its query features) and the baseline those means are
//! compared with.
//!
//! Must not: keep text or raw client data (rows carry hashes only) or grow
//! without bound (each set is capped; a key past the cap keeps its first
//! entries, which is enough to link it).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::sketch::{mix64, MINHASH_SLOTS};

use super::HuntConfig;

/// Dimensions of a query's feature vector: the 64 SimHash bits (which
/// region of shingle space the text sits in), its log length and its
/// character entropy.
pub const FEATURE_DIMS: usize = 66;

/// MinHash bands of a template bucket: 4 bands of 4 slots, so two texts
/// with Jaccard 0.8 share a band with probability 1-(1-0.8⁴)⁴ ≈ 0.95 and
/// unrelated ones (J ≈ 0.1) almost never.
pub const TEMPLATE_BANDS: usize = 4;
const BAND_ROWS: usize = MINHASH_SLOTS / TEMPLATE_BANDS;

/// Feature sums are kept in millionths.
const MICRO: f64 = 1e6;

/// Most template buckets, activity buckets and fingerprints held per key.
const MAX_SET: usize = 2048;
/// Most distinct fingerprints per key (a client rotating user agents on
/// every request is itself a signal, but 16 are enough to link it).
const MAX_FINGERPRINTS: usize = 16;

/// One stored telemetry row, as the hunt reads it: hashes and counts only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HuntRow {
    /// Arrival, Unix milliseconds.
    pub at_ms: i64,
    /// The account (tenant) the key belongs to.
    pub tenant: String,
    /// The key (tenant-qualified, as the tracker names it).
    pub key: String,
    /// Prompt length in characters.
    pub chars: u32,
    /// Character entropy, bits.
    pub entropy_bits: f32,
    /// SimHash of the prompt.
    pub simhash: u64,
    /// MinHash of the prompt.
    pub minhash: [u32; MINHASH_SLOTS],
    /// Hash of what the gateway saw of the client (user agent, header
    /// names in order, client IP prefix); 0 when nothing was recorded.
    pub fingerprint: u64,
}

/// The feature vector of one row (bits as 0/1, length as log2/16,
/// entropy/8, so every dimension lies in [0, 1]).
pub fn features(row: &HuntRow) -> [f64; FEATURE_DIMS] {
    let mut v = [0.0; FEATURE_DIMS];
    for (bit, slot) in v.iter_mut().take(64).enumerate() {
        *slot = ((row.simhash >> bit) & 1) as f64;
    }
    v[64] = (f64::from(row.chars) + 1.0).log2() / 16.0;
    v[65] = f64::from(row.entropy_bits) / 8.0;
    v
}

/// One key's digest.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyProfile {
    /// The key.
    pub key: String,
    /// Its tenant (the first seen; keys are tenant-qualified).
    pub tenant: String,
    /// Rows read.
    pub requests: u64,
    /// First and last arrival.
    pub first_ms: i64,
    /// Last arrival.
    pub last_ms: i64,
    /// Activity buckets (`at_ms / timing_bucket_ms`) it sent in.
    pub active: BTreeSet<i64>,
    /// Template buckets: (band hash, time slot) of each request.
    pub templates: BTreeSet<u64>,
    /// Exact prompts: (whole MinHash, time slot) of each request. Two keys
    /// sending the very same prompt share all its bands; that is a popular
    /// prompt or a shared evaluation set, not a template with varying
    /// slots, so the template signal discounts it.
    pub exact: BTreeSet<u64>,
    /// Distinct client fingerprints (0 excluded).
    pub fingerprints: BTreeSet<u64>,
    /// Sum of the feature vectors in millionths: integers, so the sum
    /// does not depend on the order rows arrive in.
    pub sum: Vec<i64>,
}

impl KeyProfile {
    fn new(row: &HuntRow) -> Self {
        Self {
            key: row.key.clone(),
            tenant: row.tenant.clone(),
            requests: 0,
            first_ms: row.at_ms,
            last_ms: row.at_ms,
            active: BTreeSet::new(),
            templates: BTreeSet::new(),
            exact: BTreeSet::new(),
            fingerprints: BTreeSet::new(),
            sum: vec![0; FEATURE_DIMS],
        }
    }

    fn add(&mut self, row: &HuntRow, config: &HuntConfig) {
        self.requests += 1;
        self.first_ms = self.first_ms.min(row.at_ms);
        self.last_ms = self.last_ms.max(row.at_ms);
        if self.active.len() < MAX_SET {
            self.active
                .insert(row.at_ms.div_euclid(config.timing_bucket_ms.max(1)));
        }
        if self.templates.len() < MAX_SET {
            let slot = row.at_ms.div_euclid(config.template_slot_ms.max(1)) as u64;
            for band in 0..TEMPLATE_BANDS {
                let mut h = mix64(band as u64 ^ slot.rotate_left(32));
                for v in &row.minhash[band * BAND_ROWS..(band + 1) * BAND_ROWS] {
                    h = mix64(h ^ u64::from(*v));
                }
                self.templates.insert(h);
            }
            let mut whole = mix64(slot ^ 0xe8ac7);
            for v in &row.minhash {
                whole = mix64(whole ^ u64::from(*v));
            }
            self.exact.insert(whole);
        }
        if row.fingerprint != 0 && self.fingerprints.len() < MAX_FINGERPRINTS {
            self.fingerprints.insert(row.fingerprint);
        }
        for (s, f) in self.sum.iter_mut().zip(features(row)) {
            *s = s.saturating_add((f * MICRO).round() as i64);
        }
    }

    /// The mean feature vector.
    pub fn mean(&self) -> Vec<f64> {
        let n = self.requests.max(1) as f64 * MICRO;
        self.sum.iter().map(|s| *s as f64 / n).collect()
    }
}

/// Per-dimension mean and spread of normal traffic's features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Mean per dimension.
    pub mean: Vec<f64>,
    /// Standard deviation per dimension (of one request's feature).
    pub sd: Vec<f64>,
}

impl Baseline {
    /// The baseline of a set of rows (e.g. a seeded corpus, or the traffic
    /// of keys operators marked benign). `None` when `rows` is empty.
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = &'a HuntRow>) -> Option<Self> {
        let mut n = 0.0;
        let mut sum = [0.0; FEATURE_DIMS];
        let mut sq = [0.0; FEATURE_DIMS];
        for row in rows {
            n += 1.0;
            for (d, f) in features(row).iter().enumerate() {
                sum[d] += f;
                sq[d] += f * f;
            }
        }
        if n == 0.0 {
            return None;
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let sd = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| (q / n - m * m).max(0.0).sqrt())
            .collect();
        Some(Self { mean, sd })
    }

    /// The robust baseline of the profiles themselves: per dimension, the
    /// median of the tenants' means weighted by their requests. A tenant's
    /// thousand keys weigh what its requests weigh, and opening a thousand
    /// small accounts does not move it: shifting it takes more traffic than
    /// the legitimate tenants send together. The spread is the binomial
    /// one for bits and a fixed typical one for the two scalars.
    pub fn from_profiles<'a>(profiles: impl IntoIterator<Item = &'a KeyProfile>) -> Option<Self> {
        let mut tenants: BTreeMap<&str, (u64, Vec<i64>)> = BTreeMap::new();
        for p in profiles {
            let t = tenants
                .entry(p.tenant.as_str())
                .or_insert_with(|| (0, vec![0; FEATURE_DIMS]));
            t.0 = t.0.saturating_add(p.requests);
            for (a, s) in t.1.iter_mut().zip(&p.sum) {
                *a = a.saturating_add(*s);
            }
        }
        if tenants.is_empty() {
            return None;
        }
        let means: Vec<(f64, Vec<f64>)> = tenants
            .values()
            .map(|(n, s)| {
                let w = (*n).max(1) as f64;
                (w, s.iter().map(|v| *v as f64 / (w * MICRO)).collect())
            })
            .collect();
        let total: f64 = means.iter().map(|(w, _)| w).sum();
        let mut mean = Vec::with_capacity(FEATURE_DIMS);
        let mut sd = Vec::with_capacity(FEATURE_DIMS);
        for d in 0..FEATURE_DIMS {
            let mut col: Vec<(f64, f64)> = means.iter().map(|(w, m)| (m[d], *w)).collect();
            col.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut acc = 0.0;
            let mut m = col[col.len() - 1].0;
            for (v, w) in &col {
                acc += w;
                if acc * 2.0 >= total {
                    m = *v;
                    break;
                }
            }
            mean.push(m);
            // Bits are Bernoulli; for the two scalars only means are
            // held, so their per-request spread is the typical one of
            // prose (log2 length ±1.6 bits, entropy ±0.4 bits), scaled.
            sd.push(match d {
                64 => 0.1,
                65 => 0.05,
                _ => (m * (1.0 - m)).sqrt(),
            });
        }
        Some(Self { mean, sd })
    }

    /// A key's effect against the baseline: per dimension
    /// `(mean − baseline) / sd` (times √n it is ~N(0, 1) for a key sending
    /// normal traffic; spreads are floored so a constant dimension cannot
    /// explode).
    pub fn effect(&self, profile: &KeyProfile) -> Vec<f64> {
        profile
            .mean()
            .iter()
            .zip(&self.mean)
            .zip(&self.sd)
            .map(|((m, b), sd)| (m - b) / sd.max(0.05))
            .collect()
    }
}

/// Builds bounded profiles from rows: at most `max_keys` keys (later keys
/// are counted in `dropped_keys`, not held) and `max_rows_per_key` rows per
/// key. Rows may arrive in any order.
#[derive(Debug, Clone, Default)]
pub struct ProfileSet {
    profiles: BTreeMap<String, KeyProfile>,
    /// Keys not held because the set was full.
    pub dropped_keys: u64,
    /// Rows not read because their key was at its cap.
    pub dropped_rows: u64,
}

impl ProfileSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one row.
    pub fn add(&mut self, row: &HuntRow, config: &HuntConfig) {
        if let Some(p) = self.profiles.get_mut(&row.key) {
            if p.requests >= config.max_rows_per_key {
                self.dropped_rows += 1;
                return;
            }
            p.add(row, config);
            return;
        }
        if self.profiles.len() >= config.max_keys {
            self.dropped_keys += 1;
            return;
        }
        let mut p = KeyProfile::new(row);
        p.add(row, config);
        self.profiles.insert(row.key.clone(), p);
    }

    /// The profiles, ordered by key.
    pub fn profiles(&self) -> impl ExactSizeIterator<Item = &KeyProfile> + '_ {
        self.profiles.values()
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }
}
