//! Properties of the detector: without the key a text's score behaves like
//! N(0, 1) (so the stated false-positive rate holds), the score is monotone
//! in the green count, repetition never raises it, and applying the
//! watermark to a body is idempotent.

use palisade_extraction::stats::SplitMix;
use palisade_watermark::score::{binomial_sf, from_counts};
use palisade_watermark::{
    apply, derive_key, score, ClientBias, GreenList, LogprobsAction, Marking, DEFAULT_FPR,
};
use proptest::prelude::*;
use serde_json::{json, Value};

fn list(seed: u8, vocab: u32, gamma: f64) -> GreenList {
    GreenList::new(
        &derive_key(&[seed; 32], "tenant", u64::from(seed)),
        vocab,
        gamma,
    )
    .unwrap()
}

#[test]
fn scores_of_text_written_without_the_key_are_standard_normal() {
    // 4000 texts of 200 uniformly drawn tokens against one key: the z
    // mean and variance of N(0, 1), and the exact p-value's false-positive
    // rate at 1e-2 and 1e-5 within binomial noise of the nominal one.
    let l = list(1, 50_000, 0.25);
    let mut rng = SplitMix::new(7);
    let (mut sum, mut sq, mut fp2, mut fp5) = (0.0, 0.0, 0, 0);
    let n = 4000;
    for _ in 0..n {
        let text: Vec<u32> = (0..200).map(|_| rng.below(50_000) as u32).collect();
        let s = score(&l, &text);
        sum += s.z;
        sq += s.z * s.z;
        fp2 += u32::from(s.p_value <= 1e-2);
        fp5 += u32::from(s.detected(DEFAULT_FPR));
    }
    let mean = sum / f64::from(n);
    let var = sq / f64::from(n) - mean * mean;
    assert!(mean.abs() < 0.06, "mean {mean}");
    assert!((0.9..1.1).contains(&var), "variance {var}");
    // Expected 40 at 1e-2 (the exact test is conservative: fewer is fine).
    assert!(fp2 <= 60, "{fp2} false positives at 1e-2");
    assert_eq!(fp5, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_text_without_the_key_is_not_detected(
        seed in 0u8..=255,
        tokens in proptest::collection::vec(0u32..2_000, 0..600),
    ) {
        // The tokens are chosen without the key: a detection at 1e-5 here
        // would be a 1-in-100k event per case.
        let s = score(&list(seed, 2_000, 0.25), &tokens);
        prop_assert!(!s.detected(DEFAULT_FPR), "{:?}", s);
        prop_assert!(s.z < 4.5);
    }

    #[test]
    fn the_score_is_monotone_in_the_green_count(n in 1u64..5_000, g in 0u64..5_000, gamma in 0.05f64..0.95) {
        let g = g.min(n - 1);
        let lo = from_counts(g, n, gamma);
        let hi = from_counts(g + 1, n, gamma);
        prop_assert!(hi.z > lo.z);
        prop_assert!(hi.p_value <= lo.p_value);
        prop_assert!(hi.p_normal <= lo.p_normal);
        prop_assert!((0.0..=1.0).contains(&lo.p_value));
    }

    #[test]
    fn turning_a_red_token_green_never_lowers_the_score(
        seed in 0u8..=255,
        tokens in proptest::collection::vec(0u32..2_000, 1..300),
        at in 0usize..300,
    ) {
        let l = list(seed, 2_000, 0.5);
        let before = score(&l, &tokens);
        let mut edited = tokens.clone();
        let at = at % edited.len();
        // A green token the text does not contain yet.
        let fresh = l.green_ids().find(|t| !tokens.contains(t));
        if let Some(g) = fresh {
            if !l.is_green(edited[at]) {
                edited[at] = g;
                let after = score(&l, &edited);
                prop_assert!(after.z >= before.z - 1e-12, "{:?} -> {:?}", before, after);
            }
        }
    }

    #[test]
    fn repetition_never_changes_the_score(
        seed in 0u8..=255,
        tokens in proptest::collection::vec(0u32..3_000, 0..200),
        times in 1usize..5,
    ) {
        let l = list(seed, 3_000, 0.25);
        let repeated: Vec<u32> = tokens.iter().copied().cycle().take(tokens.len() * times).collect();
        prop_assert_eq!(score(&l, &tokens), score(&l, &repeated));
    }

    #[test]
    fn applying_the_watermark_is_idempotent_and_sets_exactly_the_green_list(
        seed in 0u8..=255,
        client in proptest::collection::btree_map(0u32..500, -100i32..=100, 0..20),
    ) {
        let l = list(seed, 500, 0.25);
        let bias: serde_json::Map<String, Value> =
            client.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let mut fields = json!({"model": "m", "logit_bias": bias}).as_object().cloned().unwrap();
        let marking = Marking { delta: 2.0, client_bias: ClientBias::Strip, logprobs: LogprobsAction::Refuse };
        apply(&mut fields, &l, marking).unwrap();
        let once = fields.clone();
        apply(&mut fields, &l, marking).unwrap();
        prop_assert_eq!(&once, &fields);
        let map = fields["logit_bias"].as_object().unwrap();
        prop_assert_eq!(map.len() as u32, l.green_count());
        prop_assert!(l.green_ids().all(|t| map.contains_key(&t.to_string())));
    }
}

#[test]
fn the_exact_tail_agrees_with_the_normal_one_for_large_n() {
    // Far from the edges the two p-values agree to a few percent.
    let n = 10_000u64;
    let k = 2_600u64; // z ≈ 2.31 at gamma 0.25
    let s = from_counts(k, n, 0.25);
    assert!((s.p_value / s.p_normal - 1.0).abs() < 0.1, "{s:?}");
    assert!(binomial_sf(k, n, 0.25) > 0.0);
}
