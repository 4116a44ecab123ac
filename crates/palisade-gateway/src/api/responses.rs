//! Stored Responses API objects, relayed with ownership: `GET
//! /v1/responses/{id}`, `DELETE /v1/responses/{id}`, `POST
//! /v1/responses/{id}/cancel`, and the `previous_response_id` of a new
//! request.
//!
//! Why ownership: the gateway reaches an upstream with one key shared by
//! every tenant, so the upstream hands any stored response (and continues
//! any conversation) to whoever names its id. Every id the gateway relays is
//! recorded with its owner (tenant and key name) and the backend that holds
//! it ([`ResponseOwners`]): in the ledger store when one is configured
//! (shared by replicas, retention `responses.owner_retention_days`), else in
//! this process's memory (bounded; the oldest ids are forgotten first). An
//! id that is unknown, forgotten or another caller's gets the same 404 —
//! nothing tells a guessed id from a foreign one. A malformed id is 404 too,
//! and never reaches the upstream's URL.
//!
//! What comes back goes through the output gate like a non-streamed
//! response. Function calls in a retrieved response (a background response
//! finishes after its request was judged) are withheld where the tier has a
//! tool gate: the request's declared tools are not known here, so the calls
//! cannot be judged, and an unjudged call is never released.
//!
//! Must not: relay a stored object to anyone but its owner, or put a
//! client's id in an upstream URL unchecked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hashlink::LinkedHashMap;
use http::{HeaderMap, Method, StatusCode};
use palisade_ledger::{Ledger, ResponseOwner};
use palisade_openai::{ApiError, ErrorCode};
use serde_json::{json, Value};

use crate::http::auth::Principal;
use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::state::GatewayState;

/// How long an owner is kept in the ledger store: OpenAI keeps a stored
/// response for 30 days, after which its id is unknown upstream too.
pub(crate) const OWNER_RETENTION_DAYS: u32 = 30;

/// Ids kept in memory when no ledger store is configured: past it, the
/// oldest are forgotten (and answered 404, the safe side).
pub(crate) const MEMORY_OWNERS: usize = 100_000;

/// How long a retrieval may take, end to end.
const RETRIEVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Who owns a response id, and what a request continuing it inherits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) tenant: String,
    pub(crate) key_name: String,
    pub(crate) backend: String,
    /// The route and model the response was made for ('' when unknown): a
    /// retrieval is judged under the tier they select.
    pub(crate) route: String,
    pub(crate) model: String,
    /// The conversation up to this response carried untrusted content (a
    /// tool result, a retrieved document) or content the gates flagged: a
    /// request continuing it (`previous_response_id`) carries it too, though
    /// the gateway never sees those turns again.
    pub(crate) untrusted: bool,
    pub(crate) flagged: bool,
}

/// The owners of the response ids this gateway relayed.
#[derive(Debug)]
pub(crate) struct ResponseOwners {
    memory: Mutex<LinkedHashMap<String, Owner>>,
    retention_ms: i64,
}

impl ResponseOwners {
    pub(crate) fn new(retention_days: u32) -> Self {
        Self {
            memory: Mutex::new(LinkedHashMap::new()),
            retention_ms: i64::from(retention_days).saturating_mul(86_400_000),
        }
    }

    /// Records `owner` for `id` (the first owner recorded keeps it).
    pub(crate) async fn record(
        &self,
        ledger: Option<&Ledger>,
        id: &str,
        owner: &Owner,
        now_ms: i64,
    ) {
        if !plain_id(id) {
            return;
        }
        match ledger {
            Some(ledger) => {
                let row = ResponseOwner {
                    response_id: id.to_owned(),
                    tenant: owner.tenant.clone(),
                    key_name: owner.key_name.clone(),
                    backend: owner.backend.clone(),
                    created_ms: now_ms,
                    route: owner.route.clone(),
                    model: owner.model.clone(),
                    context: (i64::from(owner.untrusted) * palisade_ledger::CONTEXT_UNTRUSTED)
                        | (i64::from(owner.flagged) * palisade_ledger::CONTEXT_FLAGGED),
                };
                if let Err(error) = ledger
                    .response_owner_put(&row, now_ms.saturating_sub(self.retention_ms))
                    .await
                {
                    // Unrecorded, the id is answered 404 later: the safe side.
                    tracing::warn!(%error, "cannot record the owner of a response id");
                }
            }
            None => {
                let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
                if memory.contains_key(id) {
                    return;
                }
                memory.insert(id.to_owned(), owner.clone());
                while memory.len() > MEMORY_OWNERS {
                    memory.pop_front();
                }
            }
        }
    }

    /// The owner of `id`. `Err`: the store did not answer (503).
    async fn owner(&self, ledger: Option<&Ledger>, id: &str) -> Result<Option<Owner>, ApiError> {
        match ledger {
            Some(ledger) => ledger
                .response_owner_get(id)
                .await
                .map(|row| {
                    row.map(|r| Owner {
                        tenant: r.tenant,
                        key_name: r.key_name,
                        backend: r.backend,
                        route: r.route,
                        model: r.model,
                        untrusted: r.context & palisade_ledger::CONTEXT_UNTRUSTED != 0,
                        flagged: r.context & palisade_ledger::CONTEXT_FLAGGED != 0,
                    })
                })
                .map_err(|error| {
                    tracing::warn!(%error, "cannot read the owner of a response id");
                    ApiError::new(
                        ErrorCode::LimitsUnavailable,
                        "the store of response owners did not answer; retry shortly",
                    )
                }),
            None => Ok(self
                .memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .cloned()),
        }
    }

    async fn forget(&self, ledger: Option<&Ledger>, id: &str) {
        match ledger {
            Some(ledger) => {
                if let Err(error) = ledger.response_owner_delete(id).await {
                    tracing::warn!(%error, "cannot forget the owner of a deleted response");
                }
            }
            None => {
                self.memory
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(id);
            }
        }
    }
}

/// What a request needs to record the owner of the id its answer carries.
#[derive(Debug, Clone)]
pub(crate) struct OwnerStamp {
    owners: Arc<ResponseOwners>,
    ledger: Option<Arc<Ledger>>,
    owner: Owner,
    now_ms: i64,
}

impl OwnerStamp {
    /// The stamp of a request under `plan` (its subject and what its
    /// context carried; `None`: gates off).
    pub(crate) fn new(
        state: &GatewayState,
        tenant: &str,
        key_name: &str,
        backend: &str,
        plan: Option<&crate::gates::GatePlan>,
    ) -> Self {
        Self {
            owners: Arc::clone(&state.response_owners),
            ledger: state.ledger.get().cloned(),
            owner: Owner {
                tenant: tenant.to_owned(),
                key_name: key_name.to_owned(),
                backend: backend.to_owned(),
                route: plan.map(|p| p.subject.route.clone()).unwrap_or_default(),
                model: plan.map(|p| p.subject.model.clone()).unwrap_or_default(),
                untrusted: plan.is_some_and(|p| p.untrusted_context),
                flagged: plan.is_some_and(|p| p.flagged_context),
            },
            now_ms: crate::clock::GatewayClock::system().unix_ms(),
        }
    }

    /// Records the stamp's owner for `id`.
    pub(crate) async fn record(&self, id: &str) {
        self.owners
            .record(self.ledger.as_deref(), id, &self.owner, self.now_ms)
            .await;
    }

    /// Records the owner of the id of a whole Responses body.
    pub(crate) async fn record_body(&self, body: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Id {
            id: Option<String>,
        }
        if let Ok(Id { id: Some(id) }) = serde_json::from_slice::<Id>(body) {
            self.record(&id).await;
        }
    }
}

/// An id the gateway will look up and put in an upstream URL: letters,
/// digits, `_` and `-`, at most 128 bytes (OpenAI's are `resp_` and hex).
fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The one answer for an id the caller may not see, whatever the reason.
pub(crate) fn not_found(param: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no response with this id").with_param(param)
}

/// The owner of `id` when it is `principal`'s (`Err` 404 otherwise).
pub(crate) async fn owned(
    state: &GatewayState,
    principal: &Principal,
    id: &str,
    param: &str,
) -> Result<Owner, ApiError> {
    if !plain_id(id) {
        return Err(not_found(param));
    }
    let ledger = state.ledger.get().cloned();
    match state.response_owners.owner(ledger.as_deref(), id).await? {
        Some(owner)
            if *owner.tenant == *principal.tenant && *owner.key_name == *principal.key_name =>
        {
            Ok(owner)
        }
        _ => Err(not_found(param)),
    }
}

/// Refuses a new request that continues a stored response or conversation
/// the caller does not own: `previous_response_id` must be its own;
/// `conversation` (upstream-held conversation objects) is not relayed.
/// Returns the owner record of the response continued, if any.
pub(crate) async fn check_continuation(
    state: &GatewayState,
    principal: &Principal,
    fields: &serde_json::Map<String, Value>,
) -> Result<Option<Owner>, ApiError> {
    if fields.get("conversation").is_some_and(|c| !c.is_null()) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "`conversation` is not relayed: its owner cannot be checked; continue with \
             `previous_response_id` or send the history in `input`",
        )
        .with_param("conversation"));
    }
    // An item reference names a stored item by id: the upstream resolves it
    // for whoever names it (one key serves every tenant), and the gateway
    // neither records item owners nor sees the item's content, which could
    // be a poisoned tool result. Refused like `conversation`.
    let references = fields
        .get("input")
        .and_then(Value::as_array)
        .is_some_and(|items| {
            items
                .iter()
                .any(|i| i.get("type").and_then(Value::as_str) == Some("item_reference"))
        });
    if references {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "`item_reference` input items are not relayed: their owner and content cannot be \
             checked; send the item itself, or continue with `previous_response_id`",
        )
        .with_param("input"));
    }
    match fields.get("previous_response_id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) => owned(state, principal, id, "previous_response_id")
            .await
            .map(Some),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "`previous_response_id` must be a string",
        )
        .with_param("previous_response_id")),
    }
}

/// `GET /v1/responses/{id}`
pub async fn retrieve(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    // A streamed retrieval (`?stream=true`) would need the stream gates'
    // event state from the original request: not relayed.
    if query.as_deref().is_some_and(|q| q.contains("stream")) {
        let err = ApiError::new(
            ErrorCode::InvalidRequest,
            "streamed retrieval is not relayed; retrieve the response whole",
        )
        .with_param("stream");
        return error_response(&err, Some(&request_id));
    }
    relay(&state, &request_id, &headers, Method::GET, &id, "").await
}

/// `DELETE /v1/responses/{id}`
pub async fn delete(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    relay(&state, &request_id, &headers, Method::DELETE, &id, "").await
}

/// `POST /v1/responses/{id}/cancel`
pub async fn cancel(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    relay(&state, &request_id, &headers, Method::POST, &id, "/cancel").await
}

async fn relay(
    state: &GatewayState,
    request_id: &str,
    headers: &HeaderMap,
    method: Method,
    id: &str,
    suffix: &str,
) -> Response {
    match relay_inner(state, request_id, headers, method, id, suffix).await {
        Ok(resp) => resp,
        Err(err) => error_response(&err, Some(request_id)),
    }
}

async fn relay_inner(
    state: &GatewayState,
    request_id: &str,
    headers: &HeaderMap,
    method: Method,
    id: &str,
    suffix: &str,
) -> Result<Response, ApiError> {
    let front = crate::pipeline::front::front(state, headers, None).await?;
    let principal = front.principal;
    let owner = owned(state, &principal, id, "id").await?;
    // The routing in force now: a backend removed by a reload since the
    // response was created has nothing left to ask.
    let routing = state.routing.load();
    let Some(backend) = routing.backends.iter().find(|b| b.name == owner.backend) else {
        // The backend left the configuration: nothing to ask.
        return Err(not_found("id"));
    };
    let deadline = Instant::now() + RETRIEVE_TIMEOUT;
    let path = format!("/responses/{id}{suffix}");
    let upstream = backend
        .send(
            method.clone(),
            &path,
            &principal.tenant,
            // Minted here, as for every upstream call: never the client's id.
            &uuid::Uuid::new_v4().to_string(),
            deadline,
        )
        .await?;
    let status = upstream.status();
    let body = crate::pipeline::forward::read_upstream_body(backend, upstream, deadline).await?;
    // A redirect is not passed on either (`crate::outbound`).
    if status.is_server_error() || status.is_redirection() {
        return Err(ApiError::new(
            ErrorCode::UpstreamError,
            format!(
                "upstream `{}` failed with HTTP {}",
                backend.name,
                status.as_u16()
            ),
        ));
    }
    if status == StatusCode::NOT_FOUND {
        // Gone upstream: forget it, and answer as for any unknown id.
        let ledger = state.ledger.get().cloned();
        state.response_owners.forget(ledger.as_deref(), id).await;
        return Err(not_found("id"));
    }
    let mut plan = retrieval_plan(state, &principal, request_id, &owner);
    // The canary of the hour the response was made in (and the next): a
    // response withheld at its POST for leaking the system prompt must not
    // be readable here, where the original request's canary is not kept.
    plan.canaries = state
        .gates
        .markers
        .canaries_at(&principal.tenant, made_at_ms(&body));
    // As `filters::filter_body`, with the calls withheld in place of the
    // tool gate (its report survives: it is written after the upstream's
    // own `palisade` object is removed).
    let body = if status.is_success() {
        use crate::gates::output;
        let body = output::without_foreign_report(&body).map_or(body, Bytes::from);
        let body = withhold_calls(&plan, body);
        output::gate_body(&plan, &body)?.unwrap_or(body)
    } else {
        crate::gates::output::gate_error_body(&plan, &body)?.unwrap_or(body)
    };
    if method == Method::DELETE && status.is_success() {
        let ledger = state.ledger.get().cloned();
        state.response_owners.forget(ledger.as_deref(), id).await;
    }
    let mut resp = (status, Body::from(body)).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// When a stored response was made (`created_at`, seconds), in ms; an hour
/// ago when the body does not say (the last two hours' canaries then).
fn made_at_ms(body: &[u8]) -> i64 {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("created_at").and_then(Value::as_i64))
        .map(|s| s.saturating_mul(1000))
        .unwrap_or_else(|| crate::clock::GatewayClock::system().unix_ms() - 3_600_000)
}

/// The output gate's plan for a retrieved response: the tier its request
/// was judged under (the route and model recorded with its owner; an
/// assignment by model or route would otherwise fall to the default tier
/// and read the response back under a weaker gate), under the active
/// policy. Its canaries are set from the body (`made_at_ms`).
fn retrieval_plan(
    state: &GatewayState,
    principal: &Principal,
    request_id: &str,
    owner: &Owner,
) -> crate::gates::GatePlan {
    let gates = &state.gates;
    let route = if owner.route.is_empty() {
        "responses.retrieve".to_owned()
    } else {
        owner.route.clone()
    };
    crate::gates::GatePlan {
        snapshot: gates.policy.active(),
        shadow: gates.policy.shadow(),
        subject: crate::gates::GateSubject {
            request_id: request_id.to_owned(),
            tenant: principal.tenant.to_string(),
            route,
            model: owner.model.clone(),
        },
        canaries: Vec::new(),
        response_schema: None,
        json_mode: false,
        sink: gates.audit.clone(),
        stream_hold_bytes: gates.stream_hold_bytes,
        untrusted_context: false,
        flagged_context: false,
        tools: None,
        shape: crate::gates::ResponseShape::Responses,
        degraded: None,
        flagged: false,
    }
}

/// Removes the `function_call` items of a retrieved body where the tier has
/// a tool gate (they cannot be judged here), saying so in the report.
fn withhold_calls(plan: &crate::gates::GatePlan, body: Bytes) -> Bytes {
    let gated = plan
        .snapshot
        .tier_for(&plan.subject_ref())
        .tool_gate()
        .is_some();
    if !gated {
        return body;
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(&body) else {
        return body; // the output gate refuses it
    };
    let Some(Value::Array(items)) = value.get_mut("output") else {
        return body;
    };
    let mut report = Vec::new();
    items.retain(|i| {
        let call = i.get("type").and_then(Value::as_str) == Some("function_call");
        if !call && !crate::gates::tools::is_foreign(i) {
            return true;
        }
        let name = if call { i.get("name") } else { i.get("type") };
        report.push(json!({"id": i.get("call_id"), "name": name, "status": "withheld",
            "reasons": [], "detail": "a retrieved call cannot be judged (its request's tools are not known here)"}));
        false
    });
    if report.is_empty() {
        return body;
    }
    value["palisade"] = json!({"policy_version": plan.snapshot.version(), "tool_calls": report});
    serde_json::to_vec(&value).map_or(body, Bytes::from)
}
