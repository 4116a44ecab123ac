//! Choosing among candidate deployments: weighted power-of-two-choices on
//! outstanding requests × EWMA latency (the "peak EWMA" idea of Finagle and
//! Linkerd, without the peak), and the EWMA itself.
//!
//! Must not: filter for residency or health; the planner hands over only
//! deployments that passed both.

use crate::{Nanos, Rng};

/// What the balancer knows of one deployment right now (the caller's
/// runtime state, copied in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentState {
    /// Healthy: not ejected by passive health, breaker closed, last active
    /// probe (if any) passed.
    pub healthy: bool,
    /// Requests sent and not yet answered.
    pub outstanding: u32,
    /// Smoothed time to response head; 0 when nothing was measured yet.
    pub ewma: Nanos,
    /// The deployment asked not to be called before this instant (an
    /// upstream `Retry-After`); 0 when it did not.
    pub not_before: Nanos,
}

impl Default for DeploymentState {
    fn default() -> Self {
        Self {
            healthy: true,
            outstanding: 0,
            ewma: 0,
            not_before: 0,
        }
    }
}

/// An exponentially weighted moving average of latencies, decaying with
/// time (half-life `tau`), so a deployment that got fast again is believed
/// quickly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ewma {
    value: Nanos,
    last: Nanos,
    tau: Nanos,
}

impl Ewma {
    /// An empty average with decay time `tau` (> 0).
    pub fn new(tau: Nanos) -> Self {
        Self {
            value: 0,
            last: 0,
            tau: tau.max(1),
        }
    }

    /// Adds one sample observed at `now`.
    pub fn observe(&mut self, now: Nanos, sample: Nanos) {
        if self.value == 0 {
            self.value = sample.max(1);
        } else {
            let elapsed = now.saturating_sub(self.last) as f64;
            let w = (-elapsed / self.tau as f64).exp();
            let v = self.value as f64 * w + sample as f64 * (1.0 - w);
            self.value = (v as Nanos).max(1);
        }
        self.last = now;
    }

    /// The current average (0: no sample yet).
    pub fn value(&self) -> Nanos {
        self.value
    }
}

/// The expected cost of one more request: queue length times latency. An
/// unmeasured deployment costs like the fastest measured one would, so a
/// new deployment gets traffic and a measurement.
fn cost(state: &DeploymentState, default_latency: Nanos) -> u128 {
    let latency = if state.ewma == 0 {
        default_latency
    } else {
        state.ewma
    };
    u128::from(state.outstanding + 1) * u128::from(latency.max(1))
}

/// Picks one of `candidates` (index, weight, state): two weighted draws,
/// the cheaper wins; cost is divided by weight. `None` when empty.
pub fn pick(candidates: &[(usize, u32, DeploymentState)], rng: &mut dyn Rng) -> Option<usize> {
    if candidates.len() <= 1 {
        return candidates.first().map(|c| c.0);
    }
    let total: u64 = candidates.iter().map(|c| u64::from(c.1.max(1))).sum();
    let draw = |rng: &mut dyn Rng| {
        let mut at = rng.below(total);
        for (i, c) in candidates.iter().enumerate() {
            let w = u64::from(c.1.max(1));
            if at < w {
                return i;
            }
            at -= w;
        }
        candidates.len() - 1
    };
    let a = draw(rng);
    let mut b = draw(rng);
    if b == a {
        // A second draw on the same one: take its neighbour, so two
        // distinct deployments are compared.
        b = (a + 1 + rng.below(candidates.len() as u64 - 1) as usize) % candidates.len();
    }
    let fastest = candidates
        .iter()
        .map(|c| c.2.ewma)
        .filter(|&e| e > 0)
        .min()
        .unwrap_or(1);
    let weighted = |i: usize| {
        let c = &candidates[i];
        // Compare cost/weight without division: cost_a * w_b vs cost_b * w_a.
        (cost(&c.2, fastest), u128::from(c.1.max(1)))
    };
    let (ca, wa) = weighted(a);
    let (cb, wb) = weighted(b);
    Some(if ca * wb <= cb * wa {
        candidates[a].0
    } else {
        candidates[b].0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix;

    fn st(outstanding: u32, ewma: Nanos) -> DeploymentState {
        DeploymentState {
            outstanding,
            ewma,
            ..DeploymentState::default()
        }
    }

    #[test]
    fn weights_split_traffic_under_load() {
        // Each pick holds its request for the next 20 picks: outstanding
        // grows on the chosen one until cost/weight evens out, so traffic
        // follows the 3:1 weights.
        let mut rng = SplitMix(7);
        let mut window = std::collections::VecDeque::new();
        let mut outstanding = [0u32; 2];
        let mut served = [0u32; 2];
        for _ in 0..4000 {
            let c = [
                (0, 3, st(outstanding[0], 1_000)),
                (1, 1, st(outstanding[1], 1_000)),
            ];
            let i = pick(&c, &mut rng).unwrap();
            served[i] += 1;
            outstanding[i] += 1;
            window.push_back(i);
            if window.len() > 20 {
                let done = window.pop_front().unwrap();
                outstanding[done] -= 1;
            }
        }
        let share = f64::from(served[0]) / 4000.0;
        assert!((0.70..0.80).contains(&share), "{served:?}");
    }

    #[test]
    fn the_less_loaded_and_faster_deployment_wins() {
        let mut rng = SplitMix(1);
        // Two candidates: P2C always compares both.
        let c = [(0, 1, st(10, 1_000)), (1, 1, st(0, 1_000))];
        for _ in 0..100 {
            assert_eq!(pick(&c, &mut rng), Some(1));
        }
        let c = [(0, 1, st(1, 50_000)), (1, 1, st(1, 1_000))];
        for _ in 0..100 {
            assert_eq!(pick(&c, &mut rng), Some(1));
        }
        assert_eq!(pick(&[], &mut rng), None);
        assert_eq!(pick(&[(4, 1, st(9, 9))], &mut rng), Some(4));
    }

    #[test]
    fn ewma_moves_toward_recent_samples() {
        let mut e = Ewma::new(1_000_000_000);
        e.observe(0, 100);
        assert_eq!(e.value(), 100);
        e.observe(10_000_000_000, 1_000);
        assert!(e.value() > 990, "{}", e.value());
        let before = e.value();
        e.observe(10_000_000_001, 0);
        assert!(
            e.value() >= before - 1,
            "a sample right after barely moves it"
        );
    }
}
