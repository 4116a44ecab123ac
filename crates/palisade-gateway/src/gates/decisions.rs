//! Taking and recording a gate decision: the policy snapshot (and shadow)
//! decide on the evidence, and every decision, allowed or not, becomes one
//! audit record with the policy version and reason codes, plus metrics.
//!
//! Must not: enforce anything; the gate that asked does.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use palisade_policy::{AuditContext, AuditRecord, Decision, Evidence, Gate};

use super::audit::AuditSink;
use super::plan::{GatePlan, GateSubject};

/// Records a gate decision: the audit store when configured, the log always.
pub(crate) fn audit(
    plan: &GatePlan,
    evidence: Evidence,
    decision: &Decision,
    shadow: Option<&Decision>,
    started: Instant,
) {
    record_decision_degraded(
        &plan.sink,
        &plan.subject,
        evidence,
        decision,
        shadow,
        started,
        plan.degraded,
    );
}

/// Records a decision taken for `subject` (also outside a request, e.g. an
/// approver confirming a held tool call): metrics, the log and the store.
pub(crate) fn record_decision(
    sink: &AuditSink,
    subject: &GateSubject,
    evidence: Evidence,
    decision: &Decision,
    shadow: Option<&Decision>,
    started: Instant,
) {
    record_decision_degraded(sink, subject, evidence, decision, shadow, started, None);
}

/// [`record_decision`], marking the record `degraded` with a reason code when
/// the evidence came from less than the full cascade.
fn record_decision_degraded(
    sink: &AuditSink,
    subject: &GateSubject,
    evidence: Evidence,
    decision: &Decision,
    shadow: Option<&Decision>,
    started: Instant,
    degraded: Option<&str>,
) {
    let ts_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ctx = AuditContext {
        ts_ms,
        request_id: &subject.request_id,
        subject: subject.subject(),
        latency_us: started.elapsed().as_micros() as u64,
    };
    let mut record = AuditRecord::new(&ctx, evidence, decision);
    if let Some(shadow) = shadow {
        if shadow.enforced_action != decision.enforced_action {
            metrics::counter!(crate::metrics::SHADOW_DIVERGENCES, "gate" => decision.gate.as_str())
                .increment(1);
        }
        record = record.with_shadow(shadow);
    }
    if let Some(reason) = degraded {
        record = record.with_degraded(reason);
    }
    metrics::counter!(
        crate::metrics::GATE_DECISIONS,
        "gate" => decision.gate.as_str(),
        "action" => decision.enforced_action.as_str()
    )
    .increment(1);
    sink.write(&record);
}

/// Decides `gate` on `evidence` under the plan's snapshot (and shadow),
/// records it, and returns the enforced decision.
pub(crate) fn decide(
    plan: &GatePlan,
    gate: Gate,
    evidence: Evidence,
    started: Instant,
) -> Decision {
    let subject = plan.subject.subject();
    let decision = plan.snapshot.decide(gate, &subject, &evidence);
    let shadow = plan
        .shadow
        .as_ref()
        .map(|s| s.decide(gate, &subject, &evidence));
    audit(plan, evidence, &decision, shadow.as_ref(), started);
    decision
}
