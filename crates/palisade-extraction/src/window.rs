//! A key's (or tenant's) sliding window of recent requests, reduced to
//! sketches: each arrival's minimum distance to the queries before it (the
//! PRADA statistic), a tumbling vocabulary count (coverage), and the counts
//! the probing and sweep detectors read. Bounded: a window never holds more
//! than `capacity` entries and one tumbling vocabulary.
//!
//! Must not: decide anything (that is [`crate::detect`]) or read the clock.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::features::RequestFeatures;
use crate::sketch::{positions_differing, simhash_distance, POSITION_BUCKETS};

/// Shortest query (in words) whose small edits count as perturbations:
/// below it, two different short questions differ in few words anyway.
const PERTURBATION_MIN_WORDS: u16 = 6;

/// What a window keeps of one request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Arrival, Unix milliseconds.
    pub at_ms: i64,
    /// SimHash of the text.
    pub simhash: u64,
    /// Length in characters.
    pub chars: u32,
    /// Character entropy, bits.
    pub entropy_bits: f32,
    /// Minimum SimHash distance to the entries before it in the window
    /// (`None` for the first).
    pub min_distance: Option<f32>,
    /// Sampling configuration hash.
    pub config_hash: u64,
    /// Asked for log-probabilities.
    pub logprobs: bool,
    /// Flagged or refused by a gate or by parameter hardening.
    pub probe: bool,
    /// Words (up to the sketch's bound).
    pub words: u16,
    /// The word position sketch.
    pub word_positions: [u8; POSITION_BUCKETS],
    /// A small edit (one or two words swapped, same length) of an earlier
    /// query in the window: a perturbation.
    pub perturbation: bool,
}

/// Vocabulary seen in the current tumbling block of words.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vocabulary {
    distinct: HashSet<u32>,
    words: u32,
    /// Type/token ratio of the last completed block, when one completed.
    pub last_ratio: Option<f64>,
}

impl Vocabulary {
    /// Adds a request's words; a block completes at `block_words` words.
    pub fn add(&mut self, words: &[u32], block_words: u32) {
        for w in words {
            self.distinct.insert(*w);
            self.words += 1;
            if self.words >= block_words {
                self.last_ratio = Some(self.distinct.len() as f64 / f64::from(self.words));
                self.distinct.clear();
                self.words = 0;
            }
        }
    }
}

/// One key's window.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyWindow {
    capacity: usize,
    entries: VecDeque<Entry>,
    /// The tumbling vocabulary.
    pub vocabulary: Vocabulary,
    /// Requests seen since the last evaluation.
    pub since_evaluation: u32,
    /// Requests seen in total (not bounded by the window).
    pub seen: u64,
}

impl KeyWindow {
    /// An empty window of `capacity` entries (at least 8).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(8);
        Self {
            capacity,
            entries: VecDeque::with_capacity(capacity),
            vocabulary: Vocabulary::default(),
            since_evaluation: 0,
            seen: 0,
        }
    }

    /// Adds one request. O(capacity): one popcount per entry held.
    pub fn push(&mut self, features: &RequestFeatures, block_words: u32) -> Entry {
        let sketch = &features.sketch;
        let min_distance = self
            .entries
            .iter()
            .map(|e| simhash_distance(e.simhash, sketch.simhash))
            .min_by(f64::total_cmp)
            .map(|d| d as f32);
        let words = sketch.word_hashes.len().min(usize::from(u16::MAX)) as u16;
        let perturbation = words >= PERTURBATION_MIN_WORDS
            && self.entries.iter().any(|e| {
                e.words == words
                    && (1..=2).contains(&positions_differing(
                        &e.word_positions,
                        &sketch.word_positions,
                    ))
            });
        let entry = Entry {
            at_ms: features.at_ms,
            simhash: sketch.simhash,
            chars: sketch.chars,
            entropy_bits: sketch.entropy_bits,
            min_distance,
            config_hash: features.sampling.config_hash,
            logprobs: features.sampling.logprobs,
            probe: features.outcome.is_probe(),
            words,
            word_positions: sketch.word_positions,
            perturbation,
        };
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        self.vocabulary.add(&sketch.word_hashes, block_words);
        self.since_evaluation = self.since_evaluation.saturating_add(1);
        self.seen = self.seen.saturating_add(1);
        entry
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &Entry> + '_ {
        self.entries.iter()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Arrival of the newest entry.
    pub fn last_at_ms(&self) -> Option<i64> {
        self.entries.back().map(|e| e.at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{GateOutcome, SamplingSignature};
    use crate::sketch::sketch;

    fn features(text: &str, at_ms: i64) -> RequestFeatures {
        RequestFeatures {
            at_ms,
            sketch: sketch(text),
            sampling: SamplingSignature::default(),
            outcome: GateOutcome::Passed,
        }
    }

    #[test]
    fn bounded_and_measures_min_distance() {
        let mut w = KeyWindow::new(8);
        let first = w.push(
            &features("the quick brown fox jumps over the lazy dog", 1),
            100,
        );
        assert_eq!(first.min_distance, None);
        let dup = w.push(
            &features("the quick brown fox jumps over the lazy dog", 2),
            100,
        );
        assert_eq!(dup.min_distance, Some(0.0));
        for i in 0..20 {
            w.push(
                &features(&format!("prompt number {i} about something"), 3 + i),
                100,
            );
        }
        assert_eq!(w.len(), 8);
        assert_eq!(w.seen, 22);
        assert_eq!(w.last_at_ms(), Some(22));
    }

    #[test]
    fn vocabulary_blocks_tumble() {
        let mut v = Vocabulary::default();
        v.add(&[1, 2, 3, 1], 4);
        assert_eq!(v.last_ratio, Some(0.75));
        v.add(&[5, 6], 4);
        assert_eq!(v.last_ratio, Some(0.75));
        v.add(&[7, 8], 4);
        assert_eq!(v.last_ratio, Some(1.0));
    }
}
