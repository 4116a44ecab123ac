//! Canonical JSON: object keys sorted (by their UTF-8 bytes), no insignificant whitespace,
//! numbers as serde_json prints them. Two argument objects that differ only in key order
//! or spacing hash the same; any difference of value hashes differently.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Arguments that are not JSON: a call with them is never released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tool arguments are not valid JSON: {0}")]
pub struct CanonicalError(pub String);

/// Writes `value` in canonical form.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                // A string serializes infallibly.
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The hex SHA-256 of the canonical form of a call's `arguments` string (OpenAI sends
/// arguments as a JSON-encoded string).
pub fn arguments_sha256(arguments: &str) -> Result<String, CanonicalError> {
    let value: Value =
        serde_json::from_str(arguments).map_err(|e| CanonicalError(e.to_string()))?;
    Ok(value_sha256(&value))
}

/// The hex SHA-256 of the canonical form of `value`.
pub fn value_sha256(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn key_order_and_spacing_do_not_matter() {
        let a = arguments_sha256(r#"{"to": "a@b.io", "n": [1, 2, {"y": 1, "x": 2}]}"#).unwrap();
        let b = arguments_sha256(r#"{"n":[1,2,{"x":2,"y":1}],"to":"a@b.io"}"#).unwrap();
        assert_eq!(a, b);
        let c = arguments_sha256(r#"{"n":[2,1,{"x":2,"y":1}],"to":"a@b.io"}"#).unwrap();
        assert_ne!(a, c, "array order is a value difference");
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": {"d": null, "c": "x\"y"}})),
            r#"{"a":{"c":"x\"y","d":null},"b":1}"#
        );
    }

    #[test]
    fn not_json_is_an_error() {
        assert!(arguments_sha256("{\"to\": ").is_err());
        assert!(arguments_sha256("").is_err());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z\"\\\\ é]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{0,4}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The canonical form parses back to the same value, and is a fixed point.
        #[test]
        fn canonical_roundtrips(v in arb_json()) {
            let text = canonical_json(&v);
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(canonical_json(&back), text);
        }

        /// Pretty-printing (different layout) never changes the hash.
        #[test]
        fn layout_never_changes_the_hash(v in arb_json()) {
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            prop_assert_eq!(arguments_sha256(&pretty).unwrap(), value_sha256(&v));
        }
    }
}
