//! Streamed tool calls, put back together.
//!
//! OpenAI-compatible servers stream a call as deltas under `choices[i].delta.tool_calls`:
//! the first delta of call `index` carries its `id`, `type` and `function.name`, later ones
//! pieces of `function.arguments`. Several calls of one choice may interleave. The gateway
//! feeds every delta to a [`CallAssembler`] instead of the client, and judges each call
//! whole when the choice finishes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// One tool call, whole.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    /// Position in the message's `tool_calls` (the stream's `index`).
    pub index: u32,
    /// The model's id for the call; empty if the server sent none.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments, a JSON-encoded string as the model wrote it (maybe not valid JSON).
    pub arguments: String,
}

impl ToolCall {
    /// The calls of a non-streamed assistant `message` (its `tool_calls`), in order.
    /// Entries that are not objects are skipped; missing fields are empty.
    pub fn from_message(message: &Value) -> Vec<ToolCall> {
        let Some(calls) = message.get("tool_calls").and_then(Value::as_array) else {
            return Vec::new();
        };
        calls
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_object())
            .map(|(i, c)| ToolCall {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                id: str_at(c, &["id"]).to_owned(),
                name: str_at(c, &["function", "name"]).to_owned(),
                arguments: arguments_of(c),
            })
            .collect()
    }

    /// A legacy `function_call` object (`{"name", "arguments"}`) as the call at
    /// `position`. It has no id of its own: the caller gives it one, so the client's
    /// answer can name it like any other call.
    pub fn from_function_call(call: &Value, position: usize, id: String) -> ToolCall {
        let wrapped = json!({ "function": call });
        ToolCall {
            index: u32::try_from(position).unwrap_or(u32::MAX),
            id,
            name: str_at(call, &["name"]).to_owned(),
            arguments: arguments_of(&wrapped),
        }
    }

    /// The call as a message `tool_calls` entry.
    pub fn to_message_entry(&self) -> Value {
        json!({"id": self.id, "type": "function",
               "function": {"name": self.name, "arguments": self.arguments}})
    }

    /// The call as one streamed delta entry carrying everything at once; `index` is its
    /// position among the calls released to the client.
    pub fn to_delta_entry(&self, index: u32) -> Value {
        json!({"index": index, "id": self.id, "type": "function",
               "function": {"name": self.name, "arguments": self.arguments}})
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `function.arguments` as a string. Some servers send an object instead of the
/// JSON-encoded string the API specifies; it is encoded, so both shapes judge the same.
fn arguments_of(call: &Value) -> String {
    match call.get("function").and_then(|f| f.get("arguments")) {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The stream sent more tool-call bytes than the assembler holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("streamed tool calls exceed {limit} bytes")]
pub struct AssembleError {
    /// The bound.
    pub limit: usize,
}

/// Accumulates streamed tool-call deltas per choice. Bounded: past `max_bytes` of names
/// and arguments in total, or 128 calls per choice, pushes fail (the gateway then withholds
/// the calls rather than release a truncated one). Every call held counts
/// [`ENTRY_BYTES`] against the bound besides its text, so empty deltas (`{"index": 5}`)
/// under ever new choice indexes cannot grow the map without limit.
#[derive(Debug, Clone)]
pub struct CallAssembler {
    calls: BTreeMap<(u32, u32), ToolCall>,
    bytes: usize,
    max_bytes: usize,
}

const MAX_CALLS_PER_CHOICE: u32 = 128;

/// What one held call costs against the byte bound before any of its text: about its
/// size in memory.
pub const ENTRY_BYTES: usize = 96;

impl CallAssembler {
    /// An empty assembler holding at most `max_bytes` of call data.
    pub fn new(max_bytes: usize) -> CallAssembler {
        CallAssembler {
            calls: BTreeMap::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Adds one entry of `choices[choice].delta.tool_calls`. An entry without `index` is
    /// taken as call 0 (some servers omit it when there is one call).
    pub fn push(&mut self, choice: u32, delta: &Value) -> Result<(), AssembleError> {
        let index = delta
            .get("index")
            .and_then(Value::as_u64)
            .map_or(0, |i| u32::try_from(i).unwrap_or(u32::MAX));
        if index >= MAX_CALLS_PER_CHOICE {
            return Err(AssembleError {
                limit: self.max_bytes,
            });
        }
        let id = str_at(delta, &["id"]);
        let name = str_at(delta, &["function", "name"]);
        let arguments = arguments_of(delta);
        // Counted as stored (below): an id repeated in every delta, or a
        // name repeated whole, is kept once and counted once.
        let held = self.calls.get(&(choice, index));
        let entry = if held.is_some() { 0 } else { ENTRY_BYTES };
        let id_bytes = match held {
            Some(c) if !c.id.is_empty() => 0,
            _ => id.len(),
        };
        let name_bytes = match held {
            Some(c) if name == c.name => 0,
            _ => name.len(),
        };
        let added = entry + id_bytes + name_bytes + arguments.len();
        if self.bytes + added > self.max_bytes {
            return Err(AssembleError {
                limit: self.max_bytes,
            });
        }
        self.bytes += added;
        let call = self
            .calls
            .entry((choice, index))
            .or_insert_with(|| ToolCall {
                index,
                ..ToolCall::default()
            });
        // The id and name arrive once; a server that repeats them repeats the same value.
        if call.id.is_empty() {
            call.id.push_str(id);
        }
        // Names normally arrive whole in the first delta; a server that repeats the same
        // name in later deltas is not appending to it.
        if name != call.name {
            call.name.push_str(name);
        }
        call.arguments.push_str(&arguments);
        Ok(())
    }

    /// True when no call of any choice is held.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Whether call `index` of `choice` is held.
    pub fn has_call(&self, choice: u32, index: u32) -> bool {
        self.calls.contains_key(&(choice, index))
    }

    /// Whether `choice` has calls held.
    pub fn has(&self, choice: u32) -> bool {
        self.calls
            .range((choice, 0)..=(choice, u32::MAX))
            .next()
            .is_some()
    }

    /// Removes and returns the calls of `choice`, in index order.
    pub fn take(&mut self, choice: u32) -> Vec<ToolCall> {
        let keys: Vec<(u32, u32)> = self
            .calls
            .range((choice, 0)..=(choice, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        let calls: Vec<ToolCall> = keys
            .into_iter()
            .filter_map(|k| self.calls.remove(&k))
            .collect();
        for c in &calls {
            self.bytes = self
                .bytes
                .saturating_sub(ENTRY_BYTES + c.id.len() + c.name.len() + c.arguments.len());
        }
        calls
    }

    /// The choices that still hold calls.
    pub fn choices(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self.calls.keys().map(|(c, _)| *c).collect();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn interleaved_deltas_assemble_per_call() {
        let mut a = CallAssembler::new(1 << 16);
        let deltas = [
            json!({"index": 0, "id": "call_a", "type": "function", "function": {"name": "search", "arguments": ""}}),
            json!({"index": 1, "id": "call_b", "type": "function", "function": {"name": "send_email", "arguments": "{\"to\":"}}),
            json!({"index": 0, "function": {"arguments": "{\"q\":"}}),
            json!({"index": 1, "function": {"arguments": "\"x@y.z\"}"}}),
            json!({"index": 0, "function": {"arguments": "\"rust\"}"}}),
        ];
        for d in &deltas {
            a.push(0, d).unwrap();
        }
        a.push(
            1,
            &json!({"id": "call_c", "function": {"name": "other", "arguments": {"k": 1}}}),
        )
        .unwrap();
        assert_eq!(a.choices(), vec![0, 1]);
        let calls = a.take(0);
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].name.as_str(), calls[0].arguments.as_str()),
            ("search", "{\"q\":\"rust\"}")
        );
        assert_eq!(calls[1].id, "call_b");
        assert_eq!(calls[1].arguments, "{\"to\":\"x@y.z\"}");
        assert!(!a.has(0) && a.has(1));
        assert_eq!(a.take(1)[0].arguments, "{\"k\":1}");
        assert!(a.is_empty());
    }

    #[test]
    fn bounded() {
        let mut a = CallAssembler::new(ENTRY_BYTES + 10);
        assert!(a
            .push(0, &json!({"function": {"arguments": "12345678901"}}))
            .is_err());
        assert!(a.push(0, &json!({"index": 500})).is_err());
        assert!(a
            .push(0, &json!({"function": {"arguments": "123"}}))
            .is_ok());
    }

    /// A server repeating the id and name in every delta is counted for
    /// what is held, so the bound is not reached early, and taking the call
    /// returns exactly what was counted.
    #[test]
    fn repeated_ids_and_names_are_counted_once() {
        let mut a = CallAssembler::new(ENTRY_BYTES + 64);
        for _ in 0..100 {
            a.push(0, &json!({"index": 0, "id": "call_abcdefgh", "function": {"name": "lookup", "arguments": ""}}))
                .unwrap();
        }
        assert!(a
            .push(
                0,
                &json!({"index": 0, "function": {"arguments": "x".repeat(40)}})
            )
            .is_ok());
        let calls = a.take(0);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].name.as_str()),
            ("call_abcdefgh", "lookup")
        );
        assert!(a
            .push(
                0,
                &json!({"index": 0, "id": "c", "function": {"arguments": "y".repeat(60)}})
            )
            .is_ok());
    }

    /// A hostile upstream's empty call deltas under ever new choice indexes
    /// carry no text; each still costs its entry, so they hit the bound.
    #[test]
    fn empty_deltas_under_new_choices_hit_the_bound() {
        let mut a = CallAssembler::new(64 * 1024);
        let accepted = (0..u32::MAX)
            .take(100_000)
            .take_while(|&choice| a.push(choice, &json!({"index": 5})).is_ok())
            .count();
        assert_eq!(accepted, 64 * 1024 / ENTRY_BYTES);
        assert_eq!(a.take(0).len(), 1);
        assert!(
            a.push(1_000_000, &json!({"index": 0})).is_ok(),
            "a taken call frees its entry"
        );
    }

    #[test]
    fn message_calls() {
        let m = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
            "junk",
            {"id": "c2", "type": "function", "function": {"name": "b"}}]});
        let calls = ToolCall::from_message(&m);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].index, 2);
        assert_eq!(calls[1].arguments, "");
        assert_eq!(calls[0].to_message_entry()["function"]["name"], "a");
    }

    proptest! {
        /// However the arguments are cut into deltas, the assembled call is the original.
        #[test]
        fn any_split_reassembles(args in "[ -~]{0,200}", cuts in prop::collection::vec(0usize..200, 0..20)) {
            let mut points: Vec<usize> = cuts.into_iter().filter(|&c| c <= args.len()).collect();
            points.sort_unstable();
            points.dedup();
            let mut a = CallAssembler::new(1 << 16);
            a.push(0, &json!({"index": 0, "id": "c", "function": {"name": "f", "arguments": ""}})).unwrap();
            let mut at = 0;
            for p in points.into_iter().chain([args.len()]) {
                a.push(0, &json!({"index": 0, "function": {"arguments": &args[at..p]}})).unwrap();
                at = p;
            }
            let calls = a.take(0);
            prop_assert_eq!(calls.len(), 1);
            prop_assert_eq!(&calls[0].arguments, &args);
        }
    }
}
