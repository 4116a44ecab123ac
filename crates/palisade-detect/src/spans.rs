//! A set of disjoint byte spans with a logarithmic overlap test, for the finders (PII,
//! secrets) that keep a match only when it overlaps no earlier one.
//!
//! Checking each new match against every kept one made a text with thousands of e-mail
//! addresses or IP addresses quadratic. The kept spans never overlap each other, so sorted
//! by start they are also sorted by end: the only kept span that can overlap a new one is
//! the last one starting before the new one ends.

use std::collections::BTreeMap;
use std::ops::Range;

/// Disjoint spans, keyed by start (value: end).
#[derive(Debug, Default)]
pub(crate) struct DisjointSpans {
    by_start: BTreeMap<usize, usize>,
}

impl DisjointSpans {
    /// True if `span` overlaps a kept span (same test as `a.start < b.end && b.start < a.end`
    /// against each of them).
    pub(crate) fn overlaps(&self, span: &Range<usize>) -> bool {
        crate::work::add(crate::work::Unit::OverlapChecks, 1);
        self.by_start
            .range(..span.end)
            .next_back()
            .is_some_and(|(_, &end)| span.start < end)
    }

    /// Keeps `span`, which must not overlap a kept span.
    pub(crate) fn insert(&mut self, span: &Range<usize>) {
        debug_assert!(!self.overlaps(span));
        // An empty span at the start of another is never produced by the finders (their
        // patterns match at least one byte); keep the longer one if it ever were.
        let end = self.by_start.entry(span.start).or_insert(span.end);
        *end = (*end).max(span.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The set answers exactly as the pairwise test over every kept span.
    #[test]
    fn agrees_with_the_pairwise_test() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |m: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % m as u64) as usize
        };
        for _ in 0..200 {
            let mut set = DisjointSpans::default();
            let mut kept: Vec<Range<usize>> = Vec::new();
            for _ in 0..60 {
                let start = next(300);
                let span = start..start + 1 + next(12);
                let pairwise = kept
                    .iter()
                    .any(|k| k.start < span.end && span.start < k.end);
                assert_eq!(set.overlaps(&span), pairwise, "{span:?} vs {kept:?}");
                if !pairwise {
                    set.insert(&span);
                    kept.push(span);
                }
            }
        }
    }
}
