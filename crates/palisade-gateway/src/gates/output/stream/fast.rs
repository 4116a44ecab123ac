//! The stream gate's fast path: a chat chunk of the common shape, judged
//! from its raw bytes instead of a `serde_json::Value` parse and a
//! re-serialization.
//!
//! Nearly every event of a chat stream is the same small object: the ids
//! and model of the first chunk again, `usage: null`, and one choice whose
//! `delta` holds a text or two (`content`, `reasoning_content`, …) and whose
//! `logprobs` and `finish_reason` are null. For such an event the gate only
//! has to push the texts through their guards and put the released texts
//! back: the event's members are read as borrowed raw JSON, and when a text
//! changes, only the `delta` object is written anew and spliced into the
//! original bytes.
//!
//! Anything else takes the general path (`StreamGate::judge`), which judges
//! every string of the event: a member this path does not know, a top-level
//! member whose bytes differ from one the general path already judged and
//! passed unchanged, a non-null `usage`, `logprobs` or `finish_reason`, a
//! second choice or another choice index, a delta member that is neither a
//! string nor null (tool calls, content parts), a `role` other than
//! `"assistant"`, a key with escapes, a duplicated key, the first event of
//! a stream, and every stream shape but chat completions.
//!
//! Must not: let through a string the general path would have judged (the
//! red-team suite's `stream_fast_path` tests hold it to that), or answer
//! differently from the general path for an event it takes.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{invalid_upstream, EventAction, Field, StreamGate};
use crate::gates::ResponseShape;

/// Most top-level members whose judged bytes are remembered (the general
/// path's own cache of passed members holds as many).
const MAX_PASSED_RAW: usize = 16;

/// The members of one JSON object, in order, borrowed from the event's text.
struct Members<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                // A key with escapes cannot be borrowed: the event goes to
                // the general path.
                while let Some(entry) = map.next_entry::<&'de str, &'de RawValue>()? {
                    out.push(entry);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Members<'a> {
    fn parse(raw: &'a str) -> Option<Self> {
        serde_json::from_str::<Self>(raw).ok()?.unique()
    }

    /// `None` on a duplicated key: readers disagree on which one counts.
    fn unique(self) -> Option<Self> {
        let m = &self.0;
        let unique = m
            .iter()
            .enumerate()
            .all(|(i, (k, _))| m[..i].iter().all(|(j, _)| j != k));
        unique.then_some(self)
    }
}

/// An event's top level in one pass: its members as raw JSON, but for
/// `choices`, the members of each choice (whose `delta` stays raw, to be
/// parsed on its own and spliced).
struct Top<'a> {
    members: Members<'a>,
    choices: Option<Vec<Members<'a>>>,
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut top = Top {
                    members: Members(Vec::with_capacity(8)),
                    choices: None,
                };
                while let Some(key) = map.next_key::<&'de str>()? {
                    if key == "choices" {
                        if top.choices.is_some() {
                            return Err(serde::de::Error::custom("duplicate choices"));
                        }
                        top.choices = Some(map.next_value::<Vec<Members<'de>>>()?);
                    } else {
                        top.members
                            .0
                            .push((key, map.next_value::<&'de RawValue>()?));
                    }
                }
                Ok(top)
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON string's value; `None` if `raw` is not a string.
fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let s = raw.get();
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(s).ok().map(Cow::Owned)
    } else {
        // Valid JSON without escapes: the characters are the value.
        Some(Cow::Borrowed(inner))
    }
}

/// Where `part` (a slice of `whole`) starts in it.
fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let same = whole
        .get(start..start + part.len())
        .is_some_and(|s| std::ptr::eq(s.as_ptr(), part.as_ptr()));
    same.then_some(start)
}

impl StreamGate {
    /// Judges a chat chunk of the common shape; `None`: not of that shape
    /// (nothing was judged, nothing changed: the general path takes it).
    pub(super) fn judge_fast(&mut self, data: &str) -> Option<EventAction> {
        if self.plan.shape != ResponseShape::Chat || self.template.is_none() {
            return None;
        }
        let index = self.choice?;
        let top: Top<'_> = serde_json::from_str(data).ok()?;
        for (key, raw) in &top.members.unique()?.0 {
            match *key {
                "usage" if raw.get() == "null" => {}
                // What the general path treats apart (the gate's own report,
                // an in-band error, usage) it judges itself.
                "palisade" | "error" | "usage" => return None,
                _ if self.passed_unchanged(key, raw) => {}
                _ => return None,
            }
        }
        let mut choices = top.choices?;
        if choices.len() != 1 {
            return None;
        }
        let choice = choices.pop()?.unique()?;
        let mut delta = None;
        for (key, raw) in choice.0 {
            match key {
                "index" => {
                    if serde_json::from_str::<u64>(raw.get()).ok()? != index {
                        return None;
                    }
                }
                "delta" => delta = Some(raw),
                "logprobs" | "finish_reason" if raw.get() == "null" => {}
                _ => return None,
            }
        }
        let delta = delta?;
        let members = Members::parse(delta.get())?.0;
        let mut texts: Vec<(usize, Cow<'_, str>)> = Vec::with_capacity(1);
        for (i, (key, raw)) in members.iter().enumerate() {
            match (*key, raw.get()) {
                ("role", "\"assistant\"") | (_, "null") => {}
                ("role", _) => return None,
                _ => texts.push((i, string(raw)?)),
            }
        }
        let start = offset_in(data, delta.get())?;
        // The shape is known: from here on the event is judged here (no
        // `None` after a text went into its guard).
        let mut changed = false;
        let mut stopped = false;
        let mut released: Vec<(usize, String)> = Vec::with_capacity(texts.len());
        for (i, text) in &texts {
            let out = self.push_delta(members[*i].0, text);
            stopped |= out.stop;
            changed |= out.text != *text;
            released.push((*i, out.text));
        }
        if stopped {
            let fields = released
                .into_iter()
                .map(|(i, t)| (Field::Delta(members[i].0.to_owned()), t))
                .collect();
            return Some(self.stop_with(index, fields));
        }
        if !changed {
            return Some(EventAction::Forward);
        }
        // The delta again, with the released texts (an emptied text leaves
        // the delta, as in the general path).
        let mut out = String::with_capacity(delta.get().len() + 16);
        out.push('{');
        let mut kept = 0;
        for (i, (key, raw)) in members.iter().enumerate() {
            let value = match released.iter().find(|(j, _)| *j == i) {
                Some((_, t)) if t.is_empty() => continue,
                Some((_, t)) => match serde_json::to_string(t) {
                    Ok(json) => Cow::Owned(json),
                    // Writing a string cannot fail; if it did, nothing goes out.
                    Err(_) => {
                        self.done = true;
                        return Some(EventAction::Fail(invalid_upstream("a stream event")));
                    }
                },
                None => Cow::Borrowed(raw.get()),
            };
            if kept > 0 {
                out.push(',');
            }
            kept += 1;
            // Keys are borrowed, so they hold no escapes: written as they came.
            out.push('"');
            out.push_str(key);
            out.push_str("\":");
            out.push_str(&value);
        }
        out.push('}');
        if kept == 0 {
            // Nothing left to send: the text is held.
            return Some(EventAction::Hold);
        }
        let end = start + delta.get().len();
        let mut event = String::with_capacity(data.len() + out.len() + 8);
        event.push_str("data: ");
        event.push_str(&data[..start]);
        event.push_str(&out);
        event.push_str(&data[end..]);
        event.push_str("\n\n");
        Some(EventAction::Replace(event.into()))
    }

    /// Whether the top-level member `key` has exactly the bytes of one the
    /// general path judged and passed unchanged (the ids and model repeat
    /// in every chunk).
    fn passed_unchanged(&mut self, key: &str, raw: &RawValue) -> bool {
        let raw = raw.get();
        if self.passed_raw.iter().any(|(k, r)| k == key && r == raw) {
            return true;
        }
        let Some(judged) = self.passed.get(key) else {
            return false;
        };
        let same = serde_json::from_str::<serde_json::Value>(raw).is_ok_and(|v| v == *judged);
        if same && self.passed_raw.len() < MAX_PASSED_RAW {
            self.passed_raw.push((key.to_owned(), raw.to_owned()));
        }
        same
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::gates::GatePlan;

    fn gate() -> StreamGate {
        let mut plan = GatePlan::for_test(palisade_policy::Snapshot::builtin());
        plan.canaries = vec![palisade_detect::Canary::short_from_random(&[3; 16], 8)];
        StreamGate::new(&plan).unwrap()
    }

    fn chunk(delta: Value) -> String {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m",
               "system_fingerprint": "fp", "usage": null,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]})
        .to_string()
    }

    /// What a client assembles from the actions: the content text, and
    /// whether the stream was stopped.
    fn assemble(actions: &[(String, EventAction)]) -> (String, bool) {
        let mut text = String::new();
        let mut stopped = false;
        for (data, action) in actions {
            let sent = match action {
                EventAction::Forward => format!("data: {data}\n\n"),
                EventAction::Replace(b) | EventAction::Stop(b) => {
                    String::from_utf8(b.to_vec()).unwrap()
                }
                EventAction::Hold => continue,
                EventAction::Fail(e) => panic!("failed: {e:?}"),
            };
            stopped |= matches!(action, EventAction::Stop(_));
            for line in sent.lines() {
                let Some(v) = line
                    .strip_prefix("data: ")
                    .and_then(|d| serde_json::from_str::<Value>(d).ok())
                else {
                    continue;
                };
                if let Some(t) = v
                    .pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
                {
                    text.push_str(t);
                }
            }
        }
        (text, stopped)
    }

    /// The same events through the fast path where it applies, and through
    /// the general path only: the client sees the same text and the same stop.
    fn check(deltas: &[Value]) -> (String, bool) {
        let events: Vec<String> = std::iter::once(json!({"role": "assistant", "content": ""}))
            .chain(deltas.iter().cloned())
            .map(chunk)
            .collect();
        let (mut fast, mut general) = (gate(), gate());
        let mut a = Vec::new();
        let mut b = Vec::new();
        for data in &events {
            a.push((data.clone(), fast.on_data(data)));
            b.push((data.clone(), general.judge(serde_json::from_str(data).ok())));
        }
        let taken = fast.fast_events;
        let fin = |g: &mut StreamGate| g.finish().map(|b| String::from_utf8(b.to_vec()).unwrap());
        let (fa, fb) = (fin(&mut fast), fin(&mut general));
        let (ta, sa) = assemble(&a);
        let (tb, sb) = assemble(&b);
        let tail = |f: Option<String>| {
            f.map(|s| assemble(&[(String::new(), EventAction::Replace(s.into()))]).0)
                .unwrap_or_default()
        };
        let (ta, tb) = (ta + &tail(fa), tb + &tail(fb));
        assert_eq!((&ta, sa), (&tb, sb), "fast and general paths differ");
        assert_eq!(
            taken + 1,
            events.len() as u64,
            "all but the first event take the fast path"
        );
        (ta, sa)
    }

    #[test]
    fn the_fast_path_answers_as_the_general_path() {
        let key = "AKIAIOSFODNN7EXAMPLE";
        let words = format!(
            "Sure. Your key is {key}. See ![x](https://evil.example/p.png) and \"quotes\" \\ \n done."
        );
        let deltas: Vec<Value> = words
            .split_inclusive(' ')
            .map(|w| json!({"content": w}))
            .collect();
        let (text, stopped) = check(&deltas);
        assert!(!text.contains(key) && text.contains("[REDACTED:"), "{text}");
        assert!(!text.contains("evil.example/p.png"), "{text}");
        assert!(!stopped);
        // A key split inside a word, reasoning alongside the content.
        let (a, b) = key.split_at(7);
        let (text, _) = check(&[
            json!({"content": format!("x {a}"), "reasoning_content": "thinking. "}),
            json!({"content": format!("{b} y. ")}),
        ]);
        assert!(!text.contains(key), "{text}");
    }

    #[test]
    fn shapes_it_does_not_know_go_to_the_general_path() {
        let mut g = gate();
        let first = chunk(json!({"role": "assistant", "content": ""}));
        assert!(
            g.judge_fast(&first).is_none(),
            "the first event sets the template"
        );
        let _ = g.on_data(&first);
        assert!(g.judge_fast(&chunk(json!({"content": "a "}))).is_some());
        let odd = [
            chunk(json!({"content": "a", "tool_calls": []})),
            chunk(json!({"content": ["a"]})),
            chunk(json!({"role": "user", "content": "a"})),
            chunk(json!({"content": "a"})).replace("\"model\":\"m\"", "\"model\":\"n\""),
            chunk(json!({"content": "a"})).replace("\"usage\":null", "\"usage\":{}"),
            chunk(json!({"content": "a"})).replace("\"logprobs\":null", "\"logprobs\":{}"),
            chunk(json!({"content": "a"})).replace("\"index\":0", "\"index\":1"),
            chunk(json!({"content": "a"})).replace("\"content\"", "\"con\\u0074ent\""),
            chunk(json!({"content": "a"}))
                .replace("{\"content\"", "{\"content\":\"b\",\"content\""),
            chunk(json!({"content": "a"})).replace("\"created\"", "\"x\":1,\"created\""),
            chunk(json!({"content": "a"})).replace("\"choices\":[", "\"choices\":[{\"index\":0},"),
        ];
        for data in odd {
            assert!(g.judge_fast(&data).is_none(), "{data}");
        }
    }
}
