//! A borrowed reading of a streamed chat chunk for the token tally: the
//! members [`crate::usage::StreamTally`] counts, without building a
//! `serde_json::Value` of the whole event (most of the relay's per-event
//! cost outside the gates).
//!
//! It reads only the common shape: an object whose `choices` are objects
//! with a string (or null) `delta.content` or `text`, and no `usage`,
//! `response`, Responses `type` or `tool_calls`. Anything else (those
//! members, a key written twice, a member of an unexpected type, JSON that
//! does not parse) answers `None`, and the caller reads the event through
//! the `Value` path: the view can never see less than that path does. Keys
//! are compared decoded (`"us\u0061ge"` is `usage`) and strings inside
//! values are never taken for members, because the event is parsed, not
//! searched.
//!
//! Must not: count anything the `Value` path would not, or guess at a shape.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{value::MapAccessDeserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A JSON object read as `T`. Serde's derived structs also accept a JSON
/// array (members by position), which the `Value` path would not read as
/// an object: this accepts objects only.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// The event's top-level members the tally (or the relay) reads. A member
/// present twice is an error (serde's derive), so the `Value` path, which
/// keeps the last, decides such events.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    choices: Option<Vec<Obj<Choice<'a>>>>,
    usage: Option<IgnoredAny>,
    response: Option<IgnoredAny>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow)]
    delta: Option<Obj<Delta<'a>>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow)]
    refusal: Option<Cow<'a, str>>,
    tool_calls: Option<IgnoredAny>,
    audio: Option<IgnoredAny>,
}

/// What the common shape adds to the tally: whether it has choices (else it
/// is neither content nor usage), and the generated text in `text_units`.
pub(crate) struct Plain {
    pub has_choices: bool,
    pub units: u64,
}

/// Reads `data` if it has the common shape (see the module docs).
pub(crate) fn read(data: &str) -> Option<Plain> {
    let Obj(event) = serde_json::from_str::<Obj<Event<'_>>>(data).ok()?;
    // A non-null `usage` (or a Responses event's) is read by the `Value`
    // path, as is a `response` member (the relay takes its id from it).
    if event.usage.is_some() || event.response.is_some() {
        return None;
    }
    if event.kind.is_some_and(|k| k.starts_with("response.")) {
        return None;
    }
    let Some(choices) = event.choices else {
        return Some(Plain {
            has_choices: false,
            units: 0,
        });
    };
    let mut units = 0u64;
    for Obj(choice) in &choices {
        let text = match &choice.delta {
            // The `Value` path falls back to `text` when `delta` has no
            // `content` member, and not when it is null: which of the two
            // this is does not survive `Option`, so a choice with both a
            // `delta` object and a `text` is left to it.
            Some(_) if choice.text.is_some() => return None,
            Some(Obj(delta)) => {
                if delta.tool_calls.is_some() || delta.audio.is_some() {
                    return None;
                }
                for other in [&delta.reasoning_content, &delta.reasoning, &delta.refusal] {
                    units += other.as_deref().map_or(0, crate::usage::text_units);
                }
                delta.content.as_deref()
            }
            None => choice.text.as_deref(),
        };
        units += text.map_or(0, crate::usage::text_units);
    }
    Some(Plain {
        has_choices: !choices.is_empty(),
        units,
    })
}
