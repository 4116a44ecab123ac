//! Routing decisions on the audit trail: a request refused because no
//! deployment its residency rule allows is available, each retry or
//! fallback after a failed attempt (which deployment failed, how, where the
//! request went next) and giving up — each with the residency rule that
//! applied and the policy version, as gate `routing`. A request served by
//! its first choice writes nothing here (its ledger row names the backend
//! and the attempts), so the trail holds the decisions worth reading.
//!
//! Must not: hold prompt text or keys (names, codes and rules only), or
//! wait on the audit store (the sink never blocks).

use crate::context::RequestCtx;
use crate::http::auth::Principal;
use crate::state::GatewayState;

/// One routing decision for the audit trail.
pub(crate) struct Decision<'a> {
    /// `refuse` (residency), `retry`, `fallback` or `give_up`.
    pub(crate) action: &'static str,
    /// Stable reason code: the failure class, or why the request stopped.
    pub(crate) reason_code: &'a str,
    /// The route the request asked for.
    pub(crate) route: &'a str,
    /// The residency rule in force, described.
    pub(crate) rule: String,
    /// The deployment whose attempt failed, if any.
    pub(crate) failed: Option<&'a str>,
    /// Where the next attempt goes, if anywhere.
    pub(crate) next: Option<&'a str>,
    /// The attempt number the decision follows.
    pub(crate) attempt: u32,
}

/// Writes one decision (gate `routing`).
pub(crate) fn write(
    state: &GatewayState,
    principal: &Principal,
    ctx: &RequestCtx,
    decision: &Decision<'_>,
) {
    let ts_ms = crate::clock::GatewayClock::system().unix_ms();
    let policy_version = state.gates.policy.peek().version().to_string();
    let record = serde_json::json!({
        "ts_ms": ts_ms,
        "request_id": &*ctx.request_id,
        "gate": "routing",
        "action": decision.action,
        "reason_code": decision.reason_code,
        "policy_version": policy_version,
        "tenant": &*principal.tenant,
        "key": &*principal.key_name,
        "route": decision.route,
        "rule": decision.rule,
        "failed": decision.failed,
        "next": decision.next,
        "attempt": decision.attempt,
    });
    state.gates.audit.write_admin(palisade_ledger::AuditEntry {
        ts_ms: u64::try_from(ts_ms).unwrap_or(0),
        request_id: ctx.request_id.to_string(),
        tenant: principal.tenant.to_string(),
        route: decision.route.to_owned(),
        model: ctx.model_label.to_string(),
        gate: "routing".to_owned(),
        action: decision.action.to_owned(),
        policy_version,
        json: record.to_string(),
    });
}
