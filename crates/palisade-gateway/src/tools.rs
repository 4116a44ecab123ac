//! The tool gate: agent tool calls between the model and whatever executes
//! them.
//!
//! On the way in ([`inspect_request`]), tools the client offers that the
//! tier does not allow are removed (or the request refused), and a
//! conversation already past its loop caps is stopped. On the way out, every
//! `tool_calls` entry the model emits — whole in a response
//! ([`gate_body`]), or assembled from streamed deltas before any of it is
//! sent ([`ToolStreamGate`]) — is judged by the policy
//! ([`palisade_policy::Snapshot::decide_tool`]) and then:
//!
//! - **released**: left in the message, with a capability token (ed25519,
//!   scoped to tenant, tool, argument hash, request and expiry) in the
//!   response's `palisade.tool_calls` report;
//! - **withheld**: removed, with the reason codes in the report;
//! - **pending confirmation**: removed and parked under a confirmation id;
//!   `POST /v1/tools/confirm` (an approver key) releases it with a token.
//!
//! Executors check tokens offline with the public key
//! (`GET /v1/tools/public-key`) or with `POST /v1/tools/verify`, which also
//! hands an executor key (`executor = true`) the tenant's credential for the
//! tool: credentials never enter the model's context or the logs, and agent
//! keys never receive them. Tokens minted by the guard API carry
//! `src: "guard"`, so executors can tell them from proxied ones.
//!
//! Every call's decision is audited with the policy version and reason codes
//! (arguments only as their hash). Pending calls, single-use token records and
//! conversation counters live in this process's memory, bounded per tenant
//! ([`crate::held_calls`]), and in Redis when the replica shares limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::HeaderMap;
use palisade_openai::{ApiError, ErrorCode};
use palisade_policy::{
    Action, Decision, Evidence, ReasonCode, ToolEvidence, ToolGate, UnlistedOffer,
};
use palisade_redis::{HoldLimits, Parked, RedisToolStore};
use palisade_tools::{
    arguments_sha256, CallAssembler, CapabilityClaims, CapabilityError, CapabilitySigner,
    CapabilityVerifier, Expected, TokenSource, ToolCall,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::error_response;
use crate::gates::GatePlan;
use crate::held_calls::{Conversation, Conversations, Hold, Lapses, PendingStore};
use crate::request_id::RequestId;
use crate::server::GatewayState;

/// The header naming the conversation an agent request belongs to; the
/// loop caps count per conversation.
pub(crate) const CONVERSATION_HEADER: &str = "x-palisade-conversation";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why the tool service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ToolSetupError {
    /// The signing key file is unreadable or not 64 hex digits.
    #[error("tools.signing_key_file {path}: {message}")]
    SigningKey {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A tool credential variable is unset.
    #[error("tenants.{tenant}.tool_credentials_env.{tool}: environment variable {var} is not set")]
    Credential {
        /// Tenant.
        tenant: String,
        /// Tool.
        tool: String,
        /// Variable.
        var: String,
    },
}

/// A call parked until someone confirms it (JSON in Redis, so any replica
/// can release it).
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
struct PendingCall {
    confirmation_id: String,
    tenant: String,
    call: ToolCall,
    evidence: ToolEvidence,
    decision: Decision,
    subject: crate::gates::GateSubject,
    expires_at: u64,
    /// How the call reached the gateway; its token says so once confirmed.
    #[serde(default)]
    source: TokenSource,
}

impl Lapses for PendingCall {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// Signing, confirmations, single-use tokens, conversation counters and
/// tenant credentials: the tool gate's state, one per process.
pub(crate) struct ToolService {
    signer: CapabilitySigner,
    verifier: CapabilityVerifier,
    token_ttl: u64,
    confirmation_ttl: u64,
    hold_limits: HoldLimits,
    pub(crate) max_call_bytes: usize,
    conversation_ttl: u64,
    pending: Mutex<PendingStore<PendingCall>>,
    conversations: Mutex<Conversations>,
    /// Tokens spent with `consume: true`, until they expire.
    consumed: Mutex<HashMap<String, u64>>,
    /// tenant → tool → credential. Never logged, never sent upstream.
    credentials: HashMap<String, HashMap<String, String>>,
}

impl std::fmt::Debug for ToolService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolService")
            .field("kid", &self.signer.key_id())
            .finish_non_exhaustive()
    }
}

impl ToolService {
    /// Builds from config, reading the signing key file and the tenants'
    /// tool credentials from `env`.
    pub(crate) fn from_config(
        config: &palisade_config::Config,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<ToolService, ToolSetupError> {
        let t = &config.tools;
        let signer = match &t.signing_key_file {
            Some(path) => {
                let err = |message: String| ToolSetupError::SigningKey {
                    path: path.clone(),
                    message,
                };
                let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
                CapabilitySigner::from_seed_hex(&text).map_err(|e| err(e.to_string()))?
            }
            None => {
                let mut seed = [0u8; 32];
                // The OS RNG failing is not recoverable; a fixed key would
                // be worse than no start.
                getrandom::fill(&mut seed).map_err(|e| ToolSetupError::SigningKey {
                    path: "(none)".into(),
                    message: format!("cannot draw a key: {e}"),
                })?;
                CapabilitySigner::from_seed(seed)
            }
        };
        let mut credentials = HashMap::new();
        for (tenant, cfg) in &config.tenants {
            let mut tools = HashMap::new();
            for (tool, var) in &cfg.tool_credentials_env {
                let value = env(var).ok_or_else(|| ToolSetupError::Credential {
                    tenant: tenant.clone(),
                    tool: tool.clone(),
                    var: var.clone(),
                })?;
                tools.insert(tool.clone(), value);
            }
            if !tools.is_empty() {
                credentials.insert(tenant.clone(), tools);
            }
        }
        if t.signing_key_file.is_none() {
            tracing::info!(
                kid = signer.key_id(),
                "no tools.signing_key_file: capability tokens are signed with a key drawn at start; \
                 replicas and restarts will not share it"
            );
        }
        Ok(ToolService {
            verifier: signer.verifier(),
            signer,
            token_ttl: t.token_ttl_secs,
            confirmation_ttl: t.confirmation_ttl_secs,
            hold_limits: HoldLimits {
                per_tenant: t.max_pending_per_tenant.min(t.max_pending),
                total: t.max_pending,
            },
            max_call_bytes: t.max_call_bytes,
            conversation_ttl: t.conversation_ttl_secs,
            pending: Mutex::new(PendingStore::new(t.max_pending_per_tenant, t.max_pending)),
            conversations: Mutex::new(Conversations::new(
                t.max_conversations_per_tenant,
                t.conversation_ttl_secs,
            )),
            consumed: Mutex::new(HashMap::new()),
            credentials,
        })
    }

    /// Replaces the tenant's tool credentials wherever they appear in the
    /// messages. Returns whether anything changed.
    fn scrub_credentials(&self, tenant: &str, fields: &mut Map<String, Value>) -> bool {
        let Some(secrets) = self.credentials.get(tenant) else {
            return false;
        };
        // Short values would match ordinary text; real credentials are long.
        let secrets: Vec<&String> = secrets.values().filter(|v| v.len() >= 8).collect();
        if secrets.is_empty() {
            return false;
        }
        let segments = palisade_openai::channels::segments(
            fields,
            palisade_openai::channels::TextKind::Chat,
            &[],
        )
        .unwrap_or_default();
        let mut changed = false;
        for segment in &segments {
            if secrets.iter().any(|s| segment.text.contains(s.as_str())) {
                let mut text = segment.text.clone();
                for s in &secrets {
                    text = text.replace(s.as_str(), "[REDACTED:tool_credential]");
                }
                tracing::warn!(tenant, "a tool credential appeared in a message; redacted");
                changed |= palisade_openai::channels::replace_text(fields, segment, text);
            }
        }
        changed
    }

    fn sign(
        &self,
        tenant: &str,
        request_id: &str,
        call: &ToolCall,
        source: TokenSource,
    ) -> (String, u64) {
        let now = now_secs();
        let exp = now + self.token_ttl;
        let token = self.signer.sign(CapabilityClaims {
            tenant: tenant.to_owned(),
            tool: call.name.clone(),
            // Only JSON arguments are ever released.
            args_sha256: arguments_sha256(&call.arguments).unwrap_or_default(),
            request_id: request_id.to_owned(),
            call_id: call.id.clone(),
            iat: now,
            exp,
            kid: String::new(),
            src: source,
        });
        (token, exp)
    }

    /// Holds a call in this process, within the tenant's cap. False when the
    /// store is full with other tenants' calls: the call is not held.
    fn park_local(&self, pending: PendingCall) -> bool {
        let id = pending.confirmation_id.clone();
        let tenant = pending.tenant.clone();
        let hold = self.pending.lock().unwrap_or_else(|e| e.into_inner()).park(
            &tenant,
            id,
            pending,
            now_secs(),
        );
        match hold {
            Hold::Held { evicted } => {
                for old in evicted {
                    tracing::warn!(confirmation_id = %old, %tenant,
                        "pending tool call evicted: the tenant has too many waiting");
                }
                true
            }
            Hold::Full => {
                tracing::warn!(%tenant, "tool call not held: tools.max_pending calls are waiting");
                false
            }
        }
    }

    /// Holds a call where every replica can release it: Redis when the
    /// replica has it (written in the background; this process keeps it if
    /// Redis fails or is full), else this process. False when it could not
    /// be held here (no Redis, and the store is full).
    fn park(self: &Arc<Self>, redis: Option<&RedisToolStore>, pending: PendingCall) -> bool {
        let Some(redis) = redis.cloned() else {
            return self.park_local(pending);
        };
        let service = self.clone();
        tokio::spawn(async move {
            let stored = match serde_json::to_string(&pending) {
                Ok(json) => redis
                    .park(
                        &pending.tenant,
                        &pending.confirmation_id,
                        &json,
                        pending.expires_at,
                        now_secs(),
                        service.hold_limits,
                    )
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match stored {
                Ok(Parked::Held { evicted }) => {
                    if evicted > 0 {
                        tracing::warn!(tenant = %pending.tenant, evicted,
                            "pending tool calls evicted: the tenant has too many waiting");
                    }
                }
                Ok(Parked::Full) => {
                    tracing::warn!("the shared tool store is full; this replica keeps the call");
                    service.park_local(pending);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot hold the tool call in Redis; this replica keeps it");
                    service.park_local(pending);
                }
            }
        });
        true
    }

    fn conversation(&self, tenant: &str, id: &str) -> Conversation {
        let map = self.conversations.lock().unwrap_or_else(|e| e.into_inner());
        map.get(tenant, id, now_secs())
    }

    /// Adds a finished response to its conversation's counters, here and in
    /// Redis when the replica has it.
    fn record_round_shared(
        &self,
        redis: Option<&RedisToolStore>,
        tenant: &str,
        id: &str,
        had_calls: bool,
        tokens: u64,
    ) {
        self.record_round(tenant, id, had_calls, tokens);
        if let Some(redis) = redis.cloned() {
            let (tenant, id) = (tenant.to_owned(), id.to_owned());
            let ttl = std::time::Duration::from_secs(self.conversation_ttl);
            tokio::spawn(async move {
                if let Err(error) = redis
                    .add_round(&tenant, &id, u32::from(had_calls), tokens, ttl)
                    .await
                {
                    tracing::warn!(%error, "cannot count the tool round in Redis");
                }
            });
        }
    }

    /// Adds a finished response to its conversation's counters.
    fn record_round(&self, tenant: &str, id: &str, had_calls: bool, tokens: u64) {
        self.conversations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(tenant, id, had_calls, tokens, now_secs());
    }
}

/// What the tool gate needs of a request to judge its response.
#[derive(Debug, Clone)]
pub(crate) struct ToolPlan {
    service: Arc<ToolService>,
    /// The schemas the client declared, by tool name.
    declared: Arc<HashMap<String, Value>>,
    conversation: Option<String>,
    /// Tool rounds before this request (the history's and the counters').
    rounds_before: u32,
    /// Tool-loop tokens before this request.
    loop_tokens_before: u64,
    /// This request continues a tool loop.
    in_loop: bool,
    /// The replica's shared store, when limits live in Redis.
    redis: Option<RedisToolStore>,
    /// The gateway asked the upstream for a stream's usage chunk (the
    /// loop-token cap needs it) and the client did not: keep it from them.
    strip_usage_chunk: bool,
    /// How the calls reach the gateway (the guard API sets `Guard`).
    source: TokenSource,
}

impl ToolPlan {
    /// The request continues a tool loop: its last message is a tool result,
    /// or the conversation has had tool rounds.
    pub(crate) fn in_loop(&self) -> bool {
        self.in_loop
    }
}

fn tool_name(tool: &Value) -> &str {
    tool.pointer("/function/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The request side: filters offered tools, enforces the conversation caps,
/// and leaves a [`ToolPlan`] in `plan` for the response. Returns whether the
/// body changed.
pub(crate) async fn inspect_request(
    state: &GatewayState,
    plan: &mut GatePlan,
    fields: &mut Map<String, Value>,
    headers: &HeaderMap,
) -> Result<bool, ApiError> {
    // A tenant's tool credentials never enter the model's context, even when
    // an executor echoes one back in a tool result: whatever the tier says.
    let mut changed = state.tools.scrub_credentials(&plan.subject.tenant, fields);
    let snapshot = plan.snapshot.clone();
    let tier = snapshot.tier_for(&plan.subject_ref());
    let Some(gate) = tier.tool_gate() else {
        return Ok(changed);
    };
    let started = Instant::now();
    // The deprecated functions API would carry calls past the gate: fail
    // closed rather than let a client choose an unchecked path.
    if let Some(legacy) = ["functions", "function_call"]
        .into_iter()
        .find(|k| fields.contains_key(*k))
    {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "`{legacy}` (the deprecated functions API) is not accepted where tool calls are \
                 checked; offer the functions as `tools` instead"
            ),
        )
        .with_param(legacy));
    }
    let mut declared = HashMap::new();
    let mut removed = Vec::new();
    if let Some(Value::Array(tools)) = fields.get_mut("tools") {
        tools.retain(|tool| {
            let name = tool_name(tool).to_owned();
            if gate.allows(&name) {
                if let Some(params) = tool.pointer("/function/parameters") {
                    declared.insert(name, params.clone());
                }
                true
            } else {
                removed.push(name);
                false
            }
        });
    }
    for name in &removed {
        let evidence = ToolEvidence {
            name: name.clone(),
            args_json: true,
            ..ToolEvidence::default()
        };
        audit_tool(plan, evidence, started);
    }
    if !removed.is_empty() {
        if gate.unlisted_offer() == UnlistedOffer::Refuse {
            return Err(ApiError::policy(
                ErrorCode::PolicyBlocked,
                ReasonCode::ToolNotAllowed.as_str(),
                format!(
                    "tools not allowed on this route: {} (policy {})",
                    removed.join(", "),
                    plan.snapshot.version()
                ),
            )
            .with_param("tools"));
        }
        changed = true;
        let empty = fields
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        let forced = fields
            .get("tool_choice")
            .and_then(|c| c.pointer("/function/name"))
            .and_then(Value::as_str)
            .is_some_and(|n| removed.iter().any(|r| r == n));
        if empty {
            // An empty list (and a choice among nothing) is an upstream error.
            fields.remove("tools");
            fields.remove("tool_choice");
            fields.remove("parallel_tool_calls");
        } else if forced {
            fields.insert("tool_choice".into(), json!("auto"));
        }
    }

    // Rounds so far: the history says how many assistant turns called tools;
    // the counters remember more when a client trims its history.
    let messages = fields.get("messages").and_then(Value::as_array);
    let history_rounds = messages.map_or(0, |m| {
        m.iter()
            .filter(|msg| {
                msg.get("role").and_then(Value::as_str) == Some("assistant")
                    && msg
                        .get("tool_calls")
                        .and_then(Value::as_array)
                        .is_some_and(|c| !c.is_empty())
            })
            .count()
    });
    let history_rounds = u32::try_from(history_rounds).unwrap_or(u32::MAX);
    let last_is_tool = messages
        .and_then(|m| m.last())
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        == Some("tool");
    let conversation = headers
        .get(CONVERSATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(128).collect::<String>())
        .filter(|v| !v.is_empty());
    let service = state.tools.clone();
    let redis = shared_store(state);
    let mut counters = conversation
        .as_deref()
        .map(|c| service.conversation(&plan.subject.tenant, c))
        .unwrap_or_default();
    if let (Some(redis), Some(conv)) = (&redis, conversation.as_deref()) {
        // Other replicas served this conversation too: their counts are in
        // Redis. Unreachable Redis leaves this replica's own counts.
        match redis.conversation(&plan.subject.tenant, conv).await {
            Ok((rounds, tokens)) => {
                counters.rounds = counters
                    .rounds
                    .max(u32::try_from(rounds).unwrap_or(u32::MAX));
                counters.loop_tokens = counters.loop_tokens.max(tokens);
            }
            Err(error) => tracing::warn!(%error, "tool-loop counters: Redis unavailable"),
        }
    }
    let rounds_before = history_rounds.max(counters.rounds);
    let in_loop = last_is_tool || rounds_before > 0;
    check_caps(
        plan,
        gate,
        rounds_before,
        counters.loop_tokens,
        last_is_tool,
    )?;
    // The loop-token cap counts a streamed answer by its usage chunk, which
    // an upstream sends only when asked: ask, even with no ledger or budget.
    let strip_usage_chunk = gate.max_loop_tokens().is_some()
        && matches!(fields.get("stream"), Some(Value::Bool(true)))
        && palisade_openai::ensure_stream_usage(fields);
    plan.tools = Some(ToolPlan {
        service,
        declared: Arc::new(declared),
        conversation,
        rounds_before,
        loop_tokens_before: counters.loop_tokens,
        in_loop,
        redis,
        strip_usage_chunk,
        source: TokenSource::Proxy,
    });
    Ok(changed || strip_usage_chunk)
}

/// Refuses a request that continues a tool loop already past its caps: the
/// client ignored withheld calls, or replays history.
fn check_caps(
    plan: &GatePlan,
    gate: &ToolGate,
    rounds: u32,
    loop_tokens: u64,
    continuing: bool,
) -> Result<(), ApiError> {
    if !continuing {
        return Ok(());
    }
    let stop = |reason: ReasonCode, what: String| {
        Err(ApiError::policy(
            ErrorCode::PolicyBlocked,
            reason.as_str(),
            format!(
                "the tool loop is stopped: {what} (policy {}); start a new conversation",
                plan.snapshot.version()
            ),
        ))
    };
    if let Some(cap) = gate.max_rounds().filter(|cap| rounds > *cap) {
        return stop(
            ReasonCode::ToolRoundLimit,
            format!("{rounds} tool rounds, the limit is {cap}"),
        );
    }
    if let Some(cap) = gate.max_loop_tokens().filter(|cap| loop_tokens >= *cap) {
        return stop(
            ReasonCode::ToolTokenLimit,
            format!(
                "{loop_tokens} tokens spent in this conversation's tool loop, the limit is {cap}"
            ),
        );
    }
    Ok(())
}

/// Judges one call and records the decision.
fn audit_tool(plan: &GatePlan, evidence: ToolEvidence, started: Instant) -> Decision {
    let e = Evidence {
        tool: Some(evidence),
        ..Evidence::default()
    };
    let subject = plan.subject_ref();
    let decision = plan.snapshot.decide_tool(&subject, &e);
    let shadow = plan.shadow.as_ref().map(|s| s.decide_tool(&subject, &e));
    crate::gates::audit(plan, e, &decision, shadow.as_ref(), started);
    decision
}

/// What became of one call.
#[derive(Debug)]
enum Fate {
    Released { token: String, expires_at: u64 },
    Withheld,
    Pending { id: String, expires_at: u64 },
}

/// Judges a response's calls (one choice), in order.
fn judge(plan: &GatePlan, tools: &ToolPlan, calls: Vec<ToolCall>, oversize: bool) -> Judged {
    let started = Instant::now();
    let mut out = Vec::with_capacity(calls.len());
    for (position, call) in calls.into_iter().enumerate() {
        // Model output like any other: a call whose arguments carry a key,
        // the canary or a data-smuggling URL is withheld whole.
        if let Some(leak) = crate::output_gate::tool_call_leaks(plan, &call.name, &call.arguments) {
            metrics::counter!(crate::metrics::TOOL_CALLS, "outcome" => "withheld").increment(1);
            out.push((call, leak, None, Fate::Withheld));
            continue;
        }
        let check = plan.snapshot.tools().check_arguments(
            &call.name,
            &call.arguments,
            tools.declared.get(&call.name),
        );
        // Arguments with no canonical form (duplicate names, lone surrogates) would
        // mean different calls to different parsers: judged as not JSON, never signed.
        let args_sha256 = arguments_sha256(&call.arguments).ok();
        let evidence = ToolEvidence {
            name: call.name.clone(),
            call_id: call.id.clone(),
            // Arguments cut short by the assembly bound are not the model's.
            args_json: check.json && !oversize && args_sha256.is_some(),
            args_sha256,
            schema_violation: check.schema_violation.clone(),
            untrusted_context: plan.untrusted_context,
            flagged_context: plan.flagged_context,
            position: u32::try_from(position).unwrap_or(u32::MAX),
            round: tools.rounds_before.saturating_add(1),
            loop_tokens: tools.loop_tokens_before,
        };
        let decision = audit_tool(plan, evidence.clone(), started);
        let mut violation = check.schema_violation;
        if oversize {
            violation = Some(crate::tool_bounds::oversize_detail(
                tools.service.max_call_bytes,
            ));
        }
        let fate = match decision.enforced_action {
            Action::Allow | Action::Flag => {
                let (token, expires_at) = tools.service.sign(
                    &plan.subject.tenant,
                    &plan.subject.request_id,
                    &call,
                    tools.source,
                );
                Fate::Released { token, expires_at }
            }
            Action::Confirm => {
                let expires_at = now_secs() + tools.service.confirmation_ttl;
                let id = format!("pc_{}", uuid::Uuid::new_v4().simple());
                let held = tools.service.park(
                    tools.redis.as_ref(),
                    PendingCall {
                        confirmation_id: id.clone(),
                        tenant: plan.subject.tenant.clone(),
                        call: call.clone(),
                        evidence,
                        decision: decision.clone(),
                        subject: plan.subject.clone(),
                        expires_at,
                        source: tools.source,
                    },
                );
                if held {
                    Fate::Pending { id, expires_at }
                } else {
                    // Nowhere to wait: withheld (fail closed), never released.
                    violation = Some(crate::tool_bounds::NO_ROOM.to_owned());
                    Fate::Withheld
                }
            }
            _ => Fate::Withheld,
        };
        let outcome = match fate {
            Fate::Released { .. } => "released",
            Fate::Withheld => "withheld",
            Fate::Pending { .. } => "pending",
        };
        metrics::counter!(crate::metrics::TOOL_CALLS, "outcome" => outcome).increment(1);
        out.push((call, decision, violation, fate));
    }
    metrics::histogram!(crate::metrics::TOOL_CHECK).record(started.elapsed().as_secs_f64());
    Judged { calls: out }
}

struct Judged {
    calls: Vec<(ToolCall, Decision, Option<String>, Fate)>,
}

impl Judged {
    fn released(&self) -> impl Iterator<Item = &ToolCall> {
        self.calls
            .iter()
            .filter(|(_, _, _, f)| matches!(f, Fate::Released { .. }))
            .map(|(c, ..)| c)
    }

    /// The report entries (`palisade.tool_calls`).
    fn report(&self) -> Vec<Value> {
        self.calls
            .iter()
            .map(|(call, decision, violation, fate)| {
                let reasons: Vec<&str> = decision.reasons.iter().map(|r| r.as_str()).collect();
                let mut entry = Map::new();
                entry.insert("id".into(), json!(call.id));
                entry.insert("name".into(), json!(call.name));
                entry.insert("reasons".into(), json!(reasons));
                match fate {
                    Fate::Released { token, expires_at } => {
                        entry.insert("status".into(), json!("released"));
                        entry.insert("capability".into(), json!(token));
                        entry.insert("expires_at".into(), json!(expires_at));
                    }
                    Fate::Withheld => {
                        entry.insert("status".into(), json!("withheld"));
                        if let Some(v) = violation {
                            entry.insert("detail".into(), json!(v));
                        }
                    }
                    Fate::Pending { id, expires_at } => {
                        entry.insert("status".into(), json!("pending_confirmation"));
                        entry.insert("confirmation_id".into(), json!(id));
                        entry.insert("expires_at".into(), json!(expires_at));
                    }
                }
                Value::Object(entry)
            })
            .collect()
    }

    /// A sentence for the client (and the agent's transcript) when nothing
    /// was released.
    fn note(&self) -> String {
        let parts: Vec<String> = self
            .calls
            .iter()
            .map(|(call, d, _, fate)| {
                let reasons: Vec<&str> = d.reasons.iter().map(|r| r.as_str()).collect();
                match fate {
                    Fate::Pending { id, .. } => format!(
                        "`{}` is waiting for confirmation ({id}; {})",
                        call.name,
                        reasons.join(", ")
                    ),
                    Fate::Withheld => {
                        format!("`{}` was withheld ({})", call.name, reasons.join(", "))
                    }
                    Fate::Released { .. } => format!("`{}` was released", call.name),
                }
            })
            .collect();
        format!("[Palisade] Tool calls not released: {}.", parts.join("; "))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn total_tokens(value: &Value) -> u64 {
    value
        .pointer("/usage/total_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The tool gate over a whole chat completion: returns the body to send
/// (`None`: unchanged).
pub(crate) fn gate_body(plan: &GatePlan, body: &[u8]) -> Option<Bytes> {
    let tools = plan.tools.as_ref()?;
    // Most completions carry no call: skip the parse unless there may be one,
    // or the conversation's loop tokens need counting.
    let counting = tools.conversation.is_some() && tools.in_loop;
    if !counting && !contains(body, b"\"tool_calls\"") {
        return None;
    }
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let mut report = Vec::new();
    let mut had_calls = false;
    // The same bound as a stream's assembler: calls past it are not judged
    // as the model's, whichever path they came by.
    let oversize = crate::tool_bounds::response_oversize(&value, tools.service.max_call_bytes);
    if let Some(Value::Array(choices)) = value.get_mut("choices") {
        for choice in choices.iter_mut() {
            let Some(message) = choice.get_mut("message") else {
                continue;
            };
            let calls = ToolCall::from_message(message);
            if calls.is_empty() {
                continue;
            }
            had_calls = true;
            let judged = judge(plan, tools, calls, oversize);
            report.extend(judged.report());
            let released: Vec<Value> = judged.released().map(ToolCall::to_message_entry).collect();
            let none_released = released.is_empty();
            if let Some(msg) = message.as_object_mut() {
                if none_released {
                    msg.remove("tool_calls");
                    let empty = msg
                        .get("content")
                        .is_none_or(|c| c.is_null() || c.as_str() == Some(""));
                    if empty {
                        msg.insert("content".into(), json!(judged.note()));
                    }
                } else {
                    msg.insert("tool_calls".into(), Value::Array(released));
                }
            }
            if none_released && choice.get("finish_reason") == Some(&json!("tool_calls")) {
                choice["finish_reason"] = json!("stop");
            }
        }
    }
    if let Some(conv) = &tools.conversation {
        let tokens = if tools.in_loop || had_calls {
            total_tokens(&value)
        } else {
            0
        };
        tools.service.record_round_shared(
            tools.redis.as_ref(),
            &plan.subject.tenant,
            conv,
            had_calls,
            tokens,
        );
    }
    if !had_calls {
        return None;
    }
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "palisade".into(),
            json!({"policy_version": plan.snapshot.version(), "tool_calls": report}),
        );
    }
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

/// What the stream relay should do with one event.
#[derive(Debug)]
pub(crate) enum ToolEvent {
    /// Send it unchanged.
    Forward,
    /// Drop it (it carried only tool-call deltas, now held).
    Drop,
    /// Send these data payloads instead, in order.
    Replace(Vec<String>),
}

/// The tool gate over a stream: tool-call deltas are held and assembled;
/// when a choice finishes, its calls are judged and the released ones sent
/// whole in one delta, followed by the `palisade` report event.
#[derive(Debug)]
pub(crate) struct ToolStreamGate {
    plan: GatePlan,
    assembler: CallAssembler,
    oversize: std::collections::BTreeSet<u32>,
    /// `id`, `object`, `created`, `model` of the stream's chunks.
    template: Option<Value>,
    usage_tokens: u64,
    had_calls: bool,
    report: Vec<Value>,
    recorded: bool,
    /// Choices whose `role` went with a dropped chunk (its only other
    /// content was held call deltas): the first delta sent for them carries it.
    role_owed: std::collections::BTreeSet<u32>,
}

impl ToolStreamGate {
    /// The gate for a request whose plan has a tool plan.
    pub(crate) fn new(plan: &GatePlan) -> Option<ToolStreamGate> {
        let tools = plan.tools.as_ref()?;
        Some(ToolStreamGate {
            assembler: CallAssembler::new(tools.service.max_call_bytes),
            plan: plan.clone(),
            oversize: Default::default(),
            template: None,
            usage_tokens: 0,
            had_calls: false,
            report: Vec::new(),
            recorded: false,
            role_owed: Default::default(),
        })
    }

    fn chunk(&self, choices: Value) -> Value {
        let mut c = self.template.clone().unwrap_or_else(|| json!({}));
        if let Some(obj) = c.as_object_mut() {
            obj.insert("object".into(), json!("chat.completion.chunk"));
            obj.insert("choices".into(), choices);
        }
        c
    }

    /// Judges the held calls of `choice`: the payload releasing them (if
    /// any), and whether any was released.
    fn release(&mut self, choice: u32) -> (Option<String>, bool) {
        let calls = self.assembler.take(choice);
        let oversize = self.oversize.remove(&choice);
        if calls.is_empty() {
            return (None, false);
        }
        self.had_calls = true;
        let Some(tools) = self.plan.tools.clone() else {
            return (None, false);
        };
        let judged = judge(&self.plan, &tools, calls, oversize);
        self.report.extend(judged.report());
        let released: Vec<Value> = judged
            .released()
            .enumerate()
            .map(|(i, c)| c.to_delta_entry(u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let any_released = !released.is_empty();
        let mut delta = if any_released {
            json!({"tool_calls": released})
        } else {
            json!({"content": judged.note()})
        };
        if self.role_owed.remove(&choice) {
            delta["role"] = json!("assistant");
        }
        let payload = self.chunk(json!([{"index": choice, "delta": delta, "finish_reason": null}]));
        (Some(payload.to_string()), any_released)
    }

    fn report_event(&mut self) -> Option<String> {
        if self.report.is_empty() {
            return None;
        }
        let mut c = self.chunk(json!([]));
        if let Some(obj) = c.as_object_mut() {
            obj.insert(
                "palisade".into(),
                json!({"policy_version": self.plan.snapshot.version(), "tool_calls": std::mem::take(&mut self.report)}),
            );
        }
        Some(c.to_string())
    }

    /// Handles one data payload.
    pub(crate) fn on_data(&mut self, data: &str) -> ToolEvent {
        // Plain text deltas with no call held need no parse here (the output
        // gate parses them anyway).
        let quiet = self.template.is_some()
            && self.assembler.is_empty()
            && self.oversize.is_empty()
            && !data.contains("\"tool_calls\"")
            && !data.contains("\"usage\"");
        if quiet {
            return ToolEvent::Forward;
        }
        let Ok(mut value) = serde_json::from_str::<Value>(data) else {
            return ToolEvent::Forward;
        };
        if self.template.is_none() {
            let mut t = value.clone();
            if let Some(obj) = t.as_object_mut() {
                obj.retain(|k, _| matches!(k.as_str(), "id" | "created" | "model"));
            }
            self.template = Some(t);
        }
        self.usage_tokens = self.usage_tokens.max(total_tokens(&value));
        let usage_only = value
            .get("choices")
            .is_none_or(|c| c.as_array().is_some_and(Vec::is_empty))
            && value.get("usage").is_some_and(|u| !u.is_null());
        if usage_only
            && self
                .plan
                .tools
                .as_ref()
                .is_some_and(|t| t.strip_usage_chunk)
        {
            return ToolEvent::Drop;
        }
        let mut changed = false;
        let mut finishing = Vec::new();
        if let Some(Value::Array(choices)) = value.get_mut("choices") {
            for choice in choices.iter_mut() {
                let index = choice
                    .get("index")
                    .and_then(Value::as_u64)
                    .map_or(0, |i| u32::try_from(i).unwrap_or(u32::MAX));
                if let Some(Value::Array(deltas)) = choice
                    .get_mut("delta")
                    .and_then(|d| d.as_object_mut())
                    .and_then(|d| d.remove("tool_calls"))
                {
                    changed = true;
                    for d in &deltas {
                        if self.assembler.push(index, d).is_err() {
                            self.oversize.insert(index);
                        }
                    }
                }
                let finish = choice.get("finish_reason").is_some_and(|f| !f.is_null());
                if finish && (self.assembler.has(index) || self.oversize.contains(&index)) {
                    finishing.push(index);
                }
            }
        }
        if finishing.is_empty() {
            if !changed {
                return ToolEvent::Forward;
            }
            return if carries_nothing(&value) {
                for choice in value["choices"].as_array().into_iter().flatten() {
                    if choice.pointer("/delta/role").is_some_and(|r| !r.is_null()) {
                        let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                        self.role_owed
                            .insert(u32::try_from(index).unwrap_or(u32::MAX));
                    }
                }
                ToolEvent::Drop
            } else {
                ToolEvent::Replace(vec![value.to_string()])
            };
        }
        let mut out = Vec::new();
        for index in finishing {
            let (payload, any_released) = self.release(index);
            out.extend(payload);
            if !any_released {
                if let Some(Value::Array(choices)) = value.get_mut("choices") {
                    for choice in choices.iter_mut() {
                        let same =
                            choice.get("index").and_then(Value::as_u64) == Some(u64::from(index));
                        if same && choice.get("finish_reason") == Some(&json!("tool_calls")) {
                            choice["finish_reason"] = json!("stop");
                        }
                    }
                }
            }
        }
        out.push(value.to_string());
        out.extend(self.report_event());
        ToolEvent::Replace(out)
    }

    /// The stream ended (`[DONE]` or the body closed): calls never finished
    /// by a `finish_reason` are judged now. Returns payloads to send first.
    pub(crate) fn finish(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for choice in self.assembler.choices() {
            out.extend(self.release(choice).0);
        }
        out.extend(self.report_event());
        if !self.recorded {
            self.recorded = true;
            if let Some(tools) = &self.plan.tools {
                if let Some(conv) = &tools.conversation {
                    let tokens = if tools.in_loop || self.had_calls {
                        self.usage_tokens
                    } else {
                        0
                    };
                    tools.service.record_round_shared(
                        tools.redis.as_ref(),
                        &self.plan.subject.tenant,
                        conv,
                        self.had_calls,
                        tokens,
                    );
                }
            }
        }
        out
    }
}

/// True when a chunk has nothing left for the client: no usage, and every
/// choice has an empty delta and no finish reason.
fn carries_nothing(value: &Value) -> bool {
    if value.get("usage").is_some_and(|u| !u.is_null()) {
        return false;
    }
    value
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|choices| {
            choices.iter().all(|c| {
                c.get("finish_reason").is_none_or(Value::is_null)
                    && c.get("delta").and_then(Value::as_object).is_none_or(|d| {
                        d.iter().all(|(k, v)| {
                            v.is_null() || (k == "content" && v.as_str() == Some("")) || k == "role"
                        })
                    })
            })
        })
}

// ---------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------

fn respond(result: Result<Value, ApiError>, request_id: &str) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(err) => error_response(&err, Some(request_id)),
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("invalid JSON body: {e}")))
}

/// `POST /v1/tools/confirm` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    confirmation_id: String,
    /// `true` (default) releases the call, `false` denies it.
    #[serde(default = "yes")]
    approve: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/tools/confirm`: an approver releases (or denies) a held call.
pub async fn confirm(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(run_confirm(&state, &headers, &body).await, &request_id)
}

fn shared_store(state: &GatewayState) -> Option<RedisToolStore> {
    state
        .admission
        .redis()
        .map(|conn| RedisToolStore::new(conn, "palisade"))
}

fn unavailable(error: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(%error, "tool store: Redis unavailable");
    ApiError::new(
        ErrorCode::LimitsUnavailable,
        "held tool calls cannot be read right now",
    )
    .with_retry_after(Some(1))
}

/// Takes the held call `id` if `principal` may decide it: from this
/// process, else from Redis. A call lives in exactly one of the two, so it
/// is released at most once whichever replica is asked.
async fn take_for(
    state: &GatewayState,
    principal: &crate::auth::Principal,
    id: &str,
) -> Result<Option<PendingCall>, ApiError> {
    let may = |p: &PendingCall| principal.admin || *p.tenant == *principal.tenant;
    {
        let mut store = state
            .tools
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(p) = store.get(id) {
            // Another tenant's approver must not even consume (deny) it.
            if !may(p) {
                return Ok(None);
            }
            let p = store.remove(id);
            return Ok(p.filter(|p| p.expires_at > now_secs()));
        }
    }
    let Some(redis) = shared_store(state) else {
        return Ok(None);
    };
    let Some(json) = redis.get(id).await.map_err(|e| unavailable(&e))? else {
        return Ok(None);
    };
    let Ok(peeked) = serde_json::from_str::<PendingCall>(&json) else {
        tracing::warn!(confirmation_id = id, "unreadable held tool call in Redis");
        return Ok(None);
    };
    if !may(&peeked) {
        return Ok(None);
    }
    let taken = redis
        .take(&peeked.tenant, id)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(taken
        .and_then(|json| serde_json::from_str::<PendingCall>(&json).ok())
        .filter(|p| p.expires_at > now_secs()))
}

async fn run_confirm(
    state: &GatewayState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let principal = state.auth.authenticate(headers)?;
    if !(principal.approver || principal.admin) {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "confirming tool calls needs an approver key ([[auth.keys]] approver = true)",
        ));
    }
    let req: ConfirmBody = parse_body(body)?;
    let service = &state.tools;
    let pending = take_for(state, &principal, &req.confirmation_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ConfirmationNotFound,
                format!(
                    "no tool call waits for confirmation `{}` (unknown, already decided, or lapsed)",
                    req.confirmation_id
                ),
            )
        })?;
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
        &state.audit,
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

/// Most held calls one listing returns.
const MAX_LISTED: usize = 1_000;

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

async fn run_pending(state: &GatewayState, headers: &HeaderMap) -> Result<Value, ApiError> {
    let principal = state.auth.authenticate(headers)?;
    if !(principal.approver || principal.admin) {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "listing held tool calls needs an approver key",
        ));
    }
    let now = now_secs();
    let visible =
        |p: &PendingCall| p.expires_at > now && (principal.admin || *p.tenant == *principal.tenant);
    let mut calls: Vec<PendingCall> = {
        let store = state
            .tools
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        store.values().filter(|p| visible(p)).cloned().collect()
    };
    if let Some(redis) = shared_store(state) {
        let tenant = (!principal.admin).then_some(&*principal.tenant);
        let shared = redis
            .list(tenant, now, MAX_LISTED)
            .await
            .map_err(|e| unavailable(&e))?;
        calls.extend(
            shared
                .iter()
                .filter_map(|json| serde_json::from_str::<PendingCall>(json).ok())
                .filter(|p| visible(p)),
        );
    }
    calls.sort_by_key(|p| p.expires_at);
    calls.truncate(MAX_LISTED);
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
    body: axum::body::Body,
) -> Response {
    respond(run_guard(&state, &headers, body).await, &request_id)
}

async fn run_guard(
    state: &Arc<GatewayState>,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Value, ApiError> {
    let (principal, _admitted, bytes) = crate::guard::admit_and_read(state, headers, body).await?;
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
    let route = state
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
    let (mut plan, _) = crate::cpu::gate_request(
        state,
        subject,
        crate::output_gate::ResponseShape::Chat,
        &mut fields,
        Vec::new(),
        body_bytes,
    )
    .await??;
    inspect_request(state, &mut plan, &mut fields, headers).await?;
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
    let oversize = crate::tool_bounds::calls_bytes(&calls) > tools.service.max_call_bytes;
    let (job_plan, job_tools) = (plan.clone(), tools.clone());
    let judged = state
        .cpu
        .run_or_inline(body_bytes <= crate::cpu::INLINE_BYTES, move || {
            judge(&job_plan, &job_tools, calls, oversize)
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
struct VerifyBody {
    token: String,
    tool: String,
    /// The arguments as the executor will use them: a JSON string, or the
    /// object itself. Kept raw: parsing it into a `Value` would collapse
    /// duplicate names and round big numbers before the hash is taken.
    arguments: Box<serde_json::value::RawValue>,
    /// Accept the token only once (for executors without their own replay
    /// store).
    #[serde(default)]
    consume: bool,
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
    body: Bytes,
) -> Response {
    respond(run_verify(&state, &headers, &body).await, &request_id)
}

async fn run_verify(
    state: &GatewayState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let principal = state.auth.authenticate(headers)?;
    let req: VerifyBody = parse_body(body)?;
    let arguments = crate::tool_bounds::raw_arguments(&req.arguments)?;
    let service = &state.tools;
    let now = now_secs();
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
        let jti = crate::tool_bounds::token_id(&req.token);
        let first = match shared_store(state) {
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
        "kid": state.tools.signer.key_id(),
        "public_key": state.tools.signer.public_key_hex(),
        "token_format": "pcap1.<base64url claims JSON>.<base64url ed25519 signature over 'pcap1.<claims>'>",
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POLICY: &str = r#"
default_tier = "t"
[tools.search]
effect = "read_only"
schema = { type = "object", properties = { q = { type = "string" } }, required = ["q"] }
[tools.send]
effect = "irreversible"
[tiers.t.tool]
allow = ["search", "send"]
"#;

    fn plan() -> GatePlan {
        let service = ToolService::from_config(&palisade_config::Config::default(), &|_| None)
            .expect("a tool service with a drawn key");
        GatePlan {
            snapshot: Arc::new(palisade_policy::Snapshot::from_toml(POLICY).unwrap()),
            shadow: None,
            subject: crate::gates::GateSubject {
                request_id: "r".into(),
                tenant: "acme".into(),
                route: "m".into(),
                model: "m".into(),
            },
            canary: None,
            response_schema: None,
            json_mode: false,
            sink: crate::audit::AuditSink::default(),
            stream_hold_bytes: 512,
            untrusted_context: false,
            flagged_context: false,
            shape: crate::output_gate::ResponseShape::Chat,
            tools: Some(ToolPlan {
                service: Arc::new(service),
                declared: Arc::new(HashMap::new()),
                conversation: None,
                rounds_before: 0,
                loop_tokens_before: 0,
                in_loop: false,
                redis: None,
                strip_usage_chunk: false,
                source: TokenSource::Proxy,
            }),
        }
    }

    fn chunk(delta: Value, finish: Value) -> String {
        json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
    }

    /// The stream an upstream would send for `calls`, arguments cut into
    /// `cut`-byte pieces, calls interleaved.
    fn stream_of(calls: &[(String, String)], cut: usize) -> Vec<String> {
        let mut out = vec![chunk(
            json!({"role": "assistant", "content": null}),
            Value::Null,
        )];
        for (i, (name, _)) in calls.iter().enumerate() {
            out.push(chunk(
                json!({"tool_calls": [{"index": i, "id": format!("c{i}"), "type": "function",
                "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
        }
        let pieces: Vec<Vec<String>> = calls
            .iter()
            .map(|(_, a)| {
                a.as_bytes()
                    .chunks(cut)
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect()
            })
            .collect();
        for round in 0..pieces.iter().map(Vec::len).max().unwrap_or(0) {
            for (i, p) in pieces.iter().enumerate() {
                if let Some(piece) = p.get(round) {
                    out.push(chunk(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                        Value::Null,
                    ));
                }
            }
        }
        out.push(chunk(json!({}), json!("tool_calls")));
        out
    }

    fn statuses(report: &[Value]) -> Vec<(String, String)> {
        report
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_owned(),
                    e["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn arb_calls() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec(
            (
                prop::sample::select(vec!["search", "send", "nope"]),
                "[a-z ]{0,24}",
                0u8..4,
            ),
            1..4,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (name, text, shape))| {
                    let marker = format!("mk{i}z{text}");
                    let args = match shape {
                        0 => json!({"q": marker}).to_string(),
                        1 => json!({"other": marker}).to_string(),
                        2 => format!("{{\"q\": \"{marker}"),
                        _ => json!({"q": marker, "n": 3}).to_string(),
                    };
                    (name.to_owned(), args)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// However the upstream cuts a stream of tool calls, the client gets
        /// the same verdicts as for the whole response, each released call
        /// whole and unchanged, and no byte of a call that was not released.
        #[test]
        fn streamed_calls_are_judged_as_whole_ones(calls in arb_calls(), cut in 1usize..16) {
            let plan = plan();
            let whole = json!({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                "tool_calls": calls.iter().enumerate().map(|(i, (n, a))| json!({"id": format!("c{i}"), "type": "function",
                "function": {"name": n, "arguments": a}})).collect::<Vec<_>>()}}]});
            let gated: Value = serde_json::from_slice(&gate_body(&plan, whole.to_string().as_bytes()).unwrap()).unwrap();
            let expected = statuses(gated["palisade"]["tool_calls"].as_array().unwrap());

            let mut gate = ToolStreamGate::new(&plan).unwrap();
            let mut sent = Vec::new();
            for data in stream_of(&calls, cut) {
                match gate.on_data(&data) {
                    ToolEvent::Forward => sent.push(data),
                    ToolEvent::Drop => {}
                    ToolEvent::Replace(list) => sent.extend(list),
                }
            }
            sent.extend(gate.finish());
            let events: Vec<Value> = sent.iter().map(|d| serde_json::from_str(d).unwrap()).collect();
            let report = events.iter().find_map(|e| e["palisade"]["tool_calls"].as_array()).unwrap();
            prop_assert_eq!(statuses(report), expected.clone());
            let released: Vec<(String, String)> = events
                .iter()
                .filter_map(|e| e.pointer("/choices/0/delta/tool_calls").and_then(Value::as_array))
                .flatten()
                .map(|c| (c["function"]["name"].as_str().unwrap().to_owned(),
                          c["function"]["arguments"].as_str().unwrap().to_owned()))
                .collect();
            let want: Vec<(String, String)> = calls
                .iter()
                .zip(&expected)
                .filter(|(_, (_, status))| status == "released")
                .map(|(c, _)| c.clone())
                .collect();
            prop_assert_eq!(released, want);
            let text = sent.join("\n");
            for (i, ((_, _), (_, status))) in calls.iter().zip(&expected).enumerate() {
                if status != "released" {
                    prop_assert!(!text.contains(&format!("mk{i}z")), "call {} leaked: {}", i, text);
                }
            }
        }
    }

    #[test]
    fn chunks_with_only_held_deltas_carry_nothing() {
        assert!(carries_nothing(
            &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": null}]})
        ));
        assert!(carries_nothing(
            &json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        ));
        assert!(!carries_nothing(
            &json!({"choices": [{"index": 0, "delta": {"content": "hi"}}]})
        ));
        assert!(!carries_nothing(
            &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        ));
        assert!(!carries_nothing(
            &json!({"choices": [], "usage": {"total_tokens": 3}})
        ));
    }
}
