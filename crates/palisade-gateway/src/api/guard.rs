//! `POST /v1/guard/scan`: the detection engine as an API, with no upstream.
//!
//! Accepts either one text:
//! `{"text": "...", "channel": "user|retrieved|tool_output|system", "system_prompt": "..."}`
//! or a whole conversation in the chat format:
//! `{"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "tool", ...}]}`.
//!
//! For a conversation each message is scanned on the channel its role implies
//! (`system`/`developer` → system, `user` → user, `tool`/`function` →
//! tool_output, `assistant` → user: a client can forge earlier turns); a
//! content part of a user message annotated `"palisade": {"channel":
//! "retrieved"}` is scanned as retrieved content *and* as user text, and the
//! more severe verdict counts: a client's mark only ever makes judgement
//! stricter. `system` is never a channel a client may choose for a text or a
//! part (it is the operator's, and judged most leniently). Unknown roles
//! (`User`, `human`) are refused, as in the proxy. System messages are also
//! passed as the `system_prompt` the other messages are judged against. The
//! top-level verdict is the most severe one.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use palisade_detect::{Channel, Detector, Scan, ScanInput, Verdict};
use palisade_openai::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::state::GatewayState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardRequest {
    text: Option<String>,
    channel: Option<String>,
    system_prompt: Option<String>,
    messages: Option<Vec<Value>>,
}

#[derive(Debug, Serialize)]
struct MessageVerdict {
    index: usize,
    role: String,
    channel: Channel,
    #[serde(flatten)]
    scan: Scan,
}

#[derive(Debug, Serialize)]
struct GuardResponse {
    #[serde(flatten)]
    scan: Scan,
    latency_us: u64,
    detector_version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    messages: Vec<MessageVerdict>,
}

/// One unit of text to scan.
struct Item {
    index: usize,
    role: String,
    channel: Channel,
    text: String,
    /// The client marked user text as data: also judged as user text.
    also_user: bool,
}

/// A channel the client names, which may never be `system`.
fn client_channel(name: &str, param: &str) -> Result<Channel, ApiError> {
    match name.parse::<Channel>() {
        Ok(Channel::System) => Err(invalid(
            "`system` is not a channel a client can choose; send system prompts as `system_prompt` or a system message",
            param,
        )),
        Ok(channel) => Ok(channel),
        Err(_) => Err(invalid(format!("unknown channel `{}`", name.chars().take(32).collect::<String>()), param)),
    }
}

/// Texts one guard request may hold (messages and content parts): each is a
/// scan, and a request must not buy unbounded detector time.
const MAX_ITEMS: usize = 4096;

fn invalid(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message).with_param(param)
}

/// Text of a message's `content`: a string, or the text parts of an array.
/// Parts annotated with a `palisade.channel` become their own items.
fn content_items(
    index: usize,
    role: &str,
    channel: Channel,
    content: &Value,
    out: &mut Vec<Item>,
) -> Result<(), ApiError> {
    match content {
        Value::Null => {}
        Value::String(s) => out.push(Item {
            index,
            role: role.to_owned(),
            channel,
            text: s.clone(),
            also_user: false,
        }),
        Value::Array(parts) => {
            let mut plain = String::new();
            for part in parts {
                let text = match part.get("text").or_else(|| part.get("refusal")) {
                    Some(Value::String(t)) => t.as_str(),
                    // Images, audio: nothing to scan as text.
                    None => continue,
                    // The proxy refuses what it cannot read; so does the guard.
                    Some(_) => {
                        return Err(invalid(
                            "a content part's `text` must be a string",
                            &format!("messages[{index}].content"),
                        ))
                    }
                };
                let annotated = part
                    .pointer("/palisade/channel")
                    .and_then(Value::as_str)
                    .map(|c| client_channel(c, &format!("messages[{index}].content")))
                    .transpose()?;
                match annotated {
                    Some(ch) => out.push(Item {
                        index,
                        role: role.to_owned(),
                        channel: ch,
                        text: text.to_owned(),
                        also_user: channel == Channel::User,
                    }),
                    None => {
                        if !plain.is_empty() {
                            plain.push('\n');
                        }
                        plain.push_str(text);
                    }
                }
            }
            if !plain.is_empty() {
                out.push(Item {
                    index,
                    role: role.to_owned(),
                    channel,
                    text: plain,
                    also_user: false,
                });
            }
        }
        _ => {
            return Err(invalid(
                "message content must be a string or an array of parts",
                &format!("messages[{index}].content"),
            ))
        }
    }
    Ok(())
}

/// A message's texts besides `content` that the model reads and the proxy
/// judges: a name, a refusal, reasoning, and the calls an (earlier,
/// client-sent) assistant turn made. Judged on the message's channel, so a
/// jailbreak in a call's arguments is not an `allow` here while the proxy
/// would block it.
fn side_items(index: usize, role: &str, channel: Channel, m: &Value, out: &mut Vec<Item>) {
    let mut texts: Vec<String> = ["name", "refusal", "reasoning_content", "reasoning"]
        .iter()
        .filter_map(|k| m.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    let calls = m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("function"))
        .chain(m.get("function_call"));
    for call in calls {
        if let Some(name) = call.get("name").and_then(Value::as_str) {
            texts.push(name.to_owned());
        }
        match call.get("arguments") {
            Some(Value::String(a)) => texts.push(a.clone()),
            Some(Value::Null) | None => {}
            Some(other) => texts.push(other.to_string()),
        }
    }
    out.extend(
        texts
            .into_iter()
            .filter(|t| !t.trim().is_empty())
            .map(|text| Item {
                index,
                role: role.to_owned(),
                channel,
                text,
                also_user: false,
            }),
    );
}

/// The channel a chat role's content is scanned on; `None` for a string
/// that is not a chat role.
pub fn role_channel(role: &str) -> Option<Channel> {
    match role {
        "system" | "developer" => Some(Channel::System),
        // Earlier assistant turns come from the client, which can forge them.
        "user" | "assistant" => Some(Channel::User),
        "tool" | "function" => Some(Channel::ToolOutput),
        _ => None,
    }
}

fn plan(req: GuardRequest) -> Result<(Vec<Item>, Option<String>, bool), ApiError> {
    match (req.text, req.messages) {
        (Some(text), None) => {
            let channel = match req.channel.as_deref() {
                None => Channel::User,
                Some(c) => client_channel(c, "channel")?,
            };
            let item = Item {
                index: 0,
                role: String::new(),
                channel,
                text,
                also_user: false,
            };
            Ok((vec![item], req.system_prompt, false))
        }
        (None, Some(messages)) => {
            if messages.is_empty() {
                return Err(invalid("`messages` must not be empty", "messages"));
            }
            let mut items = Vec::new();
            for (index, m) in messages.iter().enumerate() {
                let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        "each message needs a string `role`",
                        &format!("messages[{index}].role"),
                    )
                })?;
                let Some(channel) = role_channel(role) else {
                    return Err(invalid(
                        format!(
                            "unknown role `{}`; expected system, developer, user, assistant or tool",
                            role.chars().take(32).collect::<String>()
                        ),
                        &format!("messages[{index}].role"),
                    ));
                };
                content_items(
                    index,
                    role,
                    channel,
                    m.get("content").unwrap_or(&Value::Null),
                    &mut items,
                )?;
                side_items(index, role, channel, m, &mut items);
            }
            let system: Vec<&str> = items
                .iter()
                .filter(|i| i.channel == Channel::System)
                .map(|i| i.text.as_str())
                .collect();
            let system_prompt = req
                .system_prompt
                .or_else(|| (!system.is_empty()).then(|| system.join("\n")));
            Ok((items, system_prompt, true))
        }
        (Some(_), Some(_)) => Err(invalid(
            "send either `text` or `messages`, not both",
            "text",
        )),
        (None, None) => Err(invalid("send `text` or `messages`", "text")),
    }
}

fn scan_all(detector: &Detector, items: &[Item], system_prompt: Option<&str>) -> Vec<Scan> {
    // A request of many texts must not buy unbounded encoder time.
    let budget = std::cell::Cell::new(crate::second_stage::SCANS_PER_REQUEST);
    items
        .iter()
        .map(|item| {
            let scan = |channel| {
                let input = ScanInput {
                    text: &item.text,
                    channel,
                    // The system prompt is the reference, not judged against itself.
                    system_prompt: if channel == Channel::System {
                        None
                    } else {
                        system_prompt
                    },
                };
                // Only a text the second stage judged spends the bound (as
                // in the input gate): clean padding in front cannot use it up.
                if budget.get() > 0 {
                    let full = detector.scan(&input);
                    if full.second_stage.is_some() {
                        budget.set(budget.get() - 1);
                    }
                    full
                } else {
                    detector.scan_first_stage(&input)
                }
            };
            let marked = scan(item.channel);
            if item.also_user {
                most_severe(&[marked, scan(Channel::User)])
            } else {
                marked
            }
        })
        .collect()
}

fn most_severe(scans: &[Scan]) -> Scan {
    scans
        .iter()
        .max_by(|a, b| a.verdict.cmp(&b.verdict).then(a.score.total_cmp(&b.score)))
        .cloned()
        .unwrap_or_else(|| Scan {
            score: 0.0,
            verdict: Verdict::Allow,
            category: palisade_detect::Category::None,
            reasons: Vec::new(),
            findings: Vec::new(),
            second_stage: None,
        })
}

/// `POST /v1/guard/scan`
pub async fn scan(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match run(&state, &headers, body).await {
        Ok(resp) => Json(resp).into_response(),
        Err(err) => error_response(&err, Some(&request_id)),
    }
}

async fn run(
    state: &GatewayState,
    headers: &HeaderMap,
    body: Body,
) -> Result<GuardResponse, ApiError> {
    let front = crate::pipeline::front::front(state, headers, Some(body)).await?;
    let req: GuardRequest = serde_json::from_slice(&front.body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid guard request: {e}"),
        )
    })?;
    let (items, system_prompt, is_conversation) = plan(req)?;
    let detector = state.gates.detector.current();
    let detector_version = detector.version().to_owned();
    if items.len() > MAX_ITEMS {
        return Err(invalid(
            format!("at most {MAX_ITEMS} messages (or content parts) per request"),
            "messages",
        ));
    }
    // The whole body, not the texts: a system prompt scanned beside many
    // empty texts is work the texts' length does not show. The second stage
    // can take tens of milliseconds: never on an async worker.
    let inline = front.body.len() <= crate::cpu::INLINE_BYTES && detector.second_stage().is_none();
    let started = Instant::now();
    // Large texts are scanned on the bounded detection pool, so a huge input
    // (or many) cannot stall the async workers serving other requests; a
    // saturated pool refuses (503 detector_saturated): there is no tier here
    // to degrade by, and a scan API must not answer on half a scan.
    let (items, scans) = state
        .gates
        .pool
        .run_or_refuse(inline, move || {
            let scans = scan_all(&detector, &items, system_prompt.as_deref());
            (items, scans)
        })
        .await?;
    let latency_us = started.elapsed().as_micros() as u64;
    let top = most_severe(&scans);
    let messages = if is_conversation {
        items
            .into_iter()
            .zip(scans)
            .map(|(item, scan)| MessageVerdict {
                index: item.index,
                role: item.role,
                channel: item.channel,
                scan,
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(GuardResponse {
        scan: top,
        latency_us,
        detector_version,
        messages,
    })
}
