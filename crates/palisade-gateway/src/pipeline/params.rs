//! The extraction defence's request-path phases: **ladder** (a key the
//! extraction ladder has climbed is slowed within its deadline, or refused
//! with a stable code and `Retry-After`), **parameter hardening** (the
//! tenant's tier refuses, strips or caps logit-stealing parameters; each
//! finding is audited with its reason code) and **record** (the request
//! handed to the telemetry worker, never waited for).
//!
//! Must not: hold hardening or ladder logic (`palisade-extraction` decides;
//! [`crate::extraction`] holds the state), or wait on the worker.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use palisade_extraction::{GateOutcome, ProbeAction};
use palisade_openai::request::RequestBody;
use palisade_openai::{ApiError, ErrorCode};
use palisade_policy::{AuditRecord, Evidence, Gate};

use crate::context::RequestCtx;
use crate::extraction::Verdict;
use crate::http::auth::Principal;
use crate::routing::Route;
use crate::state::GatewayState;

/// The stable code of a refused probe (400).
pub(crate) const PROBE_REFUSED: &str = "logprob_probe_refused";
/// The stable code of a key that must re-verify (403).
pub(crate) const REVERIFY_REQUIRED: &str = "extraction_reverify_required";
/// The stable code of a blocked key (429).
pub(crate) const BLOCKED: &str = "extraction_blocked";

/// Audits one decision about a request parameter (refused: `Block`;
/// stripped, capped or merged: `Redact`) under the tier that made it,
/// with the active policy version and the reason codes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn audit_param(
    state: &GatewayState,
    ctx: &RequestCtx,
    principal: &Principal,
    route: &Route,
    model: &str,
    tier: &str,
    reasons: Vec<String>,
    action: palisade_policy::Action,
) {
    let ts_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let record = AuditRecord {
        ts_ms,
        request_id: ctx.internal_id.clone(),
        tenant: principal.tenant.to_string(),
        route: route.public_name.to_string(),
        model: model.to_owned(),
        gate: Gate::Input,
        tier: tier.to_owned(),
        policy_version: state.gates.policy.active().version(),
        evidence: Evidence {
            detector_reasons: reasons,
            ..Evidence::default()
        },
        action,
        reasons: Vec::new(),
        latency_us: 0,
        shadow: None,
        degraded: None,
    };
    state.gates.audit.write(&record);
}

/// Applies the ladder's standing for this key: `Ok` after any slow-down
/// (at most half the time left before `deadline`), `Err` when refused.
pub(crate) async fn enforce_ladder(
    state: &GatewayState,
    principal: &Principal,
    deadline: Instant,
) -> Result<(), ApiError> {
    match state
        .extraction
        .verdict(&principal.tenant, &principal.key_name)
    {
        Verdict::Serve => Ok(()),
        Verdict::Slow(delay) => {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(delay.min(left / 2)).await;
            Ok(())
        }
        Verdict::Reverify(secs) => Err(ApiError::policy(
            ErrorCode::PermissionDenied,
            REVERIFY_REQUIRED,
            "this key's traffic looks like model extraction; re-verify the account to continue",
        )
        .with_retry_after(Some(secs))),
        Verdict::Block(secs) => Err(ApiError::policy(
            ErrorCode::BlockedOffender,
            BLOCKED,
            "this key's traffic looks like model extraction and is blocked for now",
        )
        .with_retry_after(Some(secs))),
    }
}

/// Hardens the request's parameters under the tenant's tier. `Ok(outcome)`:
/// `reserialize` says the body must be re-encoded (a watched key was
/// present); `probed` that something was stripped or capped. `Err`: 400
/// `logprob_probe_refused` naming the field.
pub(crate) fn harden(
    state: &GatewayState,
    principal: &Principal,
    route: &Route,
    request: &mut RequestBody,
    ctx: &RequestCtx,
    fingerprint: u64,
) -> Result<Hardened, ApiError> {
    let (tier, policy) = state.extraction.tier_of(&principal.tenant);
    let verdict = palisade_extraction::harden(request.fields_mut(), policy);
    if verdict.findings.is_empty() {
        return Ok(Hardened {
            reserialize: verdict.reserialize,
            probed: false,
        });
    }
    let refused = verdict.refusal().cloned();
    for finding in &verdict.findings {
        audit_param(
            state,
            ctx,
            principal,
            route,
            request.model(),
            tier,
            vec![
                format!("{PROBE_REFUSED}:{}", finding.reason.as_str()),
                format!("param:{}", finding.field),
            ],
            match finding.action {
                ProbeAction::Refuse => palisade_policy::Action::Block,
                _ => palisade_policy::Action::Redact,
            },
        );
    }
    if let Some(refused) = refused {
        record(
            state,
            principal,
            request,
            GateOutcome::ProbeRefused,
            fingerprint,
        );
        return Err(ApiError::policy(
            ErrorCode::InvalidRequest,
            PROBE_REFUSED,
            format!(
                "`{}` is not served on this tier ({})",
                refused.field,
                refused.reason.as_str()
            ),
        )
        .with_param(refused.field));
    }
    Ok(Hardened {
        reserialize: true,
        probed: true,
    })
}

/// What hardening did to a served request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hardened {
    /// Forward the gateway's encoding of the body.
    pub(crate) reserialize: bool,
    /// A probe was stripped or capped.
    pub(crate) probed: bool,
}

/// Hands the request to the telemetry worker with its gate outcome and
/// client fingerprint.
pub(crate) fn record(
    state: &GatewayState,
    principal: &Principal,
    request: &RequestBody,
    outcome: GateOutcome,
    fingerprint: u64,
) {
    state.extraction.record(
        &principal.tenant,
        &principal.key_name,
        request.fields(),
        outcome,
        fingerprint,
    );
}

/// The telemetry outcome of the request gates' result.
pub(crate) fn outcome<T>(gates: &Result<T, ApiError>, hardened: Hardened) -> GateOutcome {
    match gates {
        Err(e) if e.code == ErrorCode::PolicyBlocked => GateOutcome::Blocked,
        _ if hardened.probed => GateOutcome::ProbeRefused,
        _ => GateOutcome::Passed,
    }
}
