//! The front of every route group: **authenticate** (bearer key → tenant),
//! **admit** (the rate gate: request rate, in-flight and stream limits) and
//! **read** (the body, under its size limit and deadline), in that order, so
//! an unauthenticated or refused caller never makes the gateway buffer a
//! body. The proxy, the guard APIs and the tool APIs all start here.
//!
//! Must not: judge content or pick a backend; later phases do.

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap};
use palisade_openai::request::{Endpoint, RequestBody};
use palisade_openai::{ApiError, ErrorCode};

use crate::context::RequestCtx;
use crate::http::auth::Principal;
use crate::limits::admission::Admitted;
use crate::state::GatewayState;

/// Authenticates the request's bearer key. `Err` is 401/403 (a missing,
/// unknown or revoked key); the tenant is recorded on `ctx` either way it
/// is known.
pub(crate) fn authenticate(
    state: &GatewayState,
    headers: &HeaderMap,
    ctx: &mut RequestCtx,
) -> Result<Principal, ApiError> {
    let principal = state.auth.authenticate(headers)?;
    ctx.tenant = Some(principal.tenant.clone());
    ctx.key_name = Some(principal.key_name.clone());
    Ok(principal)
}

/// The rate gate, before the body is read so refused callers cost little.
/// `Ok`: the request holds an in-flight slot (on `ctx`) until it ends. `Err`:
/// 429 with `Retry-After`; the rate-limit headers are on `ctx` for the
/// error response.
pub(crate) async fn admit(
    state: &GatewayState,
    principal: &Principal,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    match state.admission.admit(principal).await {
        Ok(admitted) => {
            ctx.limit_headers = admitted.headers;
            ctx.warned = admitted.warned;
            ctx._slot = admitted.slot;
            Ok(())
        }
        Err(refusal) => {
            ctx.limit_headers = refusal.headers;
            ctx.warned = refusal.warned;
            Err(refusal.error)
        }
    }
}

/// Parses an OpenAI request body for `endpoint`. `Err` is 400
/// `invalid_request_error`, naming the offending parameter when known.
pub(crate) fn parse(endpoint: Endpoint, bytes: &[u8]) -> Result<RequestBody, ApiError> {
    RequestBody::parse(endpoint, bytes).map_err(|e| {
        let err = ApiError::new(ErrorCode::InvalidRequest, e.to_string());
        match e.param() {
            Some(p) => err.with_param(p),
            None => err,
        }
    })
}

/// A request past the front: who sent it, its admission (the in-flight
/// slot is held while this lives), and its body.
pub(crate) struct Front {
    /// The authenticated caller.
    pub(crate) principal: Principal,
    /// The rate gate's grant; dropping it releases the in-flight slot.
    pub(crate) _admitted: Admitted,
    /// The request body, read under the size limit and deadline.
    pub(crate) body: Bytes,
}

/// The front for the gateway's own endpoints (guard and tool APIs):
/// authenticate, pass the rate gate (checks cost CPU, so these are
/// rate-limited like the proxy), then read the body. `body: None` for a
/// request without one (`GET`).
pub(crate) async fn front(
    state: &GatewayState,
    headers: &HeaderMap,
    body: Option<Body>,
) -> Result<Front, ApiError> {
    let principal = state.auth.authenticate(headers)?;
    let admitted = state
        .admission
        .admit(&principal)
        .await
        .map_err(|refusal| refusal.error)?;
    let body = match body {
        Some(body) => read_body(headers, body, state.max_body_bytes).await?,
        None => Bytes::new(),
    };
    Ok(Front {
        principal,
        _admitted: admitted,
        body,
    })
}

/// Reads the request body, refusing anything over `limit` with 413, and a
/// body still arriving at its deadline (see [`crate::http::body_deadline`]) with 408.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    // Refuse early when the client announces an oversized body.
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if crate::http::body_deadline::is_timeout(&e) {
            return crate::http::body_deadline::timed_out();
        }
        let is_limit = std::error::Error::source(&e)
            .is_some_and(|s| s.to_string().contains("length limit exceeded"))
            || e.to_string().contains("length limit exceeded");
        if is_limit {
            too_large()
        } else {
            ApiError::new(ErrorCode::InvalidRequest, "failed to read request body")
        }
    })
}
