//! The proxied endpoints: chat completions, completions and embeddings.
//!
//! [`handle`] runs the phases listed in the crate docs in order; each phase
//! returns `Result<_, ApiError>` and the first error ends the request through
//! [`crate::http::error::error_response`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use palisade_openai::request::{Endpoint, RequestBody};
use palisade_openai::{ApiError, ErrorCode};

use crate::accounting::{LedgerRow, RowFacts, TokenAccounting};
use crate::admission::apply_headers;
use crate::http::auth::Principal;
use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::metrics::InFlight;
use crate::pipeline::stream::{relay, RelayLimits};
use crate::state::GatewayState;

pub(crate) mod stream;
use crate::upstream::passthrough_headers;

/// Largest non-streamed upstream body we buffer. A chat completion is a few
/// KiB; a large embeddings batch can reach tens of MiB.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// What is known about a request for metrics and the access log; finishing it
/// (or dropping it unfinished) writes both exactly once.
#[derive(Debug)]
pub struct RequestRecord {
    route: &'static str,
    request_id: Arc<str>,
    /// Minted here, never taken from the client: keys the token reservation
    /// and the ledger row, where a client-chosen id could collide.
    pub(crate) internal_id: String,
    tenant: Option<Arc<str>>,
    model_label: Arc<str>,
    /// `model_label` may label metrics: a routed name, or a wildcard name the
    /// upstream served. Until then a client's name is counted as `other`, so
    /// made-up names never become (permanent) series.
    labelled: bool,
    started: Instant,
    /// Rate-limit headers for the response, set by the rate gate.
    limit_headers: palisade_limits::RateLimitHeaders,
    /// The key is on the escalation ladder's warning rung.
    warned: bool,
    /// How the request was degraded under overload, if it was.
    degraded: Option<String>,
    /// The in-flight slot, released when the request (or stream) ends.
    _slot: Option<crate::admission::InFlightSlot>,
    /// The stream slot, for streaming requests under a stream limit.
    _stream_slot: Option<crate::admission::InFlightSlot>,
    /// Token accounting, when a token budget or the ledger needs it.
    pub(crate) tokens: Option<TokenAccounting>,
    /// Where the request's ledger row goes, and what the row needs to know.
    pub(crate) ledger: Option<LedgerRow>,
    /// The request's place at a backend with a downstream budget.
    _backend_slot: Option<crate::scheduler::BackendSlot>,
    /// What the request gates decided that the output gate needs.
    pub(crate) gates: Option<crate::gates::GatePlan>,
    /// The request span, re-entered for the access-log line: a stream ends
    /// after the handler returned, outside the span.
    span: tracing::Span,
    _in_flight: InFlight,
    done: bool,
}

impl RequestRecord {
    fn new(route: &'static str, request_id: &str, started: Instant) -> Self {
        Self {
            route,
            request_id: request_id.into(),
            internal_id: uuid::Uuid::new_v4().to_string(),
            tenant: None,
            model_label: "none".into(),
            labelled: true,
            started,
            limit_headers: palisade_limits::RateLimitHeaders::default(),
            warned: false,
            degraded: None,
            _slot: None,
            _stream_slot: None,
            tokens: None,
            ledger: None,
            _backend_slot: None,
            gates: None,
            span: tracing::Span::current(),
            _in_flight: InFlight::enter(),
            done: false,
        }
    }

    /// The request id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The bounded model label.
    pub fn model_label(&self) -> &Arc<str> {
        &self.model_label
    }

    /// When the request head arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Commits the ledger row now (awaiting the store), if there is a ledger.
    pub(crate) async fn write_ledger_now(
        &mut self,
        status: u16,
        stream_outcome: Option<&'static str>,
    ) {
        if let Some(row) = &mut self.ledger {
            row.write(RowFacts {
                tenant: self.tenant.as_deref().unwrap_or("-"),
                model: &self.model_label,
                status,
                stream_outcome,
                tokens: self.tokens.as_ref(),
                elapsed: self.started.elapsed(),
            })
            .await;
        }
    }

    /// Whether this request has a ledger row to write.
    pub(crate) fn has_ledger(&self) -> bool {
        self.ledger.is_some()
    }

    /// Adds the admission headers (`x-ratelimit-*`, the ladder's warning).
    fn stamp(&self, headers: &mut HeaderMap) {
        apply_headers(&self.limit_headers, headers);
        if self.ledger.is_some() {
            // The ledger row's key, so a client or operator can find it.
            if let Ok(v) = HeaderValue::from_str(&self.internal_id) {
                headers.insert("x-palisade-ledger-id", v);
            }
        }
        if let Some(d) = &self.degraded {
            if let Ok(v) = HeaderValue::from_str(d) {
                headers.insert("x-palisade-degraded", v);
            }
        }
        if self.warned {
            headers.insert(
                "x-palisade-warning",
                HeaderValue::from_static(
                    "repeated limit violations: further ones slow, then block, this key",
                ),
            );
        }
    }

    /// Records metrics and the access-log line.
    pub fn finish(&mut self, status: u16, stream_outcome: Option<&'static str>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        if let Some(tokens) = &mut self.tokens {
            tokens.settle(status);
        }
        if let Some(row) = &mut self.ledger {
            row.write_nowait(RowFacts {
                tenant: self.tenant.as_deref().unwrap_or("-"),
                model: &self.model_label,
                status,
                stream_outcome,
                tokens: self.tokens.as_ref(),
                elapsed,
            });
        }
        let metric_label = if self.labelled {
            &*self.model_label
        } else {
            "other"
        };
        crate::metrics::request_done(self.route, metric_label, status, elapsed);
        let _entered = self.span.enter();
        tracing::info!(
            status,
            tenant = self.tenant.as_deref().unwrap_or("-"),
            model = %self.model_label,
            latency_us = elapsed.as_micros() as u64,
            stream = stream_outcome.unwrap_or("-"),
            "served"
        );
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        // A request future dropped before it finished: the client went away
        // while we waited on the upstream. 499 is the de-facto code for it.
        if !self.done {
            self.finish(499, None);
        }
    }
}

/// Serves one proxied endpoint (`/v1/chat/completions`, `/v1/completions`,
/// `/v1/embeddings`); the router binds `endpoint`.
pub async fn handle(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Response {
    let mut record = RequestRecord::new(endpoint.label(), &request_id, Instant::now());
    let result = match send_upstream(&state, &headers, body, endpoint, &mut record).await {
        Ok(sent) => respond(&state, sent, record).await,
        Err(err) => Err((err, record)),
    };
    result.unwrap_or_else(|(err, mut record)| {
        record.finish(err.status(), None);
        if err.status() >= 500 {
            tracing::warn!(code = err.code.as_str(), "{}", err.message);
        }
        let mut resp = error_response(&err, Some(&request_id));
        record.stamp(resp.headers_mut());
        resp
    })
}

/// A request sent upstream whose response head has arrived.
struct Sent {
    upstream: reqwest::Response,
    backend: usize,
    deadline: Instant,
    client_wants_stream: bool,
}

/// Phases 2 to 5: authenticate, read, route, forward.
async fn send_upstream(
    state: &Arc<GatewayState>,
    headers: &HeaderMap,
    body: Body,
    endpoint: Endpoint,
    record: &mut RequestRecord,
) -> Result<Sent, ApiError> {
    // Phase 2: authenticate before reading the body, so unauthenticated
    // callers cannot make us buffer megabytes.
    let principal: Principal = state.auth.authenticate(headers)?;
    record.tenant = Some(principal.tenant.clone());

    // The rate gate: before the body is read, so refused callers cost little.
    match state.admission.admit(&principal).await {
        Ok(admitted) => {
            record.limit_headers = admitted.headers;
            record.warned = admitted.warned;
            record._slot = admitted.slot;
        }
        Err(refusal) => {
            record.limit_headers = refusal.headers;
            record.warned = refusal.warned;
            return Err(refusal.error);
        }
    }

    // Phase 3: read and inspect.
    let bytes = read_body(headers, body, state.max_body_bytes).await?;
    let mut request = RequestBody::parse(endpoint, &bytes).map_err(|e| {
        let err = ApiError::new(ErrorCode::InvalidRequest, e.to_string());
        match e.param() {
            Some(p) => err.with_param(p),
            None => err,
        }
    })?;

    if request.is_stream() {
        record._stream_slot = state.admission.admit_stream(&principal)?;
    }

    // Phase 4: route.
    let route = state
        .routes
        .resolve(request.model())
        .ok_or_else(|| crate::routing::model_not_found(request.model()))?;
    // The input and context gates: judge each message on its channel, then
    // rewrite as the policy asks (redaction, spotlighting, a canary).
    let mut gates_rewrote = false;
    let shape = match endpoint {
        Endpoint::ChatCompletions => Some(crate::gates::ResponseShape::Chat),
        Endpoint::Completions => Some(crate::gates::ResponseShape::Completion),
        // Embeddings generate no text and carry no instructions a model follows.
        _ => None,
    };
    if let Some(shape) = shape.filter(|_| state.gates.enabled) {
        let subject = crate::gates::GateSubject {
            request_id: record.internal_id.clone(),
            tenant: principal.tenant.to_string(),
            route: route.public_name.to_string(),
            model: route
                .upstream_model
                .as_deref()
                .unwrap_or(request.model())
                .to_owned(),
        };
        let retrieved = retrieved_indexes(headers);
        // On the CPU pool unless small: scans and client schemas can take
        // long enough to stall the async workers.
        let verdict = crate::gates::input::gate_request(
            &state.gates,
            &state.cpu,
            subject,
            shape,
            request.fields_mut(),
            retrieved,
            bytes.len(),
        )
        .await?;
        let (mut plan, changed) = verdict.inspect_err(|_| state.admission.offend(&principal, 1))?;
        let tools_changed = shape == crate::gates::ResponseShape::Chat
            && crate::gates::tools::inspect_request(
                &state.gates.tools,
                state.tool_store(),
                &mut plan,
                request.fields_mut(),
                headers,
            )
            .await?;
        record.gates = Some(plan);
        gates_rewrote = changed || tools_changed;
    }

    // Graceful degradation: a saturated backend sheds work to a cheaper
    // model, or generates less.
    let saturated = |r: &crate::routing::Route| {
        state.backends[r.backend]
            .scheduler
            .as_ref()
            .is_some_and(|s| s.is_saturated())
    };
    let mut route = route;
    let mut degraded: Option<String> = None;
    if saturated(route) {
        if let Some(cheaper) = route.overload_model.clone() {
            if let Some(alt) = state.routes.resolve(&cheaper) {
                request.set_model(&cheaper);
                degraded = Some(format!("routed to {cheaper}"));
                route = alt;
            }
        }
    }
    let mut rewritten = degraded.is_some() || gates_rewrote;
    if let Some(cap) = route.overload_max_tokens.filter(|_| saturated(route)) {
        let asked = palisade_openai::usage::requested_max_tokens(request.fields());
        if asked.is_none_or(|m| m > cap) && endpoint != Endpoint::Embeddings {
            request.fields_mut().remove("max_completion_tokens");
            request
                .fields_mut()
                .insert("max_tokens".to_owned(), cap.into());
            rewritten = true;
            let note = format!("max_tokens capped to {cap}");
            degraded = Some(match degraded {
                Some(d) => format!("{d}; {note}"),
                None => note,
            });
        }
    }
    if let Some(d) = degraded {
        metrics::counter!(crate::metrics::DEGRADED).increment(1);
        record.degraded = Some(d);
    }

    // The model's own rate (all tenants together), now that it is known.
    let public_model = if &*route.public_name == palisade_config::WILDCARD_MODEL {
        request.model().to_owned()
    } else {
        route.public_name.to_string()
    };
    state
        .admission
        .admit_model(&principal, &public_model, &mut record.limit_headers)
        .await?;
    // A wildcard name is the client's until the upstream serves it (see
    // `respond`); it still prices the reservation below.
    let wildcard = &*route.public_name == palisade_config::WILDCARD_MODEL;
    record.model_label = if wildcard {
        request.model().into()
    } else {
        route.public_name.clone()
    };
    record.labelled = !wildcard;
    if let Some(name) = &route.upstream_model {
        request.set_model(name);
        rewritten = true;
    }

    // Token accounting: reserve the estimate now (when the tenant has a
    // budget), count usage as the response passes, reconcile and ledger later.
    let budget = state.admission.has_token_budget(&principal.tenant);
    let ledger = state.ledger.get();
    if budget || ledger.is_some() {
        state
            .admission
            .prepare_spend(&principal.tenant, ledger)
            .await;
        let tokenizer = route
            .tokenizer
            .clone()
            .unwrap_or_else(|| palisade_openai::usage::Tokenizer::for_model(request.model()));
        let prompt_estimate =
            estimate_prompt(state, request.fields_mut(), tokenizer, bytes.len()).await?;
        let max_completion = if endpoint == Endpoint::Embeddings {
            0
        } else {
            if state.inject_max_tokens {
                rewritten |= request.set_max_tokens_if_absent(state.default_max_tokens);
            }
            palisade_openai::usage::requested_max_tokens(request.fields())
                .unwrap_or(state.default_max_tokens)
        };
        let (reservation, info) = state
            .admission
            .reserve_tokens(
                &principal.tenant,
                &record.internal_id,
                &record.model_label,
                prompt_estimate,
                max_completion,
            )
            .await
            .inspect_err(|_| state.admission.offend(&principal, 1))?;
        record.limit_headers.tokens = info;
        let strip_usage_chunk = request.is_stream() && request.ensure_stream_usage();
        rewritten |= request.is_stream();
        record.tokens = Some(TokenAccounting::new(
            reservation,
            prompt_estimate,
            prompt_estimate + max_completion,
            strip_usage_chunk,
        ));
    }
    let upstream_body = if rewritten {
        Bytes::from(request.to_bytes())
    } else {
        // Unchanged: forward the client's bytes as they are (no re-encode).
        bytes
    };
    let backend = &state.backends[route.backend];
    let deadline = record.started + route.deadline.unwrap_or(backend.request_timeout);

    // The backend's downstream budget: wait (fairly) for a slot.
    if let Some(scheduler) = &backend.scheduler {
        let cost = record.tokens.as_ref().map_or(1, TokenAccounting::reserved);
        record._backend_slot = Some(
            scheduler
                .acquire(&principal.tenant, principal.priority_class, cost, deadline)
                .await?,
        );
    }

    if let Some(ledger) = ledger {
        let mut row = LedgerRow::new(
            ledger.clone(),
            state.prices.clone(),
            &record.internal_id,
            &principal.key_name,
            &backend.name,
            endpoint.label(),
        );
        row.tool_loop = record
            .gates
            .as_ref()
            .and_then(|g| g.tools.as_ref())
            .is_some_and(crate::gates::tools::ToolPlan::in_loop);
        record.ledger = Some(row);
    }

    // Phase 5: forward, unless the backend's circuit is open.
    if let Some(breaker) = &backend.breaker {
        if let Err(wait) = breaker.allow(Instant::now()) {
            return Err(ApiError::new(
                ErrorCode::CircuitOpen,
                format!(
                    "backend `{}` is failing; requests are paused while it recovers",
                    backend.name
                ),
            )
            .with_retry_after(Some(wait.as_secs().max(1))));
        }
    }
    let sent_at = Instant::now();
    let upstream = backend
        .post_json(
            endpoint,
            upstream_body,
            record.request_id(),
            &principal.tenant,
            deadline,
        )
        .await;
    if let Some(breaker) = &backend.breaker {
        let ok = upstream
            .as_ref()
            .is_ok_and(|r| !r.status().is_server_error());
        breaker.record(Instant::now(), ok);
    }
    if let Some(slot) = &record._backend_slot {
        // Adaptive concurrency learns from every response head.
        let status = upstream.as_ref().ok().map(|r| r.status().as_u16());
        slot.observe(status, sent_at.elapsed());
    }
    let upstream =
        upstream.inspect_err(|e| crate::metrics::upstream_error(&backend.name, e.code.as_str()))?;
    Ok(Sent {
        upstream,
        backend: route.backend,
        deadline,
        client_wants_stream: request.is_stream(),
    })
}

/// Message indexes the client marks as retrieved content with the
/// `x-palisade-retrieved: 2,5` header (the other ways are in-body marks; see
/// `palisade_openai::channels`). Malformed entries are ignored.
fn retrieved_indexes(headers: &HeaderMap) -> Vec<usize> {
    headers
        .get("x-palisade-retrieved")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .filter_map(|i| i.trim().parse().ok())
                .take(1024)
                .collect()
        })
        .unwrap_or_default()
}

/// The prompt estimate for token accounting. Bounded (the tokenizer sees at
/// most 64 KiB), and on the CPU pool for a large prompt.
async fn estimate_prompt(
    state: &GatewayState,
    fields: &mut serde_json::Map<String, serde_json::Value>,
    tokenizer: palisade_openai::usage::Tokenizer,
    body_bytes: usize,
) -> Result<u64, ApiError> {
    let owned = std::mem::take(fields);
    let (estimate, owned) = state
        .cpu
        .run_or_inline(body_bytes <= crate::cpu::INLINE_BYTES, move || {
            let n = palisade_openai::usage::estimate_prompt_tokens_with(&owned, &tokenizer);
            (n, owned)
        })
        .await?;
    *fields = owned;
    Ok(estimate)
}

/// Phase 6: relay the upstream's answer. Finishes `record`, or hands it to
/// the stream, which finishes it when the stream ends.
async fn respond(
    state: &Arc<GatewayState>,
    sent: Sent,
    mut record: RequestRecord,
) -> Result<Response, (ApiError, RequestRecord)> {
    let Sent {
        upstream,
        backend,
        deadline,
        client_wants_stream,
    } = sent;
    let backend = &state.backends[backend];
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

    if client_wants_stream && status.is_success() && is_sse {
        resp_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Tell nginx-style proxies in front of us not to buffer the stream.
        resp_headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
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
    if status.is_server_error() {
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
    if let Some(tokens) = &mut record.tokens {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) {
            tokens.tally.observe_response(&value);
        }
    }
    // The tool gate, then the output gate: judge each tool call; sanitize
    // the completion, or refuse it.
    let mut body = body;
    if let Some(plan) = record.gates.clone() {
        // On the CPU pool unless small: schema checks and scans of a
        // large completion would hold an async worker.
        let inline = body.len() <= crate::cpu::INLINE_BYTES && plan.response_schema.is_none();
        let success = status.is_success();
        let job = move || {
            if !success {
                // Error bodies reach the application too (SDKs put the
                // message into the exception it logs or shows).
                return match crate::gates::output::gate_error_body(&plan, &body) {
                    Ok(Some(gated)) => Ok(gated),
                    Ok(None) => Ok(body),
                    Err(err) => Err(err),
                };
            }
            let body =
                crate::gates::output::without_foreign_report(&body).map_or(body, Bytes::from);
            let body = crate::gates::tools::gate_body(&plan, &body).unwrap_or(body);
            match crate::gates::output::gate_body(&plan, &body) {
                Ok(Some(gated)) => Ok(gated),
                Ok(None) => Ok(body),
                Err(err) => Err(err),
            }
        };
        match state.cpu.run_or_inline(inline, job).await {
            Ok(Ok(gated)) => body = gated,
            Ok(Err(err)) | Err(err) => return Err((err, record)),
        }
    }
    // The ledger row is committed before the client gets the response, so
    // every completed response has its row even if the process dies now.
    record.write_ledger_now(status.as_u16(), None).await;
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
    } else {
        "upstream_5xx"
    }
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

/// Reads a non-streamed upstream body under the idle timeout and deadline.
async fn read_upstream_body(
    backend: &crate::upstream::Backend,
    mut upstream: reqwest::Response,
    deadline: Instant,
) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::new();
    loop {
        let wait: Duration = backend
            .idle_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(wait, upstream.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                if buf.len() + chunk.len() > MAX_UPSTREAM_BODY {
                    return Err(ApiError::new(
                        ErrorCode::UpstreamProtocol,
                        format!("upstream `{}` response is too large", backend.name),
                    ));
                }
                if buf.is_empty() && upstream.content_length().is_some() {
                    buf.reserve(upstream.content_length().unwrap_or(0) as usize);
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
