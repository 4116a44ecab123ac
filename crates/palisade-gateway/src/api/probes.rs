//! The operational endpoints (`/healthz`, `/readyz`, `/metrics`) and the
//! answers to unknown paths and methods, in the OpenAI error shape.
//!
//! Probes must stay cheap and must not touch the request path's state.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, StatusCode};
use palisade_openai::{ApiError, ErrorCode};

use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::state::GatewayState;

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

pub(crate) async fn readyz(State(state): State<Arc<GatewayState>>) -> Response {
    let report = state.readiness.report();
    let ready = !report.is_empty() && report.iter().all(|(_, r)| *r);
    let to_map = |items: Vec<(String, bool)>| -> serde_json::Map<String, serde_json::Value> {
        items
            .into_iter()
            .map(|(name, ok)| (name, serde_json::Value::Bool(ok)))
            .collect()
    };
    let conditions = to_map(report);
    let advisories = to_map(state.readiness.advisories());
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({ "ready": ready, "conditions": conditions, "advisories": advisories })),
    )
        .into_response()
}

pub(crate) async fn metrics(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(id)): Extension<RequestId>,
    headers: http::HeaderMap,
) -> Response {
    // Per-tenant series (tokens, spend) are for operators when so configured.
    if state.metrics_require_admin {
        if let Err(err) = state.auth.authenticate_admin(&headers) {
            return error_response(&err, Some(&id));
        }
    }
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
    }
}

pub(crate) async fn not_found(Extension(RequestId(id)): Extension<RequestId>) -> Response {
    error_response(
        &ApiError::new(ErrorCode::NotFound, "no such endpoint"),
        Some(&id),
    )
}

pub(crate) async fn method_not_allowed(Extension(RequestId(id)): Extension<RequestId>) -> Response {
    error_response(
        &ApiError::new(
            ErrorCode::MethodNotAllowed,
            "method not allowed on this endpoint",
        ),
        Some(&id),
    )
}

pub(crate) fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // Never leak panic text to the client; it is in the logs.
    tracing::error!("handler panicked");
    error_response(
        &ApiError::new(ErrorCode::InternalError, "internal error"),
        None,
    )
}
