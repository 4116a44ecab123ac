//! Work counters for the linearity tests: each pass over the text reports how much of it
//! it read, each search how many bytes it was handed, each overlap test one check. Tests
//! scan an input at two lengths and assert that every counter grows in proportion
//! (`linearity` tests), which a timed test on a shared machine could not show reliably.
//!
//! Outside `cfg(test)` [`add`] is an empty inline function: release builds pay nothing.

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Bytes read by invisible-character stripping.
    StripBytes,
    /// Bytes read by canonicalization passes (each pass counts its whole input).
    CanonBytes,
    /// Bytes cut into segments.
    SegmentBytes,
    /// Bytes hashed into n-gram features.
    FeatureBytes,
    /// Bytes scored by the character LM.
    LmBytes,
    /// Bytes handed to a regex or Aho-Corasick search (each search counts its haystack).
    SearchBytes,
    /// Overlap tests between a finding and the findings already kept.
    OverlapChecks,
}

/// Number of [`Unit`]s.
#[cfg(test)]
pub(crate) const UNITS: usize = 7;

#[cfg(test)]
thread_local! {
    static COUNTS: std::cell::Cell<[u64; UNITS]> = const { std::cell::Cell::new([0; UNITS]) };
}

/// Adds `n` to the counter of `unit` (test builds only).
#[inline(always)]
pub(crate) fn add(unit: Unit, n: usize) {
    #[cfg(test)]
    COUNTS.with(|c| {
        let mut v = c.get();
        v[unit as usize] += n as u64;
        c.set(v);
    });
    #[cfg(not(test))]
    let _ = (unit, n);
}

/// Returns this thread's counters and resets them.
#[cfg(test)]
pub(crate) fn take() -> [u64; UNITS] {
    COUNTS.with(|c| c.replace([0; UNITS]))
}
