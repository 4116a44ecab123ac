//! The anomaly detector's admin endpoints (admin keys only):
//! `POST /admin/scaling-events` (a generic, HPA or KEDA shaped event, see
//! [`super::events`]) and `GET /admin/anomaly` (status, replica count,
//! whether a scale event is under way, recent alerts, the detection pool's
//! queue depth).
//!
//! Must not: decide anything; they hand events to the detector task and
//! read its report.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use palisade_openai::{ApiError, ErrorCode};
use serde_json::{json, Value};

use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::state::GatewayState;

/// Largest event body read: an HPA object is a few KiB.
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// `POST /admin/scaling-events`
pub async fn scaling_event(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match accept(&state, &request_id, &headers, &body).await {
        Ok(v) => (http::StatusCode::ACCEPTED, Json(v)).into_response(),
        Err(err) => error_response(&err, Some(&request_id)),
    }
}

async fn accept(
    state: &GatewayState,
    request_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let admin = state.auth.authenticate_admin(headers)?;
    if body.len() > MAX_EVENT_BYTES {
        return Err(ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("a scaling event is at most {MAX_EVENT_BYTES} bytes"),
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid scaling event: {e}"),
        )
    })?;
    let event =
        super::events::parse(&value).map_err(|m| ApiError::new(ErrorCode::InvalidRequest, m))?;
    if !state.anomaly.enabled() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "anomaly detection is off ([detection.anomaly] enabled = false)",
        ));
    }
    let reply = json!({"accepted": true, "source": event.source, "replicas": event.replicas});
    if !state.anomaly.scale_event(event).await {
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            "the anomaly detector is busy; retry shortly",
        )
        .with_retry_after(Some(1)));
    }
    // A scaling event holds the detector's alerts down: who sent it matters.
    crate::api::audit_admin(
        state,
        request_id,
        &admin,
        "scaling_event",
        crate::api::details([
            ("source", reply["source"].clone()),
            ("replicas", reply["replicas"].clone()),
        ]),
    );
    Ok(reply)
}

/// `GET /admin/anomaly`
pub async fn status(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    if let Err(err) = state.auth.authenticate_admin(&headers) {
        return error_response(&err, Some(&request_id));
    }
    let report = state.anomaly.report();
    Json(json!({
        "enabled": state.anomaly.enabled(),
        "status": report.status,
        "recent_alerts": report.recent_alerts,
        "detection_pool": {"queue_depth": state.gates.pool.queue_depth()},
    }))
    .into_response()
}
