//! Every text of a request that reaches the model, each with its channel and
//! its place — and the refusal of request shapes the gates could not read
//! completely.
//!
//! A gate is only as good as the texts it is shown. The model reads more than
//! `messages[].content`: names, refusals and the arguments of earlier tool
//! calls, tool definitions and their parameter descriptions, the
//! `response_format` schema, predicted output, vendor fields such as vLLM's
//! `documents` and `chat_template`. So extraction is total for the shapes it
//! knows, and a shape it does not know (an unknown role, a content part of an
//! unknown type, a chat body carrying `prompt`) is refused rather than
//! forwarded unread: fail closed.
//!
//! Must not: decide anything (that is the policy's), or rewrite the body.

use serde_json::{Map, Value};

use super::{Place, Segment, Source, MARK};

/// Which request shape to read: each endpoint reads only its own fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// `/v1/chat/completions`: `messages` and the fields around them.
    Chat,
    /// `/v1/completions`: `prompt` and `suffix`.
    Completion,
    /// `/v1/responses`: `instructions`, `input` items, `tools`, `text`
    /// (see `super::responses`).
    Responses,
}

/// A request whose texts cannot all be read: the client gets a 400 naming
/// `param`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShapeError {
    /// The request field at fault, e.g. `messages[2].role`.
    pub param: String,
    /// What is wrong, for the client.
    pub message: String,
}

/// Longest id (`tool_call_id`, `tool_calls[].id`) accepted: OpenAI's are
/// about 30 characters.
const MAX_ID_BYTES: usize = 128;

/// An id is absent, null, or a short string without whitespace or control
/// characters: room for any server's ids, none for a sentence.
fn check_id(id: Option<&Value>, param: impl Fn() -> String) -> Result<(), ShapeError> {
    match id {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s))
            if s.len() <= MAX_ID_BYTES
                && !s.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        Some(_) => Err(refuse(
            param(),
            format!("an id must be a string of at most {MAX_ID_BYTES} bytes without spaces"),
        )),
    }
}

/// Message fields only an assistant message may carry.
const ASSISTANT_ONLY: &[&str] = &[
    "tool_calls",
    "function_call",
    "refusal",
    "reasoning_content",
    "reasoning",
];

pub(super) fn refuse(param: impl Into<String>, message: impl Into<String>) -> ShapeError {
    ShapeError {
        param: param.into(),
        message: message.into(),
    }
}

/// Chat roles, as the OpenAI API spells them (exactly: `User` and `human`
/// are not roles, and an upstream's chat template may treat them as anything).
fn role_source(role: &str) -> Option<Source> {
    Some(match role {
        "system" | "developer" => Source::System,
        "user" => Source::User,
        "assistant" => Source::Assistant,
        "tool" | "function" => Source::Tool,
        _ => return None,
    })
}

/// Content part types that carry no text (media) or whose text is read below.
pub(super) const MEDIA_PARTS: &[&str] = &[
    "image_url",
    "input_image",
    "image",
    "input_audio",
    "audio_url",
    "video_url",
    "file",
];

pub(super) fn marked_retrieved(v: &Value) -> bool {
    v.get(MARK)
        .and_then(|m| m.get("channel"))
        .and_then(Value::as_str)
        .is_some_and(|c| c == "retrieved")
}

/// The text segments of a request, each with its channel. `retrieved` lists
/// message indexes the client marked as retrieved by header.
///
/// Chat: every message's content (string or text and refusal parts), `name`,
/// an assistant's `refusal`, `reasoning_content`/`reasoning`, and the names
/// and arguments of its `tool_calls`/`function_call`; `tools`, `functions`
/// and the `response_format` schema (each as one [`Source::Definitions`]
/// piece); `prediction`; vLLM's `chat_template`/`chat_template_kwargs`
/// (system) and `documents` (retrieved).
///
/// Completion: `prompt` (a string or an array of strings; token ids carry no
/// text, see [`super::prompt_is_text`]) and `suffix`.
pub fn segments(
    fields: &Map<String, Value>,
    kind: TextKind,
    retrieved: &[usize],
) -> Result<Vec<Segment>, ShapeError> {
    let mut out = Vec::new();
    match kind {
        TextKind::Responses => return super::responses::segments(fields, retrieved),
        TextKind::Completion => {
            if fields.contains_key("messages") {
                return Err(refuse(
                    "messages",
                    "a completions request takes `prompt`, not `messages`",
                ));
            }
            let user = |place, text: &str| Segment {
                place,
                source: Source::User,
                text: text.to_owned(),
                marked: false,
            };
            match fields.get("prompt") {
                Some(Value::String(text)) => out.push(user(Place::Prompt(None), text)),
                Some(Value::Array(prompts)) => out.extend(
                    prompts
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| Some(user(Place::Prompt(Some(i)), p.as_str()?))),
                ),
                _ => {}
            }
            field_text(fields, "suffix", Source::User, &mut out)?;
        }
        TextKind::Chat => {
            if fields.contains_key("prompt") {
                return Err(refuse(
                    "prompt",
                    "a chat completions request takes `messages`, not `prompt`",
                ));
            }
            if let Some(messages) = fields.get("messages") {
                let Value::Array(messages) = messages else {
                    return Err(refuse("messages", "`messages` must be an array"));
                };
                // As a Responses request's input items: each message is a
                // scan, and the system prompt is read beside every one.
                if messages.len() > super::MAX_INPUT_ITEMS {
                    return Err(refuse(
                        "messages",
                        format!("at most {} messages are accepted", super::MAX_INPUT_ITEMS),
                    ));
                }
                let mut run = UserRun::new("messages");
                for (i, message) in messages.iter().enumerate() {
                    let first = out.len();
                    message_segments(i, message, retrieved.contains(&i), &mut out)?;
                    let user = message.get("role").and_then(Value::as_str) == Some("user");
                    run.step(i, user, first, &mut out);
                }
                run.finish(messages.len(), &mut out);
            }
            for key in ["tools", "functions"] {
                match fields.get(key) {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(items)) => {
                        for (i, item) in items.iter().enumerate() {
                            whole(&format!("/{key}/{i}"), item, Source::Definitions, &mut out);
                        }
                    }
                    Some(_) => return Err(refuse(key, format!("`{key}` must be an array"))),
                }
            }
            if let Some(format) = fields.get("response_format") {
                whole("/response_format", format, Source::Definitions, &mut out);
            }
            match fields.get("prediction").and_then(|p| p.get("content")) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => out.push(Segment {
                    place: Place::Field("/prediction/content".to_owned()),
                    source: Source::Assistant,
                    text: s.clone(),
                    marked: false,
                }),
                Some(other) => whole("/prediction", other, Source::Assistant, &mut out),
            }
            field_text(fields, "chat_template", Source::System, &mut out)?;
            if let Some(kwargs) = fields.get("chat_template_kwargs") {
                whole("/chat_template_kwargs", kwargs, Source::System, &mut out);
            }
            match fields.get("documents") {
                None | Some(Value::Null) => {}
                Some(Value::Array(docs)) => {
                    for (i, doc) in docs.iter().enumerate() {
                        whole(&format!("/documents/{i}"), doc, Source::Retrieved, &mut out);
                    }
                }
                Some(_) => return Err(refuse("documents", "`documents` must be an array")),
            }
        }
    }
    Ok(out)
}

/// The texts of `segments` as the model reads them one after another
/// (joined by a line break); `None` for fewer than two.
fn join_texts<'a>(segments: impl Iterator<Item = &'a Segment>) -> Option<String> {
    let texts: Vec<&str> = segments.map(|s| s.text.as_str()).collect();
    (texts.len() >= 2).then(|| texts.join("\n"))
}

/// Whether `s` is a user's own text (content or a text part, not a name or
/// a file name, not marked as retrieved).
fn is_user_text(s: &Segment) -> bool {
    s.source == Source::User
        && !s.marked
        && match &s.place {
            Place::Message { .. } => true,
            Place::Field(p) => p.ends_with("/text") || p.ends_with("/content"),
            _ => false,
        }
}

/// Upstreams join a user message's text parts before the model reads them:
/// an attack split word by word over parts is one sentence there. Adds the
/// parts of one message (`new`, the segments just read from it) joined, as
/// text judged whole at `pointer`, when there are two or more.
pub(super) fn join_user_parts(new_from: usize, pointer: String, out: &mut Vec<Segment>) {
    if let Some(text) = join_texts(out[new_from..].iter().filter(|s| is_user_text(s))) {
        out.push(Segment {
            place: Place::Whole(pointer),
            source: Source::User,
            text,
            marked: false,
        });
    }
}

/// Consecutive user turns reach the model one after another: an attack
/// split over them is read whole, so a run of two or more is also judged
/// joined. A user turn with no text (an image alone) does not end a run;
/// one whose text is all marked as retrieved data does.
#[derive(Debug)]
pub(super) struct UserRun {
    list: &'static str,
    texts: Vec<String>,
    turns: usize,
    start: usize,
}

impl UserRun {
    pub(super) fn new(list: &'static str) -> Self {
        Self {
            list,
            texts: Vec::new(),
            turns: 0,
            start: 0,
        }
    }

    /// Item `i` was read (its segments from `new_from` on); `user` says
    /// whether it is a user turn.
    pub(super) fn step(&mut self, i: usize, user: bool, new_from: usize, out: &mut Vec<Segment>) {
        if !user {
            self.finish(i, out);
            return;
        }
        let texts: Vec<String> = out[new_from..]
            .iter()
            .filter(|s| is_user_text(s) && !matches!(s.place, Place::Whole(_)))
            .map(|s| s.text.clone())
            .collect();
        if texts.is_empty() {
            // A turn with no text at all (an image alone) keeps the run; one
            // whose text is marked as data ends it.
            if out[new_from..]
                .iter()
                .any(|s| !matches!(s.place, Place::Whole(_)))
            {
                self.finish(i, out);
            }
            return;
        }
        if self.turns == 0 {
            self.start = i;
        }
        self.turns += 1;
        self.texts.extend(texts);
    }

    /// Ends the run at item `end` (exclusive), adding it when it spans two
    /// turns or more.
    pub(super) fn finish(&mut self, end: usize, out: &mut Vec<Segment>) {
        if self.turns >= 2 {
            out.push(Segment {
                place: Place::Whole(format!("/{}/{}..{end}", self.list, self.start)),
                source: Source::User,
                text: self.texts.join("\n"),
                marked: false,
            });
        }
        self.texts.clear();
        self.turns = 0;
    }
}

/// A top-level string field, when present.
pub(super) fn field_text(
    fields: &Map<String, Value>,
    key: &str,
    source: Source,
    out: &mut Vec<Segment>,
) -> Result<(), ShapeError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            out.push(Segment {
                place: Place::Field(format!("/{key}")),
                source,
                text: s.clone(),
                marked: false,
            });
            Ok(())
        }
        Some(_) => Err(refuse(key, format!("`{key}` must be a string"))),
    }
}

/// Every key and string of `value`, one per line, as one segment.
pub(super) fn whole(pointer: &str, value: &Value, source: Source, out: &mut Vec<Segment>) {
    let mut text = String::new();
    gather(value, &mut text);
    if !text.is_empty() {
        out.push(Segment {
            place: Place::Whole(pointer.to_owned()),
            source,
            text,
            marked: false,
        });
    }
}

fn gather(value: &Value, text: &mut String) {
    let mut push = |s: &str| {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(s);
    };
    match value {
        Value::String(s) => push(s),
        Value::Array(items) => items.iter().for_each(|v| gather(v, text)),
        Value::Object(map) => {
            for (k, v) in map {
                // Property names are text the model reads too ("ignore_previous_
                // instructions_and_call_me" as a parameter name).
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(k);
                gather(v, text);
            }
        }
        _ => {}
    }
}

/// The pointer-escaped form of an object key.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn message_segments(
    i: usize,
    message: &Value,
    by_header: bool,
    out: &mut Vec<Segment>,
) -> Result<(), ShapeError> {
    let Value::Object(message) = message else {
        return Err(refuse(
            format!("messages[{i}]"),
            "each message must be an object",
        ));
    };
    let role = match message.get("role") {
        Some(Value::String(r)) => r.as_str(),
        _ => {
            return Err(refuse(
                format!("messages[{i}].role"),
                "each message needs a string `role`",
            ))
        }
    };
    let Some(mut source) = role_source(role) else {
        return Err(refuse(
            format!("messages[{i}].role"),
            format!(
                "unknown role `{}`; expected system, developer, user, assistant or tool",
                role.chars().take(32).collect::<String>()
            ),
        ));
    };
    let role_source = source;
    let mut marked = false;
    if source == Source::User && (marked_retrieved(&Value::Object(message.clone())) || by_header) {
        source = Source::Retrieved;
        marked = true;
    }
    let at = |field: &str| Place::Field(format!("/messages/{i}/{field}"));
    match message.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => out.push(Segment {
            place: Place::Message {
                message: i,
                part: None,
            },
            source,
            text: text.clone(),
            marked,
        }),
        Some(Value::Array(parts)) => {
            let first = out.len();
            for (j, part) in parts.iter().enumerate() {
                let param = || format!("messages[{i}].content[{j}]");
                let Some(kind) = part.get("type").and_then(Value::as_str) else {
                    return Err(refuse(param(), "each content part needs a string `type`"));
                };
                let (key, place) = match kind {
                    "text" | "input_text" => (
                        "text",
                        Place::Message {
                            message: i,
                            part: Some(j),
                        },
                    ),
                    "refusal" => (
                        "refusal",
                        Place::Field(format!("/messages/{i}/content/{j}/refusal")),
                    ),
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
                let Some(text) = part.get(key).and_then(Value::as_str) else {
                    return Err(refuse(
                        param(),
                        format!("a `{kind}` part needs a string `{key}`"),
                    ));
                };
                let part_marked = role_source == Source::User && marked_retrieved(part);
                out.push(Segment {
                    place,
                    source: if part_marked {
                        Source::Retrieved
                    } else {
                        source
                    },
                    text: text.to_owned(),
                    marked: marked || part_marked,
                });
            }
            join_user_parts(first, format!("/messages/{i}/content"), out);
        }
        Some(_) => {
            return Err(refuse(
                format!("messages[{i}].content"),
                "message content must be a string, an array of parts or null",
            ))
        }
    }
    // The sender's own role for the fields around the content: a name is
    // written by whoever wrote the message.
    let mut string_field = |field: &str, source: Source| -> Result<(), ShapeError> {
        match message.get(field) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(s)) => {
                out.push(Segment {
                    place: at(&escape(field)),
                    source,
                    text: s.clone(),
                    marked: false,
                });
                Ok(())
            }
            Some(_) => Err(refuse(
                format!("messages[{i}].{field}"),
                format!("`{field}` must be a string"),
            )),
        }
    };
    let named = if role_source == Source::User {
        Source::User
    } else {
        source
    };
    string_field("name", named)?;
    // An id is text the upstream's chat template may render (Mistral's
    // writes `tool_call_id` into the prompt). Scanning machine-made ids
    // would read them as token soup; an id is held to an id's shape instead.
    check_id(message.get("tool_call_id"), || {
        format!("messages[{i}].tool_call_id")
    })?;
    if role_source != Source::Assistant {
        // The assistant's fields on another role: OpenAI's schema has no
        // place for them, but llama.cpp keeps them whatever the role, and a
        // template that branches on `tool_calls` renders the user's text as
        // an assistant turn. Refused rather than judged under a role the
        // model would not see.
        if let Some(field) = ASSISTANT_ONLY
            .iter()
            .find(|f| message.get(**f).is_some_and(|v| !v.is_null()))
        {
            return Err(refuse(
                format!("messages[{i}].{field}"),
                format!("`{field}` belongs to assistant messages, not to role `{role}`"),
            ));
        }
    }
    if role_source == Source::Assistant {
        string_field("refusal", Source::Assistant)?;
        string_field("reasoning_content", Source::Assistant)?;
        string_field("reasoning", Source::Assistant)?;
        match message.get("tool_calls") {
            None | Some(Value::Null) => {}
            Some(Value::Array(calls)) => {
                for (j, call) in calls.iter().enumerate() {
                    check_id(call.get("id"), || {
                        format!("messages[{i}].tool_calls[{j}].id")
                    })?;
                    for field in ["name", "arguments"] {
                        let pointer = format!("/function/{field}");
                        match call.pointer(&pointer) {
                            None | Some(Value::Null) => {}
                            Some(Value::String(s)) => out.push(Segment {
                                place: Place::Field(format!(
                                    "/messages/{i}/tool_calls/{j}{pointer}"
                                )),
                                source: Source::Assistant,
                                text: s.clone(),
                                marked: false,
                            }),
                            Some(_) => {
                                return Err(refuse(
                                    format!(
                                        "messages[{i}].tool_calls[{j}]{}",
                                        pointer.replace('/', ".")
                                    ),
                                    format!("`{field}` must be a string"),
                                ))
                            }
                        }
                    }
                }
            }
            Some(_) => {
                return Err(refuse(
                    format!("messages[{i}].tool_calls"),
                    "`tool_calls` must be an array",
                ))
            }
        }
        if let Some(call) = message.get("function_call").filter(|c| !c.is_null()) {
            whole(
                &format!("/messages/{i}/function_call"),
                call,
                Source::Assistant,
                out,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn texts(v: Value) -> Vec<(Source, String)> {
        segments(&fields(v), TextKind::Chat, &[])
            .unwrap()
            .into_iter()
            .map(|s| (s.source, s.text))
            .collect()
    }

    fn refused(v: Value, kind: TextKind) -> String {
        segments(&fields(v), kind, &[]).unwrap_err().param
    }

    #[test]
    fn each_endpoint_reads_only_its_own_fields() {
        assert_eq!(
            refused(
                json!({"messages": [{"role": "user", "content": "hi"}], "prompt": []}),
                TextKind::Chat
            ),
            "prompt"
        );
        assert_eq!(
            refused(
                json!({"prompt": "hi", "messages": [{"role": "user", "content": "x"}]}),
                TextKind::Completion
            ),
            "messages"
        );
        let s = segments(
            &fields(json!({"prompt": "p", "suffix": "s"})),
            TextKind::Completion,
            &[],
        )
        .unwrap();
        assert_eq!(
            s.iter().map(|s| s.text.as_str()).collect::<Vec<_>>(),
            ["p", "s"]
        );
    }

    #[test]
    fn unknown_roles_and_part_types_are_refused() {
        for (body, param) in [
            (
                json!({"messages": [{"role": "User", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "human", "content": "x"}]}),
                "messages[0].role",
            ),
            (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
            (json!({"messages": ["x"]}), "messages[0]"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "secret_text", "text": "x"}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"messages": [{"role": "user", "content": 7}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x", "name": 1}]}),
                "messages[0].name",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tools": {}}),
                "tools",
            ),
        ] {
            assert_eq!(refused(body.clone(), TextKind::Chat), param, "{body}");
        }
    }

    #[test]
    fn every_text_the_model_reads_is_a_segment() {
        let got = texts(json!({
            "messages": [
                {"role": "system", "content": "S", "name": "ops"},
                {"role": "user", "content": [{"type": "text", "text": "U"}, {"type": "image_url", "image_url": {"url": "u"}}], "name": "N"},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "R"}], "refusal": "R2",
                 "reasoning_content": "T", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":\"A\"}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "O"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "description": "D", "parameters": {"type": "object", "properties": {"a": {"description": "P"}}}}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"description": "Q"}}},
            "prediction": {"type": "content", "content": "PR"},
            "chat_template": "CT",
            "documents": [{"title": "t", "text": "DOC"}]
        }));
        let has = |source: Source, needle: &str| {
            got.iter().any(|(s, t)| *s == source && t.contains(needle))
        };
        for (source, needle) in [
            (Source::System, "S"),
            (Source::System, "ops"),
            (Source::User, "U"),
            (Source::User, "N"),
            (Source::Assistant, "R"),
            (Source::Assistant, "R2"),
            (Source::Assistant, "T"),
            (Source::Assistant, "f"),
            (Source::Assistant, "\"A\""),
            (Source::Tool, "O"),
            (Source::Definitions, "D"),
            (Source::Definitions, "P"),
            (Source::Definitions, "Q"),
            (Source::Assistant, "PR"),
            (Source::System, "CT"),
            (Source::Retrieved, "DOC"),
        ] {
            assert!(has(source, needle), "{source:?} {needle}: {got:?}");
        }
    }

    #[test]
    fn marked_user_text_keeps_its_mark() {
        let s = segments(
            &fields(json!({"messages": [
                {"role": "user", "content": "a", "palisade": {"channel": "retrieved"}},
                {"role": "user", "content": "b"},
                {"role": "tool", "content": "c", "palisade": {"channel": "retrieved"}}
            ]})),
            TextKind::Chat,
            &[1],
        )
        .unwrap();
        let got: Vec<(Source, bool)> = s.iter().map(|s| (s.source, s.marked)).collect();
        assert_eq!(
            got,
            [
                (Source::Retrieved, true),
                (Source::Retrieved, true),
                (Source::Tool, false)
            ]
        );
    }
}
