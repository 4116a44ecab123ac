//! The statistics of the burst test and the baselines: a one-sided binomial
//! z-score and an exponentially weighted mean.
//!
//! Must not: hold state beyond one mean; no clock, no I/O.

/// How many standard deviations `events` out of `trials` lie above what a
/// rate of `p0` predicts (normal approximation to the binomial). `p0` is
/// clamped into `[1e-6, 1 - 1e-6]` so a zero baseline cannot divide by zero;
/// zero trials give 0.
pub fn binomial_z(events: u64, trials: u64, p0: f64) -> f64 {
    if trials == 0 {
        return 0.0;
    }
    let p0 = p0.clamp(1e-6, 1.0 - 1e-6);
    let n = trials as f64;
    let expected = n * p0;
    let sd = (n * p0 * (1.0 - p0)).sqrt();
    (events as f64 - expected) / sd
}

/// An exponentially weighted moving average that knows how many samples it
/// has seen (a baseline is trusted only after a warm-up).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Ewma {
    pub(crate) mean: f64,
    pub(crate) samples: u32,
}

impl Ewma {
    /// Folds `x` in with weight `alpha` (the first sample is taken as is).
    pub(crate) fn update(&mut self, x: f64, alpha: f64) {
        self.mean = if self.samples == 0 {
            x
        } else {
            alpha * x + (1.0 - alpha) * self.mean
        };
        self.samples = self.samples.saturating_add(1);
    }

    /// Replaces the mean (a re-base after a scale event), keeping it warm.
    pub(crate) fn rebase(&mut self, x: f64) {
        self.mean = x;
        self.samples = self.samples.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_scores_match_hand_computed_values() {
        // 30 of 100 at p0 = 0.1: (30 - 10) / sqrt(9) = 6.67.
        assert!((binomial_z(30, 100, 0.1) - 20.0 / 3.0).abs() < 1e-9);
        // At the expected count the score is zero; below it, negative.
        assert_eq!(binomial_z(10, 100, 0.1), 0.0);
        assert!(binomial_z(0, 100, 0.1) < 0.0);
        assert_eq!(binomial_z(5, 0, 0.1), 0.0);
        assert!(binomial_z(1, 10, 0.0).is_finite());
    }

    #[test]
    fn ewma_starts_at_the_first_sample() {
        let mut e = Ewma::default();
        e.update(10.0, 0.5);
        assert_eq!(e.mean, 10.0);
        e.update(20.0, 0.5);
        assert_eq!(e.mean, 15.0);
        assert_eq!(e.samples, 2);
    }
}
