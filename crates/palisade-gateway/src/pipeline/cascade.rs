//! **Cascade** (part of forward, for a route with `cascade`): a cheaper
//! routed model answers first; its answer is read whole and judged by the
//! evidence gates (`palisade_routing::CascadeGates`: refusal, JSON against
//! `response_format`, mean token log-probability) and, with `policy_flag`,
//! by the output gate; when a gate fires — or the cheap answer is
//! unreadable, or the cheap model failed — the route's own (stronger)
//! model is asked instead, and only its answer reaches the client.
//!
//! Only non-streamed chat completions cascade. A streamed request goes
//! straight to the route's own model: judging the cheap answer needs all of
//! it, so the cheap stream would have to be buffered whole before a byte
//! reached the client, which takes away what streaming is for.
//!
//! A ledger row names (and is priced as) the model that made it: a kept
//! cheap answer's row is the cheap model's.
//! Both calls are accounted: the cheap call's ledger row is written (with
//! its own usage, its reservation settled against it) under the request's
//! ledger id, and the escalation's under `<that id>.escalated` (the id the
//! response names) after it took a fresh reservation from the
//! tenant's budget — a spent budget refuses the escalation with the budget
//! error (429), so a client cannot make the gateway spend past its budget
//! by provoking escalations. Each escalation is audited (gate `routing`,
//! action `cascade_escalated`, the reason, the cheap deployment and the
//! route) and counted (`palisade_cascade_total{route,outcome}`); the
//! response says `x-palisade-cascade: first` or `escalated`. Residency
//! applies to both stages (each is planned like any request to its route).
//!
//! The cheap stage is taken only on the terms its model would have if the
//! client named it (the key's allowlist, the same policy tier, the model's
//! own rate): otherwise the route's own model answers directly, counted as
//! `not_cascaded`.
//!
//! Must not: send the cheap answer anywhere but through the response
//! filters (a kept cheap answer is handed to [`super::respond`] like any
//! other), keep log-probabilities the gateway asked for on the client's
//! behalf, or escalate a streamed request.

use std::sync::Arc;

use bytes::Bytes;
use palisade_openai::request::{Endpoint, RequestBody};
use palisade_openai::ApiError;
use palisade_routing::EscalateReason;
use serde_json::Value;

use super::forward::read_upstream_body;
use super::respond::Sent;
use crate::context::RequestCtx;
use crate::http::auth::Principal;
use crate::routing::Route;
use crate::snapshot::RoutingSnapshot;
use crate::state::GatewayState;

/// Cascade outcomes per route: `first` (the cheap answer stood),
/// `escalated`, `refused_budget` (the escalation did not fit the budget),
/// `not_cascaded` (streamed or not chat: the route's own model directly).
pub(crate) const CASCADES: &str = "palisade_cascade_total";

fn count(route: &Route, outcome: &'static str) {
    metrics::counter!(CASCADES, "route" => route.public_name.to_string(), "outcome" => outcome)
        .increment(1);
}

/// Sends a cascade route's request: the cheap stage, then, when the
/// evidence says so, the route's own model. `body_len` is the client's
/// body size (for the escalation's token estimate).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send(
    state: &Arc<GatewayState>,
    routing: &RoutingSnapshot,
    principal: &Principal,
    route: &Route,
    request: &mut RequestBody,
    body: Bytes,
    body_len: usize,
    ctx: &mut RequestCtx,
) -> Result<Sent, ApiError> {
    let cheap = route
        .cascade
        .as_ref()
        .and_then(|c| routing.routes.resolve(&c.first).map(|r| (c, r)));
    // The route's own label: a fallback inside the cheap or judge call
    // relabels the request (`route::admit_fallback`), and the escalation is
    // priced as the route's model.
    let own_label = ctx.model_label.clone();
    let cheap = cheap.filter(|_| ctx.endpoint == Endpoint::ChatCompletions && !request.is_stream());
    // The cheap model serves only on the terms it would have if the client
    // named it: the key's allowlist, the same policy tier (its answer is
    // judged under the route's), and its own rate (all tenants together).
    // Otherwise the route's own model answers directly.
    let cheap = match cheap {
        Some((c, r))
            if super::route::may_serve(principal, ctx, r, "the cascade's first model").is_ok() =>
        {
            state
                .admission
                .try_model(&r.public_name)
                .await
                .then_some((c, r))
        }
        _ => None,
    };
    let Some((cascade, cheap)) = cheap else {
        count(route, "not_cascaded");
        return crate::balancer::attempts::send(
            state, routing, principal, route, request, body, ctx,
        )
        .await;
    };
    // The cheap stage: the cheap model's name (and watermark), and
    // log-probabilities when a gate needs them and the client did not ask.
    let mut first = request.clone();
    let name = cheap
        .upstream_model
        .clone()
        .unwrap_or_else(|| cheap.public_name.clone());
    first.set_model(&name);
    super::watermark::remark(state, principal, cheap, ctx.endpoint, &mut first).await?;
    let added_logprobs =
        cascade.gates.wants_logprobs() && !request.fields().contains_key("logprobs");
    if added_logprobs {
        first
            .fields_mut()
            .insert("logprobs".to_owned(), Value::Bool(true));
    }
    let first_body = Bytes::from(first.to_bytes());
    let sent = crate::balancer::attempts::send(
        state, routing, principal, cheap, &mut first, first_body, ctx,
    )
    .await;
    let judged = judge(state, cascade, request, sent, ctx).await;
    let (reason, parsed, cheap_backend) = match judged {
        Judged::Stands(sent, head, body, value)
            if cascade.gates.on.contains(&EscalateReason::Judge) =>
        {
            let cheap_backend = sent.backend.name.clone();
            if ask_judge(
                state, routing, principal, cascade, cheap, request, &value, ctx,
            )
            .await?
            {
                (EscalateReason::Judge, None, Some(cheap_backend))
            } else {
                let body = if added_logprobs {
                    strip_logprobs(value).unwrap_or(body)
                } else {
                    body
                };
                let mut sent = sent;
                sent.upstream = rebuild(&head, body);
                count(route, "first");
                ctx.cascade = Some("first");
                ctx.model_label = cheap.public_name.clone();
                return Ok(sent);
            }
        }
        Judged::Stands(mut sent, head, body, value) => {
            let body = if added_logprobs {
                strip_logprobs(value).unwrap_or(body)
            } else {
                body
            };
            sent.upstream = rebuild(&head, body);
            count(route, "first");
            ctx.cascade = Some("first");
            // The ledger prices the model that answered: the cheap one.
            ctx.model_label = cheap.public_name.clone();
            return Ok(sent);
        }
        Judged::Escalate {
            reason,
            parsed,
            backend,
        } => (reason, parsed, backend),
    };
    // Escalation: the cheap call's row and reservation first.
    crate::balancer::audit_cascade(
        state,
        principal,
        ctx,
        route,
        reason.as_str(),
        cheap_backend.as_deref(),
    );
    // (After a judge, the cheap call is already closed: this writes nothing.)
    let status = if parsed.is_some() || reason == EscalateReason::Judge {
        200
    } else {
        502
    };
    close_call(ctx, &cheap.public_name, parsed.as_ref(), status).await;
    ctx.served_by = None;
    // The escalation is its own call: its own reservation and ledger row,
    // under a derived id (the reservation table is idempotent on ids, so
    // reusing the cheap call's would collide). The response names it.
    ctx.internal_id = format!("{}.escalated", ctx.internal_id);
    ctx.model_label = own_label;
    // The escalation's own reservation: it fits the budget or is refused.
    if let Err(err) = super::budget::reserve_tokens(
        state,
        principal,
        route,
        ctx.endpoint,
        request,
        body_len,
        ctx,
    )
    .await
    {
        count(route, "refused_budget");
        return Err(err);
    }
    count(route, "escalated");
    ctx.cascade = Some("escalated");
    // Re-encoded: the reservation may have set `max_tokens`.
    drop(body);
    let body = Bytes::from(request.to_bytes());
    crate::balancer::attempts::send(state, routing, principal, route, request, body, ctx).await
}

enum Judged {
    /// The cheap answer stands: the response (its body to be put back),
    /// its head, its body and its parsed value.
    Stands(Sent, http::response::Parts, Bytes, Value),
    /// Ask the route's own model.
    Escalate {
        reason: EscalateReason,
        /// The cheap answer, when it was a readable completion (its usage
        /// is the cheap call's).
        parsed: Option<Value>,
        /// The cheap deployment that answered, if any.
        backend: Option<String>,
    },
}

async fn judge(
    state: &Arc<GatewayState>,
    cascade: &crate::routing::CascadeRoute,
    request: &RequestBody,
    sent: Result<Sent, ApiError>,
    ctx: &RequestCtx,
) -> Judged {
    let malformed = |backend: Option<String>| Judged::Escalate {
        reason: EscalateReason::Malformed,
        parsed: None,
        backend,
    };
    let Ok(sent) = sent else {
        return malformed(None);
    };
    let backend = Some(sent.backend.name.clone());
    if !sent.upstream.status().is_success() {
        return malformed(backend);
    }
    let Sent {
        upstream,
        backend: b,
        deadline,
        client_wants_stream,
    } = sent;
    let mut head = http::Response::new(());
    *head.status_mut() = upstream.status();
    *head.headers_mut() = upstream.headers().clone();
    head.headers_mut().remove(http::header::CONTENT_LENGTH);
    let (upstream_head, ()) = head.into_parts();
    // Bounded (the upstream body limit and the deadline): a huge or endless
    // cheap answer ends as a failed read, which escalates.
    let Ok(bytes) = read_upstream_body(&b, upstream, deadline).await else {
        return malformed(backend);
    };
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
        return malformed(backend);
    };
    if let Some(reason) = cascade
        .gates
        .judge(&value, request.fields().get("response_format"))
    {
        return Judged::Escalate {
            reason,
            parsed: Some(value),
            backend,
        };
    }
    if cascade.gates.on.contains(&EscalateReason::PolicyFlag) {
        if let Some(plan) = ctx.gates.clone() {
            let inline = bytes.len() <= crate::cpu::INLINE_BYTES;
            let probe = bytes.clone();
            let job = move || super::filters::filter_body(&plan, true, probe);
            if !matches!(state.cpu.run_or_inline(inline, job).await, Ok(Ok(_))) {
                return Judged::Escalate {
                    reason: EscalateReason::PolicyFlag,
                    parsed: Some(value),
                    backend,
                };
            }
        }
    }
    Judged::Stands(
        Sent {
            upstream: rebuild(&upstream_head, bytes.clone()),
            backend: b,
            deadline,
            client_wants_stream,
        },
        upstream_head,
        bytes,
        value,
    )
}

/// Largest question or answer text the judge is shown: bounds what a
/// cascade request can make the judge read.
const MAX_JUDGED_CHARS: usize = 8 * 1024;

/// Asks the judge whether the cheap answer will do; `true`: escalate.
/// The judge is a call of its own: the cheap call's ledger row is written
/// (priced as the cheap model) and its reservation settled first, then the
/// judge takes its own reservation (`429` when the budget cannot hold it)
/// and writes its row under `<id>.judge`. Its answer never reaches the
/// client. A judge that fails or cannot be read keeps the cheap answer.
#[allow(clippy::too_many_arguments)]
async fn ask_judge(
    state: &Arc<GatewayState>,
    routing: &RoutingSnapshot,
    principal: &Principal,
    cascade: &crate::routing::CascadeRoute,
    cheap: &Route,
    request: &RequestBody,
    answer: &Value,
    ctx: &mut RequestCtx,
) -> Result<bool, ApiError> {
    let Some((judge_name, prompt)) = &cascade.judge else {
        return Ok(false);
    };
    let Some(judge) = routing.routes.resolve(judge_name) else {
        return Ok(false);
    };
    let bounded = |s: &str| s.chars().take(MAX_JUDGED_CHARS).collect::<String>();
    let question = request
        .fields()
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .map(bounded)
        .unwrap_or_default();
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .map(bounded)
        .unwrap_or_default();
    // The cheap call, accounted as done.
    let served = ctx.served_by.clone();
    let attempts = ctx.attempts;
    let original_id = ctx.internal_id.clone();
    close_call(ctx, &cheap.public_name, Some(answer), 200).await;
    // The judge's own call.
    ctx.internal_id = format!("{original_id}.judge");
    let name = judge
        .upstream_model
        .clone()
        .unwrap_or_else(|| judge.public_name.clone());
    let body = serde_json::json!({
        "model": &*name,
        "max_tokens": 8,
        "messages": [
            {"role": "system", "content": prompt},
            {"role": "user", "content": format!("Question:\n{question}\n\nAnswer:\n{text}")},
        ],
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let verdict = judge_call(state, routing, principal, judge, &bytes, ctx).await;
    let (yes, value, status) = match verdict {
        Ok(v) => v,
        Err(err) => {
            ctx.internal_id = original_id;
            return Err(err);
        }
    };
    close_call(ctx, &judge.public_name, value.as_ref(), status).await;
    ctx.internal_id = original_id;
    ctx.served_by = served;
    ctx.attempts = attempts;
    Ok(yes)
}

/// The judge's call: reserved, sent (residency as for any request to its
/// route), read. `(says yes, its answer, status)`.
async fn judge_call(
    state: &Arc<GatewayState>,
    routing: &RoutingSnapshot,
    principal: &Principal,
    judge: &Route,
    bytes: &[u8],
    ctx: &mut RequestCtx,
) -> Result<(bool, Option<Value>, u16), ApiError> {
    let Ok(mut judged) = RequestBody::parse(Endpoint::ChatCompletions, bytes) else {
        return Ok((false, None, 502));
    };
    super::budget::reserve_tokens(
        state,
        principal,
        judge,
        Endpoint::ChatCompletions,
        &mut judged,
        bytes.len(),
        ctx,
    )
    .await?;
    let body = Bytes::from(judged.to_bytes());
    let sent =
        crate::balancer::attempts::send(state, routing, principal, judge, &mut judged, body, ctx)
            .await;
    let Ok(sent) = sent else {
        return Ok((false, None, 502));
    };
    let status = sent.upstream.status().as_u16();
    let read = read_upstream_body(&sent.backend, sent.upstream, sent.deadline).await;
    let value = read
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let yes = value
        .as_ref()
        .and_then(|v| v["choices"][0]["message"]["content"].as_str())
        .is_some_and(palisade_routing::judge_says_yes);
    Ok((yes && status == 200, value, status))
}

/// Ends one call of a cascade: its usage counted, its ledger row written
/// (priced as `model`), its reservation settled, its places given back.
async fn close_call(ctx: &mut RequestCtx, model: &Arc<str>, answer: Option<&Value>, status: u16) {
    if let (Some(tokens), Some(value)) = (&mut ctx.tokens, answer) {
        tokens.tally.observe_response(value);
    }
    let label = std::mem::replace(&mut ctx.model_label, model.clone());
    ctx.write_ledger_now(status, None).await;
    ctx.model_label = label;
    if let Some(tokens) = &mut ctx.tokens {
        tokens.settle(status);
    }
    ctx.tokens = None;
    ctx.ledger = None;
    ctx._backend_slot = None;
    ctx._outstanding = None;
}

/// A response with `head`'s status and headers and `body`.
fn rebuild(head: &http::response::Parts, body: Bytes) -> reqwest::Response {
    let mut resp = http::Response::new(body);
    *resp.status_mut() = head.status;
    *resp.headers_mut() = head.headers.clone();
    reqwest::Response::from(resp)
}

/// The answer without the `logprobs` the gateway asked for.
fn strip_logprobs(mut value: Value) -> Option<Bytes> {
    for choice in value.get_mut("choices")?.as_array_mut()? {
        if let Some(c) = choice.as_object_mut() {
            c.remove("logprobs");
        }
    }
    serde_json::to_vec(&value).ok().map(Bytes::from)
}
