//! **Route**: the model name → backend and upstream name, the graceful
//! degradation of a saturated backend (a cheaper model, fewer tokens), and
//! the model's own rate limit once the model is known.
//!
//! Must not: forward; [`super::forward`] does.

use palisade_openai::request::{Endpoint, RequestBody};
use palisade_openai::ApiError;

use crate::context::RequestCtx;
use crate::http::auth::Principal;
use crate::routing::Route;
use crate::snapshot::RoutingSnapshot;
use crate::state::GatewayState;

/// Resolves the request's model. `Err` is 404 `model_not_found`.
pub(crate) fn resolve<'s>(
    routing: &'s RoutingSnapshot,
    request: &RequestBody,
) -> Result<&'s Route, ApiError> {
    routing
        .routes
        .resolve(request.model())
        .ok_or_else(|| crate::routing::model_not_found(request.model()))
}

/// Sheds work from a saturated backend: to the route's cheaper model, and
/// to its `overload_max_tokens`. Returns the route to use and whether the
/// body was rewritten; how it degraded is on `ctx` (for the
/// `x-palisade-degraded` header).
pub(crate) fn degrade<'s>(
    routing: &'s RoutingSnapshot,
    principal: &Principal,
    route: &'s Route,
    endpoint: Endpoint,
    request: &mut RequestBody,
    ctx: &mut RequestCtx,
) -> (&'s Route, bool) {
    // Graceful degradation: a saturated backend sheds work to a cheaper
    // model, or generates less.
    let saturated = |r: &Route| {
        routing.backends[r.backend]
            .scheduler
            .as_ref()
            .is_some_and(|s| s.is_saturated())
    };
    let mut route = route;
    let mut degraded: Option<String> = None;
    if saturated(route) {
        if let Some(cheaper) = route.overload_model.clone() {
            // Only to a model this key may call, under the same tier;
            // otherwise the saturated route serves (with its token cap).
            let alt = routing
                .routes
                .resolve(&cheaper)
                .filter(|alt| may_serve(principal, ctx, alt, "the overload model").is_ok());
            if let Some(alt) = alt {
                request.set_model(&cheaper);
                degraded = Some(format!("routed to {cheaper}"));
                route = alt;
            }
        }
    }
    let mut rewritten = degraded.is_some();
    if let Some(cap) = route.overload_max_tokens.filter(|_| saturated(route)) {
        let asked = palisade_openai::usage::requested_max_tokens(request.fields());
        if asked.is_none_or(|m| m > cap) && endpoint != Endpoint::Embeddings {
            request.cap_max_tokens(cap);
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
        ctx.degraded = Some(d);
    }
    (route, rewritten)
}

/// The model's own rate (all tenants together), then the request's model
/// label for metrics and the upstream's model name. `Ok(true)`: the body
/// names another model now. `Err` is 429 from the model's limit.
pub(crate) async fn admit_model(
    state: &GatewayState,
    principal: &Principal,
    route: &Route,
    request: &mut RequestBody,
    ctx: &mut RequestCtx,
) -> Result<bool, ApiError> {
    let mut rewritten = false;
    // The model's own rate (all tenants together), now that it is known.
    let public_model = if &*route.public_name == palisade_config::WILDCARD_MODEL {
        request.model().to_owned()
    } else {
        route.public_name.to_string()
    };
    state
        .admission
        .admit_model(principal, &public_model, &mut ctx.limit_headers)
        .await?;
    // A wildcard name is the client's until the upstream serves it (see
    // `respond`); it still prices the reservation below.
    let wildcard = &*route.public_name == palisade_config::WILDCARD_MODEL;
    ctx.model_label = if wildcard {
        request.model().into()
    } else {
        route.public_name.clone()
    };
    ctx.labelled = !wildcard;
    if let Some(name) = &route.upstream_model {
        request.set_model(name);
        rewritten = true;
    }
    Ok(rewritten)
}

/// Whether `other` may serve a request admitted and judged under its own
/// route: the key's allowlist names it, and the same policy tier governs
/// it. A model another tier governs (stricter redaction, another tool
/// gate) would serve under the wrong one. Shared by every path that hands a
/// request to a model the client did not name: fallbacks, overload
/// degradation, a cascade's cheap stage. `what` names `other` in the error.
pub(crate) fn may_serve(
    principal: &Principal,
    ctx: &RequestCtx,
    other: &Route,
    what: &str,
) -> Result<(), ApiError> {
    principal.check_model(&other.public_name)?;
    if let Some(plan) = &ctx.gates {
        let model = other
            .upstream_model
            .as_deref()
            .unwrap_or(&other.public_name);
        let there = palisade_policy::Subject {
            tenant: &plan.subject.tenant,
            route: &other.public_name,
            model,
        };
        let (here, there) = (
            plan.snapshot.tier_for(&plan.subject_ref()).name(),
            plan.snapshot.tier_for(&there).name(),
        );
        if here != there {
            return Err(ApiError::new(
                palisade_openai::ErrorCode::UpstreamError,
                format!(
                    "the request is judged under `{}`'s policy tier; {what} `{}` is under \
                     another policy tier and was not tried",
                    plan.subject.route, other.public_name
                ),
            ));
        }
    }
    Ok(())
}

/// A fallback route serves another model: the request is admitted to it
/// as if the client had named it. The key's allowlist and the model's own
/// rate apply, and the tokens are reserved again at its price (the failed
/// attempt's reservation is released: a refused attempt used nothing).
/// Without this a cheap or unpriced route falling back to a priced one was
/// charged as the cheap one, and a key limited to it reached the other.
pub(crate) async fn admit_fallback(
    state: &GatewayState,
    principal: &Principal,
    fallback: &Route,
    request: &mut RequestBody,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    may_serve(principal, ctx, fallback, "its fallback")?;
    state
        .admission
        .admit_model(principal, &fallback.public_name, &mut ctx.limit_headers)
        .await?;
    ctx.model_label = fallback.public_name.clone();
    ctx.labelled = true;
    if let Some(mut tokens) = ctx.tokens.take() {
        tokens.cancel();
        // The reservation table is idempotent on ids: the new one has its own.
        ctx.internal_id = format!("{}.fallback", ctx.internal_id);
        let body_bytes = request.to_bytes().len();
        super::budget::reserve_tokens(
            state,
            principal,
            fallback,
            ctx.endpoint,
            request,
            body_bytes,
            ctx,
        )
        .await?;
        // Whether the client asked for the usage chunk was settled by the
        // first reservation (which asked the upstream for it): kept.
        if let Some(new) = &mut ctx.tokens {
            new.strip_usage_chunk = tokens.strip_usage_chunk;
        }
    }
    Ok(())
}
