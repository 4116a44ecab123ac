//! **Respond**: the upstream's answer to the client. A stream goes to the
//! relay ([`super::stream`]); a whole body is read, judged by the response
//! filters ([`super::filters`]), committed to the ledger and sent.
//!
//! Must not: judge content itself; it runs the filter chain.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use palisade_openai::{ApiError, ErrorCode};

use super::forward::read_upstream_body;
use super::stream::{relay, RelayLimits};
use crate::context::RequestCtx;
use crate::state::GatewayState;
use crate::upstream::passthrough_headers;

/// A request sent upstream whose response head has arrived.
pub(crate) struct Sent {
    pub(crate) upstream: reqwest::Response,
    /// The backend that answered (from the request's routing snapshot).
    pub(crate) backend: Arc<crate::upstream::Backend>,
    pub(crate) deadline: Instant,
    pub(crate) client_wants_stream: bool,
}

/// Phase 6: relay the upstream's answer. Finishes `record`, or hands it to
/// the stream, which finishes it when the stream ends.
pub(crate) async fn respond(
    state: &Arc<GatewayState>,
    sent: Sent,
    mut record: RequestCtx,
) -> Result<Response, (ApiError, RequestCtx)> {
    let Sent {
        upstream,
        backend,
        deadline,
        client_wants_stream,
    } = sent;
    let backend = &*backend;
    let status = upstream.status();
    let is_sse = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        // Media types are case-insensitive: `Text/Event-Stream` is a stream,
        // and must not slip down the buffered path unjudged.
        .is_some_and(|v| {
            v.trim_start()
                .get(..17)
                .is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream"))
        });
    let mut resp_headers = HeaderMap::new();
    passthrough_headers(upstream.headers(), &mut resp_headers);
    record.stamp(&mut resp_headers);
    if status.is_success() && !record.labelled {
        // The upstream serves this wildcard name: a real model, so it may
        // label metrics (up to the label cap).
        record.model_label = state.model_labels.label(&record.model_label);
        record.labelled = true;
    }

    if record.endpoint == palisade_openai::request::Endpoint::Responses && status.is_success() {
        let tenant = record.tenant.as_deref().unwrap_or("");
        let key = record.key_name.as_deref().unwrap_or("");
        record.response_owner = Some(crate::api::responses::OwnerStamp::new(
            state,
            tenant,
            key,
            &backend.name,
            record.gates.as_ref(),
        ));
    }

    if client_wants_stream && status.is_success() && is_sse {
        resp_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Tell nginx-style proxies in front of us not to buffer the stream.
        resp_headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        if let Some(recorder) = &mut record.replay {
            recorder.stream_head(&resp_headers);
        }
        let limits = RelayLimits {
            idle_timeout: backend.idle_timeout,
            deadline,
            max_event_bytes: state.max_sse_event_bytes,
            heartbeat: state.sse_heartbeat,
        };
        let stream = relay(upstream, backend.name.as_str().into(), limits, record);
        let mut resp = Response::new(Body::from_stream(stream));
        *resp.headers_mut() = resp_headers;
        return Ok(resp);
    }

    if !status.is_success() {
        crate::metrics::upstream_error(&backend.name, status_class(status));
    }
    let body = match read_upstream_body(backend, upstream, deadline).await {
        Ok(body) => body,
        Err(err) => return Err((err, record)),
    };
    // A redirect is not followed (`crate::outbound`) nor passed on: a
    // client that followed it would send its own request, key included,
    // wherever the model server pointed.
    if status.is_server_error() || status.is_redirection() {
        // 5xx bodies carry tracebacks and internal paths: log them for the
        // operator, give the client a stable error instead.
        let snippet = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        tracing::warn!(backend = %backend.name, status = status.as_u16(), body = %snippet, "upstream server error");
        let err = ApiError::new(
            ErrorCode::UpstreamError,
            format!(
                "upstream `{}` failed with HTTP {}",
                backend.name,
                status.as_u16()
            ),
        );
        return Err((err, record));
    }
    if record.tokens.is_some() || record.trace.recording() {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) {
            if let Some(tokens) = &mut record.tokens {
                tokens.tally.observe_response(&value);
            }
            crate::telemetry::response_attrs(&mut record, &value);
        }
    }
    // The response filters: judge each tool call, then sanitize the
    // completion, or refuse it.
    let mut body = body;
    if let Some(plan) = record.gates.clone() {
        // On the CPU pool unless small: schema checks and scans of a
        // large completion would hold an async worker.
        let inline = body.len() <= crate::cpu::INLINE_BYTES && plan.response_schema.is_none();
        let success = status.is_success();
        let job = move || super::filters::filter_body(&plan, success, body);
        let span = record.trace.begin();
        match state.cpu.run_or_inline(inline, job).await {
            Ok(Ok(gated)) => {
                crate::telemetry::output_span(&mut record, span, None);
                body = gated;
            }
            Ok(Err(err)) | Err(err) => {
                crate::telemetry::output_span(&mut record, span, Some(&err));
                return Err((err, record));
            }
        }
    }
    // The ledger row is committed before the client gets the response, so
    // every completed response has its row even if the process dies now.
    record.write_ledger_now(status.as_u16(), None).await;
    // So is the owner of a Responses id: the client may ask for it at once.
    if let Some(stamp) = record.response_owner.take() {
        stamp.record_body(&body).await;
    }
    // Stored after the filters: a replay is exactly what this client got.
    // Only successes: an upstream 4xx releases the idempotency key.
    if let Some(recorder) = record.replay.take() {
        if status.is_success() {
            let version = crate::replay::policy_version(&record);
            // A degraded answer (a cheaper model, fewer tokens) is not what
            // the request asks for once the backend recovers: not cached.
            let cacheable = record.degraded.is_none();
            recorder.commit(
                status.as_u16(),
                &resp_headers,
                &body,
                &record.internal_id,
                version,
                cacheable,
            );
        }
    }
    let mut resp = Response::new(Body::from(body));
    // Upstream 4xx errors pass through unchanged: they are OpenAI-shaped and
    // describe the client's own mistake (or the upstream's rate limit).
    *resp.status_mut() = status;
    *resp.headers_mut() = resp_headers;
    record.finish(status.as_u16(), None);
    Ok(resp)
}

fn status_class(status: StatusCode) -> &'static str {
    if status.is_client_error() {
        "upstream_4xx"
    } else if status.is_redirection() {
        "upstream_3xx"
    } else {
        "upstream_5xx"
    }
}
