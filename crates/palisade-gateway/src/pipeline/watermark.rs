//! Phase **watermark** (after routing, degradation and renaming, so it sees
//! the model the upstream will serve): on a watermarked model and tenant,
//! the tenant's green list for the current period becomes the body's
//! `logit_bias`, the client's own `logit_bias` is stripped, merged or
//! refused (400 `watermark_logit_bias_refused`, naming the field), and
//! log-probabilities are refused (400 `watermark_logprobs_refused`) or
//! stripped unless the operator allows them.
//! Every refusal, strip and merge of the client's fields is audited (tier
//! `watermark`, reason `<code>` or `watermark_client_bias:<action>`, and
//! `param:<field>`). Returns whether the body must be re-encoded.
//!
//! The phase runs after parameter hardening and the request gates, so they
//! judge the client's fields, not the gateway's map (hardening's
//! `logit_bias`-with-`logprobs` rule is about client logit control). A
//! fallback to another route is marked again for that route
//! ([`remark`]).
//!
//! Must not: decide what is green (`palisade-watermark`) or hold state
//! ([`crate::watermark`]).

use palisade_openai::request::{Endpoint, RequestBody};
use palisade_openai::{ApiError, ErrorCode};
use palisade_watermark::request::Refusal;
use palisade_watermark::{apply, Applied, ClientBias, Marking};

use crate::context::RequestCtx;
use crate::http::auth::Principal;
use crate::pipeline::params::audit_param;
use crate::routing::Route;
use crate::state::GatewayState;
use crate::watermark::{CLIENT_BIAS, MARKED};

/// The stable code of a refused client `logit_bias` (400).
pub(crate) const BIAS_REFUSED: &str = "watermark_logit_bias_refused";
/// The stable code of refused log-probabilities (400).
pub(crate) const LOGPROBS_REFUSED: &str = "watermark_logprobs_refused";

/// The audit tier of the phase's decisions.
const TIER: &str = "watermark";

/// Marks the request for `route` when it and the tenant are watermarked.
pub(crate) async fn mark(
    state: &GatewayState,
    ctx: &RequestCtx,
    principal: &Principal,
    route: &Route,
    endpoint: Endpoint,
    request: &mut RequestBody,
) -> Result<bool, ApiError> {
    let Some(wm) = state.watermark.as_ref() else {
        return Ok(false);
    };
    if !wm.covers(&principal.tenant, &route.public_name) {
        return Ok(false);
    }
    let client = wm.client_bias();
    match mark_with(state, principal, route, endpoint, request, client).await {
        Ok(Some(applied)) => {
            if !applied.client_fields.is_empty() {
                let action = match client {
                    ClientBias::Merge => "merge",
                    _ => "strip",
                };
                metrics::counter!(CLIENT_BIAS, "action" => action).increment(1);
                let mut reasons = vec![format!("watermark_client_bias:{action}")];
                reasons.extend(applied.client_fields.iter().map(|f| format!("param:{f}")));
                let model = request.model().to_owned();
                audit_param(
                    state,
                    ctx,
                    principal,
                    route,
                    &model,
                    TIER,
                    reasons,
                    palisade_policy::Action::Redact,
                );
            }
            metrics::counter!(MARKED).increment(1);
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(e) => {
            if e.reason == Some(BIAS_REFUSED) {
                metrics::counter!(CLIENT_BIAS, "action" => "refuse").increment(1);
            }
            let mut reasons = vec![e.reason.unwrap_or("watermark_refused").to_owned()];
            reasons.extend(e.param.iter().map(|f| format!("param:{f}")));
            audit_param(
                state,
                ctx,
                principal,
                route,
                request.model(),
                TIER,
                reasons,
                palisade_policy::Action::Block,
            );
            Err(e)
        }
    }
}

/// Marks a request again for a fallback route: that route's map, or no
/// gateway map at all when the fallback is not watermarked (the client's
/// own map was dealt with on the first route).
pub(crate) async fn remark(
    state: &GatewayState,
    principal: &Principal,
    route: &Route,
    endpoint: Endpoint,
    request: &mut RequestBody,
) -> Result<(), ApiError> {
    let Some(wm) = state.watermark.as_ref() else {
        return Ok(());
    };
    if wm.covers(&principal.tenant, &route.public_name) {
        // The map in the body is the gateway's own by now: replace it.
        mark_with(
            state,
            principal,
            route,
            endpoint,
            request,
            ClientBias::Strip,
        )
        .await?;
    } else {
        request.fields_mut().remove("logit_bias");
    }
    Ok(())
}

/// Applies the tenant's current green list for `route`; `None` when the
/// endpoint or route cannot carry one.
async fn mark_with(
    state: &GatewayState,
    principal: &Principal,
    route: &Route,
    endpoint: Endpoint,
    request: &mut RequestBody,
    client: ClientBias,
) -> Result<Option<Applied>, ApiError> {
    let Some(wm) = state.watermark.as_ref() else {
        return Ok(None);
    };
    if endpoint == Endpoint::Embeddings {
        return Ok(None);
    }
    // Validation requires a tokenizer on watermarked routes; one that
    // cannot size its vocabulary (not a `tokenizer.json`) is logged.
    let Some(vocab) = route.tokenizer.as_ref().and_then(|t| t.vocab_size()) else {
        tracing::error!(route = %route.public_name, "watermarked route without a Hugging Face tokenizer: not marked");
        return Ok(None);
    };
    let list = wm
        .green_list(&state.cpu, &principal.tenant, wm.period_now(), vocab)
        .await?;
    let marking = Marking {
        delta: wm.config.delta,
        client_bias: client,
        logprobs: wm.config.logprobs,
    };
    apply(request.fields_mut(), &list, marking)
        .map(Some)
        .map_err(|refusal| {
            let (code, field) = match &refusal {
                Refusal::Logprobs(f) => (LOGPROBS_REFUSED, f.clone()),
                Refusal::ClientBias(f) | Refusal::Malformed(f) => (BIAS_REFUSED, f.clone()),
                _ => (BIAS_REFUSED, "logit_bias".to_owned()),
            };
            ApiError::policy(ErrorCode::InvalidRequest, code, refusal.to_string()).with_param(field)
        })
}
