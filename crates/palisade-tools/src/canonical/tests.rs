//! Canonical JSON: RFC 8785's own vectors, the exact-number and duplicate-name rules, and
//! properties over generated values.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn canon(text: &str) -> String {
    canonical_text(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn key_order_and_spacing_do_not_matter() {
    let a = arguments_sha256(r#"{"to": "a@b.io", "n": [1, 2, {"y": 1, "x": 2}]}"#).unwrap();
    let b = arguments_sha256(r#"{"n":[1,2,{"x":2,"y":1}],"to":"a@b.io"}"#).unwrap();
    assert_eq!(a, b);
    let c = arguments_sha256(r#"{"n":[2,1,{"x":2,"y":1}],"to":"a@b.io"}"#).unwrap();
    assert_ne!(a, c, "array order is a value difference");
    assert_eq!(
        canonical_json(&json!({"b": 1, "a": {"d": null, "c": "x\"y"}})).unwrap(),
        r#"{"a":{"c":"x\"y","d":null},"b":1}"#
    );
}

#[test]
fn not_json_is_an_error() {
    for bad in [
        "{\"to\": ",
        "",
        "{} {}",
        "[1,]",
        "{\"a\" 1}",
        "01",
        "1.",
        "1e",
        "-",
        "+1",
        ".5",
        "NaN",
        "-Infinity",
        "\"\t\"",
        "\"\\x\"",
        "\"\\u12\"",
        "{'a': 1}",
        "tru",
        "[1 2]",
    ] {
        assert!(
            matches!(canonical_text(bad), Err(CanonicalError::Syntax { .. })),
            "{bad:?}"
        );
    }
}

/// RFC 8785 §3.2.4's example, except one number: the RFC writes `333333333.33333329` and
/// expects `333333333.3333333`, the double it rounds to. Here the number keeps the digits
/// it was written with (see the module documentation); its shortest form is used instead,
/// and the over-precise spelling is checked on its own below.
#[test]
fn rfc8785_section_3_2_4_example() {
    let input = r#"{
      "numbers": [333333333.3333333, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"#;
    assert_eq!(
        canon(input),
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
    assert_eq!(canon("333333333.33333329"), "333333333.33333329");
}

/// RFC 8785 §3.2.3's sorting example: names compared as UTF-16 code units, so U+1F600
/// (a surrogate pair, 0xD83D…) sorts before U+FB33 (0xFB33), unlike a UTF-8 or code point
/// sort would have it.
#[test]
fn rfc8785_utf16_member_order() {
    let input = r#"{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#;
    let out = canon(input);
    let values: Vec<&str> = [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    .to_vec();
    let positions: Vec<usize> = values.iter().map(|v| out.find(v).unwrap()).collect();
    assert!(positions.is_sorted(), "{out}");
    assert!(out.starts_with("{\"\\r\":\"Carriage Return\",\"1\":\"One\""));
}

/// RFC 8785 Appendix B: IEEE 754 doubles and their canonical text. The input is each
/// double's shortest round-trip form (what an encoder writes); NaN and Infinity are not
/// JSON and are refused as text.
#[test]
fn rfc8785_appendix_b_numbers() {
    let vectors = [
        (0x0000000000000000_u64, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"),
        (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
        (0x43143ff3c1cb0959, "1424953923781206.2"),
    ];
    for (bits, want) in vectors {
        let d = f64::from_bits(bits);
        assert_eq!(canon(want), want, "{bits:016x}");
        let upper = want.to_uppercase().replace("E+", "E");
        assert_eq!(canon(&upper), want, "{bits:016x} written {upper}");
        // Rust's (and serde_json's) shortest forms, as an encoder would write the double.
        // For the last vector the double lies exactly between …206.2 and …206.3, both
        // shortest; ECMAScript takes the even digit, Rust the other. The number text is
        // what is hashed (exact values), so that spelling keeps its own digits.
        for text in [format!("{d:e}"), format!("{d}"), json!(d).to_string()] {
            let out = canon(&text);
            if bits == 0x43143ff3c1cb0959 && out != want {
                assert_eq!(out, "1424953923781206.3");
            } else {
                assert_eq!(out, want, "{bits:016x} written {text}");
            }
            assert_eq!(out.parse::<f64>().unwrap(), d);
        }
    }
    for bad in ["NaN", "Infinity", "-Infinity"] {
        assert!(canonical_text(bad).is_err());
    }
}

/// The finding: two different integers above 2^53 hashed the same (both became the double
/// 1e20), so a token for one covered the other.
#[test]
fn numbers_keep_their_exact_value() {
    let a = arguments_sha256(r#"{"amount": 100000000000000000000}"#).unwrap();
    let b = arguments_sha256(r#"{"amount": 100000000000000000001}"#).unwrap();
    assert_ne!(a, b);
    assert_eq!(canon("100000000000000000001"), "100000000000000000001");
    assert_eq!(canon("100000000000000000000"), "100000000000000000000");
    assert_eq!(canon("9007199254740993"), "9007199254740993");
    assert_eq!(
        canon("1234567890123456789012"),
        "1.234567890123456789012e+21"
    );
    // The same value however it is spelled.
    for same in ["1E2", "100", "100.000", "1.00e+2", "10000e-2", "0.001e5"] {
        assert_eq!(canon(same), "100", "{same}");
    }
    for zero in ["0", "-0", "0.0", "-0.0e10", "0e-7"] {
        assert_eq!(canon(zero), "0", "{zero}");
    }
    assert_eq!(canon("-1.50"), "-1.5");
    assert_eq!(canon("1e400"), "1e+400");
    assert!(matches!(
        canonical_text("1e99999999999"),
        Err(CanonicalError::NumberOutOfRange { .. })
    ));
    assert!(canonical_text(&format!("0.{}1e999999990", "0".repeat(20))).is_ok());
}

#[test]
fn duplicate_names_are_refused() {
    for dup in [
        r#"{"to": "bob@example.com", "to": "eve@evil.example"}"#,
        r#"{"to": 1, "\u0074o": 2}"#,
        r#"{"a": {"x": 1, "x": 1}}"#,
        r#"[{"k": 1, "j": 0, "k": 1}]"#,
    ] {
        assert!(
            matches!(
                canonical_text(dup),
                Err(CanonicalError::DuplicateName { .. })
            ),
            "{dup}"
        );
    }
    // Same name in sibling objects is fine.
    assert!(canonical_text(r#"[{"k": 1}, {"k": 2}]"#).is_ok());
}

#[test]
fn strings_are_escaped_as_ecmascript_does() {
    assert_eq!(
        canon(r#""\u0000\u001f\u007f\b\f\n\r\t\/\"\\ é \u2028""#),
        "\"\\u0000\\u001f\u{7f}\\b\\f\\n\\r\\t/\\\"\\\\ é \u{2028}\""
    );
    assert_eq!(canon(r#""\ud83d\ude00""#), "\"😀\"");
    for lone in [
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800\u0041""#,
        r#""\ud800x""#,
    ] {
        assert!(
            matches!(
                canonical_text(lone),
                Err(CanonicalError::LoneSurrogate { .. })
            ),
            "{lone}"
        );
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(canonical_text(&deep(128)).is_ok());
    assert_eq!(canonical_text(&deep(129)), Err(CanonicalError::TooDeep));
    // Far deeper than the stack would take: refused, not a crash.
    assert_eq!(
        canonical_text(&deep(1_000_000)),
        Err(CanonicalError::TooDeep)
    );
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z\"\\\\ é\u{1}\u{1F600}\u{FB33}]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z\u{1F600}\u{FB33}]{0,4}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// The canonical form is JSON and a fixed point. (Parsing it back with serde_json is
    /// not compared: without its `float_roundtrip` feature serde_json's own parse of a
    /// double may be off by one ulp.)
    #[test]
    fn canonical_roundtrips(v in arb_json()) {
        let text = canonical_json(&v).unwrap();
        prop_assert!(serde_json::from_str::<Value>(&text).is_ok());
        prop_assert_eq!(canonical_text(&text).unwrap(), text);
    }

    /// Pretty-printing (different layout) never changes the hash.
    #[test]
    fn layout_never_changes_the_hash(v in arb_json()) {
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        prop_assert_eq!(arguments_sha256(&pretty).unwrap(), value_sha256(&v).unwrap());
    }

    /// Any double: the canonical text reads back as the same double, and is at most as
    /// long in digits as its shortest form.
    #[test]
    fn doubles_keep_their_value(bits in any::<u64>()) {
        let d = f64::from_bits(bits);
        prop_assume!(d.is_finite());
        let text = canon(&format!("{d:e}"));
        let back: f64 = text.parse().unwrap();
        prop_assert!(back == d, "{} -> {}", d, text);
        prop_assert_eq!(canon(&format!("{d}")), text);
    }

    /// Two different integers never share a canonical form, however large.
    #[test]
    fn big_integers_stay_apart(a in "[1-9][0-9]{0,40}", b in "[1-9][0-9]{0,40}") {
        prop_assume!(a != b);
        prop_assert_ne!(canon(&a), canon(&b));
    }

    /// Arbitrary text never panics the parser.
    #[test]
    fn any_text_is_handled(s in "\\PC{0,64}") {
        let _ = canonical_text(&s);
    }
}
