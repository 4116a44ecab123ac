//! JSON Schemas a client declares (`response_format`, a tool's
//! `function.parameters`): compiled so that checking a model's output against
//! them costs time linear in the output.
//!
//! JSON Schema's `pattern` is an ECMA-262 regex. The `jsonschema` crate runs
//! it with `fancy-regex` by default, a backtracking engine: a client's
//! `^(a|aa)+(?!b)$` costs exponential time on a run of `a`, ~0.1 s per string
//! before its backtrack limit gives up, and an array of such strings stalled
//! the gateway's workers for seconds. Client schemas are compiled with the
//! `regex` crate instead (finite automata, linear time, no look-around or
//! backreferences), and a schema only those features make valid is refused up
//! front ([`check_client_schema`]) rather than checked half-way.
//!
//! Instances are bounded too: text over [`MAX_CHECKED_BYTES`] is not parsed
//! and validated, it is reported as a violation (fail closed, never skipped).

use serde_json::Value;

/// Largest instance (a completion, a call's arguments) checked against a
/// client schema, in bytes. Structured outputs and tool arguments are
/// kilobytes; a megabyte leaves room and bounds the work per check.
pub const MAX_CHECKED_BYTES: usize = 1024 * 1024;

/// Compiled-program size limit for one client `pattern`, in bytes. The
/// `regex` crate's default (10 MiB) lets a short pattern with nested counted
/// repetition (`(a{1000}){1000}`) cost a noticeable compile; 1 MiB is far
/// above any pattern written by hand.
const PATTERN_SIZE_LIMIT: usize = 1024 * 1024;

/// Why a client-declared schema is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientSchemaError {
    /// A `pattern` (or `patternProperties` key) needs look-around or
    /// backreferences, or is too large for the linear-time engine.
    #[error(
        "a `pattern` in the schema uses look-around or backreferences (or is too large), \
         which the gateway does not evaluate since they can take exponential time; \
         use a pattern without them: {0}"
    )]
    UnsupportedPattern(String),
}

/// The validator for a client's schema, with the linear-time regex engine.
pub(crate) fn client_validator(
    schema: &Value,
) -> Result<jsonschema::Validator, jsonschema::ValidationError<'static>> {
    jsonschema::options()
        .with_pattern_options(
            jsonschema::PatternOptions::regex()
                .size_limit(PATTERN_SIZE_LIMIT)
                .dfa_size_limit(PATTERN_SIZE_LIMIT),
        )
        .build(schema)
}

/// Checks that the gateway can evaluate a client's schema in linear time.
///
/// A schema that does not compile for another reason (a wrong type for a
/// keyword) is not refused here: that is the client's own mistake and the
/// upstream's to report; the gateway's checks treat it as vouching for
/// nothing, as before.
pub fn check_client_schema(schema: &Value) -> Result<(), ClientSchemaError> {
    let Err(linear) = client_validator(schema) else {
        return Ok(());
    };
    // Only a schema that compiles with the backtracking engine and not with
    // the linear one is refused for its patterns.
    if jsonschema::validator_for(schema).is_err() {
        return Ok(());
    }
    let mut why = linear.to_string();
    if why.len() > 200 {
        let mut cut = 200;
        while !why.is_char_boundary(cut) {
            cut -= 1;
        }
        why.truncate(cut);
        why.push('…');
    }
    Err(ClientSchemaError::UnsupportedPattern(why))
}

/// The note for an instance too large to check.
pub(crate) fn too_large() -> String {
    format!("/: too large to check (over {MAX_CHECKED_BYTES} bytes)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_pattern(p: &str) -> Value {
        json!({"type": "array", "items": {"type": "string", "pattern": p}})
    }

    #[test]
    fn lookaround_and_backreferences_are_refused() {
        for p in ["^(a|aa)+(?!b)$", "(?<=x)y", "(a)\\1", "^(?=.*\\d).+$"] {
            let err = check_client_schema(&with_pattern(p)).unwrap_err();
            assert!(err.to_string().contains("look-around"), "{p}: {err}");
        }
        let props = json!({"type": "object", "patternProperties": {"^(?!x)": {}}});
        assert!(check_client_schema(&props).is_err());
    }

    #[test]
    fn linear_patterns_and_broken_schemas_pass() {
        for p in [
            "^(a|aa)+$",
            "^\\d{3}-\\w+$",
            "^[^@]+@example\\.com$",
            "\\p{L}+",
        ] {
            assert_eq!(check_client_schema(&with_pattern(p)), Ok(()), "{p}");
        }
        // Not a pattern problem: left to the upstream, as before.
        assert_eq!(check_client_schema(&json!({"type": 12})), Ok(()));
        assert_eq!(check_client_schema(&with_pattern("(unclosed")), Ok(()));
    }

    #[test]
    fn a_pathological_pattern_is_linear_with_the_client_engine() {
        let v = client_validator(&with_pattern("^(a|aa)+$")).unwrap();
        let items: Vec<String> = (0..200)
            .map(|i| format!("{}c{i}", "a".repeat(40)))
            .collect();
        let started = std::time::Instant::now();
        assert!(!v.is_valid(&json!(items)));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn oversized_instances_are_violations_not_skipped() {
        let schema = json!({"type": "array"});
        let big = format!("[{}1]", "1,".repeat(MAX_CHECKED_BYTES / 2));
        assert_eq!(
            crate::first_schema_violation(&schema, &big),
            Some(too_large())
        );
        let catalog = crate::ToolCatalog::default();
        let args = format!(r#"{{"q": "{}"}}"#, "a".repeat(MAX_CHECKED_BYTES));
        let check = catalog.check_arguments("t", &args, Some(&schema));
        assert_eq!(check.schema_violation, Some(too_large()));
        // With no schema there is nothing to check against.
        assert_eq!(
            catalog.check_arguments("t", &args, None).schema_violation,
            None
        );
    }
}
