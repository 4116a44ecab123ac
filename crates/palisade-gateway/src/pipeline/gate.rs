//! **Request gates**: the input and context gates judge every text of the
//! request on its channel, then the tool gate filters the offered tools and
//! checks the loop caps. The request is rewritten as the policy asks.
//!
//! Must not: hold gate logic; it runs [`crate::gates`] on the request.

use http::HeaderMap;
use palisade_openai::request::{Endpoint, RequestBody};
use palisade_openai::{ApiError, ErrorCode};

use crate::context::RequestCtx;
use crate::http::auth::Principal;
use crate::routing::Route;
use crate::state::GatewayState;

/// Runs the request gates (chat and completions; embeddings carry no
/// instructions a model follows). `Ok(true)`: the body was rewritten;
/// the plan for the response gates is on `ctx.gates`. `Err`: the request is
/// refused (an offence counts against the key's escalation ladder).
pub(crate) async fn inspect(
    state: &GatewayState,
    ctx: &mut RequestCtx,
    principal: &Principal,
    route: &Route,
    request: &mut RequestBody,
    headers: &HeaderMap,
    body_bytes: usize,
) -> Result<bool, ApiError> {
    // Judge each message on its channel, then rewrite as the policy asks
    // (redaction, spotlighting, a canary).
    let mut gates_rewrote = false;
    // A stored response is continued only by its owner (the upstream key is
    // shared by every tenant): before any gate, whatever the gates say.
    let continued = if ctx.endpoint == Endpoint::Responses {
        crate::api::responses::check_continuation(state, principal, request.fields()).await?
    } else {
        None
    };
    let shape = match ctx.endpoint {
        Endpoint::ChatCompletions => Some(crate::gates::ResponseShape::Chat),
        Endpoint::Completions => Some(crate::gates::ResponseShape::Completion),
        Endpoint::Responses => Some(crate::gates::ResponseShape::Responses),
        // Embeddings generate no text and carry no instructions a model follows.
        _ => None,
    };
    if let Some(shape) = shape.filter(|_| state.gates.enabled) {
        let subject = crate::gates::GateSubject {
            request_id: ctx.internal_id.clone(),
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
            subject,
            shape,
            request.fields_mut(),
            retrieved,
            body_bytes,
        )
        .await;
        observe(state, principal, &verdict);
        let (mut plan, changed) = verdict?.inspect_err(|_| state.admission.offend(principal, 1))?;
        // The turns before `previous_response_id` stay upstream, unseen
        // here: what they carried (a poisoned tool result, flagged text) is
        // carried on, or the next turn would release the egress call the
        // injection asked for.
        if let Some(owner) = &continued {
            plan.untrusted_context |= owner.untrusted;
            plan.flagged_context |= owner.flagged;
        }
        let tools_changed = shape != crate::gates::ResponseShape::Completion
            && crate::gates::tools::inspect_request(
                &state.gates.tools,
                state.tool_store(),
                &mut plan,
                request.fields_mut(),
                headers,
            )
            .await?;
        ctx.gates = Some(plan);
        gates_rewrote = changed || tools_changed;
    }
    Ok(gates_rewrote)
}

/// Hands the request gates' outcome to the anomaly detector (never waits).
fn observe(
    state: &GatewayState,
    principal: &Principal,
    verdict: &Result<crate::gates::input::GateVerdict, ApiError>,
) {
    use palisade_anomaly::Outcome;
    let outcome = match verdict {
        Ok(Ok((plan, _))) if plan.flagged => Outcome::Flagged,
        Ok(Ok(_)) => Outcome::Allowed,
        Ok(Err(_)) => Outcome::Blocked,
        Err(e) if matches!(e.code, ErrorCode::DetectorSaturated | ErrorCode::Overloaded) => {
            Outcome::Refused
        }
        // A malformed request says nothing about the tenant's traffic.
        Err(_) => return,
    };
    state
        .anomaly
        .observe(&principal.tenant, &principal.key_name, outcome);
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
