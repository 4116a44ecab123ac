//! The forward phase's attempts: the planner picks a deployment, the
//! request goes there, and a failed attempt (before any byte went to the
//! client: only response heads and error bodies are looked at here) is
//! retried on another deployment or a fallback route when
//! `palisade_routing` says it is safe, affordable and in time.
//!
//! Must not: retry once a response is handed on (streams included: the
//! head is the last point of decision), resend what the planner calls
//! unsafe, or send a request to a deployment the residency rule forbids
//! (the planner only offers allowed ones).

use std::time::{Duration, Instant};

use bytes::Bytes;
use palisade_openai::request::{Endpoint, RequestBody};
use palisade_openai::{ApiError, ErrorCode};
use palisade_routing::{Attempt, Failure, FailureClass, GiveUp, HedgeOutcome, Planner, SplitMix};

use super::audit::{self, Decision};
use super::hedge;
use super::Observed;
use crate::context::RequestCtx;
use crate::http::auth::Principal;
use crate::pipeline::respond::Sent;
use crate::pipeline::{budget, forward};
use crate::routing::Route;
use crate::snapshot::RoutingSnapshot;
use crate::state::GatewayState;

/// Attempts by backend and outcome (`ok`, or the failure class).
const ATTEMPTS: &str = "palisade_routing_attempts_total";
/// Decisions after a failure: `retry`, `fallback`, or why not.
const DECISIONS: &str = "palisade_routing_decisions_total";

/// Largest error body read to classify a 400 (context length, content
/// filter): error bodies are small, and a large one is not one of those.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What one attempt produced.
pub(super) enum Outcome {
    /// A response to hand on.
    Answer(reqwest::Response),
    /// A failure, with what to return if nothing better comes.
    Failed {
        failure: Failure,
        last: Result<reqwest::Response, ApiError>,
    },
}

/// Sends the request through its attempts; the first usable answer (or the
/// last failure, when no further attempt is allowed) is returned.
pub(crate) async fn send(
    state: &GatewayState,
    routing: &RoutingSnapshot,
    principal: &Principal,
    route: &Route,
    request: &mut RequestBody,
    mut body: Bytes,
    ctx: &mut RequestCtx,
) -> Result<Sent, ApiError> {
    let endpoint = ctx.endpoint;
    let balancer = &routing.balancer;
    let primary_backend = &routing.backends[route.backend];
    let deadline = ctx.started + route.deadline.unwrap_or(primary_backend.request_timeout);
    let idempotent = route.idempotent || endpoint == Endpoint::Embeddings;
    let mut rule = routing.routes.tenant_rule(&principal.tenant);
    // The route the client named keeps its residency rule when another
    // route serves (overload degradation, a cascade's cheap stage): its
    // rule says where *its* requests may go.
    if let Some(named) = ctx.named_route.filter(|&id| id != route.id) {
        if let Some(spec) = routing.routes.specs().get(named) {
            rule = rule.and(&spec.residency);
        }
    }
    let mut planner = Planner::new(
        routing.routes.specs(),
        route.id,
        rule,
        route.retry,
        idempotent,
        balancer.nanos(deadline),
    );
    let mut rng = SplitMix(uuid::Uuid::new_v4().as_u64_pair().0);
    let first = {
        let at = Instant::now();
        let mut view = balancer.view(&routing.backends, at);
        planner.first(balancer.nanos(at), &mut view, &mut rng)
    };
    let mut attempt = match first {
        Ok(a) => a,
        Err(_) => {
            let rule = planner.rule_for(route.id).describe();
            metrics::counter!(DECISIONS, "decision" => "residency_unavailable").increment(1);
            audit::write(
                state,
                principal,
                ctx,
                &Decision {
                    action: "refuse",
                    reason_code: "residency_unavailable",
                    route: &route.public_name,
                    rule: rule.clone(),
                    failed: None,
                    next: None,
                    attempt: 0,
                },
            );
            tracing::warn!(
                target: "palisade::routing",
                route = %route.public_name,
                rule = %rule,
                "no deployment allowed by the residency rule is available"
            );
            return Err(ApiError::new(
                ErrorCode::ResidencyUnavailable,
                format!(
                    "no deployment of `{}` allowed by the residency rule ({rule}) is available",
                    route.public_name
                ),
            ));
        }
    };
    budget::queue_and_open_row(
        state,
        principal,
        &routing.backends[attempt.backend],
        endpoint,
        deadline,
        ctx,
    )
    .await?;
    let mut last_backend = attempt.backend;
    let mut current_route = route.id;
    loop {
        if attempt.delay > 0 {
            tokio::time::sleep(Duration::from_nanos(attempt.delay)).await;
        }
        let backend = &routing.backends[attempt.backend];
        if attempt.backend != last_backend {
            move_to(routing, principal, attempt, deadline, ctx).await?;
            last_backend = attempt.backend;
        }
        if attempt.route != current_route {
            // A fallback route serves another model: the upstream hears its name.
            if let Some(fallback) = routing.routes.by_id(attempt.route) {
                crate::pipeline::route::admit_fallback(state, principal, fallback, request, ctx)
                    .await?;
                let name = fallback
                    .upstream_model
                    .clone()
                    .unwrap_or_else(|| fallback.public_name.clone());
                request.set_model(&name);
                // Another model, another vocabulary: its own watermark or none.
                crate::pipeline::watermark::remark(state, principal, fallback, endpoint, request)
                    .await?;
                body = Bytes::from(request.to_bytes());
            }
            current_route = attempt.route;
        }
        ctx.attempts = attempt.number;
        let hedge_now = match (&route.hedge, attempt.number) {
            (Some(h), 1) if hedge::eligible(endpoint, route, request.is_stream()) => Some(h),
            (Some(_), 1) => {
                hedge::count(route, HedgeOutcome::Ineligible);
                None
            }
            _ => None,
        };
        let (backend, outcome, latency, outstanding) = if let Some(h) = hedge_now {
            let entrants = hedge::Entrants {
                routing,
                route,
                hedge: h,
                principal,
                body: &body,
                deadline,
            };
            let raced = hedge::race(&entrants, attempt, &mut planner, &mut rng, ctx).await;
            let leg = settle_race(
                state,
                routing,
                principal,
                route,
                request.model(),
                raced,
                ctx,
            );
            if leg.attempt.backend != last_backend {
                // The hedge's own place (none when its backend has no
                // queue): the first attempt's place is given back.
                ctx._backend_slot = leg.slot;
                last_backend = leg.attempt.backend;
            }
            attempt = leg.attempt;
            if let Some(wait) = leg_retry_after(&leg.outcome) {
                // The planner would pin this wait on its last attempt, which
                // in a race need not be the one that failed.
                planner.wait_for(leg.attempt.backend, wait, balancer.nanos(Instant::now()));
            }
            let outcome = match leg.outcome {
                Outcome::Failed { failure, last } => Outcome::Failed {
                    failure: Failure {
                        retry_after: None,
                        ..failure
                    },
                    last,
                },
                answer => answer,
            };
            (
                &routing.backends[leg.attempt.backend],
                outcome,
                leg.latency,
                leg.outstanding,
            )
        } else {
            let outstanding = balancer.begin(attempt.backend, attempt.number == 1);
            let sent_at = Instant::now();
            let span = ctx.trace.begin();
            let result = forward::forward(
                backend,
                body.clone(),
                &principal.tenant,
                deadline,
                ctx,
                ctx._backend_slot.as_ref(),
                &span,
            )
            .await;
            let head = match &result {
                Ok(resp) => Ok(resp.status().as_u16()),
                Err((e, _)) => Err(e),
            };
            crate::telemetry::attempt_span(
                ctx,
                span,
                &backend.name,
                attempt.number,
                request.model(),
                head,
            );
            let latency = sent_at.elapsed();
            let outcome = classify(routing, route, backend, result, deadline).await;
            (backend, outcome, latency, outstanding)
        };
        let (failure, last) = match outcome {
            Outcome::Answer(resp) => {
                balancer.observe(attempt.backend, Observed::Ok(latency), None);
                metrics::counter!(ATTEMPTS, "backend" => backend.name.clone(), "outcome" => "ok")
                    .increment(1);
                served_by(ctx, backend);
                ctx._outstanding = Some(outstanding);
                ctx.trace.begin_relay();
                return Ok(Sent {
                    upstream: resp,
                    backend: backend.clone(),
                    deadline,
                    client_wants_stream: request.is_stream(),
                });
            }
            Outcome::Failed { failure, last } => (failure, last),
        };
        drop(outstanding);
        observe_failure(routing, attempt.backend, &failure, &last);
        let next = {
            let at = Instant::now();
            let mut view = balancer.view(&routing.backends, at);
            planner.after(failure, balancer.nanos(at), &mut view, &mut rng)
        };
        match next {
            Ok(next) => {
                let decision = if next.route == attempt.route {
                    "retry"
                } else {
                    "fallback"
                };
                metrics::counter!(DECISIONS, "decision" => decision).increment(1);
                tracing::info!(
                    target: "palisade::routing",
                    request_id = %ctx.request_id,
                    failed = %backend.name,
                    class = failure.class.as_str(),
                    next = %routing.backends[next.backend].name,
                    attempt = next.number,
                    delay_ms = next.delay / 1_000_000,
                    rule = %planner.rule_for(next.route).describe(),
                    "{decision}"
                );
                audit::write(
                    state,
                    principal,
                    ctx,
                    &Decision {
                        action: decision,
                        reason_code: failure.class.as_str(),
                        route: &route.public_name,
                        rule: planner.rule_for(next.route).describe(),
                        failed: Some(&backend.name),
                        next: Some(&routing.backends[next.backend].name),
                        attempt: attempt.number,
                    },
                );
                attempt = next;
            }
            Err(reason) => {
                metrics::counter!(DECISIONS, "decision" => give_up_label(reason)).increment(1);
                audit::write(
                    state,
                    principal,
                    ctx,
                    &Decision {
                        action: "give_up",
                        reason_code: give_up_label(reason),
                        route: &route.public_name,
                        rule: planner.rule_for(attempt.route).describe(),
                        failed: Some(&backend.name),
                        next: None,
                        attempt: attempt.number,
                    },
                );
                served_by(ctx, backend);
                return last.map(|resp| Sent {
                    upstream: resp,
                    backend: backend.clone(),
                    deadline,
                    client_wants_stream: request.is_stream(),
                });
            }
        }
    }
}

/// A failed attempt, for the deployment's health and the metrics.
fn observe_failure(
    routing: &RoutingSnapshot,
    backend: usize,
    failure: &Failure,
    last: &Result<reqwest::Response, ApiError>,
) {
    let circuit_refused = last
        .as_ref()
        .err()
        .is_some_and(|e| e.code == ErrorCode::CircuitOpen);
    if !circuit_refused {
        let observed = if failure.class.is_deployment_fault() {
            Observed::Fault
        } else {
            Observed::Refusal
        };
        let retry_after = failure.retry_after.map(Duration::from_nanos);
        routing.balancer.observe(backend, observed, retry_after);
    }
    let name = routing.backends.get(backend).map(|b| b.name.clone());
    metrics::counter!(ATTEMPTS, "backend" => name.unwrap_or_default(), "outcome" => failure.class.as_str())
        .increment(1);
}

fn leg_retry_after(outcome: &Outcome) -> Option<u64> {
    match outcome {
        Outcome::Failed { failure, .. } => failure.retry_after,
        Outcome::Answer(_) => None,
    }
}

/// After a race: spans and health for every attempt that ended, a count
/// and an audit record for the hedge (won, lost or failed), and the
/// cancelled attempts on the metrics. Returns the leg that decides.
fn settle_race(
    state: &GatewayState,
    routing: &RoutingSnapshot,
    principal: &Principal,
    route: &Route,
    model: &str,
    raced: hedge::Raced,
    ctx: &mut RequestCtx,
) -> hedge::Leg {
    let hedge::Raced {
        leg,
        hedges,
        cancelled,
        failed,
        skipped,
    } = raced;
    for f in failed {
        let name = &routing.backends[f.attempt.backend].name;
        let head = f.head.as_ref().map(|s| *s);
        crate::telemetry::attempt_span(ctx, f.span, name, f.attempt.number, model, head);
        if let Outcome::Failed { failure, last } = &f.outcome {
            observe_failure(routing, f.attempt.backend, failure, last);
        }
    }
    {
        let name = &routing.backends[leg.attempt.backend].name;
        let head = leg.head.as_ref().map(|s| *s);
        crate::telemetry::attempt_span(ctx, leg.span, name, leg.attempt.number, model, head);
    }
    for &(b, ran) in &cancelled {
        routing.balancer.observe(b, Observed::Cancelled(ran), None);
        metrics::counter!(ATTEMPTS, "backend" => routing.backends[b].name.clone(), "outcome" => "hedge_lost")
            .increment(1);
    }
    ctx.attempts = leg.attempt.number.max(1 + hedges);
    let answered = matches!(leg.outcome, Outcome::Answer(_));
    let outcome = match (hedges, answered, leg.attempt.number == 1) {
        (0, true, _) if skipped => None,
        (0, true, _) => Some(HedgeOutcome::NotNeeded),
        (0, false, _) => None,
        (_, true, true) => Some(HedgeOutcome::Lost),
        (_, true, false) => Some(HedgeOutcome::Won),
        (_, false, _) => Some(HedgeOutcome::Failed),
    };
    if let Some(outcome) = outcome {
        hedge::count(route, outcome);
    }
    if hedges > 0 {
        ctx.hedged = true;
        let winner = &routing.backends[leg.attempt.backend].name;
        let cancelled_names: Vec<&str> = cancelled
            .iter()
            .map(|&(b, _)| routing.backends[b].name.as_str())
            .collect();
        let cancelled_list = cancelled_names.join(",");
        audit::write(
            state,
            principal,
            ctx,
            &Decision {
                action: "hedge",
                reason_code: outcome.map_or("failed", HedgeOutcome::as_str),
                route: &route.public_name,
                rule: routing
                    .routes
                    .tenant_rule(&principal.tenant)
                    .and(
                        &routing
                            .routes
                            .specs()
                            .get(route.id)
                            .map(|s| s.residency.clone())
                            .unwrap_or_default(),
                    )
                    .describe(),
                failed: (!cancelled_list.is_empty()).then_some(cancelled_list.as_str()),
                next: answered.then_some(winner.as_str()),
                attempt: leg.attempt.number,
            },
        );
    }
    leg
}

fn give_up_label(reason: GiveUp) -> &'static str {
    match reason {
        GiveUp::NotSafe => "not_safe",
        GiveUp::Exhausted => "exhausted",
        GiveUp::Deadline => "deadline",
        GiveUp::Budget => "budget",
        GiveUp::ResidencyUnavailable => "residency_unavailable",
    }
}

fn served_by(ctx: &mut RequestCtx, backend: &crate::upstream::Backend) {
    ctx.served_by = Some(backend.name.as_str().into());
    let attempts = ctx.attempts;
    if let Some(row) = &mut ctx.ledger {
        row.set_backend(&backend.name);
        row.attempts = attempts;
    }
}

/// The request moves to another backend: its place in the old backend's
/// queue is given back and one at the new backend's is taken.
async fn move_to(
    routing: &RoutingSnapshot,
    principal: &Principal,
    attempt: Attempt,
    deadline: Instant,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    ctx._backend_slot = None;
    let backend = &routing.backends[attempt.backend];
    if let Some(scheduler) = &backend.scheduler {
        let cost = ctx
            .tokens
            .as_ref()
            .map_or(1, crate::limits::accounting::TokenAccounting::reserved);
        ctx._backend_slot = Some(
            scheduler
                .acquire(&principal.tenant, principal.priority_class, cost, deadline)
                .await?,
        );
    }
    Ok(())
}

/// Seconds of an upstream `Retry-After` (the delta form; a date is ignored).
fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| s.min(3_600).saturating_mul(1_000_000_000))
}

/// Sorts an attempt's result into an answer or a failure class. A 400 is
/// read (bounded) only when the route has a chain for context-length or
/// content-filter failures; the body is put back for the client if it is
/// not one of those.
pub(super) async fn classify(
    routing: &RoutingSnapshot,
    route: &Route,
    backend: &crate::upstream::Backend,
    result: Result<reqwest::Response, (ApiError, FailureClass)>,
    deadline: Instant,
) -> Outcome {
    let resp = match result {
        Ok(resp) => resp,
        Err((error, class)) => {
            return Outcome::Failed {
                failure: Failure::of(class),
                last: Err(error),
            }
        }
    };
    let status = resp.status().as_u16();
    if let Some(class) = FailureClass::from_status(status, None) {
        let retry_after = retry_after(&resp);
        return Outcome::Failed {
            failure: Failure { class, retry_after },
            last: Ok(resp),
        };
    }
    let spec = routing.routes.specs().get(route.id);
    let has_model_chain = spec.is_some_and(|s| {
        !s.fallbacks.chain(FailureClass::ContextLength).is_empty()
            || !s.fallbacks.chain(FailureClass::ContentFilter).is_empty()
    });
    if !(has_model_chain && (status == 400 || status == 413)) {
        return Outcome::Answer(resp);
    }
    let status_code = resp.status();
    let headers = resp.headers().clone();
    let bytes = if resp
        .content_length()
        .is_some_and(|n| n as usize > MAX_ERROR_BODY)
    {
        return Outcome::Answer(resp);
    } else {
        match forward::read_upstream_body(backend, resp, deadline).await {
            Ok(b) => b,
            Err(e) => {
                return Outcome::Failed {
                    failure: Failure::of(FailureClass::Broken),
                    last: Err(e),
                }
            }
        }
    };
    let hint = error_hint(&bytes);
    let mut rebuilt = http::Response::new(bytes);
    *rebuilt.status_mut() = status_code;
    *rebuilt.headers_mut() = headers;
    let resp = reqwest::Response::from(rebuilt);
    match FailureClass::from_status(status, Some(&hint)) {
        Some(class) => Outcome::Failed {
            failure: Failure::of(class),
            last: Ok(resp),
        },
        None => Outcome::Answer(resp),
    }
}

/// `error.code` and `error.type` of an OpenAI-style error body, and
/// `context_length` when the message says so (vLLM and llama.cpp put it
/// only in the message).
fn error_hint(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let e = &v["error"];
    let mut hint = format!(
        "{} {}",
        e["code"].as_str().unwrap_or(""),
        e["type"].as_str().unwrap_or("")
    );
    let message = e["message"].as_str().unwrap_or("").to_ascii_lowercase();
    if message.contains("context length") || message.contains("context window") {
        hint.push_str(" context_length");
    }
    hint
}
