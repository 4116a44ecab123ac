//! The tool service: signing key, held calls, single-use token records,
//! conversation counters and tenant credentials, in memory or in Redis, and
//! the clock the tool gate's decisions read.
//!
//! Must not: judge calls (that is `judge`), speak HTTP, or read the OS clock
//! other than through its [`GatewayClock`].

use super::*;
use crate::clock::GatewayClock;

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
    /// Calls held in this process: all of them without Redis, and Redis's
    /// fallback with it.
    pub(crate) held: Arc<MemoryHeldCalls>,
    pub(crate) conversations: Mutex<Conversations>,
    /// Tokens spent with `consume: true`, until they expire.
    pub(crate) consumed: Mutex<HashMap<String, u64>>,
    /// tenant → tool → credential. Never logged, never sent upstream.
    pub(crate) credentials: HashMap<String, HashMap<String, String>>,
    /// Token, held-call and conversation expiry are decisions: their time
    /// comes from here.
    clock: GatewayClock,
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
            held: Arc::new(MemoryHeldCalls::new(
                t.max_pending_per_tenant,
                t.max_pending,
            )),
            conversations: Mutex::new(Conversations::new(
                t.max_conversations_per_tenant,
                t.conversation_ttl_secs,
            )),
            consumed: Mutex::new(HashMap::new()),
            credentials,
            clock: GatewayClock::system(),
        })
    }

    /// The same service on another clock.
    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: GatewayClock) -> Self {
        self.clock = clock;
        self
    }

    /// Unix seconds on the service's clock (0 before 1970).
    pub(crate) fn now_secs(&self) -> u64 {
        u64::try_from(self.clock.unix_ms() / 1_000).unwrap_or(0)
    }

    /// Where this request's held calls wait: Redis when the replica has it
    /// (`shared`), with this process as its fallback, else this process.
    pub(crate) fn held_calls(&self, shared: Option<RedisToolStore>) -> Arc<dyn HeldCalls> {
        match shared {
            Some(shared) => Arc::new(RedisHeldCalls::new(
                shared,
                self.held.clone(),
                self.hold_limits,
            )),
            None => self.held.clone(),
        }
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
        let now = self.now_secs();
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

    pub(crate) fn conversation(&self, tenant: &str, id: &str) -> Conversation {
        let map = self.conversations.lock().unwrap_or_else(|e| e.into_inner());
        map.get(tenant, id, self.now_secs())
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
            .record(tenant, id, had_calls, tokens, self.now_secs());
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
