//! **Forward**: the request goes to its backend unless the backend's
//! circuit is open, and the breaker and adaptive concurrency learn from the
//! answer's head; then, for a non-streamed answer, its body is read under
//! the idle timeout and deadline.
//!
//! Must not: judge or rewrite the answer; the response filters do.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use palisade_openai::{ApiError, ErrorCode};
use palisade_routing::FailureClass;

use crate::context::RequestCtx;
use crate::upstream::Backend;

/// Largest non-streamed upstream body we buffer. A chat completion is a few
/// KiB; a large embeddings batch can reach tens of MiB.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// Sends `body` to `backend`; `slot` is the request's place at that
/// backend's queue, if it has one. `Ok` is the upstream's response head (any
/// status); `Err` is 503 `circuit_open` (with `Retry-After`; nothing was
/// sent, so its class is `Connect`) or a transport failure mapped to
/// `upstream_*`, with its class.
pub(crate) async fn forward(
    backend: &Backend,
    body: Bytes,
    tenant: &str,
    deadline: Instant,
    ctx: &RequestCtx,
    slot: Option<&crate::limits::scheduler::BackendSlot>,
    span: &crate::telemetry::Open,
) -> Result<reqwest::Response, (ApiError, FailureClass)> {
    if let Some(breaker) = &backend.breaker {
        if let Err(wait) = breaker.allow(Instant::now()) {
            return Err((
                ApiError::new(
                    ErrorCode::CircuitOpen,
                    format!(
                        "backend `{}` is failing; requests are paused while it recovers",
                        backend.name
                    ),
                )
                .with_retry_after(Some(wait.as_secs().max(1))),
                FailureClass::Connect,
            ));
        }
    }
    let sent_at = Instant::now();
    let upstream = backend
        .post_json(
            ctx.endpoint,
            body,
            // The gateway's own id, never the client's: model servers key
            // their engine requests by it (vLLM), so a client-chosen id
            // could collide with another tenant's request.
            &ctx.internal_id,
            tenant,
            deadline,
            &ctx.trace.upstream_headers(span),
        )
        .await;
    if let Some(breaker) = &backend.breaker {
        let ok = upstream
            .as_ref()
            .is_ok_and(|r| !r.status().is_server_error() && !r.status().is_redirection());
        breaker.record(Instant::now(), ok);
    }
    if let Some(slot) = slot {
        // Adaptive concurrency learns from every response head (the slot
        // is the attempt's own: a hedge holds one at its backend).
        let status = upstream.as_ref().ok().map(|r| r.status().as_u16());
        slot.observe(status, sent_at.elapsed());
    }
    upstream.inspect_err(|(e, _)| crate::metrics::upstream_error(&backend.name, e.code.as_str()))
}

/// Reads a non-streamed upstream body under the idle timeout and deadline.
pub(crate) async fn read_upstream_body(
    backend: &Backend,
    mut upstream: reqwest::Response,
    deadline: Instant,
) -> Result<Bytes, ApiError> {
    // The announced length is the upstream's word: over the bound it is
    // refused before a byte is read, and never reserved beyond the bound
    // (a `Content-Length` of a terabyte would abort the process on the
    // allocation, which no panic guard catches).
    let too_large = || {
        ApiError::new(
            ErrorCode::UpstreamProtocol,
            format!("upstream `{}` response is too large", backend.name),
        )
    };
    if upstream
        .content_length()
        .is_some_and(|len| len > MAX_UPSTREAM_BODY as u64)
    {
        crate::metrics::upstream_error(&backend.name, "upstream_protocol");
        return Err(too_large());
    }
    let mut buf = BytesMut::new();
    loop {
        let wait: Duration = backend
            .idle_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(wait, upstream.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                if buf.len() + chunk.len() > MAX_UPSTREAM_BODY {
                    return Err(too_large());
                }
                if buf.is_empty() {
                    if let Some(len) = upstream.content_length() {
                        buf.reserve(usize::try_from(len).unwrap_or(0).min(MAX_UPSTREAM_BODY));
                    }
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(Ok(None)) => return Ok(buf.freeze()),
            Ok(Err(e)) => {
                let err = backend.map_error(&e);
                crate::metrics::upstream_error(&backend.name, err.code.as_str());
                return Err(err);
            }
            Err(_) => {
                crate::metrics::upstream_error(&backend.name, "upstream_timeout");
                return Err(ApiError::new(
                    ErrorCode::UpstreamTimeout,
                    format!(
                        "upstream `{}` did not finish its response in time",
                        backend.name
                    ),
                ));
            }
        }
    }
}
