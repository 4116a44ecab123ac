//! Every text-bearing field of a response, judged: the walk that sanitizes
//! each string of a JSON value in place, and the token sequences hidden in
//! `logprobs`.
//!
//! The gate does not keep a list of fields that matter: a hostile upstream
//! puts a key in whatever field the client prints (`refusal`,
//! `reasoning_content`, `id`, a vendor extension), so every string is judged,
//! and only the gate's own report and the tool gate's released calls (judged
//! there, and bound to their capability tokens) are left alone.
//!
//! Must not: decide (the policy does) or know the wire format of a stream.

use palisade_policy::Evidence;
use serde_json::Value;

use super::{absorb, OutputPolicy};

/// What judging some strings did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outcome {
    /// A string was rewritten (redacted, a link neutralized).
    pub(super) changed: bool,
    /// A finding of a blocking class (or a canary) was made.
    pub(super) blocked: bool,
}

impl std::ops::BitOrAssign for Outcome {
    fn bitor_assign(&mut self, rhs: Self) {
        self.changed |= rhs.changed;
        self.blocked |= rhs.blocked;
    }
}

/// Sanitizes one string in place, recording what was found.
pub(super) fn judge_string(
    text: &mut String,
    policy: &OutputPolicy,
    evidence: &mut Evidence,
) -> Outcome {
    let s = palisade_output::sanitize(text, &policy.sanitize);
    absorb(evidence, &s.actions, s.canary_leaked);
    let blocked = s.blocked_by(policy.block) || s.canary_leaked;
    match s.text {
        std::borrow::Cow::Owned(new) => {
            *text = new;
            Outcome {
                changed: true,
                blocked,
            }
        }
        std::borrow::Cow::Borrowed(_) => Outcome {
            changed: false,
            blocked,
        },
    }
}

/// Whether judging `text` finds anything at all (it is not rewritten).
pub(super) fn finds_anything(text: &str, policy: &OutputPolicy, evidence: &mut Evidence) -> bool {
    let s = palisade_output::sanitize(text, &policy.sanitize);
    absorb(evidence, &s.actions, s.canary_leaked);
    !s.actions.is_empty() || s.canary_leaked
}

/// Sanitizes every string under `value`, skipping object members for which
/// `skip(path)` is true (`path` is the keys from `value` down, array
/// positions as decimal strings).
pub(super) fn judge_tree(
    value: &mut Value,
    policy: &OutputPolicy,
    evidence: &mut Evidence,
    skip: &dyn Fn(&[&str]) -> bool,
) -> Outcome {
    let mut path = Vec::new();
    let mut out = Outcome::default();
    walk(value, &mut path, skip, &mut |s| {
        out |= judge_string(s, policy, evidence);
    });
    out
}

fn walk<'a>(
    value: &'a mut Value,
    path: &mut Vec<&'a str>,
    skip: &dyn Fn(&[&str]) -> bool,
    f: &mut dyn FnMut(&mut String),
) {
    // serde_json nests at most 128 levels deep, so recursion is bounded.
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => {
            for item in items.iter_mut() {
                walk(item, path, skip, f);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                path.push(key.as_str());
                if !skip(path) {
                    walk(item, path, skip, f);
                }
                path.pop();
            }
        }
        _ => {}
    }
}

/// The texts a client can read out of a choice's `logprobs`: the sampled
/// tokens in order (chat `content` and `refusal`, legacy `tokens`), each
/// rank of the alternatives in order (a hostile upstream can spell a key
/// with the second-best token of every position), and the `bytes` arrays
/// decoded. Every one must pass the gate for the logprobs to be relayed.
pub(super) fn logprob_texts(logprobs: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["content", "refusal"] {
        let Some(Value::Array(entries)) = logprobs.get(key) else {
            continue;
        };
        out.push(join(entries.iter().map(|e| e.get("token"))));
        out.push(bytes_of(entries.iter().map(|e| e.get("bytes"))));
        let ranks = entries
            .iter()
            .filter_map(|e| e.get("top_logprobs").and_then(Value::as_array))
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        for rank in 0..ranks.min(32) {
            out.push(join(
                entries
                    .iter()
                    .map(|e| alternative(e, rank).and_then(|a| a.get("token"))),
            ));
            out.push(bytes_of(
                entries
                    .iter()
                    .map(|e| alternative(e, rank).and_then(|a| a.get("bytes"))),
            ));
        }
    }
    // Legacy completions: `tokens` and `top_logprobs` (one object per
    // position, alternative token → logprob).
    if let Some(Value::Array(tokens)) = logprobs.get("tokens") {
        out.push(join(tokens.iter().map(Some)));
    }
    if let Some(Value::Array(tops)) = logprobs.get("top_logprobs") {
        let ranks = tops
            .iter()
            .filter_map(Value::as_object)
            .map(serde_json::Map::len)
            .max()
            .unwrap_or(0);
        for rank in 0..ranks.min(32) {
            out.push(
                tops.iter()
                    .filter_map(|t| t.as_object()?.keys().nth(rank).cloned())
                    .collect(),
            );
        }
    }
    out.retain(|t| !t.is_empty());
    out
}

fn alternative(entry: &Value, rank: usize) -> Option<&Value> {
    entry.get("top_logprobs")?.get(rank)
}

fn join<'a>(tokens: impl Iterator<Item = Option<&'a Value>>) -> String {
    tokens.flatten().filter_map(Value::as_str).collect()
}

fn bytes_of<'a>(arrays: impl Iterator<Item = Option<&'a Value>>) -> String {
    let bytes: Vec<u8> = arrays
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn logprobs_yield_every_rank_and_the_decoded_bytes() {
        let lp = json!({"content": [
            {"token": "AK", "bytes": [65, 75], "top_logprobs": [{"token": "x"}, {"token": "AKIA", "bytes": [65]}]},
            {"token": "IA", "bytes": [73, 65], "top_logprobs": [{"token": "y"}, {"token": "IOSF"}]}
        ]});
        let texts = logprob_texts(&lp);
        assert!(texts.contains(&"AKIA".to_owned()), "{texts:?}");
        assert!(texts.contains(&"xy".to_owned()), "{texts:?}");
        assert!(texts.contains(&"AKIAIOSF".to_owned()), "{texts:?}");
        let legacy = json!({"tokens": ["a", "b"], "top_logprobs": [{"c": -1.0}, {"d": -2.0}]});
        let texts = logprob_texts(&legacy);
        assert_eq!(texts, ["ab", "cd"]);
    }
}
