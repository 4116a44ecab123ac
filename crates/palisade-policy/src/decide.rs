//! [`Snapshot::decide`]: evidence in, [`Decision`] out. On the request path: no allocation
//! unless a rule triggers (then one small `Vec`), no hashing, no locks.

use serde::{Deserialize, Serialize};

use crate::evidence::{Category, Evidence};
use crate::snapshot::{Effect, GatePolicy, Rule, Snapshot, Subject, TierName};
use crate::types::{Action, DetectorKind, Gate, ReasonCode};
use crate::version::PolicyVersion;

/// The scores a decision was taken on, as the policy saw them (after NaN and clamping).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Scores {
    /// The injection score compared with thresholds.
    pub injection: f32,
}

/// What the policy decided at one gate, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The gate decided.
    pub gate: Gate,
    /// The tier that applied.
    pub tier: TierName,
    /// What the policy would do had its shadow rules been enforced too:
    /// `max(enforced_action, shadowed)`. For reporting a shadow rollout; **act on
    /// [`enforced_action`](Decision::enforced_action)**.
    pub action: Action,
    /// What the gateway must do: the most severe action of the triggered enforced rules
    /// (`block > redact > flag > allow`); `allow` when none triggered.
    pub enforced_action: Action,
    /// The reason codes of the triggered enforced rules (`allow` rules excluded), in
    /// detector order: attacks first.
    pub reasons: Vec<ReasonCode>,
    /// The most severe `shadow_action` of the triggered shadow rules, if any triggered.
    pub shadowed: Option<Action>,
    /// The reason codes of the triggered shadow rules.
    pub shadow_reasons: Vec<ReasonCode>,
    /// The snapshot that decided.
    pub policy_version: PolicyVersion,
    /// The scores the decision was taken on.
    pub scores: Scores,
}

impl Decision {
    /// `allow` at `gate` with no reasons: where every decision starts.
    pub(crate) fn allow(gate: Gate, tier: &TierName, version: PolicyVersion) -> Decision {
        Decision {
            gate,
            tier: tier.clone(),
            action: Action::Allow,
            enforced_action: Action::Allow,
            reasons: Vec::new(),
            shadowed: None,
            shadow_reasons: Vec::new(),
            policy_version: version,
            scores: Scores::default(),
        }
    }
}

/// True when the rule of `detector` triggers on `e`. `score` is [`Evidence::score`].
fn triggered(
    detector: DetectorKind,
    rule: &Rule,
    gate: &GatePolicy,
    score: f32,
    e: &Evidence,
) -> bool {
    let over_threshold = rule.threshold.is_none_or(|t| score >= t);
    match detector {
        // One score covers both attack kinds; the category routes it. A jailbreak is judged
        // by the jailbreak rule when the gate has one, by the injection rule otherwise (an
        // attack is an attack). Any other category, `none` included, goes to injection: a
        // policy threshold below the detector's flag threshold sees scores the detector
        // did not categorize.
        DetectorKind::Injection => {
            over_threshold
                && !(e.category == Category::Jailbreak
                    && gate.rule(DetectorKind::Jailbreak).is_some())
        }
        DetectorKind::Jailbreak => over_threshold && e.category == Category::Jailbreak,
        DetectorKind::Harmful => e.category == Category::HarmfulRequest,
        DetectorKind::Secrets => e.secrets.values().any(|&n| n > 0),
        DetectorKind::Pii => e.pii.values().any(|&n| n > 0),
        DetectorKind::Canary => e.canary_leaked,
        DetectorKind::Links => e.disallowed_links > 0,
        DetectorKind::HiddenMarkup => e.hidden_markup,
        DetectorKind::Schema => e.schema_violation.is_some(),
    }
}

impl Snapshot {
    /// Judges `evidence` found at `gate` for `subject` under this policy. Total: never
    /// panics, whatever the evidence (NaN scores count as 1.0).
    pub fn decide(&self, gate: Gate, subject: &Subject<'_>, evidence: &Evidence) -> Decision {
        let tier = self.tier_for(subject);
        let policy = tier.gate(gate);
        let score = evidence.score();
        let mut d = Decision::allow(gate, tier.name(), self.version());
        d.scores = Scores { injection: score };
        // Text of a role with its own scored rules is judged by those; every other detector
        // by the gate's rules.
        let scored = evidence
            .role
            .and_then(|r| policy.role_rules(r))
            .unwrap_or(policy);
        for detector in DetectorKind::ALL {
            let rules = if detector.is_scored() { scored } else { policy };
            let Some(rule) = rules.rule(detector) else {
                continue;
            };
            if !triggered(detector, rule, rules, score, evidence) {
                continue;
            }
            let reason = detector.reason(gate);
            match rule.effect {
                // An allow rule that triggers explains nothing: it is the same as no rule.
                Effect::Enforce(Action::Allow) => {}
                Effect::Enforce(a) => {
                    d.enforced_action = d.enforced_action.max(a);
                    d.reasons.push(reason);
                }
                Effect::Shadow(a) => {
                    d.shadowed = Some(d.shadowed.map_or(a, |s| s.max(a)));
                    d.shadow_reasons.push(reason);
                }
            }
        }
        d.action = d.enforced_action.max(d.shadowed.unwrap_or(Action::Allow));
        d
    }
}
