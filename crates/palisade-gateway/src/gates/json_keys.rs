//! Raw-byte prechecks for JSON members: whether a body or event may hold a
//! member, decided without parsing it, so the common case (no tool call, no
//! usage) skips the parse.
//!
//! Must not: answer "absent" for text a JSON parser would read as holding
//! the member. A key may be written with `\u` escapes (`"tool\u005fcalls"`
//! is `"tool_calls"` to every parser); a raw search for the plain spelling
//! alone let a hostile upstream's calls skip the tool gate while the output
//! gate, which parses, saw `tool_calls` and left them to the tool gate.

/// Whether `json` may hold the member `key` (given with its quotes, as
/// `b"\"tool_calls\""`): it is spelled as is, or the text has a `\u`
/// escape anywhere (a key could be hiding behind one). Conservative: a
/// `true` only costs the caller a parse.
pub(crate) fn may_hold_key(json: &[u8], key: &[u8]) -> bool {
    contains(json, key) || contains(json, b"\\u")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::may_hold_key;

    /// Every key a parser reads as `tool_calls` is found, whichever of its
    /// characters are escaped; text without the key and without escapes is
    /// not.
    #[test]
    fn an_escaped_key_is_never_missed() {
        let key = "tool_calls";
        for i in 0..key.len() {
            let escaped: String = key
                .char_indices()
                .map(|(j, c)| {
                    if j == i {
                        format!("\\u{:04x}", c as u32)
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            let body = format!("{{\"choices\":[{{\"message\":{{\"{escaped}\":[]}}}}]}}");
            let parsed: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
            assert!(parsed["choices"][0]["message"].get(key).is_some(), "{body}");
            assert!(may_hold_key(body.as_bytes(), b"\"tool_calls\""), "{body}");
        }
        assert!(may_hold_key(br#"{"tool_calls":[]}"#, b"\"tool_calls\""));
        assert!(!may_hold_key(
            br#"{"content":"call the tool_calls helper"}"#,
            b"\"tool_calls\""
        ));
    }
}
