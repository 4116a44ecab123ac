//! The tool gate over a whole Responses API body: every `function_call`
//! item of `output` is judged like a chat `tool_calls` entry (allowlist,
//! argument schema, leaks, confirmation) and then kept with its capability
//! token in the `palisade.tool_calls` report, or removed.
//!
//! Must not: read streams (that is `stream_responses`) or speak HTTP.

use super::*;

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
    let had_calls = !calls.is_empty();
    let mut report = Vec::new();
    if had_calls {
        let judged = judge(plan, tools, calls, oversize, 0);
        report = judged.report();
        let released: Vec<u32> = judged.released().map(|c| c.index).collect();
        let note = judged.note();
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
