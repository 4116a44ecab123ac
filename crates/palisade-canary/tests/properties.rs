//! Properties of the canary core: the binomial tail is a monotone
//! probability, the rollout never gives a rolled-back deployment traffic
//! again and only moves its share up.

use palisade_canary::{
    binomial_cdf, evaluate, Check, DriftRule, Phase, Rate, Rollout, RolloutSpec, Summary,
};
use proptest::prelude::*;

proptest! {
    #[test]
    fn binomial_cdf_is_a_monotone_probability(n in 1usize..300, p in 0.0f64..=1.0, k in 0usize..300) {
        let k = k.min(n);
        let v = binomial_cdf(k, n, p);
        prop_assert!((0.0..=1.0).contains(&v));
        if k > 0 {
            prop_assert!(binomial_cdf(k - 1, n, p) <= v + 1e-12);
        }
        // A higher success probability makes few successes less likely.
        prop_assert!(binomial_cdf(k, n, (p + 0.1).min(1.0)) <= v + 1e-12);
    }

    #[test]
    fn more_failures_never_look_healthier(n in 10usize..200, passed in 0usize..200) {
        let passed = passed.min(n);
        let rule = DriftRule::default();
        let s = |passed| {
            let mut s = Summary::default();
            s.rates[0] = Rate { passed, total: n };
            s
        };
        let mut base = Summary::default();
        base.rates[0] = Rate { passed: 100, total: 100 };
        if evaluate(&rule, &s(passed), Some(&base)).drifted() && passed > 0 {
            prop_assert!(evaluate(&rule, &s(passed - 1), Some(&base)).drifted());
        }
        let _ = Check::Answer;
    }

    #[test]
    fn a_rollout_only_moves_up_and_never_returns_from_rollback(
        events in proptest::collection::vec((0u64..50, any::<bool>(), any::<bool>()), 1..60),
        rollback in any::<bool>(),
    ) {
        let mut r = Rollout::new(RolloutSpec { start_pct: 5, step_pct: 25, step_every: 20, rollback_on_drift: rollback });
        let mut now = 0;
        let mut last = 0u32;
        let mut rolled_back = false;
        for (dt, drift, judged) in events {
            now += dt;
            r.observe(now, drift.then_some("drift"), judged);
            let pct = r.traffic_pct().unwrap_or(100);
            if rolled_back {
                prop_assert_eq!(pct, 0);
            } else if !matches!(r.phase(), Phase::RolledBack { .. }) {
                prop_assert!(pct >= last);
            }
            rolled_back |= matches!(r.phase(), Phase::RolledBack { .. });
            if rolled_back { prop_assert!(rollback); }
            last = pct;
        }
    }
}

/// The shipped example golden set parses, and exercises every check.
#[test]
fn the_example_golden_set_parses() {
    let set =
        palisade_canary::GoldenSet::parse(include_str!("../../../examples/golden/canary.jsonl"))
            .expect("examples/golden/canary.jsonl parses");
    assert_eq!(set.len(), 10);
    let mut checks: Vec<Check> = set.items.iter().flat_map(|i| i.expect.checks()).collect();
    checks.sort();
    checks.dedup();
    assert_eq!(checks, Check::ALL.to_vec());
}
