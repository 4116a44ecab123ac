//! The screen against the full analysis.

use super::*;

/// The secret rules this screen's conditions were derived from. A new rule in
/// palisade-detect fails this test until its trigger is added above.
#[test]
fn secret_rule_table_is_the_one_screened() {
    let screened = [
        "aws-access-token",
        "gcp-api-key",
        "gcp-service-account",
        "azure-storage-key",
        "azure-ad-client-secret",
        "github-pat",
        "github-fine-grained-pat",
        "gitlab-pat",
        "slack-token",
        "slack-webhook-url",
        "stripe-access-token",
        "openai-api-key",
        "anthropic-api-key",
        "sendgrid-api-token",
        "npm-access-token",
        "google-oauth-token",
        "huggingface-token",
        "private-key",
        "jwt",
        "generic-api-key",
    ];
    assert_eq!(
        palisade_detect::secrets::rule_ids().collect::<Vec<_>>(),
        screened
    );
}

#[test]
fn common_side_fields_are_clean() {
    let opts = SanitizeOptions {
        canaries: vec![Canary::from_random(&[7; 16])],
        ..SanitizeOptions::default()
    };
    for t in [
        "",
        "stop",
        "assistant",
        "chatcmpl-bench",
        "chat.completion",
        "chatcmpl-9x7KqLm2Vb4NcR8tZpW3sYd6FhJ1",
        "gpt-4o-mini-2024-07-18",
        "fp_44709d6fcb",
        "get_weather",
        "call_Xq7Lm2Vb4NcR8tZpW3sYd6Fh",
        "The quick brown fox jumps over the lazy dog.",
        "It\u{2019}s done \u{2014} caf\u{e9} \u{1F680} \u{65E5}\u{672C}\u{2026}",
    ] {
        assert!(is_clean(t, &opts), "{t:?}");
    }
}

#[test]
fn each_trigger_sends_to_the_full_analysis() {
    let opts = SanitizeOptions {
        canaries: vec![Canary::from_random(&[7; 16])],
        ..SanitizeOptions::default()
    };
    let canary = opts.canaries[0].token.clone();
    let reversed: String = canary[4..].chars().rev().collect();
    for t in [
        "AKIAZ7Q2LM4XK3PT6WRB",
        "xoxb-1234567890",
        "a -----BEGIN",
        "my_secret_value_long= x",
        "a@b",
        "+1 415 555 013",
        "4111 1111 1111 1111",
        "078-05-1120",
        "10.0.0.1",
        "fe80::1",
        "DE89370400440532013000",
        "[x](https://evil.example/)",
        "x<!-- y -->",
        "caf\u{e9}\u{200B}",
        "\u{17F}k_live_abcdefghij0123",
        "\u{661}\u{662}\u{663}-\u{664}\u{665}-\u{666}\u{667}\u{668}\u{669}",
        "http://evil.example",
        "//evil.example/x",
        "www.evil.example",
        "evil.com/x",
        &canary,
        &reversed,
    ] {
        assert!(!is_clean(t, &opts), "{t:?}");
    }
}

mod properties {
    use std::borrow::Cow;

    use proptest::prelude::*;

    use super::super::is_clean;
    use crate::options::{BareDomains, LinkAllow, SanitizeOptions};
    use crate::sanitize::{full, sanitize};
    use palisade_detect::Canary;

    fn canary() -> Canary {
        Canary::from_random(&[7, 1, 99, 250, 3, 44, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14])
    }

    /// Pieces of every detector's trigger alphabet: secret prefixes and keywords, near
    /// misses of each, PII shapes, link and markup syntax, canary pieces (forwards,
    /// reversed, case-changed, spaced), response side-field shapes, and characters the
    /// screen must refuse (invisible, compatibility forms, Unicode case variants).
    fn piece() -> impl Strategy<Value = String> {
        let core = canary().token[4..].to_string();
        let rev: String = core.chars().rev().collect();
        // One real-shaped secret of every rule, to be cut and glued by the generator.
        let a36 = "aB3dE5gH7jK9mN1pQ2rS4tU6vW8xY0zA1bC2";
        let whole: Vec<String> = vec![
            format!("AIza{}", &a36[..35]),
            format!("xYz8Q~{}", "aBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFg"),
            format!("github_pat_{a36}{a36}{}", &a36[..10]),
            format!("glpat-{}", &a36[..20]),
            format!("https://hooks.slack.com/services/{a36}{}", &a36[..7]),
            format!("sk_live_{}", &a36[..16]),
            format!("sk-proj-{}T3BlbkFJ{}", &a36[..20], &a36[..20]),
            format!("sk-ant-api03-{a36}{a36}{}AA", &a36[..21]),
            format!("SG.{}.{a36}{}", &a36[..22], &a36[..7]),
            format!("npm_{a36}"),
            format!("ya29.{}", &a36[..24]),
            format!("hf_{}", "aBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgH"),
            format!("AccountKey={a36}{a36}{}==", &a36[..14]),
            format!("api_key = \"{}\"", &a36[..20]),
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4".to_owned(),
        ];
        let fixed: Vec<String> = [
            // Secret prefixes and near misses.
            "AKIA",
            "A3TX",
            "ASIA",
            "ABIA",
            "ACCA",
            "AKI",
            "AIza",
            "ghp_",
            "gho_",
            "ghx_",
            "github_pat_",
            "glpat-",
            "xoxb-",
            "xox",
            "hooks.slack.com/services/",
            "sk_live_",
            "rk_test_",
            "sk-",
            "sk-ant-api03-",
            "T3BlbkFJ",
            "SG.",
            "npm_",
            "ya29.",
            "hf_",
            "eyJhbGciOiJIUzI1NiJ9",
            ".eyJzdWIiOiIxMjM0NTY3ODkwIn0",
            "\"type\": \"service_account\"",
            "service_account",
            "AccountKey=",
            "1Q~",
            "api_key=",
            "apikey: ",
            "Secret=",
            "TOKEN:",
            "password = ",
            "pwd=",
            "credentials:",
            "client_secret:",
            "private_key=",
            "-----BEGIN RSA PRIVATE KEY-----\n",
            "\n-----END RSA PRIVATE KEY-----",
            "----",
            "AKIAZ7Q2LM4XK3PT6WRB",
            "ghp_1234567890abcdefghijklmnopqrstuvwxyz",
            "xoxb-1234567890abc",
            // PII shapes.
            "@",
            "jane.doe@corp.net",
            "+1 ",
            "415-555-0134",
            "(415) 555-0134",
            "078-05-1120",
            "4111 1111 1111 1111",
            "10.0.0.1",
            "192.168.",
            "fe80::1",
            "2001:db8:",
            "a:b",
            "DE89370400440532013000",
            "DE89",
            "GB",
            "+4915112345678",
            // Links and markup.
            "[",
            "]",
            "(",
            ")",
            "<",
            ">",
            "!",
            "![",
            "](",
            "]:",
            "http://",
            "https://",
            "//",
            "www.",
            "WWW.",
            "mailto:",
            "javascript:",
            "evil.com",
            ".com",
            ".io",
            "/",
            "?",
            "#",
            "docs.rs",
            "a.example.com",
            "<a href=",
            "<!--",
            "-->",
            "&#x3a;",
            // Canary pieces.
            &core,
            &rev,
            &core[..5],
            &core[5..],
            &core.to_uppercase(),
            "pls-",
            // Side fields.
            "chatcmpl-",
            "chat.completion",
            "stop",
            "assistant",
            "fp_",
            "call_",
            "tool_calls",
            "gpt-4o-mini-2024-07-18",
            // Characters the screen must refuse or weigh.
            "\u{200B}",
            "\u{202E}",
            "\u{E0041}",
            "\u{FE0F}",
            "\u{FF21}\u{FF2B}",
            "\u{FF20}",
            "\u{212A}",
            "\u{17F}",
            "\u{1D400}",
            "\u{0660}",
            "é",
            " ",
            "\n",
            "-",
            ".",
            "=",
            ":",
            "~",
            "_",
            "%",
            "\u{2019}",
            "\u{2014}",
            "\u{2026}",
            "\u{1F680}",
            "\u{65E5}\u{672C}",
            "\u{A0}",
            "\u{2028}",
            "\u{AD}",
            "\u{17F}ecret=",
            "to\u{212A}en: ",
            "\u{FF53}\u{FF4B}\u{FF3F}",
            "\u{661}\u{662}\u{663}-\u{664}\u{665}-\u{666}\u{667}\u{668}\u{669}",
            "\u{966}\u{967}",
            "+",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(whole)
        .collect();
        prop_oneof![
            4 => proptest::sample::select(fixed),
            1 => "[A-Z2-7]{1,20}",
            1 => "[A-Za-z0-9]{1,24}",
            1 => "[A-Za-z0-9_.~+/=-]{1,16}",
            1 => "[0-9]{1,4}",
            1 => "[0-9a-f:]{1,6}",
            1 => "[ .:/?#@+-]{1,2}",
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(piece(), 0..10).prop_map(|v| v.concat())
    }

    fn options() -> impl Strategy<Value = SanitizeOptions> {
        (
            any::<[bool; 5]>(),
            prop_oneof![
                Just(BareDomains::Off),
                Just(BareDomains::WithPath),
                Just(BareDomains::All)
            ],
        )
            .prop_map(|(on, bare_domains)| SanitizeOptions {
                secrets: on[0],
                pii: on[1],
                links: on[2],
                hidden: on[3],
                allow: LinkAllow::hosts(["docs.rs", "*.example.com"]).expect("valid patterns"),
                canaries: if on[4] { vec![canary()] } else { Vec::new() },
                bare_domains,
            })
    }

    fn all_on() -> SanitizeOptions {
        SanitizeOptions {
            canaries: vec![canary()],
            allow: LinkAllow::hosts(["docs.rs", "*.example.com"]).expect("valid patterns"),
            ..SanitizeOptions::default()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6000))]

        /// Whenever the screen says clean, the full analysis finds nothing; so `sanitize`
        /// (screened) always equals the full analysis, borrowed-ness included.
        #[test]
        fn screened_equals_full(t in text()) {
            let opts = all_on();
            let whole = full(&t, &opts);
            if is_clean(&t, &opts) {
                prop_assert!(whole.actions.is_empty(), "{t:?}: {:?}", whole.actions);
                prop_assert!(!whole.canary_leaked, "{t:?}");
                prop_assert!(matches!(whole.text, Cow::Borrowed(_)), "{t:?}");
            }
            let screened = sanitize(&t, &opts);
            prop_assert_eq!(&screened, &whole, "{:?}", t);
            prop_assert_eq!(
                matches!(screened.text, Cow::Borrowed(_)),
                matches!(whole.text, Cow::Borrowed(_))
            );
        }

        /// The same under every combination of classes and bare-domain modes.
        #[test]
        fn screened_equals_full_under_any_options(t in text(), opts in options()) {
            if is_clean(&t, &opts) {
                let whole = full(&t, &opts);
                prop_assert!(whole.actions.is_empty(), "{t:?}: {:?}", whole.actions);
                prop_assert!(!whole.canary_leaked, "{t:?}");
            }
        }

        /// Short ASCII strings of the characters side fields are made of: the screen's
        /// bounds (runs of 15 key characters, 9 and 10 digits) are crossed here.
        #[test]
        fn short_ids_agree(t in "[a-zA-Z0-9_.:+@~/=-]{0,40}") {
            let opts = all_on();
            if is_clean(&t, &opts) {
                let whole = full(&t, &opts);
                prop_assert!(whole.actions.is_empty(), "{t:?}: {:?}", whole.actions);
                prop_assert!(!whole.canary_leaked, "{t:?}");
            }
        }
    }
}
