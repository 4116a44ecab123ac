//! The one place where errors become HTTP responses.
//!
//! Every phase of the request path returns [`ApiError`]; this module renders
//! it with the right status, `content-type` and the request id. Keeping the
//! mapping here means a status code cannot drift between handlers.

use axum::body::Body;
use axum::response::Response;
use http::{header, HeaderValue, StatusCode};
use palisade_openai::{ApiError, ErrorCode};

/// Renders `err` as an OpenAI-shaped JSON response.
pub fn error_response(err: &ApiError, request_id: Option<&str>) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    crate::metrics::refusal(err.reason.unwrap_or(err.code.as_str()));
    let mut resp = Response::new(Body::from(err.to_json(request_id)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let retry_after = match err.code {
        // Tell well-behaved clients to come back (to another replica) soon.
        ErrorCode::ShuttingDown => Some(1),
        _ => err.retry_after,
    };
    // The OpenAI SDKs obey this over their own status rules: without it they
    // would retry a policy refusal or a spent quota answered with 4xx/5xx.
    resp.headers_mut().insert(
        "x-should-retry",
        HeaderValue::from_static(if err.code.should_retry() {
            "true"
        } else {
            "false"
        }),
    );
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// An SSE event carrying an error, for failures after a stream has started
/// (the status line is already sent, so the error must travel in-band). The
/// shape matches what OpenAI sends in the same situation.
pub fn error_event(err: &ApiError, request_id: Option<&str>) -> bytes::Bytes {
    crate::metrics::refusal(err.reason.unwrap_or(err.code.as_str()));
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&err.to_json(request_id));
    out.extend_from_slice(b"\n\n");
    bytes::Bytes::from(out)
}
