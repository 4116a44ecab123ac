//! The tool service: signing key, held calls, single-use token records,
//! conversation counters and tenant credentials, in memory or in Redis.
//!
//! Must not: judge calls (that is `judge`) or speak HTTP.

use super::*;

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
pub(crate) struct PendingCall {
    pub(crate) confirmation_id: String,
    pub(crate) tenant: String,
    pub(crate) call: ToolCall,
    pub(crate) evidence: ToolEvidence,
    pub(crate) decision: Decision,
    pub(crate) subject: crate::gates::GateSubject,
    pub(crate) expires_at: u64,
    /// How the call reached the gateway; its token says so once confirmed.
    #[serde(default)]
    pub(crate) source: TokenSource,
}

impl Lapses for PendingCall {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// Signing, confirmations, single-use tokens, conversation counters and
/// tenant credentials: the tool gate's state, one per process.
pub(crate) struct ToolService {
    pub(crate) signer: CapabilitySigner,
    pub(crate) verifier: CapabilityVerifier,
    pub(crate) token_ttl: u64,
    pub(crate) confirmation_ttl: u64,
    pub(crate) hold_limits: HoldLimits,
    pub(crate) max_call_bytes: usize,
    pub(crate) conversation_ttl: u64,
    pub(crate) pending: Mutex<PendingStore<PendingCall>>,
    pub(crate) conversations: Mutex<Conversations>,
    /// Tokens spent with `consume: true`, until they expire.
    pub(crate) consumed: Mutex<HashMap<String, u64>>,
    /// tenant → tool → credential. Never logged, never sent upstream.
    pub(crate) credentials: HashMap<String, HashMap<String, String>>,
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
    pub(crate) fn scrub_credentials(&self, tenant: &str, fields: &mut Map<String, Value>) -> bool {
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

    pub(crate) fn sign(
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
    pub(crate) fn park_local(&self, pending: PendingCall) -> bool {
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
    pub(crate) fn park(
        self: &Arc<Self>,
        redis: Option<&RedisToolStore>,
        pending: PendingCall,
    ) -> bool {
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

    pub(crate) fn conversation(&self, tenant: &str, id: &str) -> Conversation {
        let map = self.conversations.lock().unwrap_or_else(|e| e.into_inner());
        map.get(tenant, id, now_secs())
    }

    /// Adds a finished response to its conversation's counters, here and in
    /// Redis when the replica has it.
    pub(crate) fn record_round_shared(
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
    pub(crate) fn record_round(&self, tenant: &str, id: &str, had_calls: bool, tokens: u64) {
        self.conversations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(tenant, id, had_calls, tokens, now_secs());
    }
}

pub(crate) fn unavailable(error: &dyn std::fmt::Display) -> ApiError {
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
pub(crate) async fn take_for(
    service: &ToolService,
    shared: Option<RedisToolStore>,
    principal: &crate::http::auth::Principal,
    id: &str,
) -> Result<Option<PendingCall>, ApiError> {
    let may = |p: &PendingCall| principal.admin || *p.tenant == *principal.tenant;
    {
        let mut store = service.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = store.get(id) {
            // Another tenant's approver must not even consume (deny) it.
            if !may(p) {
                return Ok(None);
            }
            let p = store.remove(id);
            return Ok(p.filter(|p| p.expires_at > now_secs()));
        }
    }
    let Some(redis) = shared else {
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
