//! Grading one answer against its item's expectations.
//!
//! An answer the gateway could not get (connect error, timeout, a non-2xx
//! status, a body too large or not a chat completion) fails **every** check
//! its item exercises: a deployment that cannot answer a canary is not
//! healthier than one that answers it wrong.
//!
//! Refusals are recognised by their opening ([`is_refusal`]): the phrases
//! chat models open a refusal with, looked for in the first 200
//! characters. Palisade has no other refusal detector to share (the
//! gateway's own refusals are error codes, not model text); this one is
//! deliberately small and conservative, because it judges the *same*
//! prompts on every deployment, so a miss is the same miss on the baseline.
//!
//! Must not: do I/O or read the clock (latency is measured by the caller).

use crate::golden::GoldenItem;
use crate::Check;

/// What the gateway got for one golden prompt.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The assistant's text, or `None` when no usable answer came (the
    /// reason is in `error`).
    pub text: Option<&'a str>,
    /// Why there is no text (a short, stable description).
    pub error: Option<&'a str>,
    /// Time from sending to the whole answer, in milliseconds.
    pub latency_ms: u64,
}

/// One answer's results.
#[derive(Debug, Clone, PartialEq)]
pub struct Grade {
    /// Pass/fail per check the item exercises.
    pub results: Vec<(Check, bool)>,
    /// The answer reads as a refusal.
    pub refused: bool,
    /// Characters in the answer (0 without one).
    pub chars: usize,
    /// As measured by the caller.
    pub latency_ms: u64,
    /// The answer came (a 2xx chat completion within bounds).
    pub answered: bool,
    /// Human-readable reasons for each failed check.
    pub failures: Vec<String>,
}

impl Grade {
    /// Every exercised check passed.
    pub fn passed(&self) -> bool {
        self.results.iter().all(|(_, ok)| *ok)
    }
}

/// Openings of a refusal, lowercase, apostrophes normalised to `'`.
const REFUSAL_OPENINGS: &[&str] = &[
    "i can't",
    "i cannot",
    "i can not",
    "i won't",
    "i will not",
    "i'm sorry",
    "i am sorry",
    "sorry, but",
    "sorry, i",
    "i'm not able to",
    "i am not able to",
    "i'm unable to",
    "i am unable to",
    "i must decline",
    "i'm afraid i can't",
    "as an ai",
    "i apologize, but",
];

/// Whether `text` reads as a refusal: it opens (within its first 200
/// characters, at a sentence start) with a phrase models refuse with.
pub fn is_refusal(text: &str) -> bool {
    let head: String = text
        .chars()
        .take(200)
        .map(|c| match c {
            '\u{2019}' | '\u{2018}' | '`' => '\'',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let head = head.trim_start_matches(|c: char| !c.is_alphanumeric());
    // A refusal opens the answer or one of its first sentences.
    let starts = std::iter::once(0).chain(
        head.match_indices(['.', '!', '\n'])
            .map(|(i, _)| i + 1)
            .take(3),
    );
    for start in starts {
        let rest = head
            .get(start..)
            .unwrap_or("")
            .trim_start_matches(|c: char| !c.is_alphanumeric());
        if REFUSAL_OPENINGS.iter().any(|p| rest.starts_with(p)) {
            return true;
        }
    }
    false
}

/// The JSON inside one optional Markdown code fence.
fn unfenced(text: &str) -> &str {
    let t = text.trim();
    let Some(inner) = t.strip_prefix("```") else {
        return t;
    };
    let Some(inner) = inner.strip_suffix("```") else {
        return t;
    };
    // Drop the fence's language tag (`json`), up to the first newline.
    match inner.split_once('\n') {
        Some((tag, body)) if !tag.contains('{') && !tag.contains('[') => body.trim(),
        _ => inner.trim(),
    }
}

/// Grades `answer` against `item`'s expectations.
pub fn grade(item: &GoldenItem, answer: &Answer<'_>) -> Grade {
    let e = &item.expect;
    let checks = e.checks();
    let Some(text) = answer.text else {
        let why = answer.error.unwrap_or("no answer");
        return Grade {
            results: checks.iter().map(|c| (*c, false)).collect(),
            refused: false,
            chars: 0,
            latency_ms: answer.latency_ms,
            answered: false,
            failures: vec![format!("{}: {why}", item.id)],
        };
    };
    let mut failures = Vec::new();
    let refused = is_refusal(text);
    let chars = text.chars().count();
    let mut results = Vec::with_capacity(checks.len());
    for check in checks {
        let ok = match check {
            Check::Answer => {
                let trimmed = text.trim();
                let mut ok = true;
                if let Some(exact) = &e.exact {
                    if trimmed != exact.trim() {
                        ok = false;
                        failures.push(format!("{}: not exactly {exact:?}", item.id));
                    }
                }
                for needle in &e.contains {
                    if !text.contains(needle.as_str()) {
                        ok = false;
                        failures.push(format!("{}: does not contain {needle:?}", item.id));
                    }
                }
                if let Some(re) = &e.regex {
                    if !re.is_match(text) {
                        ok = false;
                        failures.push(format!("{}: does not match /{}/", item.id, re.as_str()));
                    }
                }
                ok
            }
            Check::Json => match serde_json::from_str::<serde_json::Value>(unfenced(text)) {
                Err(_) => {
                    failures.push(format!("{}: not valid JSON", item.id));
                    false
                }
                Ok(value) => match &e.json_schema {
                    None => true,
                    Some(schema) => match crate::schema::validate(schema, &value) {
                        Ok(()) => true,
                        Err(why) => {
                            failures.push(format!("{}: schema: {why}", item.id));
                            false
                        }
                    },
                },
            },
            Check::Refusal => {
                let want = e.refusal.unwrap_or(false);
                if refused != want {
                    failures.push(format!(
                        "{}: {}",
                        item.id,
                        if want {
                            "answered where a refusal was expected"
                        } else {
                            "refused"
                        }
                    ));
                }
                refused == want
            }
            Check::Length => {
                let lo = e.min_chars.unwrap_or(0);
                let hi = e.max_chars.unwrap_or(usize::MAX);
                let ok = (lo..=hi).contains(&chars);
                if !ok {
                    failures.push(format!(
                        "{}: {chars} characters, outside {lo}..={hi}",
                        item.id
                    ));
                }
                ok
            }
            Check::Latency => {
                let max = e.max_latency_ms.unwrap_or(u64::MAX);
                let ok = answer.latency_ms <= max;
                if !ok {
                    failures.push(format!(
                        "{}: {} ms, over {max} ms",
                        item.id, answer.latency_ms
                    ));
                }
                ok
            }
        };
        results.push((check, ok));
    }
    Grade {
        results,
        refused,
        chars,
        latency_ms: answer.latency_ms,
        answered: true,
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GoldenSet;

    fn item(expect: &str) -> GoldenItem {
        GoldenSet::parse(&format!(r#"{{"id":"t","prompt":"p","expect":{expect}}}"#))
            .unwrap()
            .items
            .remove(0)
    }

    /// `(expect, answer text or None, latency, expected results)`.
    fn check(expect: &str, text: Option<&str>, latency_ms: u64, want: &[(Check, bool)]) {
        let g = grade(
            &item(expect),
            &Answer {
                text,
                error: Some("timeout"),
                latency_ms,
            },
        );
        assert_eq!(g.results, want, "{expect} / {text:?}: {:?}", g.failures);
        assert_eq!(g.passed(), want.iter().all(|w| w.1));
        assert_eq!(g.failures.is_empty(), g.passed(), "{:?}", g.failures);
    }

    #[test]
    fn grades_each_kind_of_expectation() {
        use Check::*;
        check(
            r#"{"exact":"Paris"}"#,
            Some("  Paris\n"),
            1,
            &[(Answer, true)],
        );
        check(
            r#"{"exact":"Paris"}"#,
            Some("Paris."),
            1,
            &[(Answer, false)],
        );
        check(
            r#"{"contains":["4","four"]}"#,
            Some("4 (four)"),
            1,
            &[(Answer, true)],
        );
        check(
            r#"{"contains":["4","four"]}"#,
            Some("4"),
            1,
            &[(Answer, false)],
        );
        check(r#"{"regex":"^\\d+$"}"#, Some("42"), 1, &[(Answer, true)]);
        check(r#"{"regex":"^\\d+$"}"#, Some("42!"), 1, &[(Answer, false)]);
        check(
            r#"{"json_valid":true}"#,
            Some(r#"{"a":1}"#),
            1,
            &[(Json, true)],
        );
        check(
            r#"{"json_valid":true}"#,
            Some("```json\n{\"a\":1}\n```"),
            1,
            &[(Json, true)],
        );
        check(
            r#"{"json_valid":true}"#,
            Some(r#"{"a":1"#),
            1,
            &[(Json, false)],
        );
        check(
            r#"{"json_schema":{"type":"object","required":["name"]}}"#,
            Some(r#"{"age":3}"#),
            1,
            &[(Json, false)],
        );
        check(
            r#"{"refusal":true}"#,
            Some("I'm sorry, but I can't help."),
            1,
            &[(Refusal, true)],
        );
        check(
            r#"{"refusal":true}"#,
            Some("Sure! Step one..."),
            1,
            &[(Refusal, false)],
        );
        check(
            r#"{"refusal":false}"#,
            Some("I can\u{2019}t do that."),
            1,
            &[(Refusal, false)],
        );
        check(
            r#"{"min_chars":2,"max_chars":4}"#,
            Some("abc"),
            1,
            &[(Length, true)],
        );
        check(
            r#"{"min_chars":2,"max_chars":4}"#,
            Some("abcde"),
            1,
            &[(Length, false)],
        );
        check(
            r#"{"max_latency_ms":100}"#,
            Some("x"),
            100,
            &[(Latency, true)],
        );
        check(
            r#"{"max_latency_ms":100}"#,
            Some("x"),
            101,
            &[(Latency, false)],
        );
        // No answer fails every exercised check.
        check(
            r#"{"exact":"4","json_valid":true,"max_chars":9}"#,
            None,
            5,
            &[(Answer, false), (Json, false), (Length, false)],
        );
    }

    #[test]
    fn refusals_are_recognised_by_their_opening() {
        for yes in [
            "I'm sorry, but I can't help with that.",
            "  I cannot assist with this request.",
            "Sorry, but no.",
            "As an AI, I must decline.",
            "Thanks for asking. I won't provide that.",
            "**I can't help with that.**",
        ] {
            assert!(is_refusal(yes), "{yes}");
        }
        for no in [
            "Paris",
            "Sure, here is how: I can't stress enough how easy it is.",
            "{\"refused\": false}",
            "",
        ] {
            assert!(!is_refusal(no), "{no}");
        }
    }
}
