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

/// Found by the long differential run: a Unicode digit in an IBAN's head made the full
/// analysis panic (palisade-detect's `iban_valid` cut the character in two). The screen
/// refuses the text and the analysis now finds nothing in it.
#[test]
fn a_unicode_digit_in_an_iban_head_is_analysed_without_panic() {
    let opts = SanitizeOptions::default();
    let t = "BK4\u{96F}67767Q3JDL4I4L";
    assert!(!is_clean(t, &opts));
    let s = crate::sanitize(t, &opts);
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    assert_eq!(s.text, t);
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
            1 => proptest::sample::select([canary_forms(), canary_gap_forms()].concat()),
            1 => proptest::collection::vec(odd_char(), 1..3)
                .prop_map(|v| v.into_iter().collect::<String>()),
            1 => shaped(),
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

    /// The canary in every form `Canary::detect` and the reversed search read: encoded
    /// (base64 of a sentence holding it, hex, percent, rot13), look-alike letters,
    /// leetspeak, spaced or split by other and hidden characters, fullwidth, reversed.
    fn canary_forms() -> Vec<String> {
        let core = canary().token[4..].to_string();
        let rev: String = core.chars().rev().collect();
        let spread = |sep: &str| core.chars().map(String::from).collect::<Vec<_>>().join(sep);
        vec![
            base64(format!("the code is {core} ok").as_bytes()),
            base64(canary().token.as_bytes()),
            base64(format!("{} ", canary().token).as_bytes()),
            core.chars().map(|c| format!("%{:02X}", c as u32)).collect(),
            core.chars()
                .map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap_or(c))
                .collect(),
            spread(" "),
            spread("-"),
            spread("."),
            spread("\u{200B}"),
            spread("\u{2019}"),
            spread("\u{FF0E}"),
            rev.to_uppercase(),
            rev.chars().map(String::from).collect::<Vec<_>>().join("_"),
            format!("pls-{}", core.to_uppercase()),
        ]
    }

    /// Canary forms the full analysis missed until its relaxed views (palisade-detect's
    /// `canary::quick::in_relaxed_views`): a payload had to read as text to be decoded,
    /// and look-alike and leetspeak mapping applied to trigger words only. The generator
    /// draws them so the screen and the analysis are compared on them too.
    fn canary_gap_forms() -> Vec<String> {
        let core = canary().token[4..].to_string();
        let map = |f: &dyn Fn(char) -> Option<&'static str>| {
            core.chars()
                .map(|c| f(c).map_or(c.to_string(), str::to_owned))
                .collect::<String>()
        };
        vec![
            base64(core.as_bytes()),
            core.chars().map(|c| format!("{:02x}", c as u32)).collect(),
            core.chars()
                .map(|c| match c {
                    'a'..='m' => char::from(c as u8 + 13),
                    'n'..='z' => char::from(c as u8 - 13),
                    _ => c,
                })
                .collect(),
            // Cyrillic look-alikes.
            map(&|c| match c {
                'a' => Some("\u{430}"),
                'e' => Some("\u{435}"),
                'o' => Some("\u{43E}"),
                'c' => Some("\u{441}"),
                'p' => Some("\u{440}"),
                'x' => Some("\u{445}"),
                _ => None,
            }),
            map(&|c| match c {
                'a' => Some("4"),
                'e' => Some("3"),
                'o' => Some("0"),
                'i' => Some("1"),
                's' => Some("5"),
                't' => Some("7"),
                _ => None,
            }),
        ]
    }

    /// The canary forms are ones the full analysis catches (else they test nothing), and
    /// the screen sends each to it.
    #[test]
    fn canary_forms_are_caught() {
        let opts = all_on();
        for form in canary_forms() {
            let t = format!("see {form} here");
            assert!(full(&t, &opts).canary_leaked, "{t:?}");
            assert!(!is_clean(&t, &opts), "{t:?}");
        }
    }

    /// The forms of [`canary_gap_forms`] are caught, and the screen sends each to the
    /// analysis.
    #[test]
    fn canary_gap_forms_are_caught() {
        let opts = all_on();
        for form in canary_gap_forms() {
            let t = format!("see {form} here");
            assert!(full(&t, &opts).canary_leaked, "{t:?}");
            assert!(!is_clean(&t, &opts), "{t:?}");
        }
    }

    /// Standard base64 (the test crate has no base64 dependency).
    fn base64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for k in 0..=chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * k) & 63) as usize]));
            }
        }
        while !out.len().is_multiple_of(4) {
            out.push('=');
        }
        out
    }

    /// Characters from the blocks where a detector's view and the text differ or a
    /// Unicode class reaches beyond ASCII: Latin-1 and Latin Extended (`ſ`), combining
    /// marks, Cyrillic, Arabic-Indic and Devanagari digits, general punctuation and
    /// spaces, letterlike symbols and number forms (Kelvin, Roman numerals), enclosed
    /// alphanumerics, variation selectors and small forms, fullwidth forms, tags,
    /// mathematical alphanumerics; ASCII controls; and any character at all.
    fn odd_char() -> impl Strategy<Value = char> {
        prop_oneof![
            3 => proptest::char::ranges(
                vec![
                    '\u{80}'..='\u{24F}',
                    '\u{300}'..='\u{36F}',
                    '\u{400}'..='\u{45F}',
                    '\u{660}'..='\u{669}',
                    '\u{966}'..='\u{96F}',
                    '\u{1680}'..='\u{1680}',
                    '\u{180E}'..='\u{180E}',
                    '\u{2000}'..='\u{206F}',
                    '\u{2070}'..='\u{218F}',
                    '\u{2460}'..='\u{24FF}',
                    '\u{3000}'..='\u{3000}',
                    '\u{FE00}'..='\u{FE6F}',
                    '\u{FEFF}'..='\u{FEFF}',
                    '\u{FF00}'..='\u{FFEF}',
                    '\u{E0000}'..='\u{E007F}',
                    '\u{1D400}'..='\u{1D7FF}',
                    '\u{1F100}'..='\u{1F1FF}',
                ]
                .into(),
            ),
            1 => proptest::char::range('\u{0}', '\u{7F}'),
            1 => any::<char>(),
        ]
    }

    /// Trigger shapes with their parts drawn, not fixed: keywords in any case (the regex
    /// generator's case-insensitive classes include `ſ` and the Kelvin sign), phone
    /// numbers, IPv4 and IPv6 parts, e-mail addresses, IBAN heads, URLs with and without
    /// scheme, HTML tags.
    fn shaped() -> impl Strategy<Value = String> {
        prop_oneof![
            "(?i)(api[_-]?key|apikey|secret|token|passw(or)?d|pwd|credentials?|auth[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret|accountkey)[\"' ]{0,2}(=|:|=>|:=)[ \"']{0,2}",
            "\\+?[0-9]{1,3}([ .-]?[0-9]{2,4}){1,4}",
            "\\(?[0-9]{3}\\)? ?[0-9]{3}[ .-][0-9]{4}",
            "[0-9]{1,3}(\\.[0-9]{1,3}){1,3}",
            "([0-9a-fA-F]{1,4}:){1,7}:?[0-9a-fA-F]{0,4}",
            "[A-Za-z0-9._%+-]{1,8}@[A-Za-z0-9-]{1,8}(\\.[A-Za-z]{2,4}){1,2}",
            "[A-Z]{2}[0-9]{2}( ?[A-Z0-9]{4}){0,3}",
            "(https?|ftp|mailto|data|javascript|vbscript|file):(//)?[a-z0-9./?#=&%-]{0,16}",
            "[a-z0-9-]{1,8}(\\.[a-z0-9-]{1,8}){0,2}\\.(com|io|rs|zip|dev|uk|example\\.com)([/?#]|:[0-9]{1,4})?[a-z0-9/=%]{0,8}",
            "</?[a-zA-Z]{1,6}( [a-z]{1,5}=[\"']?[a-z:/.]{0,12}[\"']?)?/?>?",
            "[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}",
        ]
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

    /// Pieces of a trigger-heavy alphabet for the long run: the generator's pieces, and
    /// single characters of every detector's syntax so that prefixes, keywords, shapes
    /// and links also form by chance across pieces.
    fn heavy_text() -> impl Strategy<Value = String> {
        let unit = prop_oneof![
            3 => piece(),
            2 => "[A-Za-z0-9_.:+@~/=\\[\\]()<>!#?%&\"' \t\n-]",
            1 => odd_char().prop_map(String::from),
        ];
        proptest::collection::vec(unit, 0..24).prop_map(|v| v.concat())
    }

    /// The long differential run (`cargo test --release -p palisade-output screen --
    /// --ignored`): `SCREEN_FUZZ_CASES` (default 1,000,000) generated texts, half under
    /// every class on, half under random options; screened `sanitize` must equal the full
    /// analysis exactly on each. Prints how many ran and how many the screen passed.
    #[test]
    #[ignore = "long: about a million cases, run in release"]
    fn long_differential_run() {
        use proptest::test_runner::{Config, TestRunner};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let total: u32 = std::env::var("SCREEN_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let ran = AtomicUsize::new(0);
        let clean = AtomicUsize::new(0);
        let config = || Config {
            cases: total / 2,
            failure_persistence: None,
            max_shrink_iters: 10_000,
            ..Config::default()
        };
        let check = |t: &str, opts: &SanitizeOptions| -> Result<(), TestCaseError> {
            ran.fetch_add(1, Ordering::Relaxed);
            let screened = is_clean(t, opts);
            clean.fetch_add(usize::from(screened), Ordering::Relaxed);
            let whole = full(t, opts);
            prop_assert_eq!(&sanitize(t, opts), &whole, "{:?}", t);
            if screened {
                prop_assert!(whole.actions.is_empty() && !whole.canary_leaked, "{:?}", t);
            }
            Ok(())
        };
        let all = all_on();
        TestRunner::new(config())
            .run(&heavy_text(), |t| check(&t, &all))
            .expect("screen differs from the full analysis (all classes on)");
        TestRunner::new(config())
            .run(&(heavy_text(), options()), |(t, opts)| check(&t, &opts))
            .expect("screen differs from the full analysis (random options)");
        println!(
            "screen differential: {} cases, {} screened clean",
            ran.load(Ordering::Relaxed),
            clean.load(Ordering::Relaxed)
        );
    }
}
