//! Read-only admin endpoints the console needs beside `/admin/*` in
//! [`super::admin`]: the audit tail with filters and the diff between two
//! policy versions this replica holds.
//!
//! `GET /admin/audit?gate=&tenant=&action=&policy_version=&reason=&limit=&offset=`
//! returns the newest matching audit records, newest first. Bounded: at
//! most [`MAX_WINDOW`] rows are read per call (`offset + limit`), whatever
//! the filters. `reason` is not an indexed column, so it is matched in the
//! window read with the other filters.
//!
//! `GET /admin/policy/diff?from=sha256:…&to=sha256:…` lists the changes
//! between two versions among the active, the shadow and the rollback
//! history; by default from the newest kept version to the active one (or
//! the active to the shadow, when there is no history but a shadow).
//!
//! `GET /admin/limits` shows each backend's routing state (healthy,
//! outstanding, smoothed latency, circuit breaker, last probe) and where
//! the limiter keeps its state (this process or Redis, and whether Redis is
//! connected).
//!
//! `GET /admin/config` shows the config in force: the file, its `sha256:`
//! hash, when it was loaded, the last reload's result and error.
//! `POST /admin/config/reload` reads the file again now (like `SIGHUP`);
//! it is the one endpoint here that changes state, and only through the
//! validating reloader.
//!
//! Must not: write anything else, or read an unbounded number of rows.

use std::sync::Arc;

use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use palisade_ledger::AuditFilter;
use palisade_openai::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::Value;

use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::state::GatewayState;

/// Most rows one `/admin/audit` call reads from the store.
pub(crate) const MAX_WINDOW: usize = 1_000;
/// Rows per page when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;

/// Query parameters of `/admin/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    gate: Option<String>,
    tenant: Option<String>,
    action: Option<String>,
    policy_version: Option<String>,
    reason: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// `GET /admin/audit`
pub async fn audit(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match run_audit(&state, &headers, params.ok().map(|Query(p)| p)).await {
        Ok(body) => Json(body).into_response(),
        Err(err) => error_response(&err, Some(&request_id)),
    }
}

/// An empty filter value means "any" (the console's blank field).
fn set(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

async fn run_audit(
    state: &GatewayState,
    headers: &HeaderMap,
    params: Option<AuditParams>,
) -> Result<Value, ApiError> {
    state.auth.authenticate_admin(headers)?;
    let p = params.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "malformed query string: gate, tenant, action, policy_version, reason, limit, offset",
        )
    })?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    let offset = p.offset.unwrap_or(0);
    if limit == 0 || offset.saturating_add(limit) > MAX_WINDOW {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("`limit` must be at least 1 and `offset + limit` at most {MAX_WINDOW}"),
        )
        .with_param("limit"));
    }
    let ledger = state.gates.audit.store().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "no audit store is configured (set policy.audit_url)",
        )
    })?;
    let filter = AuditFilter {
        tenant: set(p.tenant),
        gate: set(p.gate),
        action: set(p.action),
        request_id: None,
        policy_version: set(p.policy_version),
    };
    let reason = set(p.reason);
    // Without a reason filter the store needs only this page's window;
    // with one, the whole bounded window is read and matched here.
    let window = if reason.is_some() {
        MAX_WINDOW
    } else {
        offset + limit
    };
    let lines = ledger.audit_tail(window, &filter).await.map_err(|e| {
        tracing::error!(error = %e, "audit tail query failed");
        ApiError::new(ErrorCode::InternalError, "the audit log could not be read")
    })?;
    let read = lines.len();
    let matching: Vec<Value> = lines
        .iter()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| match &reason {
            None => true,
            Some(code) => record["reasons"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| r.as_str() == Some(code))),
        })
        .collect();
    let more = matching.len() > offset + limit || (reason.is_none() && read == window);
    let data: Vec<Value> = matching.into_iter().skip(offset).take(limit).collect();
    let next_offset = (more && offset + 2 * limit <= MAX_WINDOW).then_some(offset + limit);
    Ok(serde_json::json!({
        "object": "list",
        "data": data,
        "next_offset": next_offset,
        "window": MAX_WINDOW,
    }))
}

/// Query parameters of `/admin/policy/diff`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffParams {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /admin/policy/diff`
pub async fn policy_diff(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    params: Result<Query<DiffParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match run_diff(&state, &headers, params.ok().map(|Query(p)| p)) {
        Ok(body) => Json(body).into_response(),
        Err(err) => error_response(&err, Some(&request_id)),
    }
}

fn run_diff(
    state: &GatewayState,
    headers: &HeaderMap,
    params: Option<DiffParams>,
) -> Result<Value, ApiError> {
    state.auth.authenticate_admin(headers)?;
    let p =
        params.ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "malformed query string"))?;
    let store = &state.gates.policy;
    let active = store.peek().version().to_string();
    let (default_from, default_to) = match (store.history().pop(), store.shadow()) {
        (Some(previous), _) => (previous, active.clone()),
        (None, Some(shadow)) => (active.clone(), shadow.version().to_string()),
        (None, None) => (active.clone(), active.clone()),
    };
    let from = set(p.from).unwrap_or(default_from);
    let to = set(p.to).unwrap_or(default_to);
    let find = |version: &str, param: &'static str| {
        store.find(version).ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                "this replica holds no policy of that version (active, shadow or rollback history)",
            )
            .with_param(param)
        })
    };
    let old = find(&from, "from")?;
    let new = find(&to, "to")?;
    let changes = palisade_policy::diff(old.document(), new.document());
    let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
    Ok(serde_json::json!({
        "from": {"version": from, "label": old.label()},
        "to": {"version": to, "label": new.label()},
        "changes": changes,
        "lines": text,
    }))
}

/// `GET /admin/config`
pub async fn config(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    if let Err(err) = state.auth.authenticate_admin(&headers) {
        return error_response(&err, Some(&request_id));
    }
    Json(serde_json::json!({
        "config": state.reload.status(),
        "routing_generation": state.routing.load().generation,
        "hot": {
            "limits": crate::reload::diff::HOT_TENANT_FIELDS,
            "limits_tables": crate::reload::diff::HOT_LIMITS_TABLES,
            "sections": crate::reload::diff::HOT_ROUTING_SECTIONS,
            "tenants": [crate::reload::diff::HOT_TENANT_ROUTING_FIELD],
        },
    }))
    .into_response()
}

/// `POST /admin/config/reload`: 200 with the new status when applied or
/// unchanged; 422 `config_reload_refused` with the reason otherwise.
pub async fn config_reload(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    let admin = match state.auth.authenticate_admin(&headers) {
        Ok(admin) => admin,
        Err(err) => return error_response(&err, Some(&request_id)),
    };
    let outcome = state.reload.reload_now(&state).await;
    super::audit_admin(
        &state,
        &request_id,
        &admin,
        "config_reload",
        super::details([("result", outcome.label().into())]),
    );
    match &outcome {
        crate::reload::Outcome::Applied | crate::reload::Outcome::Unchanged => {
            Json(serde_json::json!({
                "result": outcome.label(),
                "config": state.reload.status(),
            }))
            .into_response()
        }
        crate::reload::Outcome::Invalid(_) | crate::reload::Outcome::RestartRequired(_) => {
            let why = state.reload.status().last_error.unwrap_or_default();
            error_response(
                &ApiError::new(
                    ErrorCode::ConfigReloadRefused,
                    format!("config reload refused ({}): {why}", outcome.label()),
                ),
                Some(&request_id),
            )
        }
    }
}

/// `GET /admin/limits`
pub async fn limits(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    if let Err(err) = state.auth.authenticate_admin(&headers) {
        return error_response(&err, Some(&request_id));
    }
    let now = std::time::Instant::now();
    let routing = state.routing.load();
    let view = routing.balancer.view(&routing.backends, now);
    let backends: Vec<Value> = (0..routing.backends.len())
        .map(|i| super::admin_views::backend_state(&routing, &view, i, now))
        .collect();
    let shared = state.admission.is_shared();
    Json(serde_json::json!({
        "backends": backends,
        "limiter": {
            "backend": if shared { "redis" } else { "local" },
            "redis_connected": shared.then(|| state.admission.redis().is_some()),
        },
    }))
    .into_response()
}
