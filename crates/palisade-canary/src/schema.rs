//! A small JSON Schema subset for golden answers: enough to say "an object
//! with these fields of these types". The `jsonschema` crate is not a
//! workspace dependency, and a golden set's schemas are written by the
//! operator for short answers, so the subset is kept small and total.
//!
//! Supported: `type` (one name or a list), `enum`, `const`, `required`,
//! `properties`, `additionalProperties: false`, `items`, `minItems`,
//! `maxItems`, `minLength`, `maxLength`, `minimum`, `maximum`. Other
//! keywords are ignored (documented in the golden-set format).
//!
//! Must not: recurse without bound (depth is capped at [`MAX_DEPTH`]).

use serde_json::Value;

/// Deepest nesting of schemas checked; deeper parts pass unchecked.
const MAX_DEPTH: usize = 32;

/// Checks `value` against `schema`; the first violation as a message.
pub(crate) fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    check(schema, value, "$", 0)
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

fn check(schema: &Value, value: &Value, at: &str, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let Some(s) = schema.as_object() else {
        return Ok(());
    };
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(name) => type_matches(name, value),
            Value::Array(names) => names
                .iter()
                .filter_map(Value::as_str)
                .any(|n| type_matches(n, value)),
            _ => true,
        };
        if !ok {
            return Err(format!("{at}: not of type {t}"));
        }
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        if !options.contains(value) {
            return Err(format!("{at}: not one of the enum values"));
        }
    }
    if let Some(c) = s.get("const") {
        if c != value {
            return Err(format!("{at}: not {c}"));
        }
    }
    if let Some(text) = value.as_str() {
        let n = text.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
        {
            return Err(format!("{at}: shorter than minLength"));
        }
        if s.get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
        {
            return Err(format!("{at}: longer than maxLength"));
        }
    }
    if let Some(x) = value.as_f64() {
        if s.get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| x < m)
        {
            return Err(format!("{at}: below minimum"));
        }
        if s.get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| x > m)
        {
            return Err(format!("{at}: above maximum"));
        }
    }
    if let Some(obj) = value.as_object() {
        if let Some(Value::Array(required)) = s.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(name) {
                    return Err(format!("{at}: missing required `{name}`"));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (name, v) in obj {
            match props.and_then(|p| p.get(name)) {
                Some(sub) => check(sub, v, &format!("{at}.{name}"), depth + 1)?,
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: unexpected property `{name}`"))
                }
                None => {}
            }
        }
    }
    if let Some(items) = value.as_array() {
        let n = items.len() as u64;
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
        {
            return Err(format!("{at}: fewer than minItems"));
        }
        if s.get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
        {
            return Err(format!("{at}: more than maxItems"));
        }
        if let Some(sub) = s.get("items") {
            for (i, v) in items.iter().enumerate() {
                check(sub, v, &format!("{at}[{i}]"), depth + 1)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(schema: Value, value: Value, ok: bool) {
        let got = validate(&schema, &value);
        assert_eq!(got.is_ok(), ok, "{schema} / {value}: {got:?}");
    }

    #[test]
    fn the_subset_judges_what_it_names() {
        let person = json!({"type": "object", "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1},
                           "age": {"type": "integer", "minimum": 0}},
            "additionalProperties": false});
        check(person.clone(), json!({"name": "Ada", "age": 36}), true);
        check(person.clone(), json!({"age": 36}), false);
        check(person.clone(), json!({"name": "", "age": 36}), false);
        check(person.clone(), json!({"name": "Ada", "age": -1}), false);
        check(person.clone(), json!({"name": "Ada", "age": 1.5}), false);
        check(person.clone(), json!({"name": "Ada", "x": 1}), false);
        check(person, json!([1]), false);
        check(json!({"type": ["string", "null"]}), json!(null), true);
        check(json!({"enum": ["a", "b"]}), json!("c"), false);
        check(json!({"const": 4}), json!(4), true);
        check(
            json!({"type": "array", "items": {"type": "number"}, "minItems": 2}),
            json!([1, "x"]),
            false,
        );
        check(
            json!({"type": "array", "maxItems": 1}),
            json!([1, 2]),
            false,
        );
        check(json!({"unknownKeyword": 1}), json!(1), true);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut schema = json!({"type": "number"});
        let mut value = json!("not a number");
        for _ in 0..200 {
            schema = json!({"type": "array", "items": schema});
            value = json!([value]);
        }
        // Past the depth cap the rest passes unchecked; no stack overflow.
        assert!(validate(&schema, &value).is_ok());
    }
}
