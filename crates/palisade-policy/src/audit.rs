//! Audit records (one JSON line per gate decision) and [`simulate`]: re-judging recorded
//! evidence under a candidate policy before rolling it out.
//!
//! A record holds identifiers, scores, rule names, codes and counts; never prompt,
//! completion or document text, and never a secret (the evidence carries a secret's rule
//! name and count, not its value).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use crate::decide::Decision;
use crate::error::PolicyError;
use crate::evidence::Evidence;
use crate::snapshot::{Snapshot, Subject};
use crate::types::{Action, Gate, ReasonCode};
use crate::version::PolicyVersion;

/// What a shadow policy (a candidate snapshot evaluated next to the live one, not enforced)
/// would have decided for the same evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowOutcome {
    /// The shadow snapshot's version.
    pub policy_version: PolicyVersion,
    /// Its enforced action, had it been live.
    pub action: Action,
    /// Its reasons.
    #[serde(default)]
    pub reasons: Vec<ReasonCode>,
}

impl From<&Decision> for ShadowOutcome {
    fn from(d: &Decision) -> Self {
        ShadowOutcome {
            policy_version: d.policy_version,
            action: d.enforced_action,
            reasons: d.reasons.clone(),
        }
    }
}

/// The request-level fields of an audit record, which the policy does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditContext<'a> {
    /// Unix time of the decision in milliseconds (the caller's clock).
    pub ts_ms: u64,
    /// The gateway-minted request id.
    pub request_id: &'a str,
    /// Who the request was for.
    pub subject: Subject<'a>,
    /// Time spent detecting and deciding at this gate, in microseconds.
    pub latency_us: u64,
}

/// One gate decision, as written to the audit log (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix time of the decision in milliseconds.
    pub ts_ms: u64,
    /// The gateway-minted request id.
    pub request_id: String,
    /// Tenant id.
    pub tenant: String,
    /// Route.
    pub route: String,
    /// Upstream model.
    pub model: String,
    /// The gate.
    pub gate: Gate,
    /// The tier that applied.
    pub tier: String,
    /// The live snapshot's version.
    pub policy_version: PolicyVersion,
    /// What was found (scores, rule names, counts).
    pub evidence: Evidence,
    /// The enforced action.
    pub action: Action,
    /// Its reasons.
    #[serde(default)]
    pub reasons: Vec<ReasonCode>,
    /// Time spent detecting and deciding at this gate, in microseconds.
    pub latency_us: u64,
    /// What a shadow policy would have decided, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowOutcome>,
    /// Why the evidence is less than the full cascade's, when it is: `detector_saturated`
    /// (the detection pool was full and the tier degrades to the first stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

impl AuditRecord {
    /// The record of `decision`, taken on `evidence`.
    pub fn new(ctx: &AuditContext<'_>, evidence: Evidence, decision: &Decision) -> AuditRecord {
        AuditRecord {
            ts_ms: ctx.ts_ms,
            request_id: ctx.request_id.to_owned(),
            tenant: ctx.subject.tenant.to_owned(),
            route: ctx.subject.route.to_owned(),
            model: ctx.subject.model.to_owned(),
            gate: decision.gate,
            tier: decision.tier.as_str().to_owned(),
            policy_version: decision.policy_version,
            evidence,
            action: decision.enforced_action,
            reasons: decision.reasons.clone(),
            latency_us: ctx.latency_us,
            shadow: None,
            degraded: None,
        }
    }

    /// Marks the record as decided on degraded evidence, with the reason code.
    pub fn with_degraded(mut self, reason: &str) -> AuditRecord {
        self.degraded = Some(reason.to_owned());
        self
    }

    /// Adds what a shadow policy decided for the same evidence.
    pub fn with_shadow(mut self, shadow: &Decision) -> AuditRecord {
        self.shadow = Some(ShadowOutcome::from(shadow));
        self
    }

    /// The subject the record was decided for.
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            tenant: &self.tenant,
            route: &self.route,
            model: &self.model,
        }
    }

    /// One JSON line, without the trailing newline. U+0085, U+2028 and U+2029 (which
    /// only a string value can hold: a model name, a tool name) are written as `\uXXXX`
    /// escapes: the same JSON to any parser, and no reader that breaks lines on them
    /// (Python's `splitlines`, some log viewers) can split a record.
    pub fn to_json_line(&self) -> Result<String, PolicyError> {
        serde_json::to_string(self)
            .map(escape_unicode_line_breaks)
            .map_err(PolicyError::AuditRecord)
    }

    /// Reads one JSON line. Unknown fields are ignored, so newer records stay readable.
    pub fn from_json_line(line: &str) -> Result<AuditRecord, PolicyError> {
        serde_json::from_str(line).map_err(PolicyError::AuditRecord)
    }
}

/// `json` (serialized JSON) with U+0085, U+2028 and U+2029 as `\uXXXX` escapes. In
/// `serde_json`'s output those characters can only stand inside strings, where the
/// escape means the same character.
pub fn escape_unicode_line_breaks(json: String) -> String {
    // U+0085 is C2 85, U+2028/9 are E2 80 A8/A9: nothing to do without C2 or E2.
    if !json.bytes().any(|b| b == 0xc2 || b == 0xe2) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 12);
    for c in json.chars() {
        match c {
            '\u{85}' => out.push_str("\\u0085"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A record whose enforced action changes under the simulated policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    /// The record's request id.
    pub request_id: String,
    /// The record's gate.
    pub gate: Gate,
    /// The recorded action.
    pub old_action: Action,
    /// The action under the simulated policy.
    pub new_action: Action,
    /// The reasons under the simulated policy.
    pub new_reasons: Vec<ReasonCode>,
}

/// What a candidate policy would have changed over a set of audit records.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SimulationReport {
    /// Records re-decided.
    pub total: u64,
    /// Records whose enforced action changes, in input order.
    pub changed: Vec<Changed>,
    /// Every record counted by `(old action, new action)`, unchanged ones included, so the
    /// counts add up to `total`. Serialized as a list of `{old, new, count}`.
    #[serde(serialize_with = "serialize_transitions")]
    pub by_transition: BTreeMap<(Action, Action), u64>,
}

fn serialize_transitions<S: Serializer>(
    map: &BTreeMap<(Action, Action), u64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Transition {
        old: Action,
        new: Action,
        count: u64,
    }
    s.collect_seq(
        map.iter()
            .map(|(&(old, new), &count)| Transition { old, new, count }),
    )
}

/// Re-decides each record from its stored evidence, gate and subject under `new`, and
/// compares with the recorded (enforced) action.
pub fn simulate(
    new: &Snapshot,
    records: impl IntoIterator<Item = AuditRecord>,
) -> SimulationReport {
    let mut report = SimulationReport::default();
    for r in records {
        let d = match r.gate {
            Gate::Tool => new.decide_tool(&r.subject(), &r.evidence),
            gate => new.decide(gate, &r.subject(), &r.evidence),
        };
        report.total += 1;
        *report
            .by_transition
            .entry((r.action, d.enforced_action))
            .or_insert(0) += 1;
        if d.enforced_action != r.action {
            report.changed.push(Changed {
                request_id: r.request_id,
                gate: r.gate,
                old_action: r.action,
                new_action: d.enforced_action,
                new_reasons: d.reasons,
            });
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hostile model name (a wildcard route takes it from the client) with every kind
    /// of line break: the record stays one line for any reader and reads back the same.
    #[test]
    fn no_value_breaks_a_record_line() {
        let model = "m\n\r\u{85}\u{2028}\u{2029}\u{0}\"}\n{\"action\":\"allow\"";
        let record = AuditRecord {
            ts_ms: 1,
            request_id: "r".into(),
            tenant: "t\u{2028}".into(),
            route: "chat".into(),
            model: model.into(),
            gate: Gate::Input,
            tier: "standard".into(),
            policy_version: "sha256:0123456789abcdef".parse().unwrap(),
            evidence: Evidence {
                schema_violation: Some("/a\u{2029}b: required".into()),
                ..Evidence::default()
            },
            action: Action::Block,
            reasons: Vec::new(),
            latency_us: 0,
            shadow: None,
            degraded: None,
        };
        let line = record.to_json_line().unwrap();
        assert!(
            !line.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']),
            "{line}"
        );
        assert!(
            line.contains(r#"m\n\r\u0085\u2028\u2029\u0000\"}\n{\"action"#),
            "{line}"
        );
        assert_eq!(AuditRecord::from_json_line(&line).unwrap(), record);
        let plain = AuditRecord {
            model: "gpt-4o".into(),
            tenant: "t".into(),
            evidence: Evidence::default(),
            ..record
        };
        // Without those characters: serde_json's bytes, unchanged.
        assert_eq!(
            plain.to_json_line().unwrap(),
            serde_json::to_string(&plain).unwrap()
        );
    }

    #[test]
    fn escaping_keeps_other_non_ascii_text() {
        let s = serde_json::to_string("é ✓ 😀 \u{2027}\u{202a}").unwrap();
        assert_eq!(escape_unicode_line_breaks(s.clone()), s);
    }
}
