//! Properties over arbitrary traffic: alerts are never repeated for a kind
//! and tenant within the dedup period, memory stays bounded, and a benign
//! spike of any size (every tenant's flag share at or under its usual one)
//! with a scale event raises nothing.

use std::collections::HashMap;

use palisade_anomaly::{AlertKind, Detector, Observation, Outcome, Params, ScaleEvent};
use proptest::prelude::*;

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => Just(Outcome::Allowed),
        2 => Just(Outcome::Flagged),
        1 => Just(Outcome::Blocked),
        1 => Just(Outcome::Refused),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn alerts_are_deduplicated_and_state_is_bounded(
        events in proptest::collection::vec((0u8..12, 0u8..3, outcome(), 0u64..3_000), 1..3_000),
        scale_at in proptest::option::of(0usize..3_000),
    ) {
        let params = Params { max_scopes: 16, dedup_ms: 45_000, window_ms: 5_000, ..Params::default() };
        let mut det = Detector::new(params.clone(), 2);
        let mut now = 0u64;
        let mut last: HashMap<(AlertKind, Option<String>), u64> = HashMap::new();
        for (i, (tenant, key, outcome, gap)) in events.into_iter().enumerate() {
            now += gap;
            if scale_at == Some(i) {
                det.scale_event(&ScaleEvent { replicas: Some(5), source: "t".into() }, now);
            }
            let tenant = format!("t{tenant}");
            let key = format!("k{key}");
            for a in det.observe(&Observation { tenant: &tenant, key: Some(&key), outcome }, now) {
                let k = (a.kind, a.tenant.clone());
                if let Some(prev) = last.get(&k) {
                    prop_assert!(a.window_end_ms >= prev + params.dedup_ms, "{a:?} after {prev}");
                }
                prop_assert!(a.window_end_ms <= now && a.window_start_ms < a.window_end_ms);
                last.insert(k, a.window_end_ms);
            }
            prop_assert!(det.status(now).tracked_scopes <= params.max_scopes);
        }
    }

    #[test]
    fn a_benign_spike_with_a_scale_event_is_silent(
        factor in 2u64..=20,
        flag_per_mille in proptest::collection::vec(0u64..=20, 4),
    ) {
        let mut det = Detector::new(Params::default(), 1);
        let window = det.params().window_ms;
        let mut now = 0;
        let feed = |det: &mut Detector, n: u64, now: &mut u64| {
            let mut alerts = Vec::new();
            for i in 0..n {
                for (t, per_mille) in flag_per_mille.iter().enumerate() {
                    let flagged = (i * 1000 / n) % 1000 < *per_mille;
                    let outcome = if flagged { Outcome::Flagged } else { Outcome::Allowed };
                    let tenant = format!("t{t}");
                    alerts.extend(det.observe(&Observation { tenant: &tenant, key: None, outcome }, *now));
                }
                *now += window / n;
            }
            alerts
        };
        for _ in 0..8 {
            prop_assert!(feed(&mut det, 100, &mut now).is_empty());
        }
        det.scale_event(&ScaleEvent { replicas: Some(factor as u32), source: "hpa".into() }, now);
        for _ in 0..8 {
            let alerts = feed(&mut det, 100 * factor, &mut now);
            prop_assert!(alerts.is_empty(), "{alerts:?}");
        }
    }
}
