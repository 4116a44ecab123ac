//! `POST /v1/responses` on the scripted upstream: the Responses API's shape
//! of the echo model.
//!
//! The answer is one `message` output item whose `output_text` echoes the
//! last user text of `input` (or, for the model `leak-system`, every
//! developer/system message and the `instructions`: a model talked into
//! revealing its prompt). Streamed, the text goes out as
//! `response.output_text.delta` events of 5 bytes (cut on character
//! boundaries), so anything in it arrives split, then the `.done` events and
//! `response.completed` with `usage` (`input_tokens` 11, `output_tokens` 7).
//!
//! A last user text `CALLS [...]` (as for chat) answers with one
//! `function_call` item per call instead; streamed, every call is announced
//! first, their argument deltas (5 bytes each) interleave by `output_index`,
//! then each call's `.done` and item-done events, as parallel calls come
//! from the OpenAI API. Events carry `sequence_number`s counting from 0.
//!
//! Every answer has a new id (`resp_1`, `resp_2`, …). `GET
//! /v1/responses/{id}` (and `POST …/cancel`) answers any id with a stored
//! response whose text is `stored answer of {id}` (an id ending in `_key`
//! adds an AWS key id, and one ending in `_call` a function call);
//! `DELETE` answers with the deletion object. Both are recorded.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::{record, Shared};

fn texts(body: &Value, roles: &[&str]) -> Vec<String> {
    match body.get("input") {
        Some(Value::String(s)) if roles.contains(&"user") => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter(|i| i["role"].as_str().is_some_and(|r| roles.contains(&r)))
            .filter_map(|i| match &i["content"] {
                Value::String(s) => Some(s.clone()),
                Value::Array(parts) => Some(
                    parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn pieces(text: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if cur.len() + c.len_utf8() > n && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn event(data: &Value) -> String {
    format!(
        "event: {}\ndata: {data}\n\n",
        data["type"].as_str().unwrap_or("")
    )
}

pub(crate) async fn responses(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&shared, "/v1/responses", &headers, &body);
    let model = body["model"].as_str().unwrap_or("m").to_owned();
    let text = if model == "leak-system" {
        let mut all = texts(&body, &["developer", "system"]);
        all.extend(body["instructions"].as_str().map(str::to_owned));
        all.join("\n")
    } else {
        texts(&body, &["user"])
            .pop()
            .unwrap_or_else(|| "hello".to_owned())
    };
    let n = shared
        .responses_minted
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    let id = format!("resp_{n}");
    let item = json!({"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                      "content": [{"type": "output_text", "text": text, "annotations": []}]});
    let calls = crate::scripted_calls(&text);
    // The leaking model's answers carry the real time: a gateway finds the
    // canary of the hour a stored answer was made in by it.
    let created_at = if model == "leak-system" {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    } else {
        0
    };
    let response = |status: &str, output: Value| {
        json!({"id": id, "object": "response", "created_at": created_at, "status": status,
               "model": model, "instructions": body["instructions"], "output": output,
               "usage": {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}})
    };
    let call_items: Option<Vec<Value>> = calls.as_ref().map(|calls| {
        calls
            .iter()
            .map(|(id, name, args)| {
                json!({"type": "function_call", "id": format!("fc_{id}"), "call_id": id,
                       "name": name, "arguments": args, "status": "completed"})
            })
            .collect()
    });
    if body["stream"] != json!(true) {
        let output = call_items.map_or_else(|| json!([item]), Value::Array);
        let answer = response("completed", output).to_string();
        if model == "leak-system" {
            shared
                .stored_responses
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id.clone(), answer.clone());
        }
        return ([("content-type", "application/json")], answer).into_response();
    }
    if let Some(items) = call_items {
        let mut seq = 0u64;
        let mut out = String::new();
        let mut push = |mut v: Value| {
            v["sequence_number"] = json!(seq);
            seq += 1;
            out.push_str(&event(&v));
        };
        push(json!({"type": "response.created", "response": response("in_progress", json!([]))}));
        for (i, it) in items.iter().enumerate() {
            let mut added = it.clone();
            added["arguments"] = json!("");
            added["status"] = json!("in_progress");
            push(json!({"type": "response.output_item.added", "output_index": i, "item": added}));
        }
        let split: Vec<Vec<String>> = items
            .iter()
            .map(|it| pieces(it["arguments"].as_str().unwrap_or(""), 5))
            .collect();
        let longest = split.iter().map(Vec::len).max().unwrap_or(0);
        for n in 0..longest {
            for (i, parts) in split.iter().enumerate() {
                if let Some(p) = parts.get(n) {
                    push(json!({"type": "response.function_call_arguments.delta",
                                "item_id": items[i]["id"], "output_index": i, "delta": p}));
                }
            }
        }
        for (i, it) in items.iter().enumerate() {
            push(
                json!({"type": "response.function_call_arguments.done", "item_id": it["id"],
                        "output_index": i, "arguments": it["arguments"]}),
            );
            push(json!({"type": "response.output_item.done", "output_index": i, "item": it}));
        }
        push(json!({"type": "response.completed",
                    "response": response("completed", Value::Array(items))}));
        return ([("content-type", "text/event-stream")], Body::from(out)).into_response();
    }
    let mut out = String::new();
    out.push_str(&event(
        &json!({"type": "response.created", "response": response("in_progress", json!([]))}),
    ));
    out.push_str(&event(
        &json!({"type": "response.output_item.added", "output_index": 0,
        "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}}),
    ));
    out.push_str(&event(
        &json!({"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0,
        "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    ));
    for piece in pieces(&text, 5) {
        out.push_str(&event(
            &json!({"type": "response.output_text.delta", "item_id": "msg_1",
            "output_index": 0, "content_index": 0, "delta": piece}),
        ));
    }
    out.push_str(&event(
        &json!({"type": "response.output_text.done", "item_id": "msg_1",
        "output_index": 0, "content_index": 0, "text": text}),
    ));
    out.push_str(&event(
        &json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
    ));
    out.push_str(&event(
        &json!({"type": "response.completed", "response": response("completed", json!([item]))}),
    ));
    ([("content-type", "text/event-stream")], Body::from(out)).into_response()
}

/// `GET /v1/responses/{id}` and `POST /v1/responses/{id}/cancel`.
pub(crate) async fn retrieve(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &shared,
        &format!("/v1/responses/{id}"),
        &headers,
        &Value::Null,
    );
    let stored = shared
        .stored_responses
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&id)
        .cloned();
    if let Some(answer) = stored {
        return ([("content-type", "application/json")], answer).into_response();
    }
    let mut text = format!("stored answer of {id}");
    if id.ends_with("_key") {
        text.push_str(" AKIAIOSFODNN7EXAMPLE");
    }
    let mut output = vec![
        json!({"type": "message", "id": "msg_s", "status": "completed",
        "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]}),
    ];
    if id.ends_with("_call") {
        output.push(
            json!({"type": "function_call", "id": "fc_s", "call_id": "call_s",
            "name": "lookup", "arguments": "{\"city\":\"Paris\"}", "status": "completed"}),
        );
    }
    (
        [("content-type", "application/json")],
        json!({"id": id, "object": "response", "created_at": 0, "status": "completed",
               "model": "m", "output": output})
        .to_string(),
    )
        .into_response()
}

/// `DELETE /v1/responses/{id}`.
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &shared,
        &format!("DELETE /v1/responses/{id}"),
        &headers,
        &Value::Null,
    );
    (
        [("content-type", "application/json")],
        json!({"id": id, "object": "response.deleted", "deleted": true}).to_string(),
    )
        .into_response()
}
