//! `GET /admin/canaries`: per canaried route, each deployment's rolling
//! scores, its state (baseline, analysing, rolling out at X %, promoted,
//! rolled back; healthy or drifted) and its last failures.
//!
//! Must not: change anything, or hold a canary lock while serializing more
//! than one deployment.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::HeaderMap;
use serde_json::{json, Value};

use crate::http::request_id::RequestId;
use crate::state::GatewayState;

/// `drifted`; `healthy` when the last judgement (after a run) had a check
/// with `min_samples` results and none drifted; `unjudged` before.
fn health(st: &super::DeploymentState) -> &'static str {
    if st.monitor.drifted() {
        "drifted"
    } else if st.judged {
        "healthy"
    } else {
        "unjudged"
    }
}

/// The handler (admin keys only).
pub(crate) async fn list(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    if let Err(err) = state.auth.authenticate_admin(&headers) {
        return crate::http::error::error_response(&err, Some(&request_id));
    }
    let routing = state.routing.load();
    let now = super::now_nanos();
    let routes: Vec<Value> = routing
        .canaries
        .iter()
        .map(|route| {
            let rollout = route.rollout.as_ref().map(|cell| cell.lock().phase().clone());
            let deployments: Vec<Value> = route
                .targets
                .iter()
                .map(|t| {
                    let st = t.cell.lock();
                    let role = if t.rolled_out { "canary" } else { "baseline" };
                    let rollout_state = match (&rollout, t.rolled_out) {
                        (Some(palisade_canary::Phase::Analysing), true) => "analysing".to_owned(),
                        (Some(palisade_canary::Phase::Stepping { pct, .. }), true) => {
                            format!("rolling_out_{pct}_pct")
                        }
                        (Some(palisade_canary::Phase::Promoted), true) => "promoted".to_owned(),
                        (Some(palisade_canary::Phase::RolledBack { .. }), true) => {
                            "rolled_back".to_owned()
                        }
                        _ => "baseline".to_owned(),
                    };
                    json!({
                        "backend": t.backend.name,
                        "role": role,
                        "state": rollout_state,
                        "health": health(&st),
                        "traffic_pct": if t.rolled_out {
                            route.rollout.as_ref().map(|c| c.pct().unwrap_or(100))
                        } else { None },
                        "drift_reasons": st.monitor.reasons(),
                        "scores": st.window.summary(),
                        "runs": st.runs,
                        "last_run_unix_ms": st.last_run_unix_ms,
                        "last_run_secs_ago": st.last_run.map(|at| now.saturating_sub(at) / 1_000_000_000),
                        "last_failures": st.last_failures,
                    })
                })
                .collect();
            json!({
                "route": route.route,
                "golden_set": route.config.golden_set,
                "items": route.golden.len(),
                "interval_s": route.config.interval_s,
                "rollout": rollout,
                "deployments": deployments,
            })
        })
        .collect();
    Json(json!({
        "object": "list",
        "tasks_running": state.routing.canaries_running(),
        "data": routes,
    }))
    .into_response()
}
