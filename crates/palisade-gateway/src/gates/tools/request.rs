//! The request side of the tool gate: offered tools filtered by the tier's
//! allowlist, and a conversation past its loop caps stopped.
//!
//! Must not: judge emitted calls.

use super::*;

/// What the tool gate needs of a request to judge its response.
#[derive(Debug, Clone)]
pub(crate) struct ToolPlan {
    pub(crate) service: Arc<ToolService>,
    /// The schemas the client declared, by tool name.
    pub(crate) declared: Arc<HashMap<String, Value>>,
    pub(crate) conversation: Option<String>,
    /// Tool rounds before this request (the history's and the counters').
    pub(crate) rounds_before: u32,
    /// Tool-loop tokens before this request.
    pub(crate) loop_tokens_before: u64,
    /// This request continues a tool loop.
    pub(crate) in_loop: bool,
    /// The replica's shared store, when limits live in Redis.
    pub(crate) redis: Option<RedisToolStore>,
    /// The gateway asked the upstream for a stream's usage chunk (the
    /// loop-token cap needs it) and the client did not: keep it from them.
    pub(crate) strip_usage_chunk: bool,
    /// How the calls reach the gateway (the guard API sets `Guard`).
    pub(crate) source: TokenSource,
}

impl ToolPlan {
    /// The request continues a tool loop: its last message is a tool result,
    /// or the conversation has had tool rounds.
    pub(crate) fn in_loop(&self) -> bool {
        self.in_loop
    }
}

/// Where a request keeps a tool's name and parameters: chat nests them under
/// `function`, the Responses API puts them on the tool itself. Each shape is
/// read its own way only: a tool carrying both is read as its upstream will.
fn tool_fields(responses: bool) -> (&'static str, &'static str) {
    if responses {
        ("/name", "/parameters")
    } else {
        ("/function/name", "/function/parameters")
    }
}

/// Responses API tools the gateway cannot judge the calls of: hosted tools
/// (`web_search`, `file_search`, `code_interpreter`, `mcp`, …) run upstream
/// and their calls never reach a tool gate. Refused where calls are checked.
fn hosted_tool(fields: &Map<String, Value>) -> Option<usize> {
    fields
        .get("tools")?
        .as_array()?
        .iter()
        .position(|t| t.get("type").and_then(Value::as_str) != Some("function"))
}

/// The request side: filters offered tools, enforces the conversation caps,
/// and leaves a [`ToolPlan`] in `plan` for the response. Returns whether the
/// body changed.
pub(crate) async fn inspect_request(
    service: &Arc<ToolService>,
    shared: Option<RedisToolStore>,
    plan: &mut GatePlan,
    fields: &mut Map<String, Value>,
    headers: &HeaderMap,
) -> Result<bool, ApiError> {
    // A tenant's tool credentials never enter the model's context, even when
    // an executor echoes one back in a tool result: whatever the tier says.
    let mut changed = service.scrub_credentials(&plan.subject.tenant, fields);
    let snapshot = plan.snapshot.clone();
    let tier = snapshot.tier_for(&plan.subject_ref());
    let Some(gate) = tier.tool_gate() else {
        return Ok(changed);
    };
    let started = Instant::now();
    let responses = plan.shape == crate::gates::ResponseShape::Responses;
    let (name_at, params_at) = tool_fields(responses);
    if let Some(i) = hosted_tool(fields).filter(|_| responses) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "only `function` tools are accepted where tool calls are checked: a hosted tool's \
             calls run upstream, out of the tool gate's sight",
        )
        .with_param(format!("tools[{i}].type")));
    }
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
            let name = tool
                .pointer(name_at)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if gate.allows(&name) {
                if let Some(params) = tool.pointer(params_at) {
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
            .and_then(|c| c.pointer(name_at))
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
    let (history_rounds, last_is_tool) = if responses {
        // Responses items: a run of `function_call`s is one round.
        let items = fields.get("input").and_then(Value::as_array);
        let kind = |i: &Value| i.get("type").and_then(Value::as_str).map(str::to_owned);
        let rounds = items.map_or(0, |items| {
            items
                .windows(2)
                .filter(|w| {
                    kind(&w[0]).as_deref() != Some("function_call")
                        && kind(&w[1]).as_deref() == Some("function_call")
                })
                .count()
                + usize::from(items.first().and_then(kind).as_deref() == Some("function_call"))
        });
        let last = items.and_then(|i| i.last()).and_then(kind);
        (rounds, last.as_deref() == Some("function_call_output"))
    } else {
        let messages = fields.get("messages").and_then(Value::as_array);
        let rounds = messages.map_or(0, |m| {
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
        let last = messages
            .and_then(|m| m.last())
            .and_then(|m| m.get("role"))
            .and_then(Value::as_str)
            == Some("tool");
        (rounds, last)
    };
    let history_rounds = u32::try_from(history_rounds).unwrap_or(u32::MAX);
    let conversation = headers
        .get(CONVERSATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(128).collect::<String>())
        .filter(|v| !v.is_empty());
    let service = service.clone();
    let redis = shared;
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
    bounds::check_loop_caps(
        plan,
        palisade_policy::LoopEvidence {
            rounds: rounds_before,
            loop_tokens: counters.loop_tokens,
            continuing: last_is_tool,
        },
    )?;
    // The loop-token cap counts a streamed answer by its usage chunk, which
    // an upstream sends only when asked: ask, even with no ledger or budget.
    let strip_usage_chunk = gate.max_loop_tokens().is_some()
        && !responses
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
