//! Every text of a Responses API request (`POST /v1/responses`) that reaches
//! the model, each with its channel and its place — and the refusal of items
//! the gates could not read completely.
//!
//! The Responses API spreads what the model reads over more shapes than chat:
//! `instructions` (the system channel), `input` as a string or as a list of
//! items (messages whose content is a string or `input_text`/`output_text`/
//! `refusal` parts, earlier `function_call`s, `function_call_output` tool
//! results, `reasoning` summaries), `tools` and the `text.format` schema. An
//! item or part type this module does not know is refused with its `param`,
//! never forwarded unread (fail closed): a hostile client would otherwise put
//! its injection in the one field the gate skips.
//!
//! What it cannot see: turns held upstream (`previous_response_id`,
//! `conversation`, `item_reference` items), the contents of files and images.
//!
//! Must not: decide anything (that is the policy's), or rewrite the body.

use serde_json::{Map, Value};

use super::extract::{
    field_text, join_user_parts, marked_retrieved, refuse, whole, ShapeError, UserRun, MEDIA_PARTS,
};
use super::{Place, Segment, Source};

/// Most input items a request may carry. Far above a real conversation's
/// length (each turn is a few items), and it bounds the gates' work per
/// request whatever the body size allows.
pub const MAX_INPUT_ITEMS: usize = 4096;

/// Message roles of the Responses API, exactly as spelled there.
fn role_source(role: &str) -> Option<Source> {
    Some(match role {
        "system" | "developer" => Source::System,
        "user" => Source::User,
        "assistant" => Source::Assistant,
        _ => return None,
    })
}

fn field(pointer: String, source: Source, text: &str, marked: bool) -> Segment {
    Segment {
        place: Place::Field(pointer),
        source,
        text: text.to_owned(),
        marked,
    }
}

/// The segments of a Responses request. `retrieved` lists `input` item
/// indexes the client marked as retrieved by header.
pub(super) fn segments(
    fields: &Map<String, Value>,
    retrieved: &[usize],
) -> Result<Vec<Segment>, ShapeError> {
    let mut out = Vec::new();
    for foreign in ["messages", "prompt"] {
        if fields.contains_key(foreign) {
            return Err(refuse(
                foreign,
                format!("a responses request takes `input`, not `{foreign}`"),
            ));
        }
    }
    field_text(fields, "instructions", Source::System, &mut out)?;
    match fields.get("input") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            let marked = retrieved.contains(&0);
            let source = if marked {
                Source::Retrieved
            } else {
                Source::User
            };
            out.push(field("/input".to_owned(), source, text, marked));
        }
        Some(Value::Array(items)) => {
            if items.len() > MAX_INPUT_ITEMS {
                return Err(refuse(
                    "input",
                    format!("at most {MAX_INPUT_ITEMS} input items are accepted"),
                ));
            }
            // As in chat: a user item's text parts, and runs of user
            // items, are also judged joined.
            let mut run = UserRun::new("input");
            for (i, item) in items.iter().enumerate() {
                let first = out.len();
                item_segments(i, item, retrieved.contains(&i), &mut out)?;
                let user = item.get("role").and_then(Value::as_str) == Some("user");
                if user {
                    join_user_parts(first, format!("/input/{i}/content"), &mut out);
                }
                run.step(i, user, first, &mut out);
            }
            run.finish(items.len(), &mut out);
        }
        Some(_) => {
            return Err(refuse(
                "input",
                "`input` must be a string or an array of input items",
            ))
        }
    }
    match fields.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) => {
            for (i, tool) in tools.iter().enumerate() {
                whole(&format!("/tools/{i}"), tool, Source::Definitions, &mut out);
            }
        }
        Some(_) => return Err(refuse("tools", "`tools` must be an array")),
    }
    // The structured-output schema (`text.format`) and a forced tool choice
    // are read by the model as instructions.
    for key in ["text", "tool_choice"] {
        if let Some(v) = fields.get(key).filter(|v| !v.is_null()) {
            whole(&format!("/{key}"), v, Source::Definitions, &mut out);
        }
    }
    Ok(out)
}

fn item_segments(
    i: usize,
    item: &Value,
    by_header: bool,
    out: &mut Vec<Segment>,
) -> Result<(), ShapeError> {
    let Value::Object(item) = item else {
        return Err(refuse(
            format!("input[{i}]"),
            "each input item must be an object",
        ));
    };
    let kind = match item.get("type") {
        // An item without a type is a message (the "easy" input message).
        None => "message",
        Some(Value::String(t)) => t.as_str(),
        Some(_) => {
            return Err(refuse(
                format!("input[{i}].type"),
                "an input item's `type` must be a string",
            ))
        }
    };
    let at = |rest: &str| format!("/input/{i}/{rest}");
    let string = |key: &str, source: Source, out: &mut Vec<Segment>| match item.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            out.push(field(at(key), source, s, false));
            Ok(())
        }
        Some(_) => Err(refuse(
            format!("input[{i}].{key}"),
            format!("`{key}` must be a string"),
        )),
    };
    match kind {
        "message" => message_segments(i, item, by_header, out),
        "function_call" => {
            string("name", Source::Assistant, out)?;
            string("arguments", Source::Assistant, out)
        }
        "custom_tool_call" => {
            string("name", Source::Assistant, out)?;
            string("input", Source::Assistant, out)
        }
        "function_call_output" | "custom_tool_call_output" => match item.get("output") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(s)) => {
                out.push(field(at("output"), Source::Tool, s, false));
                Ok(())
            }
            Some(Value::Array(parts)) => {
                parts_segments(i, "output", parts, Source::Tool, false, out)
            }
            Some(_) => Err(refuse(
                format!("input[{i}].output"),
                "a tool result's `output` must be a string or an array of parts",
            )),
        },
        "reasoning" => {
            // Summaries are earlier model output the model reads again;
            // `encrypted_content` is the upstream's own opaque state.
            if let Some(summary) = item.get("summary").filter(|v| !v.is_null()) {
                whole(&at("summary"), summary, Source::Assistant, out);
            }
            if let Some(content) = item.get("content").filter(|v| !v.is_null()) {
                whole(&at("content"), content, Source::Assistant, out);
            }
            Ok(())
        }
        // A reference to an item stored upstream: nothing here to read (see
        // the module doc; like `previous_response_id`).
        "item_reference" => Ok(()),
        other => Err(refuse(
            format!("input[{i}].type"),
            format!(
                "unknown input item type `{}`; the safety gates read message, function_call, \
                 function_call_output, custom_tool_call(_output), reasoning and item_reference",
                other.chars().take(32).collect::<String>()
            ),
        )),
    }
}

fn message_segments(
    i: usize,
    message: &Map<String, Value>,
    by_header: bool,
    out: &mut Vec<Segment>,
) -> Result<(), ShapeError> {
    let role = match message.get("role") {
        Some(Value::String(r)) => r.as_str(),
        _ => {
            return Err(refuse(
                format!("input[{i}].role"),
                "each message needs a string `role`",
            ))
        }
    };
    let Some(mut source) = role_source(role) else {
        return Err(refuse(
            format!("input[{i}].role"),
            format!(
                "unknown role `{}`; expected system, developer, user or assistant",
                role.chars().take(32).collect::<String>()
            ),
        ));
    };
    let user = source == Source::User;
    let marked = user && (by_header || marked_retrieved(&Value::Object(message.clone())));
    if marked {
        source = Source::Retrieved;
    }
    match message.get("content") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(text)) => {
            out.push(field(format!("/input/{i}/content"), source, text, marked));
            Ok(())
        }
        Some(Value::Array(parts)) => parts_segments(i, "content", parts, source, marked, out),
        Some(_) => Err(refuse(
            format!("input[{i}].content"),
            "message content must be a string or an array of parts",
        )),
    }
}

/// Content parts (of a message, or of a tool result's `output`).
fn parts_segments(
    i: usize,
    key: &str,
    parts: &[Value],
    source: Source,
    marked: bool,
    out: &mut Vec<Segment>,
) -> Result<(), ShapeError> {
    for (j, part) in parts.iter().enumerate() {
        let param = || format!("input[{i}].{key}[{j}]");
        let Some(kind) = part.get("type").and_then(Value::as_str) else {
            return Err(refuse(param(), "each content part needs a string `type`"));
        };
        let text_key = match kind {
            "input_text" | "output_text" | "text" | "summary_text" | "reasoning_text" => "text",
            "refusal" => "refusal",
            // A file's name is text the model reads; its bytes are not (see
            // the module doc).
            "input_file" | "file" => {
                match part.get("filename") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(name)) => out.push(field(
                        format!("/input/{i}/{key}/{j}/filename"),
                        source,
                        name,
                        marked,
                    )),
                    Some(_) => return Err(refuse(param(), "`filename` must be a string")),
                }
                continue;
            }
            k if MEDIA_PARTS.contains(&k) => continue,
            k => {
                return Err(refuse(
                    format!("{}.type", param()),
                    format!(
                        "unknown content part type `{}`",
                        k.chars().take(32).collect::<String>()
                    ),
                ))
            }
        };
        let Some(text) = part.get(text_key).and_then(Value::as_str) else {
            return Err(refuse(
                param(),
                format!("a `{kind}` part needs a string `{text_key}`"),
            ));
        };
        let part_marked = source == Source::User && marked_retrieved(part);
        out.push(field(
            format!("/input/{i}/{key}/{j}/{text_key}"),
            if part_marked {
                Source::Retrieved
            } else {
                source
            },
            text,
            marked || part_marked,
        ));
    }
    Ok(())
}

/// Adds `text` to a Responses request's system channel, `instructions`.
pub fn append_to_instructions(fields: &mut Map<String, Value>, text: &str) {
    match fields.get_mut("instructions") {
        Some(Value::String(existing)) if !existing.is_empty() => {
            existing.push_str("\n\n");
            existing.push_str(text);
        }
        _ => {
            fields.insert("instructions".to_owned(), Value::String(text.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn segs(v: Value) -> Result<Vec<Segment>, ShapeError> {
        segments(v.as_object().unwrap(), &[])
    }

    #[test]
    fn every_text_of_a_responses_request_is_a_segment() {
        let got = segs(json!({
            "instructions": "SYS",
            "input": [
                {"role": "developer", "content": "DEV"},
                {"role": "user", "content": [
                    {"type": "input_text", "text": "U1"},
                    {"type": "input_image", "image_url": "data:x"},
                    {"type": "input_file", "filename": "F.pdf", "file_data": "..."}
                ]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A1"}]},
                {"type": "function_call", "call_id": "c", "name": "N", "arguments": "{\"q\":\"ARG\"}"},
                {"type": "function_call_output", "call_id": "c", "output": "TOOL"},
                {"type": "function_call_output", "call_id": "d", "output": [{"type": "input_text", "text": "TOOL2"}]},
                {"type": "reasoning", "id": "r", "summary": [{"type": "summary_text", "text": "WHY"}]},
                {"type": "item_reference", "id": "msg_1"}
            ],
            "tools": [{"type": "function", "name": "f", "description": "DESC", "parameters": {}}],
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"description": "SCHEMA"}}}
        }))
        .unwrap();
        for (source, needle) in [
            (Source::System, "SYS"),
            (Source::System, "DEV"),
            (Source::User, "U1"),
            (Source::User, "F.pdf"),
            (Source::Assistant, "A1"),
            (Source::Assistant, "N"),
            (Source::Assistant, "ARG"),
            (Source::Tool, "TOOL"),
            (Source::Tool, "TOOL2"),
            (Source::Assistant, "WHY"),
            (Source::Definitions, "DESC"),
            (Source::Definitions, "SCHEMA"),
        ] {
            assert!(
                got.iter()
                    .any(|s| s.source == source && s.text.contains(needle)),
                "{source:?} {needle}: {got:?}"
            );
        }
        let plain = segs(json!({"input": "hello"})).unwrap();
        assert_eq!(plain[0].place, Place::Field("/input".into()));
        assert_eq!(plain[0].source, Source::User);
    }

    #[test]
    fn unknown_shapes_are_refused_with_their_param() {
        for (body, param) in [
            (
                json!({"input": [{"type": "web_search_call", "action": {"query": "x"}}]}),
                "input[0].type",
            ),
            (json!({"input": [{"type": 3}]}), "input[0].type"),
            (
                json!({"input": [{"role": "tool", "content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_secret", "text": "x"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"input": [{"role": "user", "content": [[{"type": "input_text", "text": "x"}]]}]}),
                "input[0].content[0]",
            ),
            (
                json!({"input": [{"role": "user", "content": {"text": "x"}}]}),
                "input[0].content",
            ),
            (
                json!({"input": [{"type": "function_call_output", "output": {"x": 1}}]}),
                "input[0].output",
            ),
            (json!({"input": ["x"]}), "input[0]"),
            (json!({"input": 7}), "input"),
            (json!({"input": "x", "instructions": ["x"]}), "instructions"),
            (json!({"input": "x", "messages": []}), "messages"),
            (json!({"input": "x", "prompt": {"id": "p"}}), "prompt"),
        ] {
            assert_eq!(segs(body.clone()).unwrap_err().param, param, "{body}");
        }
        let many: Vec<Value> = (0..=MAX_INPUT_ITEMS)
            .map(|_| json!({"role": "user", "content": "x"}))
            .collect();
        assert_eq!(segs(json!({"input": many})).unwrap_err().param, "input");
    }

    #[test]
    fn instructions_take_appended_text() {
        let mut f = json!({"input": "x"}).as_object().unwrap().clone();
        append_to_instructions(&mut f, "A");
        append_to_instructions(&mut f, "B");
        assert_eq!(f["instructions"], "A\n\nB");
    }
}
