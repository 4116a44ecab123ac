//! The tool gate over a whole Responses API body: every `function_call`
//! item of `output` is judged like a chat `tool_calls` entry (allowlist,
//! argument schema, leaks, confirmation) and then kept with its capability
//! token in the `palisade.tool_calls` report, or removed.
//!
//! Must not: read streams (that is `stream_responses`) or speak HTTP.

use super::*;

/// An output item that asks the client to act, other than a function call:
/// `custom_tool_call`, `local_shell_call`, `computer_call`,
/// `mcp_approval_request`, hosted tools' calls. The tool gate cannot judge
/// them, and a request under it offers only function tools
/// (`request::hosted_tool`), so an upstream sending one was not asked to.
pub(crate) fn is_foreign(item: &Value) -> bool {
    let Some(kind) = item.get("type").and_then(Value::as_str) else {
        return false;
    };
    kind != "function_call"
        && (kind.ends_with("_call") || kind.ends_with("_request") || kind.starts_with("mcp_"))
}

/// The gate over a Responses body: returns the body to send (`None`:
/// unchanged). Always parsed under a tool plan: a `function_call` type can be
/// spelled with escapes no byte search finds.
pub(crate) fn gate_responses_body(plan: &GatePlan, tools: &ToolPlan, body: &[u8]) -> Option<Bytes> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let Some(Value::Array(items)) = value.get_mut("output") else {
        return None;
    };
    let is_call = |i: &Value| i.get("type").and_then(Value::as_str) == Some("function_call");
    let text = |i: &Value, k: &str| i.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let calls: Vec<ToolCall> = items
        .iter()
        .filter(|i| is_call(i))
        .enumerate()
        .map(|(n, i)| ToolCall {
            index: u32::try_from(n).unwrap_or(u32::MAX),
            id: text(i, "call_id"),
            name: text(i, "name"),
            arguments: text(i, "arguments"),
        })
        .collect();
    // The same bound as chat's: calls past it are not judged as the model's.
    let oversize = bounds::calls_bytes(&calls) > tools.service.max_call_bytes;
    // Calls of kinds no request could offer here: withheld, and reported.
    let foreign: Vec<ToolCall> = items
        .iter()
        .filter(|i| is_foreign(i))
        .enumerate()
        .map(|(n, i)| ToolCall {
            index: u32::try_from(n).unwrap_or(u32::MAX),
            id: text(i, "call_id"),
            name: text(i, "type"),
            arguments: String::new(),
        })
        .collect();
    items.retain(|i| !is_foreign(i));
    let had_calls = !calls.is_empty() || !foreign.is_empty();
    let mut report = Vec::new();
    if had_calls {
        let judged = judge(plan, tools, calls, oversize, 0);
        report = judged.report();
        let released: Vec<u32> = judged.released().map(|c| c.index).collect();
        let mut note = judged.note();
        if !foreign.is_empty() {
            let unjudged = judge_foreign(plan, tools, foreign);
            report.extend(unjudged.report());
            note = if judged.calls.is_empty() {
                unjudged.note()
            } else {
                format!("{note} {}", unjudged.note())
            };
        }
        let mut n = 0u32;
        items.retain(|i| {
            if !is_call(i) {
                return true;
            }
            n += 1;
            released.contains(&(n - 1))
        });
        if released.is_empty()
            && !items
                .iter()
                .any(|i| i.get("type") == Some(&json!("message")))
        {
            items.push(
                json!({"type": "message", "id": "msg_palisade", "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": note, "annotations": []}]}),
            );
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
