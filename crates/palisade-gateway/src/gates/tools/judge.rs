//! Judging emitted calls: the policy's decision per call, its fate
//! (released with a token, withheld, held for confirmation), the report, and
//! the tool gate over a whole response.
//!
//! Must not: read streams (that is `stream`) or speak HTTP.

use super::*;

/// Judges one call and records the decision.
pub(crate) fn audit_tool(plan: &GatePlan, evidence: ToolEvidence, started: Instant) -> Decision {
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
pub(crate) enum Fate {
    Released { token: String, expires_at: u64 },
    Withheld,
    Pending { id: String, expires_at: u64 },
}

/// Judges a response's calls (one choice), in order; `first` is the
/// position of the first among the response's calls (a stream judges its
/// calls in batches, and the per-response cap counts them all).
pub(crate) fn judge(
    plan: &GatePlan,
    tools: &ToolPlan,
    calls: Vec<ToolCall>,
    oversize: bool,
    first: usize,
) -> Judged {
    let detail = oversize.then(|| bounds::oversize_detail(tools.service.max_call_bytes));
    judge_unread(plan, tools, calls, first, &|_| detail.clone())
}

/// Judges calls of a kind the gate does not read (a Responses item such as
/// `custom_tool_call` or `local_shell_call`, named by its type): the request
/// offered no such tool (non-function tools are refused where calls are
/// checked), so each is withheld as not the model's function call, and
/// audited and reported like any other.
pub(crate) fn judge_foreign(plan: &GatePlan, tools: &ToolPlan, calls: Vec<ToolCall>) -> Judged {
    judge_unread(plan, tools, calls, 0, &|call| {
        Some(format!(
            "a `{}` item: only function calls can be judged, and no tool of its kind was offered",
            call.name
        ))
    })
}

/// [`judge`], with `unread` saying of a call why its arguments are not
/// judged as the model's (`None`: they are), which withholds it.
fn judge_unread(
    plan: &GatePlan,
    tools: &ToolPlan,
    calls: Vec<ToolCall>,
    first: usize,
    unread: &dyn Fn(&ToolCall) -> Option<String>,
) -> Judged {
    let started = Instant::now();
    let mut out = Vec::with_capacity(calls.len());
    for (i, call) in calls.into_iter().enumerate() {
        let position = first.saturating_add(i);
        // Model output like any other: a call whose arguments carry a key,
        // the canary or a data-smuggling URL is withheld whole.
        if let Some(leak) =
            crate::gates::output::tool_call_leaks(plan, &call.id, &call.name, &call.arguments)
        {
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
        let unread = unread(&call);
        let evidence = ToolEvidence {
            name: call.name.clone(),
            call_id: call.id.clone(),
            // Arguments cut short by the assembly bound are not the model's.
            args_json: check.json && unread.is_none() && args_sha256.is_some(),
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
        if unread.is_some() {
            violation = unread;
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
                let now = tools.service.now_secs();
                let expires_at = now + tools.service.confirmation_ttl;
                let id = format!("pc_{}", uuid::Uuid::new_v4().simple());
                let held = tools.service.held_calls(tools.redis.clone()).park(
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
                    now,
                );
                if held {
                    Fate::Pending { id, expires_at }
                } else {
                    // Nowhere to wait: withheld (fail closed), never released.
                    violation = Some(bounds::NO_ROOM.to_owned());
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
    Judged {
        calls: out,
        echo: crate::gates::output::Echo::of(plan),
    }
}

pub(crate) struct Judged {
    pub(crate) calls: Vec<(ToolCall, Decision, Option<String>, Fate)>,
    /// The report and the note echo the upstream's strings through this.
    echo: crate::gates::output::Echo,
}

impl Judged {
    pub(crate) fn released(&self) -> impl Iterator<Item = &ToolCall> {
        self.calls
            .iter()
            .filter(|(_, _, _, f)| matches!(f, Fate::Released { .. }))
            .map(|(c, ..)| c)
    }

    /// The report entries (`palisade.tool_calls`).
    pub(crate) fn report(&self) -> Vec<Value> {
        self.calls
            .iter()
            .map(|(call, decision, violation, fate)| {
                let reasons: Vec<&str> = decision.reasons.iter().map(|r| r.as_str()).collect();
                let mut entry = Map::new();
                entry.insert("id".into(), json!(self.echo.clean(&call.id)));
                entry.insert("name".into(), json!(self.echo.clean(&call.name)));
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
                            entry.insert("detail".into(), json!(self.echo.clean(v)));
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
    pub(crate) fn note(&self) -> String {
        let parts: Vec<String> = self
            .calls
            .iter()
            .map(|(call, d, _, fate)| {
                let reasons: Vec<&str> = d.reasons.iter().map(|r| r.as_str()).collect();
                let name = self.echo.clean(&call.name);
                match fate {
                    Fate::Pending { id, .. } => format!(
                        "`{name}` is waiting for confirmation ({id}; {})",
                        reasons.join(", ")
                    ),
                    Fate::Withheld => {
                        format!("`{name}` was withheld ({})", reasons.join(", "))
                    }
                    Fate::Released { .. } => format!("`{name}` was released"),
                }
            })
            .collect();
        format!("[Palisade] Tool calls not released: {}.", parts.join("; "))
    }
}

pub(crate) fn total_tokens(value: &Value) -> u64 {
    value
        .pointer("/usage/total_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The tool gate over a whole chat completion: returns the body to send
/// (`None`: unchanged).
pub(crate) fn gate_body(plan: &GatePlan, body: &[u8]) -> Option<Bytes> {
    let tools = plan.tools.as_ref()?;
    if plan.shape == crate::gates::ResponseShape::Responses {
        return responses::gate_responses_body(plan, tools, body);
    }
    // Most completions carry no call: skip the parse unless there may be one,
    // or the conversation's loop tokens need counting.
    let counting = tools.conversation.is_some() && tools.in_loop;
    let may_call = crate::gates::json_keys::may_hold_key(body, b"\"tool_calls\"")
        || crate::gates::json_keys::may_hold_key(body, b"\"function_call\"");
    if !counting && !may_call {
        return None;
    }
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let mut report = Vec::new();
    let mut had_calls = false;
    // The same bound as a stream's assembler: calls past it are not judged
    // as the model's, whichever path they came by.
    let oversize = bounds::response_oversize(&value, tools.service.max_call_bytes);
    if let Some(Value::Array(choices)) = value.get_mut("choices") {
        for choice in choices.iter_mut() {
            let Some(message) = choice.get_mut("message") else {
                continue;
            };
            let mut calls = ToolCall::from_message(message);
            // The legacy `function_call` (the request may not offer
            // `functions`, but an upstream may answer with one): judged as
            // one more call, and released, if at all, as a `tool_calls` entry.
            let legacy = message
                .as_object_mut()
                .and_then(|m| m.remove("function_call"))
                .filter(Value::is_object);
            if let Some(call) = legacy {
                let id = format!("call_{}", uuid::Uuid::new_v4().simple());
                calls.push(ToolCall::from_function_call(&call, calls.len(), id));
            }
            if calls.is_empty() {
                continue;
            }
            had_calls = true;
            let judged = judge(plan, tools, calls, oversize, 0);
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
            let finish = choice.get("finish_reason").and_then(Value::as_str);
            if matches!(finish, Some("tool_calls" | "function_call")) {
                choice["finish_reason"] = json!(if none_released { "stop" } else { "tool_calls" });
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
