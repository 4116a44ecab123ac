//! Table tests and properties of the hunt.

use proptest::prelude::*;

use super::*;
use crate::sketch::sketch;
use crate::stats::SplitMix;

fn row(key: &str, tenant: &str, at_ms: i64, text: &str, fingerprint: u64) -> HuntRow {
    let s = sketch(text);
    HuntRow {
        at_ms,
        tenant: tenant.to_owned(),
        key: key.to_owned(),
        chars: s.chars,
        entropy_bits: s.entropy_bits,
        simhash: s.simhash,
        minhash: s.minhash,
        fingerprint,
    }
}

const WORDS: [&str; 24] = [
    "river", "market", "quantum", "violet", "ledger", "harbor", "cactus", "engine", "poem", "tax",
    "orbit", "salad", "kernel", "mirror", "glacier", "novel", "pixel", "tundra", "sonnet",
    "vector", "lantern", "canyon", "falcon", "meadow",
];

fn prose(rng: &mut SplitMix) -> String {
    let subjects = ["my dog", "the team", "our city", "a friend", "the garden"];
    let asks = [
        "Can you help me write a short note about",
        "What is a good way to plan",
        "Explain in simple words why",
        "Give me three ideas for",
    ];
    format!(
        "{} {} and the {} near the {}?",
        asks[rng.below(asks.len())],
        subjects[rng.below(subjects.len())],
        WORDS[rng.below(WORDS.len())],
        WORDS[rng.below(WORDS.len())]
    )
}

/// `users` people, each a few prompts spread over a day, distinct
/// fingerprints, tenants of ten keys.
fn people(users: usize, rng: &mut SplitMix) -> Vec<HuntRow> {
    let mut rows = Vec::new();
    for u in 0..users {
        let mut t = rng.below(40_000_000) as i64;
        for _ in 0..8 + rng.below(10) {
            rows.push(row(
                &format!("t{}/user-{u}", u / 10),
                &format!("t{}", u / 10),
                t,
                &prose(rng),
                1000 + u as u64,
            ));
            t += 60_000 + rng.below(1_800_000) as i64;
        }
    }
    rows
}

/// One campaign of perturbations fanned out over `keys` keys in lockstep.
fn perturbation_campaign(
    keys: usize,
    queries: usize,
    fingerprint: u64,
    rng: &mut SplitMix,
) -> Vec<HuntRow> {
    let mut rows = Vec::new();
    let mut seed = String::new();
    for q in 0..queries {
        if q % 8 == 0 {
            seed = (0..12)
                .map(|_| WORDS[rng.below(WORDS.len())])
                .collect::<Vec<_>>()
                .join(" ");
        }
        let mut words: Vec<&str> = seed.split(' ').collect();
        let i = rng.below(words.len());
        words[i] = WORDS[rng.below(WORDS.len())];
        let k = q % keys;
        rows.push(row(
            &format!("evil{}/k{k}", k % 3),
            &format!("evil{}", k % 3),
            50_000_000 + q as i64 * 700 + rng.below(300) as i64,
            &words.join(" "),
            fingerprint,
        ));
    }
    rows
}

fn run(rows: &[HuntRow], marks: &Marks) -> HuntReport {
    let config = HuntConfig::default();
    let mut set = ProfileSet::new();
    for r in rows {
        set.add(r, &config);
    }
    hunt(&set, marks, None, &config, 0)
}

#[test]
fn people_form_no_campaign_and_a_fanned_out_campaign_is_one() {
    let mut rng = SplitMix::new(7);
    let mut rows = people(200, &mut rng);
    let report = run(&rows, &Marks::default());
    assert!(report.campaigns.is_empty(), "{:?}", report.campaigns);

    rows.extend(perturbation_campaign(30, 900, 0, &mut rng));
    let report = run(&rows, &Marks::default());
    assert_eq!(report.campaigns.len(), 1, "{:?}", report.campaigns);
    let c = &report.campaigns[0];
    assert_eq!(c.key_count, 30);
    assert!(c.keys.iter().all(|k| k.starts_with("evil")));
    assert_eq!(c.tenants, vec!["evil0", "evil1", "evil2"]);
    let kinds: Vec<LinkKind> = c.evidence.iter().map(|e| e.kind).collect();
    assert!(
        kinds.contains(&LinkKind::Template) && kinds.contains(&LinkKind::Timing),
        "{kinds:?}"
    );
    assert_eq!(c.requests, 900);
}

/// `keys` keys sending `each` off-baseline texts (random words) every
/// `spacing_ms` in the same minutes, each with its own client and no shared template.
fn co_active_off_baseline(
    keys: i64,
    each: i64,
    spacing_ms: i64,
    rng: &mut SplitMix,
) -> Vec<HuntRow> {
    let vocab: Vec<String> = (0..400)
        .map(|i| format!("w{}x{}", i * 7919 % 1000, i % 13))
        .collect();
    let mut rows = Vec::new();
    for k in 0..keys {
        for i in 0..each {
            let n = 5 + rng.below(30);
            let text: Vec<&str> = (0..n)
                .map(|_| vocab[rng.below(vocab.len())].as_str())
                .collect();
            rows.push(row(
                &format!("r{k}/k"),
                &format!("r{k}"),
                i * spacing_ms + k * 1000,
                &text.join(" "),
                900 + k as u64,
            ));
        }
    }
    rows
}

#[test]
fn co_active_keys_off_the_baseline_the_same_way_are_a_campaign_and_people_are_not() {
    // Twelve keys send random words in the same minutes, each with its own
    // client and no shared template, among sixty people's day of prose.
    // Only the distribution group test can link the twelve.
    let mut rng = SplitMix::new(21);
    let mut rows = people(60, &mut rng);
    rows.extend(co_active_off_baseline(12, 25, 40_000, &mut rng));
    let report = run(&rows, &Marks::default());
    assert_eq!(report.campaigns.len(), 1, "{:?}", report.campaigns);
    let c = &report.campaigns[0];
    assert_eq!(c.key_count, 12);
    assert!(c.keys.iter().all(|k| k.starts_with('r')));
    let kinds: Vec<LinkKind> = c.evidence.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![LinkKind::Timing, LinkKind::Distribution]);
}

#[test]
fn heavy_keys_deviating_alike_are_left_to_the_per_key_detectors() {
    // Four batch jobs replaying the same kind of data in the same hours
    // deviate from the baseline alike: the group test's false positive on
    // the simulated benign day. Keys that heavy have filled their per-key
    // window many times, so the group test leaves them out; with the rule
    // off they would be a campaign on timing + distribution alone.
    let mut rng = SplitMix::new(33);
    let mut rows = people(400, &mut rng);
    rows.extend(co_active_off_baseline(4, 550, 2_000, &mut rng));
    let mut set = ProfileSet::new();
    let config = HuntConfig::default();
    for r in &rows {
        set.add(r, &config);
    }
    let report = hunt(&set, &Marks::default(), None, &config, 0);
    assert!(report.campaigns.is_empty(), "{:?}", report.campaigns);

    let off = HuntConfig {
        distribution_max_key_requests: u64::MAX,
        ..HuntConfig::default()
    };
    let report = hunt(&set, &Marks::default(), None, &off, 0);
    assert_eq!(report.campaigns.len(), 1, "{:?}", report.campaigns);
    assert_eq!(report.campaigns[0].key_count, 4);
}

#[test]
fn the_same_prompt_from_many_keys_is_not_a_template() {
    // Ten keys send the very same five prompts in the same minutes (a
    // shared evaluation set, a popular prompt): timing and exact copies,
    // which the template signal discounts, so nobody is linked.
    let mut rng = SplitMix::new(4);
    let prompts: Vec<String> = (0..5).map(|_| prose(&mut rng)).collect();
    let mut rows = Vec::new();
    for k in 0..10 {
        for (i, p) in prompts.iter().enumerate() {
            rows.push(row(
                &format!("t{k}/k"),
                &format!("t{k}"),
                i as i64 * 50_000 + k,
                p,
                300 + k as u64,
            ));
        }
    }
    let report = run(&rows, &Marks::default());
    assert!(report.campaigns.is_empty(), "{:?}", report.campaigns);
}

#[test]
fn one_signal_alone_links_nobody() {
    // Same fingerprint, different hours, unrelated prompts: fingerprint only.
    let mut rng = SplitMix::new(3);
    let rows: Vec<HuntRow> = (0..6)
        .flat_map(|k| {
            let texts: Vec<String> = (0..10).map(|_| prose(&mut rng)).collect();
            texts
                .into_iter()
                .enumerate()
                .map(move |(i, t)| {
                    row(
                        &format!("t/k{k}"),
                        "t",
                        k * 7_200_000 + i as i64 * 90_000,
                        &t,
                        42,
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(run(&rows, &Marks::default()).campaigns.is_empty());
}

#[test]
fn marks_carry_over_and_benign_keys_are_not_hunted() {
    let mut rng = SplitMix::new(11);
    let rows = perturbation_campaign(12, 600, 9, &mut rng);
    let first = run(&rows, &Marks::default());
    assert_eq!(first.campaigns.len(), 1);
    let c = &first.campaigns[0];
    let prior = |mark| Marks {
        prior: vec![PriorCampaign {
            id: "c-known".into(),
            keys: c.keys[..3].to_vec(),
            mark,
        }],
    };
    let confirmed = run(&rows, &prior(Some(Mark::Confirmed)));
    assert_eq!(confirmed.campaigns[0].id, "c-known");
    assert_eq!(confirmed.campaigns[0].mark, Some(Mark::Confirmed));

    let benign = run(&rows, &prior(Some(Mark::Benign)));
    assert_eq!(benign.benign_keys, 3);
    assert_eq!(benign.campaigns[0].key_count, 9);
    for k in &c.keys[..3] {
        assert!(!benign.campaigns[0].keys.contains(k));
    }
}

#[test]
fn a_generic_fingerprint_links_nobody() {
    // 20 tenants share one fingerprint and are active in the same minutes,
    // sending unrelated prose: timing + a generic fingerprint is one signal.
    let mut rng = SplitMix::new(5);
    let mut rows = Vec::new();
    for k in 0..20 {
        for i in 0..20 {
            rows.push(row(
                &format!("t{k}/k"),
                &format!("t{k}"),
                i * 30_000 + k,
                &prose(&mut rng),
                77,
            ));
        }
    }
    let report = run(&rows, &Marks::default());
    assert!(
        report
            .campaigns
            .iter()
            .all(|c| !c.evidence.iter().any(|e| e.kind == LinkKind::Fingerprint)),
        "{:?}",
        report.campaigns
    );
}

#[test]
fn oversized_buckets_are_chained_not_expanded() {
    // One lockstep campaign sharing a fingerprint: every bucket is
    // oversized. Twice the keys cost about twice the pairs (not four
    // times), and the campaign stays whole.
    let campaign = |keys: usize| {
        let mut rows = Vec::new();
        for k in 0..keys {
            for i in 0..6 {
                rows.push(row(
                    &format!("x/k{k}"),
                    "x",
                    i * 60_000 + k as i64,
                    &format!("query {k} {i}"),
                    5,
                ));
            }
        }
        run(&rows, &Marks::default())
    };
    let small = campaign(300);
    let large = campaign(600);
    assert!(
        large.pairs_scored * 2 <= small.pairs_scored * 5,
        "{} then {}",
        small.pairs_scored,
        large.pairs_scored
    );
    assert_eq!(large.campaigns.len(), 1);
    assert_eq!(large.campaigns[0].key_count, 600);
    assert_eq!(large.campaigns[0].listed(200).keys.len(), 200);
}

fn shuffled(rows: &[HuntRow], seed: u64) -> Vec<HuntRow> {
    let mut rng = SplitMix::new(seed);
    let mut out = rows.to_vec();
    for i in (1..out.len()).rev() {
        let j = rng.below(i + 1);
        out.swap(i, j);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn order_of_rows_does_not_matter(seed in 0u64..1000, keys in 3usize..25) {
        let mut rng = SplitMix::new(seed);
        let mut rows = people(30, &mut rng);
        rows.extend(perturbation_campaign(keys, keys * 20, seed % 3, &mut rng));
        let a = run(&rows, &Marks::default());
        let b = run(&shuffled(&rows, seed ^ 0xff), &Marks::default());
        prop_assert_eq!(a, b);
    }

    #[test]
    fn campaigns_are_disjoint_bounded_and_big_enough(seed in 0u64..1000, keys in 3usize..40) {
        let mut rng = SplitMix::new(seed);
        let mut rows = people(40, &mut rng);
        rows.extend(perturbation_campaign(keys, keys * 15, 0, &mut rng));
        rows.extend(perturbation_campaign(keys / 2 + 3, 200, 1, &mut rng).into_iter().map(|mut r| { r.key = format!("{}-b", r.key); r.at_ms += 3_600_000; r }));
        let config = HuntConfig { top_k: 5, max_listed_keys: 7, ..HuntConfig::default() };
        let mut set = ProfileSet::new();
        for r in &rows { set.add(r, &config); }
        let report = hunt(&set, &Marks::default(), None, &config, 0);
        prop_assert!(report.campaigns.len() <= 5);
        let mut seen = BTreeSet::new();
        for c in &report.campaigns {
            prop_assert!(c.key_count >= config.min_keys);
            prop_assert!(c.listed(config.max_listed_keys).keys.len() <= 7);
            prop_assert_eq!(c.keys.len(), c.key_count);
            for k in &c.keys { prop_assert!(seen.insert(k.clone()), "key {} in two campaigns", k); }
        }
    }

    #[test]
    fn benign_marked_keys_never_appear(seed in 0u64..1000, marked in 1usize..10) {
        let mut rng = SplitMix::new(seed);
        let rows = perturbation_campaign(15, 400, 2, &mut rng);
        let keys: Vec<String> = (0..marked).map(|k| format!("evil{}/k{k}", k % 3)).collect();
        let marks = Marks { prior: vec![PriorCampaign { id: "b".into(), keys: keys.clone(), mark: Some(Mark::Benign) }] };
        let report = run(&rows, &marks);
        for c in &report.campaigns {
            for k in &keys { prop_assert!(!c.keys.contains(k)); }
        }
    }
}
