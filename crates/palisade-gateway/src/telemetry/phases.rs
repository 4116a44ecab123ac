//! The spans the request path records, one helper per kind of phase, so
//! the pipeline's phases stay one line each and every span names its
//! attributes the same way.
//!
//! Must not: read prompt or completion text; only ids, names, counts,
//! verdicts and codes go into attributes.

use palisade_openai::request::Endpoint;
use palisade_openai::ApiError;
use serde_json::Value;

use super::{Attr, Kind, Open};
use crate::context::RequestCtx;
use crate::state::GatewayState;

/// Longest model name put in an attribute: the client chooses it.
const MAX_MODEL_CHARS: usize = 128;
/// Most finish reasons recorded (one per choice; `n` is client-chosen).
const MAX_FINISH_REASONS: usize = 16;

/// The gen-ai `operation.name` of an endpoint.
pub(crate) fn operation(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Responses => "chat",
        Endpoint::Completions => "text_completion",
        Endpoint::Embeddings => "embeddings",
    }
}

/// A client-chosen name, cut to [`MAX_MODEL_CHARS`] characters.
pub(crate) fn bounded(name: &str) -> String {
    name.chars().take(MAX_MODEL_CHARS).collect()
}

/// The attributes of a refusal: its stable code and reason code.
fn refusal(err: &ApiError) -> Vec<(&'static str, Attr)> {
    vec![
        ("error.type", err.code.as_str().into()),
        (
            "palisade.reason_code",
            err.reason.unwrap_or(err.code.as_str()).into(),
        ),
    ]
}

/// Ends a front phase (auth, admission): ok, or the refusal's codes.
pub(crate) fn phase(ctx: &mut RequestCtx, span: Open, name: &'static str, err: Option<&ApiError>) {
    if !ctx.trace.recording() {
        return;
    }
    let attrs = err.map(refusal).unwrap_or_default();
    ctx.trace
        .end(span, name, Kind::Internal, attrs, err.is_some());
}

/// Ends the request-gates span (input, context and tool gates) with the
/// verdict, its reason code on a refusal, and the policy version judged by.
pub(crate) fn gate_span(
    state: &GatewayState,
    ctx: &mut RequestCtx,
    span: Open,
    gated: &Result<bool, ApiError>,
) {
    if !ctx.trace.recording() {
        return;
    }
    let version = match &ctx.gates {
        Some(plan) => plan.snapshot.version().to_string(),
        None => state.gates.policy.peek().version().to_string(),
    };
    let mut attrs = vec![("palisade.policy.version", Attr::Str(version.clone()))];
    let verdict = match gated {
        Ok(_) if !state.gates.enabled => "skipped",
        Ok(_) if ctx.gates.as_ref().is_some_and(|p| p.flagged) => "flag",
        Ok(rewrote) => {
            attrs.push(("palisade.rewritten", Attr::Bool(*rewrote)));
            "allow"
        }
        Err(err) => {
            attrs.extend(refusal(err));
            "block"
        }
    };
    attrs.push(("palisade.verdict", verdict.into()));
    ctx.trace.set("palisade.policy.version", version);
    ctx.trace.set("palisade.verdict", verdict);
    if let Err(err) = gated {
        ctx.trace.set(
            "palisade.reason_code",
            err.reason.unwrap_or(err.code.as_str()),
        );
    }
    ctx.trace.end(
        span,
        "palisade.gate.input",
        Kind::Internal,
        attrs,
        gated.is_err(),
    );
}

/// Ends one upstream attempt's span (a gen-ai client span).
pub(crate) fn attempt_span(
    ctx: &mut RequestCtx,
    span: Open,
    backend: &str,
    attempt: u32,
    model: &str,
    status: Result<u16, &ApiError>,
) {
    if !ctx.trace.recording() {
        return;
    }
    let mut attrs = vec![
        ("palisade.backend", Attr::Str(backend.to_owned())),
        ("palisade.attempt", Attr::Int(i64::from(attempt))),
        ("gen_ai.request.model", Attr::Str(bounded(model))),
        ("gen_ai.system", "openai".into()),
    ];
    let error = match status {
        Ok(code) => {
            attrs.push(("http.response.status_code", Attr::Int(i64::from(code))));
            code >= 500
        }
        Err(err) => {
            attrs.extend(refusal(err));
            true
        }
    };
    ctx.trace
        .end(span, "palisade.upstream", Kind::Client, attrs, error);
}

/// Ends the output-gate span of a whole (non-streamed) response.
pub(crate) fn output_span(ctx: &mut RequestCtx, span: Open, err: Option<&ApiError>) {
    if !ctx.trace.recording() {
        return;
    }
    let mut attrs = vec![(
        "palisade.verdict",
        Attr::from(if err.is_some() { "block" } else { "allow" }),
    )];
    if let Some(err) = err {
        attrs.extend(refusal(err));
        ctx.trace.set("palisade.verdict", "block");
        ctx.trace.set(
            "palisade.reason_code",
            err.reason.unwrap_or(err.code.as_str()),
        );
    }
    ctx.trace.end(
        span,
        "palisade.gate.output",
        Kind::Internal,
        attrs,
        err.is_some(),
    );
}

/// The gen-ai response attributes of a whole response body: the model that
/// answered, the finish reasons and the token usage.
pub(crate) fn response_attrs(ctx: &mut RequestCtx, body: &Value) {
    if !ctx.trace.recording() {
        return;
    }
    if let Some(model) = body.get("model").and_then(Value::as_str) {
        ctx.trace.set("gen_ai.response.model", bounded(model));
    }
    let reasons: Vec<String> = body
        .get("choices")
        .and_then(Value::as_array)
        .map(|choices| {
            choices
                .iter()
                .filter_map(|c| c.get("finish_reason").and_then(Value::as_str))
                .take(MAX_FINISH_REASONS)
                .map(|r| r.chars().take(32).collect())
                .collect()
        })
        .unwrap_or_default();
    if !reasons.is_empty() {
        ctx.trace
            .set("gen_ai.response.finish_reasons", Attr::Strs(reasons));
    }
    if let Some(usage) = palisade_openai::usage::Usage::from_response(body) {
        ctx.trace
            .set("gen_ai.usage.input_tokens", usage.prompt_tokens);
        ctx.trace
            .set("gen_ai.usage.output_tokens", usage.completion_tokens);
    }
}
