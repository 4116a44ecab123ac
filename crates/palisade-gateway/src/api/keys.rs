//! `/admin/keys`: runtime API keys (`[auth.runtime]`), admin keys only.
//!
//! - `POST /admin/keys` creates a key and answers its secret, once: only
//!   its SHA-256 is stored, so it cannot be shown again.
//! - `GET /admin/keys[?tenant=T]` lists keys without secrets or hashes:
//!   runtime keys in `keys`, `[[auth.keys]]` in `config_keys` (listed
//!   also when runtime keys are off; `runtime_enabled` says which).
//! - `POST /admin/keys/{id}/rotate` gives the key a new secret; with
//!   `overlap_s` the previous one keeps working that long (at most 7 days).
//! - `POST /admin/keys/{id}/revoke` revokes it for good.
//! - `PATCH` (or `POST`) `/admin/keys/{id}` changes its model allowlist,
//!   expiry, roles or budget (`api::key_budgets`: dollars and/or tokens per
//!   UTC month or day, requests and tokens per minute).
//!
//! Every change is written to the store first (so every replica picks it
//! up within `auth.runtime.refresh_ms`), then this replica reloads at once,
//! then it is audited (gate `admin`, action `key_*`, the policy version,
//! a reason code, and who did it). Admin keys are global, not per tenant:
//! any admin key may manage any tenant's keys.
//!
//! Must not: store, log, audit or list a plaintext key; the only place one
//! appears is the body of the create or rotate response.

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use palisade_ledger::{AuditEntry, KeyWrite, Ledger, StoredBudget, StoredKey};
use palisade_openai::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::http::auth::{hash_key, Principal};
use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::http::runtime_keys::RuntimeKeys;
use crate::state::GatewayState;

/// Largest admin request body: a key's settings are small; anything bigger
/// is a mistake or an attack.
const MAX_BODY: usize = 16 * 1024;
/// Longest tenant or name.
const MAX_LABEL: usize = 128;
/// Most models in one allowlist.
const MAX_MODELS: usize = 256;
/// Longest rotation overlap: a week is enough to roll any deployment; a
/// longer one would keep a possibly leaked secret alive.
const MAX_OVERLAP_S: u64 = 7 * 24 * 3600;

/// Query of `GET /admin/keys`.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    tenant: Option<String>,
}

fn now_ms() -> i64 {
    crate::clock::GatewayClock::system().unix_ms()
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message).with_param(param)
}

fn store_failed(e: palisade_ledger::LedgerError) -> ApiError {
    tracing::error!(error = %e, "runtime key store");
    ApiError::new(ErrorCode::InternalError, "the key store failed")
}

/// The admin caller, the store and the runtime table, or why not.
fn context<'s>(
    state: &'s GatewayState,
    headers: &HeaderMap,
) -> Result<(Principal, &'s Arc<Ledger>, &'s Arc<RuntimeKeys>), ApiError> {
    let admin = state.auth.authenticate_admin(headers)?;
    let not_enabled = || {
        ApiError::new(
            ErrorCode::NotFound,
            "runtime keys are not enabled (set [auth.runtime] enabled = true and ledger.url)",
        )
    };
    let keys = state.auth.runtime.as_ref().ok_or_else(not_enabled)?;
    let ledger = state.ledger.get().ok_or_else(not_enabled)?;
    Ok((admin, ledger, keys))
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("a key request is at most {MAX_BODY} bytes"),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid JSON: {e}"),
        )),
    }
}

fn label(map: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    match map.get(field).and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= MAX_LABEL && !s.chars().any(char::is_control) => {
            Ok(s.to_owned())
        }
        _ => Err(bad(
            format!("`{field}` must be a string of 1 to {MAX_LABEL} characters"),
            field,
        )),
    }
}

fn flag(map: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!("`{field}` must be true or false"), field)),
    }
}

/// `models`: absent → unchanged (`None`); null → every model; a list → it.
fn models(map: &Map<String, Value>) -> Result<Option<Option<Vec<String>>>, ApiError> {
    let invalid = || {
        bad(
            format!("`models` must be null or a list of 1 to {MAX_MODELS} model names"),
            "models",
        )
    };
    match map.get("models") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_MODELS => {
            let names = items
                .iter()
                .map(|v| match v.as_str() {
                    Some(s) if !s.is_empty() && s.len() <= 256 => Ok(s.to_owned()),
                    _ => Err(invalid()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(Some(names)))
        }
        Some(_) => Err(invalid()),
    }
}

/// `expires_at_ms` (Unix ms) or `expires_in_s`: absent → unchanged; null →
/// never expires.
fn expiry(map: &Map<String, Value>, now: i64) -> Result<Option<Option<i64>>, ApiError> {
    match (map.get("expires_at_ms"), map.get("expires_in_s")) {
        (Some(_), Some(_)) => Err(bad(
            "give `expires_at_ms` or `expires_in_s`, not both",
            "expires_at_ms",
        )),
        (Some(Value::Null), None) | (None, Some(Value::Null)) => Ok(Some(None)),
        (Some(v), None) => match v.as_i64() {
            Some(at) if at > 0 => Ok(Some(Some(at))),
            _ => Err(bad(
                "`expires_at_ms` must be a positive Unix time in ms",
                "expires_at_ms",
            )),
        },
        (None, Some(v)) => match v.as_u64() {
            Some(s) if s > 0 && s <= 10 * 365 * 24 * 3600 => {
                Ok(Some(Some(now.saturating_add(s as i64 * 1000))))
            }
            _ => Err(bad(
                "`expires_in_s` must be 1 to 315360000 seconds",
                "expires_in_s",
            )),
        },
        (None, None) => Ok(None),
    }
}

/// The operator's free-text reason, kept short in the audit record.
/// The request's fields that set something (for the audit record), known
/// names only: a client's own member names never reach the audit.
fn fields_named(map: &Map<String, Value>) -> Vec<&'static str> {
    const KNOWN: &[&str] = &[
        "models",
        "expires_at_ms",
        "expires_in_s",
        "admin",
        "approver",
        "executor",
        "overlap_s",
    ];
    KNOWN
        .iter()
        .chain(super::key_budgets::FIELDS.iter())
        .filter(|f| map.contains_key(**f))
        .copied()
        .collect()
}

fn reason(map: &Map<String, Value>) -> String {
    map.get("reason")
        .and_then(Value::as_str)
        .map(|r| r.chars().filter(|c| !c.is_control()).take(256).collect())
        .unwrap_or_default()
}

/// A new secret: 32 random bytes, hex, with a recognisable prefix (secret
/// scanners and humans can tell it is a Palisade key).
fn new_secret() -> Result<String, ApiError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|_| ApiError::new(ErrorCode::InternalError, "no randomness"))?;
    Ok(format!("pk-{}", hex::encode(raw)))
}

fn new_id() -> Result<String, ApiError> {
    let mut raw = [0u8; 9];
    getrandom::fill(&mut raw)
        .map_err(|_| ApiError::new(ErrorCode::InternalError, "no randomness"))?;
    Ok(format!("key_{}", hex::encode(raw)))
}

/// A key as the API shows it: no secret, no hash.
fn describe(key: &StoredKey, now: i64) -> Value {
    let status = if key.revoked_ms.is_some() {
        "revoked"
    } else if key.expires_ms.is_some_and(|at| now >= at) {
        "expired"
    } else {
        "active"
    };
    json!({
        "id": key.id,
        "tenant": key.tenant,
        "name": key.name,
        "status": status,
        "admin": key.admin,
        "approver": key.approver,
        "executor": key.executor,
        "models": key.models,
        "expires_at_ms": key.expires_ms,
        "created_at_ms": key.created_ms,
        "rotated_at_ms": key.rotated_ms,
        "revoked_at_ms": key.revoked_ms,
        "previous_secret_valid_until_ms": key.old_until_ms.filter(|&u| u > now),
        "budget": super::key_budgets::describe(&key.budget),
    })
}

/// Writes the audit record of a key change (log and audit store).
#[allow(clippy::too_many_arguments)]
fn audit(
    state: &GatewayState,
    request_id: &str,
    admin: &Principal,
    action: &str,
    key: &StoredKey,
    reason_text: &str,
    changed: Vec<&str>,
    now: i64,
) {
    let policy_version = state.gates.policy.peek().version().to_string();
    let record = json!({
        "ts_ms": now,
        "request_id": request_id,
        "gate": "admin",
        "action": action,
        "reason_code": action,
        "policy_version": policy_version,
        "actor_tenant": &*admin.tenant,
        "actor_key": &*admin.key_name,
        "key_id": key.id,
        "tenant": key.tenant,
        "name": key.name,
        "reason": reason_text,
        // What the key may do after the change: a grant of `admin` must
        // not read like a budget tweak.
        "admin": key.admin,
        "approver": key.approver,
        "executor": key.executor,
        "models": key.models,
        "expires_ms": key.expires_ms,
        "changed": changed,
    });
    metrics::counter!(crate::metrics::KEY_ADMIN_ACTIONS, "action" => action.to_owned(), "result" => "ok")
        .increment(1);
    state.gates.audit.write_admin(AuditEntry {
        ts_ms: u64::try_from(now).unwrap_or(0),
        request_id: request_id.to_owned(),
        tenant: key.tenant.clone(),
        route: "/admin/keys".to_owned(),
        model: String::new(),
        gate: "admin".to_owned(),
        action: action.to_owned(),
        policy_version,
        json: record.to_string(),
    });
}

async fn load(ledger: &Ledger) -> Result<Vec<StoredKey>, ApiError> {
    ledger.keys_load().await.map_err(store_failed)
}

async fn find(ledger: &Ledger, id: &str) -> Result<StoredKey, ApiError> {
    load(ledger)
        .await?
        .into_iter()
        .find(|k| k.id == id && k.revoked_ms.is_none())
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no live key with that id"))
}

/// Reloads this replica's table after a write; other replicas follow
/// within their refresh interval. A failure is only logged: the write is
/// committed and the poller will retry.
async fn reload(keys: &RuntimeKeys, ledger: &Ledger) {
    if let Err(e) = keys.refresh(ledger).await {
        tracing::warn!(error = %e, "runtime key reload after a write failed");
    }
}

fn respond(result: Result<(StatusCode, Value), ApiError>, request_id: &str) -> Response {
    match result {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(err) => error_response(&err, Some(request_id)),
    }
}

/// `POST /admin/keys`
pub async fn create(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(
        creating(&state, &headers, &body, &request_id).await,
        &request_id,
    )
}

async fn creating(
    state: &GatewayState,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Result<(StatusCode, Value), ApiError> {
    let (admin, ledger, keys) = context(state, headers)?;
    let map = parse_body(body)?;
    let now = now_ms();
    let tenant = label(&map, "tenant")?;
    let name = label(&map, "name")?;
    let key_models = models(&map)?.flatten();
    let expires_ms = expiry(&map, now)?.flatten();
    let mut budget = StoredBudget::default();
    super::key_budgets::apply(&map, &mut budget)?;
    let (admin_role, approver, executor) = (
        flag(&map, "admin")?.unwrap_or(false),
        flag(&map, "approver")?.unwrap_or(false),
        flag(&map, "executor")?.unwrap_or(false),
    );
    let taken = state.auth.config_key_named(&tenant, &name)
        || load(ledger)
            .await?
            .iter()
            .any(|k| k.revoked_ms.is_none() && k.tenant == tenant && k.name == name);
    if taken {
        return Err(ApiError::new(
            ErrorCode::KeyNameTaken,
            "a live key of this tenant already has that name",
        )
        .with_param("name"));
    }
    let secret = new_secret()?;
    let key = StoredKey {
        id: new_id()?,
        tenant,
        name,
        sha256: hex::encode(hash_key(&secret)),
        old_sha256: None,
        old_until_ms: None,
        admin: admin_role,
        approver,
        executor,
        models: key_models,
        expires_ms,
        created_ms: now,
        rotated_ms: None,
        revoked_ms: None,
        budget,
    };
    match ledger
        .key_insert(&key, keys.max_keys_per_tenant)
        .await
        .map_err(store_failed)?
    {
        KeyWrite::Written => {}
        _ => {
            metrics::counter!(crate::metrics::KEY_ADMIN_ACTIONS, "action" => "key_create", "result" => "tenant_full")
                .increment(1);
            return Err(ApiError::new(
                ErrorCode::KeyLimitReached,
                format!(
                    "this tenant already has {} live keys (auth.runtime.max_keys_per_tenant); revoke one first",
                    keys.max_keys_per_tenant
                ),
            ));
        }
    }
    reload(keys, ledger).await;
    audit(
        state,
        request_id,
        &admin,
        "key_create",
        &key,
        &reason(&map),
        fields_named(&map),
        now,
    );
    let mut body = describe(&key, now);
    body["key"] = Value::String(secret);
    Ok((StatusCode::CREATED, body))
}

/// `GET /admin/keys`
pub async fn list(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        // Config keys are listed even without runtime keys: the console's
        // Keys page shows both.
        state.auth.authenticate_admin(&headers)?;
        let Ok(Query(params)) = params else {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "malformed query string",
            ));
        };
        let wanted = |tenant: &str| params.tenant.as_ref().is_none_or(|t| t == tenant);
        let config_keys: Vec<Value> = state
            .auth
            .config_keys()
            .into_iter()
            .filter(|p| wanted(&p.tenant))
            .map(|p| {
                json!({
                    "tenant": &*p.tenant,
                    "name": &*p.key_name,
                    "source": "config",
                    "admin": p.admin,
                    "approver": p.approver,
                    "executor": p.executor,
                })
            })
            .collect();
        let now = now_ms();
        let runtime = match (state.auth.runtime.as_ref(), state.ledger.get()) {
            (Some(_), Some(ledger)) => Some(load(ledger).await?),
            _ => None,
        };
        let mut keys: Vec<Value> = Vec::new();
        for k in runtime.iter().flatten().filter(|k| wanted(&k.tenant)) {
            let mut shown = describe(k, now);
            if k.revoked_ms.is_none() {
                // The current period's spend, as this replica counts it.
                let principal = crate::http::runtime_keys::principal_of(k);
                shown["spend"] =
                    super::key_budgets::spend(&state.admission, &principal, state.ledger.get())
                        .await;
            }
            keys.push(shown);
        }
        Ok((
            StatusCode::OK,
            json!({
                "keys": keys,
                "config_keys": config_keys,
                "runtime_enabled": runtime.is_some(),
            }),
        ))
    }
    .await;
    respond(result, &request_id)
}

/// What a change to an existing key does.
enum Change {
    Rotate,
    Revoke,
    Update,
}

async fn changing(
    state: &GatewayState,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
    change: Change,
    request_id: &str,
) -> Result<(StatusCode, Value), ApiError> {
    let (admin, ledger, keys) = context(state, headers)?;
    let map = parse_body(body)?;
    let now = now_ms();
    let mut key = find(ledger, id).await?;
    let mut secret = None;
    let action = match change {
        Change::Rotate => {
            let overlap_s = match map.get("overlap_s") {
                None => 0,
                Some(v) => v.as_u64().filter(|&s| s <= MAX_OVERLAP_S).ok_or_else(|| {
                    bad(
                        format!("`overlap_s` must be 0 to {MAX_OVERLAP_S} seconds"),
                        "overlap_s",
                    )
                })?,
            };
            let fresh = new_secret()?;
            if overlap_s > 0 {
                key.old_sha256 = Some(std::mem::take(&mut key.sha256));
                key.old_until_ms = Some(now.saturating_add(overlap_s as i64 * 1000));
            } else {
                key.old_sha256 = None;
                key.old_until_ms = None;
            }
            key.sha256 = hex::encode(hash_key(&fresh));
            key.rotated_ms = Some(now);
            secret = Some(fresh);
            "key_rotate"
        }
        Change::Revoke => {
            key.revoked_ms = Some(now);
            key.old_sha256 = None;
            key.old_until_ms = None;
            "key_revoke"
        }
        Change::Update => {
            let mut changed = false;
            if let Some(m) = models(&map)? {
                key.models = m;
                changed = true;
            }
            if let Some(e) = expiry(&map, now)? {
                key.expires_ms = e;
                changed = true;
            }
            if super::key_budgets::apply(&map, &mut key.budget)? {
                changed = true;
            }
            for (field, slot) in [
                ("admin", &mut key.admin),
                ("approver", &mut key.approver),
                ("executor", &mut key.executor),
            ] {
                if let Some(v) = flag(&map, field)? {
                    *slot = v;
                    changed = true;
                }
            }
            if !changed {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "nothing to change: give models, expires_at_ms, expires_in_s, admin, approver, executor or {}",
                        super::key_budgets::FIELDS.join(", ")
                    ),
                ));
            }
            "key_update"
        }
    };
    match ledger.key_update(&key).await.map_err(store_failed)? {
        KeyWrite::Written => {}
        _ => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "no live key with that id",
            ))
        }
    }
    reload(keys, ledger).await;
    audit(
        state,
        request_id,
        &admin,
        action,
        &key,
        &reason(&map),
        fields_named(&map),
        now,
    );
    let mut body = describe(&key, now);
    if let Some(secret) = secret {
        body["key"] = Value::String(secret);
    }
    Ok((StatusCode::OK, body))
}

/// `POST /admin/keys/{id}/rotate`
pub async fn rotate(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = changing(&state, &headers, &id, &body, Change::Rotate, &request_id).await;
    respond(result, &request_id)
}

/// `POST /admin/keys/{id}/revoke`
pub async fn revoke(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = changing(&state, &headers, &id, &body, Change::Revoke, &request_id).await;
    respond(result, &request_id)
}

/// `PATCH /admin/keys/{id}` (also `POST`)
pub async fn update(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = changing(&state, &headers, &id, &body, Change::Update, &request_id).await;
    respond(result, &request_id)
}
