//! Hedged requests ("backup requests"): when the first attempt of a
//! side-effect-free request has not answered after a delay, a second one
//! goes to another deployment, and the first complete good answer wins.
//!
//! The delay is fixed, or a percentile of the route's own recent latency
//! ([`LatencyWindow`]: a bounded log-linear histogram over a sliding
//! window, on the caller's clock), clamped between a floor and a ceiling.
//! The target is chosen by [`crate::Planner::hedge`] under the same rules
//! as a retry (residency, health, never a deployment already tried) and is
//! paid from the target backend's [`crate::RetryBudget`], so hedging stops
//! when the budget is spent and cannot amplify an outage.
//!
//! This follows Envoy's `hedge_policy` (`additional_request_chance`,
//! `initial_requests`), gRPC's hedging policy (`hedgingDelay`,
//! `maxAttempts`, throttled by the same token bucket as retries) and
//! Finagle's backup requests (delay at a latency percentile, with a retry
//! budget). Only the percentile-from-a-histogram choice is Finagle's;
//! gRPC and Envoy use a fixed delay.
//!
//! Must not: read the clock (`now` is passed in), allocate per sample, or
//! grow with traffic: a window is a fixed array of counters.

use crate::Nanos;

/// Values below this many microseconds have a bucket each.
const LINEAR: u64 = 64;
/// Sub-buckets per power of two above [`LINEAR`]: ~6 % precision.
const SUB: u64 = 16;
/// Octaves above [`LINEAR`] µs (64 µs · 2^30 ≈ 19 h): anything longer is
/// counted in the last bucket.
const OCTAVES: u64 = 30;
/// Buckets of one half-window.
const BUCKETS: usize = (LINEAR + OCTAVES * SUB) as usize;

/// Fewer samples than this and a percentile means nothing (p95 of 10
/// samples is the maximum): the policy's ceiling is used instead, so a
/// fresh route hedges late rather than on noise.
pub const MIN_SAMPLES: u64 = 20;

/// Which delay before the hedge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeDelay {
    /// Always this long.
    Fixed(Nanos),
    /// The route's recent latency at this quantile (0 < q < 1), clamped to
    /// `min..=max`; `max` while fewer than [`MIN_SAMPLES`] are known.
    Percentile {
        /// The quantile, e.g. 0.95.
        q: f64,
        /// Floor: never hedge sooner.
        min: Nanos,
        /// Ceiling: never wait longer (and the delay of a fresh route).
        max: Nanos,
    },
}

/// A route's hedging settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgePolicy {
    /// When the hedge goes.
    pub delay: HedgeDelay,
    /// Hedges per request beyond the first attempt (1 to 3).
    pub max_extra: u32,
}

impl HedgePolicy {
    /// The delay before hedge number `n` (1 for the first), given the
    /// route's window at `now`: the n-th hedge waits n delays after the
    /// first attempt.
    pub fn delay(&self, window: &LatencyWindow, now: Nanos) -> Nanos {
        match self.delay {
            HedgeDelay::Fixed(d) => d,
            HedgeDelay::Percentile { q, min, max } => match window.quantile(q, now) {
                Some(v) => v.clamp(min, max.max(min)),
                None => max.max(min),
            },
        }
    }
}

/// Recent latencies of one route: two half-windows of log-linear counters
/// rotated every `window / 2`, so a quantile covers the last half-window
/// to full window and old samples age out without per-sample state.
#[derive(Debug, Clone)]
pub struct LatencyWindow {
    half: Nanos,
    started: Nanos,
    current: Box<[u32; BUCKETS]>,
    previous: Box<[u32; BUCKETS]>,
    count_current: u64,
    count_previous: u64,
}

impl LatencyWindow {
    /// An empty window covering about `window` (at least 2 ns) from `now`.
    pub fn new(window: Nanos, now: Nanos) -> Self {
        Self {
            half: (window / 2).max(1),
            started: now,
            current: Box::new([0; BUCKETS]),
            previous: Box::new([0; BUCKETS]),
            count_current: 0,
            count_previous: 0,
        }
    }

    fn rotate(&mut self, now: Nanos) {
        let age = now.saturating_sub(self.started);
        if age < self.half {
            return;
        }
        if age >= self.half.saturating_mul(2) {
            // Idle for a whole window: nothing recent is known.
            self.previous.fill(0);
            self.count_previous = 0;
        } else {
            std::mem::swap(&mut self.previous, &mut self.current);
            self.count_previous = self.count_current;
        }
        self.current.fill(0);
        self.count_current = 0;
        self.started = now;
    }

    /// Adds one latency observed at `now`.
    pub fn observe(&mut self, now: Nanos, latency: Nanos) {
        self.rotate(now);
        let i = bucket(latency / 1_000);
        self.current[i] = self.current[i].saturating_add(1);
        self.count_current += 1;
    }

    /// Samples in the window at `now`.
    pub fn samples(&mut self, now: Nanos) -> u64 {
        self.rotate(now);
        self.count_current + self.count_previous
    }

    /// The latency at quantile `q` (the upper edge of its bucket, so a
    /// hedge never goes early by rounding), or `None` with fewer than
    /// [`MIN_SAMPLES`] samples or a `q` outside (0, 1).
    pub fn quantile(&self, q: f64, now: Nanos) -> Option<Nanos> {
        if !(q > 0.0 && q < 1.0) {
            return None;
        }
        // Read-only: a stale half is left out rather than rotated here.
        let age = now.saturating_sub(self.started);
        let (with_previous, with_current) = if age >= self.half.saturating_mul(2) {
            (false, false)
        } else if age >= self.half {
            (false, true)
        } else {
            (true, true)
        };
        let total = u64::from(with_current) * self.count_current
            + u64::from(with_previous) * self.count_previous;
        if total < MIN_SAMPLES {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for i in 0..BUCKETS {
            seen += u64::from(with_current) * u64::from(self.current[i])
                + u64::from(with_previous) * u64::from(self.previous[i]);
            if seen >= rank {
                return Some(upper_edge(i).saturating_mul(1_000));
            }
        }
        Some(upper_edge(BUCKETS - 1).saturating_mul(1_000))
    }
}

/// The bucket of `micros`.
fn bucket(micros: u64) -> usize {
    if micros < LINEAR {
        return micros as usize;
    }
    // 64 = 2^6: octave 0 holds 64..128.
    let log = 63 - u64::from(micros.leading_zeros());
    let octave = log - 6;
    if octave >= OCTAVES {
        return BUCKETS - 1;
    }
    let sub = (micros >> (log - 4)) & (SUB - 1);
    (LINEAR + octave * SUB + sub) as usize
}

/// The largest value (µs) bucket `i` holds, plus one.
fn upper_edge(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i + 1;
    }
    let octave = (i - LINEAR) / SUB;
    let sub = (i - LINEAR) % SUB;
    let width = 1u64 << (octave + 2);
    (LINEAR << octave) + (sub + 1) * width
}

/// How a hedge ended, for the metric `palisade_hedge_total{route,outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HedgeOutcome {
    /// The first attempt answered before the delay: no hedge was needed.
    NotNeeded,
    /// A hedge was sent and answered first; the first attempt was cancelled.
    Won,
    /// A hedge was sent, the first attempt answered first; the hedge was
    /// cancelled.
    Lost,
    /// Due, but the target's retry budget was spent.
    Budget,
    /// Due, but no other allowed, healthy deployment was left (residency,
    /// health, all tried).
    NoDeployment,
    /// Due, but the deadline had passed.
    Deadline,
    /// Due, but the other deployment's queue was full.
    Busy,
    /// A hedge was sent and every attempt failed (the retry rules then
    /// decide what follows).
    Failed,
    /// The request may not be sent twice (not idempotent, or streamed):
    /// never hedged.
    Ineligible,
}

impl HedgeOutcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotNeeded => "not_needed",
            Self::Won => "won",
            Self::Lost => "lost",
            Self::Budget => "skipped_budget",
            Self::NoDeployment => "skipped_no_deployment",
            Self::Deadline => "skipped_deadline",
            Self::Busy => "skipped_busy",
            Self::Failed => "failed",
            Self::Ineligible => "ineligible",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Nanos = 1_000_000;

    #[test]
    fn buckets_are_monotonic_and_cover_their_values() {
        let mut last = 0;
        for micros in (0..200_000u64).step_by(7).chain([u64::MAX / 2_000]) {
            let b = bucket(micros);
            assert!(b >= last, "bucket order at {micros}");
            last = b;
            if b < BUCKETS - 1 {
                assert!(micros < upper_edge(b), "{micros} < edge of {b}");
                assert!(b == 0 || micros >= upper_edge(b - 1), "{micros} in {b}");
            }
        }
    }

    #[test]
    fn precision_is_about_six_percent() {
        for micros in [100u64, 1_000, 12_345, 250_000, 3_000_000] {
            let edge = upper_edge(bucket(micros));
            let err = (edge - micros) as f64 / micros as f64;
            assert!(err <= 0.07, "{micros}: edge {edge} ({err})");
        }
    }

    fn check(samples: &[(Nanos, Nanos)], q: f64, at: Nanos, expected: Option<Nanos>) {
        let mut w = LatencyWindow::new(10_000 * MS, 0);
        for &(now, latency) in samples {
            w.observe(now, latency);
        }
        let got = w.quantile(q, at);
        match (got, expected) {
            (Some(g), Some(e)) => {
                assert!(g >= e && g as f64 <= e as f64 * 1.07, "{g} vs {e}")
            }
            _ => assert_eq!(got, expected),
        }
    }

    #[test]
    fn quantiles_follow_the_samples() {
        // 95 fast (10 ms) and 5 slow (500 ms): p50 and p95 are fast, p99 slow.
        let samples: Vec<_> = (0..100u64)
            .map(|i| (i * MS, if i % 20 == 0 { 500 * MS } else { 10 * MS }))
            .collect();
        check(&samples, 0.50, 100 * MS, Some(10 * MS));
        check(&samples, 0.95, 100 * MS, Some(10 * MS));
        check(&samples, 0.99, 100 * MS, Some(500 * MS));
        // Too few samples: no percentile.
        check(&samples[..10], 0.95, 100 * MS, None);
        // Nonsense quantiles.
        check(&samples, 0.0, 100 * MS, None);
        check(&samples, 1.0, 100 * MS, None);
        check(&samples, f64::NAN, 100 * MS, None);
    }

    #[test]
    fn old_samples_age_out() {
        let mut w = LatencyWindow::new(10_000 * MS, 0);
        for i in 0..50 {
            w.observe(i * MS, 900 * MS);
        }
        // Next half-window: the slow ones still count.
        for i in 0..50 {
            w.observe(6_000 * MS + i * MS, 5 * MS);
        }
        let p = w.quantile(0.9, 6_100 * MS).unwrap();
        assert!(p >= 900 * MS, "{p}");
        // A half-window later the slow half is gone.
        for i in 0..50 {
            w.observe(12_000 * MS + i * MS, 5 * MS);
        }
        let p = w.quantile(0.99, 12_100 * MS).unwrap();
        assert!(p <= 6 * MS, "{p}");
        // Idle for a whole window: nothing is known.
        assert_eq!(w.quantile(0.5, 40_000 * MS), None);
        assert_eq!(w.samples(40_000 * MS), 0);
    }

    #[test]
    fn the_delay_is_clamped_and_fresh_routes_wait_the_ceiling() {
        let policy = HedgePolicy {
            delay: HedgeDelay::Percentile {
                q: 0.95,
                min: 20 * MS,
                max: 800 * MS,
            },
            max_extra: 1,
        };
        let mut w = LatencyWindow::new(10_000 * MS, 0);
        assert_eq!(policy.delay(&w, 0), 800 * MS, "no samples: the ceiling");
        for i in 0..40 {
            w.observe(i, MS);
        }
        assert_eq!(policy.delay(&w, 40), 20 * MS, "the floor");
        for i in 0..400 {
            w.observe(100 + i, 5_000 * MS);
        }
        assert_eq!(policy.delay(&w, 600), 800 * MS, "the ceiling");
        let fixed = HedgePolicy {
            delay: HedgeDelay::Fixed(75 * MS),
            max_extra: 1,
        };
        assert_eq!(fixed.delay(&w, 600), 75 * MS);
    }
}
