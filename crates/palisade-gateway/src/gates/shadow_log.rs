//! How often the shadow policy disagrees with the active one, on this
//! replica: counts per gate and per change of action (`allow → block`…),
//! and the most recent disagreements as examples (`GET /admin/policy/shadow`,
//! the console's Policy page).
//!
//! Fed from every audit record that carries a shadow outcome, so it sees
//! exactly what the audit log sees. The counts start over when the pair
//! (active version, shadow version) changes: a disagreement rate only
//! means something for one pair of policies.
//!
//! Must not: grow with traffic (a fixed ring of [`MAX_EXAMPLES`], the
//! client's model name cut to [`MAX_TEXT`] characters), hold any text that
//! was judged (records carry reason codes, never prompts), or block the
//! request path beyond one short lock.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use palisade_policy::{AuditRecord, PolicyVersion};
use serde::Serialize;

/// Examples kept: enough to see a pattern on one screen, small enough that
/// a flood of divergent requests costs a fixed few kilobytes.
pub(crate) const MAX_EXAMPLES: usize = 50;
/// Longest tenant or model name kept in an example (the model is the
/// client's text).
pub(crate) const MAX_TEXT: usize = 128;

/// One disagreement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Divergence {
    pub(crate) ts_ms: u64,
    pub(crate) request_id: String,
    pub(crate) tenant: String,
    pub(crate) model: String,
    pub(crate) gate: &'static str,
    /// The active policy's enforced action and reasons.
    pub(crate) active_action: &'static str,
    pub(crate) active_reasons: Vec<String>,
    /// What the shadow would have enforced, and why.
    pub(crate) shadow_action: &'static str,
    pub(crate) shadow_reasons: Vec<String>,
}

/// Counts for one gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct GateCounts {
    pub(crate) evaluated: u64,
    pub(crate) diverged: u64,
}

/// What `/admin/policy/shadow` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct ShadowReport {
    /// The pair being compared (`None` before the first shadowed decision).
    pub(crate) active_version: Option<String>,
    pub(crate) shadow_version: Option<String>,
    /// When counting started for this pair (Unix ms).
    pub(crate) since_ms: Option<u64>,
    pub(crate) evaluated: u64,
    pub(crate) diverged: u64,
    pub(crate) by_gate: BTreeMap<&'static str, GateCounts>,
    /// `"allow→block"` → count.
    pub(crate) by_change: BTreeMap<String, u64>,
    /// Newest first.
    pub(crate) recent: Vec<Divergence>,
}

#[derive(Debug, Default)]
struct Inner {
    pair: Option<(PolicyVersion, PolicyVersion)>,
    report: ShadowReport,
    recent: VecDeque<Divergence>,
}

/// The divergence counters and example ring.
#[derive(Debug, Default)]
pub(crate) struct ShadowLog {
    inner: Mutex<Inner>,
}

fn cut(text: &str) -> String {
    text.chars().take(MAX_TEXT).collect()
}

fn codes<T: Serialize>(reasons: &[T]) -> Vec<String> {
    reasons
        .iter()
        .filter_map(|r| match serde_json::to_value(r) {
            Ok(serde_json::Value::String(s)) => Some(s),
            _ => None,
        })
        .collect()
}

impl ShadowLog {
    /// Counts one audit record (a no-op without a shadow outcome).
    pub(crate) fn observe(&self, record: &AuditRecord) {
        let Some(shadow) = &record.shadow else {
            return;
        };
        let pair = (record.policy_version, shadow.policy_version);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.pair != Some(pair) {
            inner.pair = Some(pair);
            inner.recent.clear();
            inner.report = ShadowReport {
                active_version: Some(pair.0.to_string()),
                shadow_version: Some(pair.1.to_string()),
                since_ms: Some(record.ts_ms),
                ..ShadowReport::default()
            };
        }
        let gate = record.gate.as_str();
        let diverged = shadow.action != record.action;
        let report = &mut inner.report;
        report.evaluated += 1;
        let counts = report.by_gate.entry(gate).or_default();
        counts.evaluated += 1;
        if !diverged {
            return;
        }
        counts.diverged += 1;
        report.diverged += 1;
        let change = format!("{}→{}", record.action.as_str(), shadow.action.as_str());
        *report.by_change.entry(change).or_default() += 1;
        if inner.recent.len() == MAX_EXAMPLES {
            inner.recent.pop_back();
        }
        inner.recent.push_front(Divergence {
            ts_ms: record.ts_ms,
            request_id: cut(&record.request_id),
            tenant: cut(&record.tenant),
            model: cut(&record.model),
            gate,
            active_action: record.action.as_str(),
            active_reasons: codes(&record.reasons),
            shadow_action: shadow.action.as_str(),
            shadow_reasons: codes(&shadow.reasons),
        });
    }

    /// The current counts and examples.
    pub(crate) fn report(&self) -> ShadowReport {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut report = inner.report.clone();
        report.recent = inner.recent.iter().cloned().collect();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::{Action, Gate, ShadowOutcome};

    fn version(name: &str) -> PolicyVersion {
        let n = u64::from(name.as_bytes()[0]);
        format!("sha256:{n:016x}").parse().unwrap()
    }

    fn record(
        active: &str,
        shadow: Option<&str>,
        action: Action,
        shadow_action: Action,
        model: &str,
    ) -> AuditRecord {
        let json = serde_json::json!({
            "ts_ms": 7, "request_id": "r", "tenant": "t", "route": "/v1/chat/completions",
            "model": model, "gate": "input", "tier": "default",
            "policy_version": version(active).to_string(),
            "evidence": {}, "action": action.as_str(), "reasons": [], "latency_us": 1,
        });
        let mut r = AuditRecord::from_json_line(&json.to_string()).unwrap();
        r.shadow = shadow.map(|s| ShadowOutcome {
            policy_version: version(s),
            action: shadow_action,
            reasons: Vec::new(),
        });
        r
    }

    #[test]
    fn counts_agreements_and_keeps_disagreements_as_examples() {
        let log = ShadowLog::default();
        log.observe(&record("a", None, Action::Allow, Action::Block, "m"));
        assert_eq!(log.report(), ShadowReport::default(), "no shadow: no count");
        log.observe(&record("a", Some("b"), Action::Allow, Action::Allow, "m"));
        log.observe(&record("a", Some("b"), Action::Allow, Action::Block, "m"));
        let r = log.report();
        assert_eq!((r.evaluated, r.diverged), (2, 1));
        assert_eq!(r.by_gate[Gate::Input.as_str()].diverged, 1);
        assert_eq!(r.by_change["allow→block"], 1);
        assert_eq!(r.recent.len(), 1);
        assert_eq!(
            (r.recent[0].active_action, r.recent[0].shadow_action),
            ("allow", "block")
        );
        assert_eq!(r.shadow_version, Some(version("b").to_string()));
    }

    #[test]
    fn a_new_pair_of_versions_starts_over() {
        let log = ShadowLog::default();
        log.observe(&record("a", Some("b"), Action::Allow, Action::Block, "m"));
        log.observe(&record("a", Some("c"), Action::Allow, Action::Allow, "m"));
        let r = log.report();
        assert_eq!((r.evaluated, r.diverged, r.recent.len()), (1, 0, 0));
    }

    #[test]
    fn a_flood_keeps_the_ring_and_the_names_bounded() {
        let log = ShadowLog::default();
        let long = "<script>".repeat(1000);
        for _ in 0..(MAX_EXAMPLES * 3) {
            log.observe(&record("a", Some("b"), Action::Allow, Action::Flag, &long));
        }
        let r = log.report();
        assert_eq!(r.diverged, (MAX_EXAMPLES * 3) as u64);
        assert_eq!(r.recent.len(), MAX_EXAMPLES);
        assert!(r.recent.iter().all(|d| d.model.chars().count() == MAX_TEXT));
    }
}
