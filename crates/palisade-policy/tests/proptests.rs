//! Property tests: `decide` is total and its enforced action is the most severe triggered
//! one; `version()` does not depend on how the TOML is laid out.

use std::collections::{BTreeMap, BTreeSet};

use palisade_policy::{
    Action, AssignSpec, Category, ContextSpec, DetectorKind, Effect, Evidence, Gate, InputSpec,
    LinksSpec, OutputSpec, PolicyDocument, RuleAction, RuleSpec, SaturationMode, Snapshot,
    Spotlight, Subject, TierSpec,
};
use proptest::prelude::*;
use proptest::sample::select;

// ---------------------------------------------------------------------------------------
// Generators: small valid documents.
// ---------------------------------------------------------------------------------------

/// A valid `(action, shadow_action)` pair for `d`; `quarantine` only where the gate has
/// untrusted segments to quarantine (the context gate).
fn rule_action(
    d: DetectorKind,
    quarantine_ok: bool,
) -> impl Strategy<Value = (RuleAction, Option<Action>)> {
    let allowed: Vec<Action> = d
        .allowed_actions()
        .iter()
        .copied()
        .filter(|a| quarantine_ok || *a != Action::Quarantine)
        .collect();
    prop_oneof![
        3 => select(allowed.clone()).prop_map(|a| (RuleAction::from(a), None)),
        1 => proptest::option::of(select(allowed)).prop_map(|s| (RuleAction::Shadow, s)),
    ]
}

/// A rule for `d` outside the context gate.
fn rule(d: DetectorKind) -> impl Strategy<Value = Option<RuleSpec>> {
    rule_at(d, false)
}

/// A rule for `d`: with a threshold exactly when `d` is scored.
fn rule_at(d: DetectorKind, quarantine_ok: bool) -> impl Strategy<Value = Option<RuleSpec>> {
    let threshold = if d.is_scored() {
        (0.0..=1.0f64).prop_map(Some).boxed()
    } else {
        Just(None).boxed()
    };
    proptest::option::of((threshold, rule_action(d, quarantine_ok)).prop_map(
        |(threshold, (action, shadow_action))| RuleSpec {
            threshold,
            action,
            shadow_action,
        },
    ))
}

fn tier_spec() -> impl Strategy<Value = TierSpec> {
    use DetectorKind as D;
    let input = (
        rule(D::Injection),
        rule(D::Jailbreak),
        rule(D::Harmful),
        rule(D::Secrets),
        rule(D::Pii),
    )
        .prop_map(|(injection, jailbreak, harmful, secrets, pii)| InputSpec {
            injection,
            jailbreak,
            harmful,
            secrets,
            pii,
            // Role rules are covered by unit tests; the renderer writes flat gate tables.
            roles: BTreeMap::new(),
        });
    let context = (
        rule_at(D::Injection, true),
        rule(D::Secrets),
        rule(D::Pii),
        rule(D::HiddenMarkup),
        select(vec![Spotlight::Off, Spotlight::Datamark, Spotlight::Base64]),
    )
        .prop_map(
            |(injection, secrets, pii, hidden_markup, spotlight)| ContextSpec {
                injection,
                secrets,
                pii,
                hidden_markup,
                spotlight,
            },
        );
    let output = (
        (rule(D::Secrets), rule(D::Pii), rule(D::Canary)),
        (rule(D::Links), rule(D::HiddenMarkup), rule(D::Schema)),
        any::<bool>(),
    )
        .prop_map(
            |((secrets, pii, canary), (links, hidden_markup, schema), canaries)| OutputSpec {
                secrets,
                pii,
                canary,
                links,
                hidden_markup,
                schema,
                canaries,
            },
        );
    (input, context, output, any::<bool>()).prop_map(|(input, context, output, degrade)| TierSpec {
        input,
        context,
        output,
        tool: None,
        on_detector_saturated: if degrade {
            SaturationMode::Degrade
        } else {
            SaturationMode::Closed
        },
    })
}

const TIER_NAMES: [&str; 3] = ["standard", "high", "low-risk"];
const GLOBS: [&str; 5] = ["acme", "acme*", "*", "*-prod", "gpt-4o*"];
const DOMAINS: [&str; 4] = [
    "example.com",
    "*.docs.example.com",
    "cdn.example.net",
    "xn--bcher-kva.de",
];

fn document() -> impl Strategy<Value = PolicyDocument> {
    let tiers = proptest::collection::vec(tier_spec(), 1..=3);
    let assign = proptest::collection::vec(
        (
            0usize..3,
            proptest::option::of(select(GLOBS.to_vec())),
            proptest::option::of(select(GLOBS.to_vec())),
            select(GLOBS.to_vec()),
        ),
        0..3,
    );
    (
        "[a-z0-9 ]{0,12}",
        tiers,
        0usize..3,
        proptest::sample::subsequence(DOMAINS.to_vec(), 0..=DOMAINS.len()),
        assign,
    )
        .prop_map(|(label, tiers, default, domains, assign)| {
            let n = tiers.len();
            let name = |i: usize| TIER_NAMES[i % n].to_owned();
            PolicyDocument {
                label,
                default_tier: name(default),
                tiers: tiers
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| (name(i), t))
                    .collect(),
                links: LinksSpec {
                    allowed_domains: domains.into_iter().map(str::to_owned).collect(),
                },
                // The model glob is always present, so no entry is selector-less.
                assign: assign
                    .into_iter()
                    .map(|(tier, tenant, route, model)| AssignSpec {
                        tenant: tenant.map(str::to_owned),
                        route: route.map(str::to_owned),
                        model: Some(model.to_owned()),
                        tier: name(tier),
                    })
                    .collect(),
                tools: BTreeMap::new(),
            }
        })
}

fn evidence() -> impl Strategy<Value = Evidence> {
    let counts = || proptest::collection::btree_map("[a-z-]{1,12}", 0u32..3, 0..3);
    let category = select(vec![
        Category::None,
        Category::Injection,
        Category::Jailbreak,
        Category::IndirectInjection,
        Category::HarmfulRequest,
        Category::Secret,
        Category::Pii,
        Category::CanaryLeak,
        Category::Other,
    ]);
    (
        prop_oneof![proptest::num::f32::ANY, 0.0f32..=1.0],
        category,
        counts(),
        counts(),
        (any::<bool>(), 0u32..3, any::<bool>()),
        proptest::option::of("[a-z/0-9: ]{0,20}"),
    )
        .prop_map(
            |(
                injection_score,
                category,
                secrets,
                pii,
                (canary_leaked, disallowed_links, hidden_markup),
                schema_violation,
            )| {
                Evidence {
                    injection_score,
                    category,
                    detector_reasons: Vec::new(),
                    secrets,
                    pii,
                    canary_leaked,
                    disallowed_links,
                    hidden_markup,
                    schema_violation,
                    role: None,
                    tool: None,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------
// decide
// ---------------------------------------------------------------------------------------

/// The detectors whose evidence is present, from the evidence alone (independently of how
/// `decide` evaluates rules). The score detectors are added per rule below.
fn present_events(e: &Evidence) -> BTreeSet<DetectorKind> {
    let mut s = BTreeSet::new();
    let pairs = [
        (DetectorKind::Secrets, e.secret_count() > 0),
        (DetectorKind::Pii, e.pii_count() > 0),
        (DetectorKind::Canary, e.canary_leaked),
        (DetectorKind::Links, e.disallowed_links > 0),
        (DetectorKind::HiddenMarkup, e.hidden_markup),
        (DetectorKind::Schema, e.schema_violation.is_some()),
        (
            DetectorKind::Harmful,
            e.category == Category::HarmfulRequest,
        ),
    ];
    s.extend(pairs.into_iter().filter(|p| p.1).map(|p| p.0));
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decide_is_total_and_enforces_the_max(
        doc in document(),
        e in evidence(),
        gate in select(Gate::ALL.to_vec()),
        tenant in prop_oneof![select(GLOBS.to_vec()).prop_map(str::to_owned), ".{0,8}"],
        model in prop_oneof![select(GLOBS.to_vec()).prop_map(str::to_owned), ".{0,8}"],
    ) {
        let snap = Snapshot::compile(doc).expect("generated documents are valid");
        let subject = Subject { tenant: &tenant, route: "chat", model: &model };
        let d = snap.decide(gate, &subject, &e);

        // Oracle: which rules of the chosen tier trigger, and the max of their actions.
        let tier = snap.tier_for(&subject);
        prop_assert_eq!(&d.tier, tier.name());
        let gp = tier.gate(gate);
        let score = if e.injection_score.is_nan() { 1.0 } else { e.injection_score.clamp(0.0, 1.0) };
        let attack_rule = if e.category == Category::Jailbreak && gp.rule(DetectorKind::Jailbreak).is_some() {
            DetectorKind::Jailbreak
        } else {
            DetectorKind::Injection
        };
        let events = present_events(&e);
        let mut enforced = Action::Allow;
        let mut shadowed: Option<Action> = None;
        for (det, rule) in gp.rules() {
            let fires = events.contains(&det)
                || (det == attack_rule && rule.threshold.is_some_and(|t| score >= t));
            if !fires { continue; }
            match rule.effect {
                Effect::Enforce(a) => enforced = enforced.max(a),
                Effect::Shadow(a) => shadowed = Some(shadowed.unwrap_or(a).max(a)),
            }
        }
        prop_assert_eq!(d.enforced_action, enforced);
        prop_assert_eq!(d.shadowed, shadowed);
        prop_assert_eq!(d.action, enforced.max(shadowed.unwrap_or(Action::Allow)));
        prop_assert_eq!(d.reasons.is_empty(), enforced == Action::Allow);
        prop_assert_eq!(d.shadow_reasons.is_empty(), shadowed.is_none());
        prop_assert!(d.scores.injection.is_finite());
        prop_assert_eq!(d.policy_version, snap.version());
    }

    #[test]
    fn builtin_decide_never_panics(e in evidence(), gate in select(Gate::ALL.to_vec()), tenant in ".{0,16}") {
        let snap = Snapshot::builtin();
        let d = snap.decide(gate, &Subject { tenant: &tenant, route: "", model: "" }, &e);
        prop_assert!(d.enforced_action <= d.action);
    }

    #[test]
    fn version_ignores_layout(doc in document(), seed_a in any::<u64>(), seed_b in any::<u64>()) {
        let direct = Snapshot::compile(doc.clone()).expect("generated documents are valid");
        let (a, b) = (render(&doc, seed_a), render(&doc, seed_b));
        let sa = Snapshot::from_toml(&a).map_err(|e| TestCaseError::fail(format!("{e}\n{a}")))?;
        let sb = Snapshot::from_toml(&b).map_err(|e| TestCaseError::fail(format!("{e}\n{b}")))?;
        prop_assert_eq!(sa.version(), direct.version(), "\n{}", a);
        prop_assert_eq!(sb.version(), direct.version(), "\n{}", b);
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = Snapshot::from_toml(&text);
    }
}

// ---------------------------------------------------------------------------------------
// A TOML renderer that shuffles everything order-insensitive.
// ---------------------------------------------------------------------------------------

/// A tiny deterministic PRNG (SplitMix64) so that a failing case reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// A scalar as TOML: strings quoted, floats sometimes with a trailing zero (0.9 vs 0.90).
fn scalar(v: &serde_json::Value, rng: &mut Rng) -> String {
    match v.as_f64() {
        Some(f) => {
            // `{:?}` is the shortest representation that reads back to the same f64.
            let mut s = format!("{f:?}");
            // A zero after an exponent would change the value (e-5 → e-50).
            if rng.coin() && s.contains('.') && !s.contains(['e', 'E']) {
                s.push('0');
            }
            s
        }
        None => v.to_string(),
    }
}

/// True for the values a document may leave out (`spotlight = "off"`, `canaries = false`).
fn is_default(v: &serde_json::Value) -> bool {
    v == "off" || v == false
}

/// The lines of one gate table: rules as inline tables or dotted keys, with their fields
/// shuffled, default settings sometimes left out, all lines shuffled.
fn gate_lines(gate: &serde_json::Map<String, serde_json::Value>, rng: &mut Rng) -> Vec<String> {
    let mut lines = Vec::new();
    for (key, value) in gate {
        let Some(fields) = value.as_object() else {
            if !is_default(value) || rng.coin() {
                lines.push(format!("{key} = {}", scalar(value, rng)));
            }
            continue;
        };
        let mut fields: Vec<(&String, String)> =
            fields.iter().map(|(k, v)| (k, scalar(v, rng))).collect();
        rng.shuffle(&mut fields);
        if rng.coin() {
            let inner: Vec<String> = fields.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            lines.push(format!("{key} = {{ {} }}", inner.join(", ")));
        } else {
            lines.extend(fields.iter().map(|(k, v)| format!("{key}.{k} = {v}")));
        }
    }
    rng.shuffle(&mut lines);
    lines
}

/// Renders `doc` as TOML with tables, keys and domains in a seed-dependent order, rules
/// as inline tables or sub-tables, defaults sometimes spelled out, comments sprinkled in.
fn render(doc: &PolicyDocument, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut top = vec![
        format!("label = {:?}", doc.label),
        format!("default_tier = {:?}", doc.default_tier),
    ];
    rng.shuffle(&mut top);
    let mut blocks: Vec<String> = Vec::new();
    for (name, tier) in &doc.tiers {
        // The default may be written out or left implicit: same version either way.
        if !tier.on_detector_saturated.is_closed() || rng.coin() {
            blocks.push(format!(
                "[tiers.{name}]\non_detector_saturated = {:?}\n",
                tier.on_detector_saturated.as_str()
            ));
        }
        let tier = serde_json::to_value(tier).expect("tier serializes");
        // The tool gate is settings, not rules, and the generator leaves it out.
        for gate in [Gate::Input, Gate::Context, Gate::Output] {
            let table = tier[gate.as_str()].as_object().expect("gate is a table");
            let mut lines = gate_lines(table, &mut rng);
            if rng.coin() {
                lines.push("# a comment".to_owned());
            }
            blocks.push(format!("[tiers.{name}.{gate}]\n{}\n", lines.join("\n")));
        }
    }
    let mut domains = doc.links.allowed_domains.clone();
    rng.shuffle(&mut domains);
    let domains: Vec<String> = domains
        .iter()
        .map(|d| {
            if rng.coin() {
                d.to_ascii_uppercase()
            } else {
                d.clone()
            }
        })
        .map(|d| format!("{d:?}"))
        .collect();
    blocks.push(format!(
        "[links]\nallowed_domains = [{}]\n",
        domains.join(", ")
    ));
    rng.shuffle(&mut blocks);
    // Array-of-tables entries keep their relative order (it is their precedence).
    for a in &doc.assign {
        let mut fields: Vec<String> = [
            ("tenant", &a.tenant),
            ("route", &a.route),
            ("model", &a.model),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} = {v:?}")))
        .collect();
        fields.push(format!("tier = {:?}", a.tier));
        rng.shuffle(&mut fields);
        blocks.push(format!("[[assign]]\n{}\n", fields.join("\n")));
    }
    format!("{}\n\n{}", top.join("\n"), blocks.join("\n"))
}

#[test]
fn renderer_round_trips_a_fixed_document() {
    let doc = PolicyDocument {
        label: "x".into(),
        default_tier: "standard".into(),
        tiers: BTreeMap::from([("standard".to_owned(), TierSpec::default())]),
        links: LinksSpec::default(),
        assign: vec![],
        tools: BTreeMap::new(),
    };
    let text = render(&doc, 7);
    assert_eq!(PolicyDocument::from_toml(&text).unwrap(), doc, "{text}");
}
