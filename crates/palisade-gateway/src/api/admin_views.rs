//! Read-only admin views the console's Routes page and Policy page need:
//!
//! - `GET /admin/routes`: every route (public name, aliases, upstream name,
//!   deadline, retry policy), its deployments with weight, residency labels
//!   and their backend's live state (healthy, breaker, outstanding,
//!   smoothed latency, probe), its fallback chains by name, and the
//!   backends themselves.
//! - `GET /admin/policy/shadow`: how often the shadow policy's action
//!   differed from the active one's on this replica, by gate and by change,
//!   with the most recent disagreements (see
//!   [`crate::gates::shadow_log`]).
//!
//! Must not: write anything, or show a backend's API key or a tenant's
//! upstream key (the backend's base URL is shown; its credentials never).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use serde_json::{json, Value};

use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::state::GatewayState;

/// One backend's live state, as `/admin/limits` and `/admin/routes` show it.
pub(crate) fn backend_state(
    routing: &crate::snapshot::RoutingSnapshot,
    view: &crate::balancer::View<'_>,
    i: usize,
    now: Instant,
) -> Value {
    use palisade_routing::StateView;
    let Some(b) = routing.backends.get(i) else {
        return Value::Null;
    };
    let s = view.state(i);
    let breaker = match &b.breaker {
        None => "none",
        Some(br) if br.is_open(now) => "open",
        Some(_) => "closed",
    };
    json!({
        "name": b.name,
        "healthy": s.healthy,
        "outstanding": s.outstanding,
        "ewma_ms": s.ewma as f64 / 1e6,
        "breaker": breaker,
        "probe": routing.balancer.probe_state(i),
    })
}

fn residency(r: &palisade_routing::Residency) -> Value {
    json!({
        "regions": r.regions,
        "providers": r.providers,
        "data_classes": r.data_classes,
    })
}

/// `GET /admin/routes`
pub async fn routes(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    if let Err(err) = state.auth.authenticate_admin(&headers) {
        return error_response(&err, Some(&request_id));
    }
    let now = Instant::now();
    // One snapshot for the whole answer: never half of two tables.
    let routing = state.routing.load();
    let view = routing.balancer.view(&routing.backends, now);
    let table = &routing.routes;
    let route_name = |id: usize| {
        table
            .by_id(id)
            .map_or_else(|| format!("#{id}"), |r| r.public_name.to_string())
    };
    let routes: Vec<Value> = table
        .specs()
        .iter()
        .enumerate()
        .filter_map(|(id, spec)| {
            let route = table.by_id(id)?;
            let deployments: Vec<Value> = spec
                .deployments
                .iter()
                .map(|d| {
                    json!({
                        "backend": routing.backends.get(d.backend).map(|b| b.name.as_str()),
                        "weight": d.weight,
                        "region": d.labels.region,
                        "provider": d.labels.provider,
                        "data_classes": d.labels.data_classes,
                        "state": backend_state(&routing, &view, d.backend, now),
                    })
                })
                .collect();
            let by_class: serde_json::Map<String, Value> = spec
                .fallbacks
                .by_class
                .iter()
                .map(|(class, chain)| {
                    let names: Vec<String> = chain.iter().map(|&i| route_name(i)).collect();
                    (class.as_str().to_owned(), json!(names))
                })
                .collect();
            let default: Vec<String> = spec
                .fallbacks
                .default
                .iter()
                .map(|&i| route_name(i))
                .collect();
            Some(json!({
                "id": id,
                "model": &*route.public_name,
                "aliases": table.aliases_of(id),
                "upstream_model": route.upstream_model.as_deref(),
                "deadline_ms": route.deadline.map(|d| d.as_millis() as u64),
                "max_attempts": route.retry.max_attempts,
                "idempotent": route.idempotent,
                "overload_model": route.overload_model.as_deref(),
                "deployments": deployments,
                "fallbacks": {"default": default, "by_class": by_class},
                "residency": residency(&spec.residency),
            }))
        })
        .collect();
    let backends: Vec<Value> = (0..routing.backends.len())
        .map(|i| backend_state(&routing, &view, i, now))
        .collect();
    Json(json!({
        "generation": routing.generation,
        "probes_running": state.routing.probes_running(),
        "routes": routes,
        "backends": backends,
    }))
    .into_response()
}

/// `GET /admin/policy/shadow`
pub async fn shadow(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    if let Err(err) = state.auth.authenticate_admin(&headers) {
        return error_response(&err, Some(&request_id));
    }
    let configured = state.gates.policy.shadow().map(|s| s.version().to_string());
    let report = state.gates.audit.shadow_log().report();
    let mut body = serde_json::to_value(&report).unwrap_or(Value::Null);
    body["configured_shadow"] = json!(configured);
    body["max_examples"] = json!(crate::gates::shadow_log::MAX_EXAMPLES);
    Json(body).into_response()
}
