//! Adaptive concurrency toward one backend: an in-flight limit that moves by AIMD.
//!
//! Like TCP's congestion window: every response head that comes back slower than the target,
//! or as 429/503 (the model server's own overload signals), or not at all, cuts the limit by
//! 10% (never below the floor); a full window of good responses (as many as the limit) raises
//! it by one (never above the ceiling). The model server then sits at the concurrency where
//! it still meets the latency target.
//!
//! This is the arithmetic only: the caller measures the latency, passes the status and keeps
//! the in-flight count and the queue (the gateway's scheduler). No clock is read here.

use crate::time::Nanos;

/// Is this response head a sign of overload? `status` is `None` for a timeout or a failure
/// to connect.
pub fn is_overload(status: Option<u16>, head_latency: Nanos, target_latency: Nanos) -> bool {
    matches!(status, None | Some(429) | Some(503)) || head_latency > target_latency
}

/// An in-flight limit between a floor and a ceiling, moved by what the backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveLimit {
    min: u32,
    max: u32,
    target_latency: Nanos,
    limit: u32,
    /// Good responses since the last change of `limit`.
    good_streak: u32,
}

impl AdaptiveLimit {
    /// A limit starting at the ceiling `max` (a backend is trusted until it shows overload),
    /// moving down to `min` when response heads are slower than `target_latency`.
    pub const fn new(min: u32, max: u32, target_latency: Nanos) -> Self {
        Self {
            min,
            max,
            target_latency,
            limit: max,
            good_streak: 0,
        }
    }

    /// The current limit.
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// Learns from one response head (`status`, or `None` for a timeout or failure, and the
    /// time it took); returns the new limit.
    pub fn observe(&mut self, status: Option<u16>, head_latency: Nanos) -> u32 {
        if is_overload(status, head_latency, self.target_latency) {
            // Multiplicative decrease. In u64 so a huge configured maximum cannot overflow.
            let cut = u32::try_from(u64::from(self.limit) * 9 / 10)
                .unwrap_or(u32::MAX)
                .max(self.min);
            if cut < self.limit || self.good_streak > 0 {
                self.limit = cut;
            }
            self.good_streak = 0;
        } else {
            self.good_streak += 1;
            if self.good_streak >= self.limit {
                self.limit = self.limit.saturating_add(1).min(self.max);
                self.good_streak = 0;
            }
        }
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Nanos = Nanos::from_millis(100);

    #[test]
    fn adaptive_limit_backs_off_on_overload_and_recovers() {
        let mut s = AdaptiveLimit::new(2, 20, TARGET);
        let fast = Nanos::from_millis(10);
        assert_eq!(s.limit(), 20);
        s.observe(Some(503), fast);
        assert_eq!(s.limit(), 18, "a 503 cuts by 10%");
        s.observe(Some(200), Nanos::from_secs(1));
        assert_eq!(s.limit(), 16, "a slow head counts as overload");
        for _ in 0..50 {
            s.observe(None, fast);
        }
        assert_eq!(s.limit(), 2, "never below the floor");
        // Additive increase: one per window of good responses.
        s.observe(Some(200), fast);
        s.observe(Some(200), fast);
        assert_eq!(s.limit(), 3);
        for _ in 0..1000 {
            s.observe(Some(200), fast);
        }
        assert_eq!(s.limit(), 20, "never above the configured maximum");
    }

    #[test]
    fn overload_signals() {
        let cases = [
            (None, 1, true),
            (Some(429), 1, true),
            (Some(503), 1, true),
            (Some(500), 1, false),
            (Some(200), 100, false),
            (Some(200), 101, true),
            (Some(404), 0, false),
        ];
        for (status, ms, expected) in cases {
            assert_eq!(
                is_overload(status, Nanos::from_millis(ms), TARGET),
                expected,
                "{status:?} after {ms} ms"
            );
        }
    }

    #[test]
    fn limit_after_a_sequence() {
        let fast = Nanos::from_millis(1);
        // (floor, ceiling, statuses in order, limit after)
        let cases: &[(u32, u32, &[Option<u16>], u32)] = &[
            (1, 10, &[], 10),
            (1, 10, &[Some(429)], 9),
            (1, 10, &[Some(429), Some(429)], 8),
            (5, 10, &[None, None, None, None, None, None, None], 5),
            (1, 1, &[None], 1),
            // Nine good answers at limit 9 earn one more.
            (
                1,
                10,
                &[
                    Some(503),
                    Some(200),
                    Some(200),
                    Some(200),
                    Some(200),
                    Some(200),
                    Some(200),
                    Some(200),
                    Some(200),
                    Some(200),
                ],
                10,
            ),
            (1, 10, &[Some(503), Some(200), Some(200), Some(200)], 9),
            // 10 * 9 / 10 = 9 cuts, 1 * 9 / 10 = 0 is held at the floor.
            (1, 2, &[None, None, None], 1),
            (1, u32::MAX, &[None], 3_865_470_565),
        ];
        for (min, max, statuses, expected) in cases {
            let mut limit = AdaptiveLimit::new(*min, *max, TARGET);
            for status in *statuses {
                limit.observe(*status, fast);
            }
            assert_eq!(limit.limit(), *expected, "{min}..{max} after {statuses:?}");
        }
    }
}
