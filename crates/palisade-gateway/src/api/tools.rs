//! The `/v1/tools/*` endpoints and the no-upstream guard API
//! (`/v1/guard/tool_calls`).
//!
//! Must not: hold judging logic of its own (it calls `judge`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use palisade_openai::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::{json, Value};

use std::time::Instant;

use palisade_policy::{Action, Evidence};
use palisade_tools::{CapabilityError, Expected, TokenSource, ToolCall};
use serde_json::Map;

use crate::gates::tools::*;
use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::pipeline::front::front;
use crate::state::GatewayState;

pub(crate) fn respond(result: Result<Value, ApiError>, request_id: &str) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(err) => error_response(&err, Some(request_id)),
    }
}

pub(crate) fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("invalid JSON body: {e}")))
}

/// `POST /v1/tools/confirm` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfirmBody {
    pub(crate) confirmation_id: String,
    /// `true` (default) releases the call, `false` denies it.
    #[serde(default = "yes")]
    pub(crate) approve: bool,
}

pub(crate) fn yes() -> bool {
    true
}

/// `POST /v1/tools/confirm`: an approver releases (or denies) a held call.
pub async fn confirm(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(run_confirm(&state, &headers, body).await, &request_id)
}

pub(crate) async fn run_confirm(
    state: &GatewayState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, ApiError> {
    let front = front(state, headers, Some(body)).await?;
    let principal = front.principal;
    if !(principal.approver || principal.admin) {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "confirming tool calls needs an approver key ([[auth.keys]] approver = true)",
        ));
    }
    let req: ConfirmBody = parse_body(&front.body)?;
    let service = &state.gates.tools;
    let held = service.held_calls(state.tool_store());
    let taken = held
        .take(
            &req.confirmation_id,
            Scope::of(&principal),
            service.now_secs(),
        )
        .await
        .map_err(|e| unavailable(&e))?;
    let pending = taken.ok_or_else(|| confirmation_not_found(&req.confirmation_id))?;
    let mut decision = pending.decision.clone();
    decision.enforced_action = if req.approve {
        Action::Allow
    } else {
        Action::Block
    };
    decision.action = decision.enforced_action;
    let evidence = Evidence {
        tool: Some(pending.evidence.clone()),
        ..Evidence::default()
    };
    crate::gates::record_decision(
        &state.gates.audit,
        &pending.subject,
        evidence,
        &decision,
        None,
        Instant::now(),
    );
    tracing::info!(
        confirmation_id = %req.confirmation_id,
        tool = %pending.call.name,
        approved = req.approve,
        approver = %principal.key_name,
        "tool call confirmation"
    );
    // The decision record above is the requester's; this one names who
    // decided (the approver's key) and which held call.
    super::audit_admin(
        state,
        &pending.subject.request_id,
        &principal,
        "tool_confirmation",
        super::details([
            ("confirmation_id", req.confirmation_id.clone().into()),
            ("tool", pending.call.name.clone().into()),
            ("approved", req.approve.into()),
            ("requester_tenant", pending.tenant.to_string().into()),
        ]),
    );
    if !req.approve {
        metrics::counter!(crate::metrics::TOOL_CALLS, "outcome" => "denied").increment(1);
        return Ok(
            json!({"status": "denied", "confirmation_id": req.confirmation_id,
                          "id": pending.call.id, "name": pending.call.name}),
        );
    }
    metrics::counter!(crate::metrics::TOOL_CALLS, "outcome" => "confirmed").increment(1);
    let (token, expires_at) = service.sign(
        &pending.tenant,
        &pending.subject.request_id,
        &pending.call,
        pending.source,
    );
    Ok(json!({
        "status": "released",
        "confirmation_id": req.confirmation_id,
        "tool_call": pending.call.to_message_entry(),
        "capability": token,
        "expires_at": expires_at,
    }))
}

fn confirmation_not_found(confirmation_id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ConfirmationNotFound,
        format!(
            "no tool call waits for confirmation `{confirmation_id}` (unknown, already decided, or lapsed)"
        ),
    )
}

/// Most held calls one listing returns.
pub(crate) const MAX_LISTED: usize = 1_000;

/// `GET /v1/tools/pending`: the calls of the approver's tenant (every
/// tenant's for admin keys) waiting for confirmation, with their arguments:
/// an approver must see what it approves. This replica's and, with Redis,
/// every replica's.
pub async fn pending(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    respond(run_pending(&state, &headers).await, &request_id)
}

pub(crate) async fn run_pending(
    state: &GatewayState,
    headers: &HeaderMap,
) -> Result<Value, ApiError> {
    let principal = front(state, headers, None).await?.principal;
    if !(principal.approver || principal.admin) {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "listing held tool calls needs an approver key",
        ));
    }
    let service = &state.gates.tools;
    let calls = service
        .held_calls(state.tool_store())
        .list(Scope::of(&principal), service.now_secs(), MAX_LISTED)
        .await
        .map_err(|e| unavailable(&e))?;
    let data: Vec<Value> = calls
        .iter()
        .map(|p| {
            let reasons: Vec<&str> = p.decision.reasons.iter().map(|r| r.as_str()).collect();
            json!({
                "confirmation_id": p.confirmation_id, "tenant": p.tenant, "request_id": p.subject.request_id,
                "tool_call": p.call.to_message_entry(), "reasons": reasons,
                "policy_version": p.decision.policy_version, "expires_at": p.expires_at,
            })
        })
        .collect();
    Ok(json!({"object": "list", "data": data}))
}

/// `POST /v1/guard/tool_calls`: the tool gate as an API, with no upstream,
/// for agent runtimes that call their model some other way. The body is the
/// conversation so far (`messages`, optional), the tools offered (`tools`,
/// optional: their declared schemas) and the calls the model emitted
/// (`tool_calls`, as in an assistant message); `model` picks the tier as a
/// route would. The answer is the same report a proxied response carries:
/// each call released with a capability token, withheld, or held for
/// confirmation. The conversation passes the input and context gates first,
/// so an injected tool result taints egress here as it would in the proxy.
pub async fn guard(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(run_guard(&state, &headers, body).await, &request_id)
}

pub(crate) async fn run_guard(
    state: &Arc<GatewayState>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, ApiError> {
    let front = front(state, headers, Some(body)).await?;
    let (principal, bytes) = (front.principal, front.body);
    let mut fields: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("invalid JSON body: {e}")))?;
    let calls = match fields.remove("tool_calls") {
        Some(Value::Array(calls)) => ToolCall::from_message(&json!({"tool_calls": calls})),
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "`tool_calls` (an array of calls as in an assistant message) is required",
            )
            .with_param("tool_calls"))
        }
    };
    if !fields.contains_key("messages") {
        fields.insert("messages".into(), json!([]));
    }
    // The tier comes from the route table, as in the proxy: the name is
    // bounded, and a name the table does not route has no tier to borrow.
    let model = match fields.get("model") {
        Some(Value::String(m)) => m.clone(),
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "`model` (a routed model name; its route picks the policy tier) is required",
            )
            .with_param("model"))
        }
    };
    palisade_openai::request::check_model(&model)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.to_string()).with_param("model"))?;
    let routing = state.routing.load();
    let route = routing
        .routes
        .resolve(&model)
        .ok_or_else(|| crate::routing::model_not_found(&model))?;
    let subject = crate::gates::GateSubject {
        request_id: uuid::Uuid::new_v4().to_string(),
        tenant: principal.tenant.to_string(),
        route: route.public_name.to_string(),
        model: route.upstream_model.as_deref().unwrap_or(&model).to_owned(),
    };
    let body_bytes = bytes.len();
    let (mut plan, _) = crate::gates::input::gate_request(
        &state.gates,
        subject,
        crate::gates::ResponseShape::Chat,
        &mut fields,
        Vec::new(),
        body_bytes,
    )
    .await??;
    inspect_request(
        &state.gates.tools,
        state.tool_store(),
        &mut plan,
        &mut fields,
        headers,
    )
    .await?;
    // Tokens minted here say so: the caller chose the conversation they
    // were judged in (`src: "guard"`).
    if let Some(tools) = plan.tools.as_mut() {
        tools.source = TokenSource::Guard;
    }
    let Some(tools) = plan.tools.clone() else {
        return Ok(
            json!({"policy_version": plan.snapshot.version(), "tool_gate": false,
                          "tool_calls": calls.iter().map(|c| json!({"id": c.id, "name": c.name,
                          "status": "unchecked", "reasons": []})).collect::<Vec<_>>()}),
        );
    };
    let had_calls = !calls.is_empty();
    // Arguments are checked against client schemas: on the CPU pool unless small.
    let oversize = bounds::calls_bytes(&calls) > tools.service.max_call_bytes;
    let (job_plan, job_tools) = (plan.clone(), tools.clone());
    let judged = state
        .cpu
        .run_or_inline(body_bytes <= crate::cpu::INLINE_BYTES, move || {
            judge(&job_plan, &job_tools, calls, oversize, 0)
        })
        .await?;
    if let Some(conv) = &tools.conversation {
        tools.service.record_round_shared(
            tools.redis.as_ref(),
            &plan.subject.tenant,
            conv,
            had_calls,
            0,
        );
    }
    Ok(json!({
        "policy_version": plan.snapshot.version(),
        "tool_gate": true,
        "tool_calls": judged.report(),
    }))
}

/// `POST /v1/tools/verify` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyBody {
    pub(crate) token: String,
    pub(crate) tool: String,
    /// The arguments as the executor will use them: a JSON string, or the
    /// object itself. Kept raw: parsing it into a `Value` would collapse
    /// duplicate names and round big numbers before the hash is taken.
    pub(crate) arguments: Box<serde_json::value::RawValue>,
    /// Accept the token only once (for executors without their own replay
    /// store).
    #[serde(default)]
    pub(crate) consume: bool,
}

/// `POST /v1/tools/verify`: checks a capability token against the call an
/// executor is about to run. The answer names the token's `source`
/// (`proxy` or `guard`); to an executor key (`executor = true`) of the
/// token's own tenant it also hands the tenant's credential for the tool,
/// if one is configured.
pub async fn verify(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(run_verify(&state, &headers, body).await, &request_id)
}

pub(crate) async fn run_verify(
    state: &GatewayState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, ApiError> {
    let front = front(state, headers, Some(body)).await?;
    let principal = front.principal;
    let req: VerifyBody = parse_body(&front.body)?;
    let arguments = bounds::raw_arguments(&req.arguments)?;
    let service = &state.gates.tools;
    let now = service.now_secs();
    let tenant = (!principal.admin).then_some(&*principal.tenant);
    let refused =
        |e: CapabilityError| json!({"valid": false, "code": e.code(), "message": e.to_string()});
    let claims = match service.verifier.verify_call(
        &req.token,
        Expected {
            tool: &req.tool,
            arguments: &arguments,
            tenant,
        },
        now,
    ) {
        Ok(c) => c,
        Err(e) => return Ok(refused(e)),
    };
    if req.consume {
        // The token's identity is its signed claims: ids joined with `/` could
        // be made to collide by a client choosing its request id.
        let jti = bounds::token_id(&req.token);
        let first = match state.tool_store() {
            // Every replica must refuse the second use.
            Some(redis) => {
                let ttl = std::time::Duration::from_secs(claims.exp.saturating_sub(now).max(1));
                redis
                    .consume_once(&jti, ttl)
                    .await
                    .map_err(|e| unavailable(&e))?
            }
            None => {
                let mut used = service.consumed.lock().unwrap_or_else(|e| e.into_inner());
                if used.len() >= 10_000 {
                    used.retain(|_, exp| *exp > now);
                }
                used.insert(jti, claims.exp).is_none()
            }
        };
        if !first {
            return Ok(json!({"valid": false, "code": "token_already_used",
                             "message": "this capability token was already consumed"}));
        }
    }
    let credential = service
        .credentials
        .get(&claims.tenant)
        .filter(|_| *principal.tenant == *claims.tenant)
        .and_then(|tools| tools.get(&claims.tool));
    let mut out = json!({"valid": true, "source": claims.src.as_str(), "claims": claims});
    match credential {
        Some(c) if principal.executor => out["credential"] = json!(c),
        Some(_) => {
            // Say why, not what: the key may be an agent's.
            out["credential_withheld"] = json!("not_executor");
        }
        None => {}
    }
    Ok(out)
}

/// `GET /v1/tools/public-key`: what executors verify tokens with. Public.
pub async fn public_key(State(state): State<Arc<GatewayState>>) -> Response {
    Json(json!({
        "alg": "ed25519",
        "kid": state.gates.tools.signer.key_id(),
        "public_key": state.gates.tools.signer.public_key_hex(),
        "token_format": "pcap1.<base64url claims JSON>.<base64url ed25519 signature over 'pcap1.<claims>'>",
    }))
    .into_response()
}
