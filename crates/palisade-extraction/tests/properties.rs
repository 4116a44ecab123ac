//! Properties of the pure extraction logic: hardening is idempotent and only
//! removes or lowers what it judges; the ladder's score only decays between
//! evaluations; Shapiro–Wilk's W stays in (0, 1]; a tracker never holds more
//! keys than its bound; sketches are deterministic.

use palisade_extraction::ladder::{LadderConfig, Standing};
use palisade_extraction::params::{harden, ParamPolicy, ProbeAction};
use palisade_extraction::stats::shapiro_wilk;
use palisade_extraction::{
    sketch, GateOutcome, RequestFeatures, SamplingSignature, Tracker, TrackerConfig,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn small_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0u64..40).prop_map(Value::from),
        "[a-z0-9]{0,4}".prop_map(Value::from),
        prop::collection::btree_map("[0-9]{1,3}", -100i64..100, 0..3).prop_map(|m| json!(m)),
    ]
}

fn body() -> impl Strategy<Value = Map<String, Value>> {
    let keys = prop::sample::select(vec![
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "echo",
        "prompt_logprobs",
        "allowed_token_ids",
        "n_probs",
        "post_sampling_probs",
        "temperature",
        "model",
    ]);
    (
        prop::collection::btree_map(keys.clone(), small_value(), 0..8),
        prop::option::of(prop::collection::btree_map(keys, small_value(), 0..4)),
    )
        .prop_map(|(top, extra)| {
            let mut m: Map<String, Value> =
                top.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if let Some(extra) = extra {
                let inner: Map<String, Value> =
                    extra.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                m.insert("extra_body".to_owned(), Value::Object(inner));
            }
            m
        })
}

fn policy() -> impl Strategy<Value = ParamPolicy> {
    let action = prop::sample::select(vec![
        ProbeAction::Allow,
        ProbeAction::Strip,
        ProbeAction::Refuse,
    ]);
    (
        action.clone(),
        prop::option::of(0u64..10),
        action.clone(),
        action.clone(),
        action,
    )
        .prop_map(|(a, cap, b, c, d)| ParamPolicy {
            logit_bias_with_logprobs: a,
            max_top_logprobs: cap,
            echo_with_logprobs: b,
            prompt_logprobs: c,
            engine_probes: d,
        })
}

proptest! {
    #[test]
    fn hardening_is_idempotent_and_only_removes_or_lowers(mut fields in body(), policy in policy()) {
        let before = fields.clone();
        let first = harden(&mut fields, &policy);
        if first.refusal().is_none() {
            let again = fields.clone();
            let mut twice = fields.clone();
            let second = harden(&mut twice, &policy);
            prop_assert!(second.findings.is_empty(), "{:?}", second.findings);
            prop_assert_eq!(twice, again);
        }
        for k in fields.keys() {
            prop_assert!(before.contains_key(k), "added {}", k);
        }
        if let (Some(cap), Some(Value::Number(n))) = (policy.max_top_logprobs, fields.get("top_logprobs")) {
            prop_assert!(n.as_u64().is_some_and(|v| v <= cap));
        }
    }

    #[test]
    fn the_score_only_decays_between_evaluations(points in 0.0f64..50.0, t in 0i64..10_000_000, dt in 0i64..10_000_000) {
        let c = LadderConfig::default();
        let mut s = Standing::default();
        s.add(points, t, &c);
        prop_assert!(s.score_at(t + dt, &c) <= s.score_at(t, &c) + 1e-9);
        prop_assert!(s.action(t + dt, &c) <= s.action(t, &c));
    }

    #[test]
    fn shapiro_wilk_w_is_in_unit_interval(xs in prop::collection::vec(-1e6f64..1e6, 3..200)) {
        if let Ok(r) = shapiro_wilk(&xs) {
            prop_assert!(r.w > 0.0 && r.w <= 1.0 + 1e-12, "{:?}", r);
            prop_assert!((0.0..=1.0).contains(&r.p_value), "{:?}", r);
        }
    }

    #[test]
    fn sketches_are_deterministic(text in "\\PC{0,300}") {
        prop_assert_eq!(sketch(&text), sketch(&text));
    }

    #[test]
    fn a_tracker_holds_at_most_max_keys(keys in prop::collection::vec(0u32..500, 1..300)) {
        let mut tracker = Tracker::new(TrackerConfig { max_keys: 16, ..TrackerConfig::default() });
        for (i, k) in keys.iter().enumerate() {
            let f = RequestFeatures {
                at_ms: i as i64,
                sketch: sketch(&format!("hello {k}")),
                sampling: SamplingSignature::default(),
                outcome: GateOutcome::Passed,
            };
            tracker.observe(&format!("k{k}"), "t", &f, i as i64);
            prop_assert!(tracker.len() <= 16);
        }
    }
}
