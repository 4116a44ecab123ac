//! No traffic before policy: while this replica enforces no verified
//! policy, every `/v1/*` request is refused with 503 `not_ready` and
//! `Retry-After`, in the request pipeline itself, whatever the orchestrator
//! does with `/readyz`. There is no timeout that opens the gate: only an
//! activated bundle does.
//!
//! Probes and admin endpoints pass (operators must see why). This layer
//! decides nothing else.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use palisade_openai::{ApiError, ErrorCode};

use crate::gates::policy::PolicyStore;
use crate::http::error::error_response;
use crate::http::request_id::RequestId;

/// Seconds a refused client is told to wait (another replica may be ready).
const RETRY_AFTER_SECS: u64 = 1;

/// Refuses `/v1/*` until a verified policy is active.
pub(crate) async fn layer(
    State(policy): State<Arc<PolicyStore>>,
    request: Request,
    next: Next,
) -> Response {
    if policy.is_enforcing() || !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    metrics::counter!(crate::metrics::NOT_READY_REFUSED).increment(1);
    let id = request.extensions().get::<RequestId>().map(|r| r.0.clone());
    error_response(
        &ApiError::new(
            ErrorCode::NotReady,
            "this replica has no verified security policy active yet; retry shortly",
        )
        .with_retry_after(Some(RETRY_AFTER_SECS)),
        id.as_deref(),
    )
}
