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
    let mut details = serde_json::Map::new();
    details.insert("rule".into(), serde_json::json!(decision.rule));
    details.insert("failed".into(), serde_json::json!(decision.failed));
    details.insert("next".into(), serde_json::json!(decision.next));
    details.insert("attempt".into(), serde_json::json!(decision.attempt));
    state.gates.audit.write_decision(
        state.gates.policy.peek().version().to_string(),
        &ctx.internal_id,
        &principal.tenant,
        &principal.key_name,
        decision.route,
        &ctx.model_label,
        ("routing", decision.action, decision.reason_code),
        details,
    );
}

/// A cascade escalated a cheap answer (action `cascade_escalated`, the
/// gate that fired as the reason, the cheap deployment as `failed`, the
/// route's own model as `next`).
pub(crate) fn cascade(
    state: &GatewayState,
    principal: &Principal,
    ctx: &RequestCtx,
    route: &crate::routing::Route,
    reason: &str,
    cheap_backend: Option<&str>,
) {
    write(
        state,
        principal,
        ctx,
        &Decision {
            action: "cascade_escalated",
            reason_code: reason,
            route: &route.public_name,
            rule: ctx
                .routing
                .as_ref()
                .map(|r| {
                    let spec = r.routes.specs().get(route.id).map(|s| s.residency.clone());
                    r.routes
                        .tenant_rule(&principal.tenant)
                        .and(&spec.unwrap_or_default())
                        .describe()
                })
                .unwrap_or_default(),
            failed: cheap_backend,
            next: Some(&route.public_name),
            attempt: ctx.attempts,
        },
    );
}
