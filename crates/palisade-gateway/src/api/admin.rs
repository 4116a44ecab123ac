//! `/admin/*`: operator endpoints, admin keys only (or open mode, which is
//! loopback-only).
//!
//! `GET /admin/usage?by=tenant|model|day&tenant=T&days=N` reports token
//! usage and cost from the ledger, the same figures as `palisade usage`.
//! `GET /admin/policy` shows the active policy version (and the shadow
//! candidate and rollback history); `POST /admin/policy/rollback` returns to
//! the previous version. `GET /admin/fleet` shows every live replica of the fleet (what it
//! enforces, since when, its last heartbeat) and the version skew. `GET /admin/quotas` shows this month's standing of every tenant seen this
//! month against its quotas and budgets, and who the spend breaker holds.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use palisade_ledger::{GroupBy, UsageQuery};
use palisade_openai::{ApiError, ErrorCode};
use serde::Deserialize;

use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::state::GatewayState;

/// Query parameters of `/admin/usage`.
#[derive(Debug, Deserialize)]
pub struct UsageParams {
    by: Option<String>,
    tenant: Option<String>,
    days: Option<u32>,
}

/// `GET /admin/usage`
pub async fn usage(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    params: Result<Query<UsageParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match run(&state, &headers, params.ok().map(|Query(p)| p)).await {
        Ok(body) => Json(body).into_response(),
        Err(err) => error_response(&err, Some(&request_id)),
    }
}

async fn run(
    state: &GatewayState,
    headers: &HeaderMap,
    params: Option<UsageParams>,
) -> Result<serde_json::Value, ApiError> {
    state.auth.authenticate_admin(headers)?;
    let params =
        params.ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "malformed query string"))?;
    let ledger = state.ledger.get().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "no ledger is configured (set ledger.url)",
        )
    })?;
    let group_by = match params.by.as_deref() {
        None | Some("tenant") => GroupBy::Tenant,
        Some("model") => GroupBy::Model,
        Some("day") => GroupBy::Day,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("`by` must be tenant, model or day, not `{other}`"),
            )
            .with_param("by"))
        }
    };
    let days = params.days.unwrap_or(30).min(3660);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let rows = ledger
        .usage(&UsageQuery {
            tenant: params.tenant,
            since_ms: now_ms - i64::from(days) * 86_400_000,
            until_ms: now_ms + 1,
            group_by,
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "ledger usage query failed");
            ApiError::new(ErrorCode::InternalError, "the ledger could not be queried")
        })?;
    let data: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({"group": r.group, "requests": r.requests,
                "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                "total_tokens": r.total_tokens, "cost_usd": r.cost_micros as f64 / 1e6})
        })
        .collect();
    Ok(serde_json::json!({"object": "list", "days": days, "data": data}))
}

/// `GET /admin/quotas`
pub async fn quotas(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    if let Err(err) = state.auth.authenticate_admin(&headers) {
        return error_response(&err, Some(&request_id));
    }
    let tenants = match state.admission.spend() {
        Some(spend) => spend.report().await,
        None => Vec::new(),
    };
    Json(serde_json::json!({ "tenants": tenants })).into_response()
}

fn policy_state(state: &GatewayState) -> serde_json::Value {
    let describe = |s: &palisade_policy::Snapshot| serde_json::json!({"version": s.version().to_string(), "label": s.label()});
    let store = &state.gates.policy;
    serde_json::json!({
        "enabled": state.gates.enabled,
        "active": describe(&store.peek()),
        "enforcing": store.is_enforcing(),
        "shadow": store.shadow().as_deref().map(describe),
        "history": store.history(),
    })
}

/// `GET /admin/policy`
pub async fn policy(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    match state.auth.authenticate_admin(&headers) {
        Ok(_) => Json(policy_state(&state)).into_response(),
        Err(err) => error_response(&err, Some(&request_id)),
    }
}

/// `POST /admin/policy/rollback`
pub async fn policy_rollback(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    let admin = match state.auth.authenticate_admin(&headers) {
        Ok(admin) => admin,
        Err(err) => return error_response(&err, Some(&request_id)),
    };
    use crate::gates::policy::RollbackRefusal;
    let from = state.gates.policy.peek().version().to_string();
    match state.gates.policy.rollback() {
        Ok(to) => {
            super::audit_admin(
                &state,
                &request_id,
                &admin,
                "policy_rollback",
                super::details([
                    ("from_version", from.into()),
                    ("to_version", to.version().to_string().into()),
                ]),
            );
            Json(policy_state(&state)).into_response()
        }
        Err(RollbackRefusal::NoHistory) => error_response(
            &ApiError::new(
                ErrorCode::NoPreviousPolicy,
                "there is no earlier policy version on this replica to roll back to",
            ),
            Some(&request_id),
        ),
        Err(RollbackRefusal::FromBundle) => error_response(
            &ApiError::new(
                ErrorCode::PolicyFromBundle,
                "this replica's policy comes from a signed bundle: to roll back, sign the \
                 earlier policy under a new serial and publish it",
            ),
            Some(&request_id),
        ),
    }
}

/// `GET /admin/fleet`: the fleet as this replica last saw it (at most one heartbeat old).
pub async fn fleet(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    if let Err(err) = state.auth.authenticate_admin(&headers) {
        return error_response(&err, Some(&request_id));
    }
    let snap = state.fleet.snapshot();
    let replicas: Vec<serde_json::Value> = snap
        .view
        .replicas
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "serial": r.serial,
                "version": r.version,
                "enforcing": r.enforcing(),
                "behind": snap.view.behind(r),
                "provisioning_ms": r.provisioning_ms(),
                "heartbeat_age_ms": snap.seen_unix_ms.saturating_sub(r.heartbeat_unix_ms),
                "started_unix_ms": r.started_unix_ms,
            })
        })
        .collect();
    Json(serde_json::json!({
        "replica": snap.replica,
        "registry": snap.registry,
        "registry_error": snap.registry_error,
        "seen_unix_ms": snap.seen_unix_ms,
        "fleet_serial": snap.view.fleet_serial,
        "skew": snap.view.skew,
        "replicas": replicas,
    }))
    .into_response()
}
