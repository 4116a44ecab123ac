//! Cascades: a cheap model answers first, and a stronger one is asked only
//! when an evidence gate says the cheap answer will not do. The gates here
//! are pure functions of the cheap answer (its text, the `response_format`
//! the client asked for, the token log-probabilities when returned);
//! the output gate's verdict on it is the gateway's to add.
//!
//! Must not: do I/O, call a model (an operator-defined judge is not here),
//! or trust the answer's shape: anything that cannot be read is evidence to
//! escalate (`malformed`), never a panic.

use serde_json::Value;

/// Why a cheap answer was escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalateReason {
    /// The answer refuses or says it cannot help.
    Refusal,
    /// JSON was asked for (`response_format`) and the answer is not valid
    /// JSON, or misses a key or type its `json_schema` requires.
    JsonInvalid,
    /// The mean token log-probability is below the threshold.
    LowConfidence,
    /// The output gate blocked the answer.
    PolicyFlag,
    /// The operator's judge model said the answer will not do.
    Judge,
    /// The answer is not a readable chat completion (or the cheap model
    /// failed): always escalated.
    Malformed,
}

impl EscalateReason {
    /// The config's and the audit record's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refusal => "refusal",
            Self::JsonInvalid => "json_invalid",
            Self::LowConfidence => "low_confidence",
            Self::PolicyFlag => "policy_flag",
            Self::Judge => "judge",
            Self::Malformed => "malformed",
        }
    }

    /// From the config's name (`malformed` is always on, not a key).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "refusal" => Self::Refusal,
            "json_invalid" => Self::JsonInvalid,
            "low_confidence" => Self::LowConfidence,
            "policy_flag" => Self::PolicyFlag,
            "judge" => Self::Judge,
            _ => return None,
        })
    }
}

/// Openings of a refusal, lowercased. A refusal states itself in its first
/// sentence; matching only there keeps "I can't stress enough…" in the
/// middle of a good answer from counting.
const REFUSALS: &[&str] = &[
    "i'm sorry, but i can",
    "i am sorry, but i can",
    "sorry, but i can",
    "i can't help",
    "i cannot help",
    "i can't assist",
    "i cannot assist",
    "i can't provide",
    "i cannot provide",
    "i'm not able to",
    "i am not able to",
    "i'm unable to",
    "i am unable to",
    "i won't be able to",
    "as an ai language model, i can",
    "i must decline",
];

/// Lead-ins a refusal may start with before its opening.
const LEAD_INS: &[&str] = &["unfortunately, ", "i apologize, but ", "i apologise, but "];

/// The answer text refuses: it opens (after whitespace, quotes and a
/// lead-in such as "Unfortunately, ") with one of the known refusals,
/// case-insensitive, curly apostrophes read as straight ones.
pub fn is_refusal(text: &str) -> bool {
    let head: String = text
        .trim_start_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .chars()
        .take(120)
        .map(|c| if c == '\u{2019}' { '\'' } else { c })
        .collect::<String>()
        .to_lowercase();
    let head = LEAD_INS
        .iter()
        .find_map(|l| head.strip_prefix(l))
        .unwrap_or(&head);
    REFUSALS.iter().any(|r| head.starts_with(r))
}

/// `v` is of JSON-schema type `wanted` (an unknown or absent type: yes).
fn type_matches(wanted: Option<&str>, v: &Value) -> bool {
    match wanted {
        Some("string") => v.is_string(),
        Some("number") => v.is_number(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("boolean") => v.is_boolean(),
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("null") => v.is_null(),
        _ => true,
    }
}

/// The answer is not what `response_format` asked for: `json_object` needs
/// a JSON object; `json_schema` also needs the schema's top-level
/// `required` keys, each of the `type` its `properties` entry names (when
/// it names a plain type). No format, or `text`: always valid. A deeper
/// check is the output gate's schema check, not this gate's.
pub fn json_invalid(text: &str, response_format: Option<&Value>) -> bool {
    let kind = response_format
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str);
    if !matches!(kind, Some("json_object" | "json_schema")) {
        return false;
    }
    let Ok(value) = serde_json::from_str::<Value>(text.trim()) else {
        return true;
    };
    let Some(object) = value.as_object() else {
        return true;
    };
    let schema = response_format
        .and_then(|f| f.get("json_schema"))
        .and_then(|s| s.get("schema"));
    let Some(schema) = schema else {
        return false;
    };
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let properties = schema.get("properties").and_then(Value::as_object);
    required.iter().filter_map(Value::as_str).any(|key| {
        let wanted = properties
            .and_then(|p| p.get(key))
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str);
        object.get(key).is_none_or(|v| !type_matches(wanted, v))
    })
}

/// The mean log-probability of the answer's tokens
/// (`choices[0].logprobs.content[*].logprob`), when returned and finite.
pub fn mean_logprob(choice: &Value) -> Option<f64> {
    let tokens = choice.get("logprobs")?.get("content")?.as_array()?;
    let values: Vec<f64> = tokens
        .iter()
        .filter_map(|t| t.get("logprob")?.as_f64())
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return None;
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// The judge model's answer says yes (escalate): it opens with "yes",
/// case-insensitive, after whitespace, quotes and markdown emphasis. Anything
/// else — "no", an empty or rambling answer — keeps the cheap answer: a
/// judge that cannot say yes plainly does not cost an escalation.
pub fn judge_says_yes(text: &str) -> bool {
    let t =
        text.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '*' | '_'));
    t.get(..3).is_some_and(|h| h.eq_ignore_ascii_case("yes"))
        && !t[3..].starts_with(|c: char| c.is_alphanumeric())
}

/// What the cascade escalates on.
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeGates {
    /// The gates turned on (`malformed` always is).
    pub on: Vec<EscalateReason>,
    /// `low_confidence`: escalate below this mean token log-probability.
    pub min_mean_logprob: f64,
}

impl CascadeGates {
    /// Whether `low_confidence` is on (the cheap model must then be asked
    /// for log-probabilities).
    pub fn wants_logprobs(&self) -> bool {
        self.on.contains(&EscalateReason::LowConfidence)
    }

    /// The first reason to escalate a cheap chat completion `body` (the
    /// parsed response), given the client's `response_format`; `None`:
    /// the cheap answer stands. The output gate's verdict is the caller's.
    pub fn judge(&self, body: &Value, response_format: Option<&Value>) -> Option<EscalateReason> {
        let Some(choice) = body
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return Some(EscalateReason::Malformed);
        };
        let text = match choice.get("message").and_then(|m| m.get("content")) {
            Some(Value::String(s)) => s.as_str(),
            // Tool calls without text: nothing to judge by text.
            Some(Value::Null) | None if choice.get("message").is_some() => "",
            _ => return Some(EscalateReason::Malformed),
        };
        for gate in &self.on {
            let hit = match gate {
                EscalateReason::Refusal => is_refusal(text),
                EscalateReason::JsonInvalid => json_invalid(text, response_format),
                EscalateReason::LowConfidence => {
                    mean_logprob(choice).is_some_and(|m| m < self.min_mean_logprob)
                }
                // The caller's: the output gate and the judge model.
                EscalateReason::PolicyFlag | EscalateReason::Judge | EscalateReason::Malformed => {
                    false
                }
            };
            if hit {
                return Some(*gate);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(text: &str) -> Value {
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})
    }

    fn gates(on: &[EscalateReason]) -> CascadeGates {
        CascadeGates {
            on: on.to_vec(),
            min_mean_logprob: -1.0,
        }
    }

    #[test]
    fn refusals_are_read_from_the_opening() {
        let table = [
            ("I'm sorry, but I can't help with that.", true),
            ("Unfortunately, I cannot provide that.", true),
            ("  \"I cannot assist with this request.\"", true),
            ("I\u{2019}m unable to do that.", true),
            ("As an AI language model, I cannot browse.", true),
            ("Paris is the capital of France.", false),
            (
                "Here is the plan. Note: I can't stress enough how important testing is, and I cannot help but add more and more text here so the phrase sits well past the opening of the answer.",
                false,
            ),
            ("", false),
        ];
        for (text, want) in table {
            assert_eq!(is_refusal(text), want, "{text:?}");
        }
    }

    #[test]
    fn json_is_checked_only_when_asked_for() {
        let obj = json!({"type": "json_object"});
        let schema = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "required": ["name", "age"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}}});
        let table: [(&str, Option<&Value>, bool); 8] = [
            ("not json", None, false),
            ("not json", Some(&obj), true),
            ("[1, 2]", Some(&obj), true),
            ("{\"a\": 1}", Some(&obj), false),
            ("{\"name\": \"x\", \"age\": 3}", Some(&schema), false),
            ("{\"name\": \"x\"}", Some(&schema), true),
            ("{\"name\": \"x\", \"age\": \"3\"}", Some(&schema), true),
            ("{\"name\": 1, \"age\": 3}", Some(&schema), true),
        ];
        for (text, format, want) in table {
            assert_eq!(json_invalid(text, format), want, "{text} {format:?}");
        }
    }

    #[test]
    fn the_judge_must_say_yes_plainly() {
        for (text, want) in [
            ("yes", true),
            ("Yes.", true),
            ("  **YES** - it is wrong", true),
            ("yesterday it was fine", false),
            ("no", false),
            ("", false),
            ("I think yes", false),
            ("ye", false),
        ] {
            assert_eq!(judge_says_yes(text), want, "{text:?}");
        }
    }

    #[test]
    fn low_confidence_needs_logprobs_below_the_threshold() {
        let with = |lps: &[f64]| {
            let content: Vec<Value> = lps
                .iter()
                .map(|l| json!({"token": "x", "logprob": l}))
                .collect();
            json!({"choices": [{"message": {"content": "fine"}, "logprobs": {"content": content}}]})
        };
        let g = gates(&[EscalateReason::LowConfidence]);
        assert_eq!(g.judge(&with(&[-0.1, -0.3]), None), None);
        assert_eq!(
            g.judge(&with(&[-2.0, -3.0]), None),
            Some(EscalateReason::LowConfidence)
        );
        assert_eq!(
            g.judge(&answer("no logprobs"), None),
            None,
            "unknown: stands"
        );
    }

    #[test]
    fn unreadable_answers_escalate_and_never_panic() {
        let g = gates(&[EscalateReason::Refusal, EscalateReason::JsonInvalid]);
        for body in [
            json!(null),
            json!({"choices": []}),
            json!({"choices": "x"}),
            json!({"choices": [{"message": {"content": 5}}]}),
            json!({"choices": [{"text": "legacy"}]}),
        ] {
            assert_eq!(
                g.judge(&body, None),
                Some(EscalateReason::Malformed),
                "{body}"
            );
        }
        assert_eq!(
            g.judge(&answer("I cannot help with that."), None),
            Some(EscalateReason::Refusal)
        );
        assert_eq!(g.judge(&answer("Sure: 42."), None), None);
    }
}
