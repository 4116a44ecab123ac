//! The hunt's admin endpoints (admin keys only):
//!
//! - `GET /admin/hunt[?limit=N][&run=true]`: the last hunt's campaigns,
//!   best first, at most `limit` (default and cap: `clustering.top_k`),
//!   each listing at most `clustering.max_listed_keys` keys. `run=true`
//!   (or no hunt yet) runs one now, and sends the alerts it makes due.
//! - `POST /admin/hunt/{id}` with `{"mark": "confirmed" | "benign"}`:
//!   the operators' mark, persisted in the store (404 for an unknown id).
//!
//! Must not: cluster or decide anything (that is `palisade-extraction`),
//! or run SQLite on an async worker (`spawn_blocking`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use palisade_extraction::Mark;
use palisade_openai::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::hunt::HuntError;
use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::state::GatewayState;

/// Largest mark body read.
const MAX_MARK_BYTES: usize = 1024;

/// Query parameters of `GET /admin/hunt`.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    limit: Option<usize>,
    run: Option<bool>,
}

/// `GET /admin/hunt`
pub async fn list(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match listing(&state, &headers, params.ok().map(|Query(p)| p)).await {
        Ok(v) => Json(v).into_response(),
        Err(err) => error_response(&err, Some(&request_id)),
    }
}

async fn listing(
    state: &Arc<GatewayState>,
    headers: &HeaderMap,
    params: Option<ListParams>,
) -> Result<Value, ApiError> {
    state.auth.authenticate_admin(headers)?;
    let params =
        params.ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "malformed query string"))?;
    let shared = state.extraction.hunt.clone();
    let job = shared.job().clone();
    if params.run == Some(true) || shared.report().is_none() {
        let now = now_ms();
        let runner = shared.clone();
        let due = tokio::task::spawn_blocking(move || runner.run_now(now))
            .await
            .map_err(|_| ApiError::new(ErrorCode::InternalError, "the hunt did not finish"))?
            .map_err(hunt_error)?;
        super::hunt::deliver(&shared, &due).await;
    }
    let Some(report) = shared.report() else {
        return Err(ApiError::new(ErrorCode::InternalError, "no hunt report"));
    };
    let limit = params
        .limit
        .unwrap_or(job.clustering.top_k)
        .min(job.clustering.top_k);
    let campaigns: Vec<_> = report
        .campaigns
        .iter()
        .take(limit)
        .map(|c| c.listed(job.clustering.max_listed_keys))
        .collect();
    Ok(json!({
        "at_ms": report.at_ms,
        "keys": report.keys,
        "benign_keys": report.benign_keys,
        "pairs_scored": report.pairs_scored,
        "truncated": report.truncated,
        "campaigns": campaigns,
        "left_off": report.campaigns.len().saturating_sub(limit) + report.campaigns_left_off,
    }))
}

/// `POST /admin/hunt/{id}`
pub async fn mark(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match marking(&state, &request_id, &headers, id, &body).await {
        Ok(v) => Json(v).into_response(),
        Err(err) => error_response(&err, Some(&request_id)),
    }
}

async fn marking(
    state: &Arc<GatewayState>,
    request_id: &str,
    headers: &HeaderMap,
    id: String,
    body: &[u8],
) -> Result<Value, ApiError> {
    let admin = state.auth.authenticate_admin(headers)?;
    if body.len() > MAX_MARK_BYTES {
        return Err(ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("a mark is at most {MAX_MARK_BYTES} bytes"),
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("invalid JSON: {e}")))?;
    let mark = value
        .get("mark")
        .and_then(Value::as_str)
        .and_then(Mark::parse)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "`mark` must be \"confirmed\" or \"benign\"",
            )
            .with_param("mark")
        })?;
    let shared = state.extraction.hunt.clone();
    let now = now_ms();
    let campaign = id.clone();
    let found = tokio::task::spawn_blocking(move || shared.mark(&campaign, mark, now))
        .await
        .map_err(|_| ApiError::new(ErrorCode::InternalError, "the mark was not saved"))?
        .map_err(hunt_error)?;
    if !found {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no campaign `{id}`"),
        ));
    }
    crate::api::audit_admin(
        state,
        request_id,
        &admin,
        "hunt_mark",
        crate::api::details([
            ("campaign", id.clone().into()),
            ("mark", mark.as_str().into()),
        ]),
    );
    Ok(json!({ "id": id, "mark": mark.as_str() }))
}

fn hunt_error(e: HuntError) -> ApiError {
    match e {
        HuntError::NoStore => ApiError::new(ErrorCode::NotFound, e.to_string()),
        other => {
            tracing::error!(error = %other, "hunt store");
            ApiError::new(ErrorCode::InternalError, "the hunt store failed")
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
