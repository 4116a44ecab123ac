//! The proxied endpoints (chat completions, completions, embeddings): the
//! request path as explicit phases, each a function in its own module that
//! takes the request's [`RequestCtx`] and returns `Result<_, ApiError>`; the
//! first error ends the request through
//! [`crate::http::error::error_response`], stamped with what the phases
//! learnt (rate-limit headers, the ledger id).
//!
//! 1. **identify** ([`crate::http::request_id`], a layer): the request id
//!    and span.
//! 2. **authenticate**, **admit**, **read** ([`front`]): key → tenant; the
//!    rate gate; the body under its size limit and deadline; parse.
//! 3. **route** ([`route`]): model → backend; degradation under overload;
//!    the model's own rate. Then **idempotency** ([`crate::replay`]): a
//!    repeated `Idempotency-Key` is answered with the first outcome here.
//! 4. **request gates** ([`gate`]): input, context and tool gates. Then the
//!    **cache** ([`crate::replay`]): an allowed, unflagged identical request
//!    is answered from it here.
//! 5. **watermark** ([`watermark`]): the tenant's green list as the
//!    upstream's `logit_bias` on watermarked models.
//! 6. **budget** ([`budget`]): token reservation, backend queue, ledger row.
//! 7. **forward** ([`crate::balancer::attempts`], [`forward`]): the
//!    deployment, breaker, upstream call, deadlines; retries, fallbacks and
//!    hedges ([`crate::balancer::hedge`]) while no byte went to the client;
//!    a cascade route's cheap stage and escalation ([`cascade`]).
//! 8. **response filters** ([`filters`]): the tool gate, then the output
//!    gate, for whole bodies ([`respond`]) and streams ([`stream`]) alike.
//! 9. **account** ([`RequestCtx::finish`]): tokens reconciled, ledger row,
//!    metrics and access log, exactly once — also when the client leaves.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use palisade_openai::request::Endpoint;
use palisade_openai::ApiError;

use crate::context::RequestCtx;
use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::state::GatewayState;

pub(crate) mod budget;
pub(crate) mod cascade;
pub(crate) mod filters;
pub(crate) mod forward;
pub(crate) mod front;
pub(crate) mod gate;
pub(crate) mod params;
pub(crate) mod respond;
pub(crate) mod route;
pub(crate) mod stream;
pub(crate) mod watermark;

use respond::Sent;

/// Serves one proxied endpoint (`/v1/chat/completions`, `/v1/completions`,
/// `/v1/embeddings`); the router binds `endpoint`.
pub(crate) async fn handle(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    peer: Option<std::net::IpAddr>,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Response {
    let mut ctx = RequestCtx::new(endpoint, &request_id, Instant::now());
    ctx.peer = peer;
    ctx.trace = state.telemetry.start(&headers);
    ctx.trace.set("gen_ai.system", "openai");
    ctx.trace.set(
        "gen_ai.operation.name",
        crate::telemetry::operation(endpoint),
    );
    let result = match send_upstream(&state, &headers, body, endpoint, &mut ctx).await {
        Ok(Upstream::Sent(sent)) => respond::respond(&state, sent, ctx).await,
        Ok(Upstream::Replayed(stored, kind)) => {
            Ok(crate::replay::respond(&state, stored, kind, ctx))
        }
        Err(err) => Err((err, ctx)),
    };
    result.unwrap_or_else(|(err, mut ctx)| {
        ctx.finish(err.status(), None);
        if err.status() >= 500 {
            tracing::warn!(code = err.code.as_str(), "{}", err.message);
        }
        let mut resp = error_response(&err, Some(&request_id));
        ctx.stamp(resp.headers_mut());
        resp
    })
}

/// How the request is answered: by the upstream, or from a replay table.
enum Upstream {
    /// The upstream's response head arrived.
    Sent(Sent),
    /// A stored response answers it (idempotency key or cache).
    Replayed(Arc<palisade_replay::Stored>, crate::replay::Kind),
}

/// Phases 2 to 6, up to the upstream's response head (or a stored response).
async fn send_upstream(
    state: &Arc<GatewayState>,
    headers: &HeaderMap,
    body: Body,
    endpoint: Endpoint,
    ctx: &mut RequestCtx,
) -> Result<Upstream, ApiError> {
    // Authenticate and admit before reading the body, so unauthenticated or
    // refused callers cannot make us buffer megabytes.
    let span = ctx.trace.begin();
    let principal = front::authenticate(state, headers, ctx);
    crate::telemetry::phase(ctx, span, "palisade.auth", principal.as_ref().err());
    let principal = principal?;
    let span = ctx.trace.begin();
    let admitted = front::admit(state, &principal, ctx).await;
    crate::telemetry::phase(ctx, span, "palisade.admission", admitted.as_ref().err());
    admitted?;
    let bytes = front::read_body(headers, body, state.max_body_bytes).await?;
    let mut request = front::parse(endpoint, &bytes)?;
    ctx.trace.set(
        "gen_ai.request.model",
        crate::telemetry::bounded(request.model()),
    );
    if request.is_stream() {
        ctx._stream_slot = state.admission.admit_stream(&principal)?;
    }

    principal.check_model(request.model())?;
    // The one load of the routing snapshot: this request routes, retries,
    // falls back and relays by it to its last byte, whatever is reloaded
    // meanwhile (the context keeps it alive until the request finishes).
    let routing = state.routing.load();
    ctx.routing = Some(routing.clone());
    let route = route::resolve(&routing, &request)?;
    // Idempotency: before the gates, so a repeat replays the original
    // outcome (judged when it was made) and never runs twice.
    let timeout = route
        .deadline
        .unwrap_or(routing.backends[route.backend].request_timeout);
    let deadline_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    if let Some(stored) =
        state
            .replay
            .begin(&principal, headers, endpoint, &bytes, deadline_ms, ctx)?
    {
        return Ok(Upstream::Replayed(stored, crate::replay::Kind::Idempotency));
    }
    // Extraction defence: the key's ladder rung, then its tier's parameter
    // hardening; the gates' outcome goes to the telemetry worker.
    let ladder_deadline = ctx.started
        + route
            .deadline
            .unwrap_or(routing.backends[route.backend].request_timeout);
    params::enforce_ladder(state, &principal, ladder_deadline).await?;
    // What the hunt can link keys by: hashed, computed once.
    let client = crate::extraction::client_address(ctx.peer, headers, &state.trusted_proxies);
    let fingerprint = crate::extraction::fingerprint(headers, client);
    let hardened = params::harden(state, &principal, route, &mut request, ctx, fingerprint)?;
    let span = ctx.trace.begin();
    let gated = gate::inspect(
        state,
        ctx,
        &principal,
        route,
        &mut request,
        headers,
        bytes.len(),
    )
    .await;
    crate::telemetry::gate_span(state, ctx, span, &gated);
    params::record(
        state,
        &principal,
        &request,
        params::outcome(&gated, hardened),
        fingerprint,
    );
    let gates_rewrote = gated?;
    // The cache: after the request gates allowed it, before anything is spent.
    let (tier, _) = state.extraction.tier_of(&principal.tenant);
    if let Some(stored) = state
        .replay
        .lookup(&principal, headers, &bytes, &request, tier, ctx)
    {
        return Ok(Upstream::Replayed(stored, crate::replay::Kind::Cache));
    }
    ctx.named_route = Some(route.id);
    let (route, degraded) =
        route::degrade(&routing, &principal, route, endpoint, &mut request, ctx);
    let renamed = route::admit_model(state, &principal, route, &mut request, ctx).await?;
    // Watermark: the tenant's green list as the upstream's logit_bias.
    let marked = watermark::mark(state, ctx, &principal, route, endpoint, &mut request).await?;
    let bytes_len = bytes.len();
    let reserved = budget::reserve_tokens(
        state,
        &principal,
        route,
        endpoint,
        &mut request,
        bytes_len,
        ctx,
    )
    .await?;
    let upstream_body =
        if gates_rewrote || degraded || renamed || reserved || hardened.reserialize || marked {
            Bytes::from(request.to_bytes())
        } else {
            // Unchanged: forward the client's bytes as they are (no re-encode).
            bytes
        };
    let sent = if route.cascade.is_some() {
        cascade::send(
            state,
            &routing,
            &principal,
            route,
            &mut request,
            upstream_body,
            bytes_len,
            ctx,
        )
        .await
    } else {
        crate::balancer::attempts::send(
            state,
            &routing,
            &principal,
            route,
            &mut request,
            upstream_body,
            ctx,
        )
        .await
    };
    sent.map(Upstream::Sent)
}
