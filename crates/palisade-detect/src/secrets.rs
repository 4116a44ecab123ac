//! Secret detection: a port of well-known gitleaks rules (cloud keys, forge and chat tokens,
//! payment keys, private keys, JWTs) plus a generic rule for high-entropy values assigned to
//! key-like names. Spans are byte ranges into the original text, ready for redaction.
//!
//! Rules are compiled once (a `RegexSet` prefilter decides which individual regexes run).

use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use crate::spans::DisjointSpans;
use crate::types::{Finding, FindingKind};

struct Rule {
    id: &'static str,
    re: &'static str,
    /// Minimum Shannon entropy (bits/char) of the secret group, 0 to skip the check.
    entropy: f32,
}

/// The rule table. Patterns follow gitleaks' `config/gitleaks.toml` (MIT) in spirit, slimmed
/// to the token shapes; capture group 1, when present, is the secret itself.
const RULES: &[Rule] = &[
    Rule {
        id: "aws-access-token",
        re: r"(?-u:\b)((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})(?-u:\b)",
        entropy: 3.0,
    },
    Rule {
        id: "gcp-api-key",
        re: r"(?-u:\b)(AIza[0-9A-Za-z_-]{35})(?:[^0-9A-Za-z_-]|$)",
        entropy: 3.0,
    },
    Rule {
        id: "gcp-service-account",
        re: r#""type"\s*:\s*"service_account""#,
        entropy: 0.0,
    },
    Rule {
        id: "azure-storage-key",
        re: r"(?i)AccountKey=([A-Za-z0-9+/]{86}==)",
        entropy: 0.0,
    },
    Rule {
        id: "azure-ad-client-secret",
        re: r"(?:^|[\x27\x22\x60\s>=:(,)])([a-zA-Z0-9_~.]{3}\dQ~[a-zA-Z0-9_~.-]{31,34})(?:$|[\x27\x22\x60\s<),])",
        entropy: 3.0,
    },
    Rule {
        id: "github-pat",
        re: r"(?-u:\b)(gh[pousr]_[0-9a-zA-Z]{36})(?-u:\b)",
        entropy: 3.0,
    },
    Rule {
        id: "github-fine-grained-pat",
        re: r"(?-u:\b)(github_pat_[0-9a-zA-Z_]{82})(?-u:\b)",
        entropy: 3.0,
    },
    Rule {
        id: "gitlab-pat",
        re: r"(?-u:\b)(glpat-[0-9a-zA-Z_-]{20})(?:[^0-9a-zA-Z_-]|$)",
        entropy: 3.0,
    },
    Rule {
        id: "slack-token",
        re: r"(?-u:\b)(xox[baprs]-[0-9a-zA-Z-]{10,250})",
        entropy: 3.0,
    },
    Rule {
        id: "slack-webhook-url",
        re: r"(https?://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/]{43,46})",
        entropy: 0.0,
    },
    Rule {
        id: "stripe-access-token",
        re: r"(?-u:\b)((?:sk|rk)_(?:test|live|prod)_[0-9a-zA-Z]{10,99})(?-u:\b)",
        entropy: 3.0,
    },
    Rule {
        id: "openai-api-key",
        re: r"(?-u:\b)(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,})",
        entropy: 3.0,
    },
    Rule {
        id: "anthropic-api-key",
        re: r"(?-u:\b)(sk-ant-(?:api03|admin01)-[a-zA-Z0-9_-]{93}AA)",
        entropy: 3.0,
    },
    Rule {
        id: "sendgrid-api-token",
        re: r"(?-u:\b)(SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})",
        entropy: 3.0,
    },
    Rule {
        id: "npm-access-token",
        re: r"(?-u:\b)(npm_[a-zA-Z0-9]{36})(?-u:\b)",
        entropy: 3.0,
    },
    Rule {
        id: "google-oauth-token",
        re: r"(?-u:\b)(ya29\.[0-9A-Za-z_-]{20,})",
        entropy: 3.0,
    },
    Rule {
        id: "huggingface-token",
        re: r"(?-u:\b)(hf_[a-zA-Z]{34})(?-u:\b)",
        entropy: 3.0,
    },
    Rule {
        id: "private-key",
        // Neither the labels nor the body may contain a `-----` run, so two adjacent PEM blocks
        // are two findings (a lazy `.{64,}?` ran over a short first block into the next one's
        // END line, and a `[ A-Z0-9_-]` label ran from one END line into the next BEGIN line).
        re: r"(?s)(-----BEGIN(?:[ A-Z0-9_]|-[ A-Z0-9_]){0,100}PRIVATE KEY(?: BLOCK)?-----(?:[^-]|-{1,4}[^-]){32,}?-----END(?:[ A-Z0-9_]|-[ A-Z0-9_]){0,100}PRIVATE KEY(?: BLOCK)?-----)",
        entropy: 0.0,
    },
    Rule {
        id: "jwt",
        re: r"(?-u:\b)(ey[a-zA-Z0-9]{17,}\.ey[a-zA-Z0-9/_-]{17,}\.(?:[a-zA-Z0-9/_-]{10,}={0,2})?)",
        entropy: 3.0,
    },
    Rule {
        id: "generic-api-key",
        re: r#"(?i)(?:api[_-]?key|apikey|secret|token|passw(?:or)?d|pwd|credentials?|auth[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret)[\w.-]{0,20}["']?\s{0,5}(?:=|:|=>|:=)\s{0,5}["']?([A-Za-z0-9_\-+/=.~]{16,})"#,
        entropy: 3.5,
    },
];

struct Compiled {
    set: RegexSet,
    res: Vec<Regex>,
}

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| Compiled {
    set: RegexSet::new(RULES.iter().map(|r| r.re)).expect("static secret rules compile"),
    res: RULES
        .iter()
        .map(|r| Regex::new(r.re).expect("static secret rule compiles"))
        .collect(),
});

/// The ids of the secret rules, in table order. Consumers that prove a text holds no
/// secret without running the rules (palisade-output's clean-text screen) pin this list in
/// a test, so a new rule cannot slip past their proof unnoticed.
pub fn rule_ids() -> impl Iterator<Item = &'static str> {
    RULES.iter().map(|r| r.id)
}

/// Shannon entropy in bits per character.
pub fn shannon_entropy(s: &str) -> f32 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = n as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}

/// Most findings reported per rule (after the entropy and shape filters).
pub const MAX_PER_RULE: usize = 64;

/// Finds secrets in `text`. Spans are byte ranges of the secret value in `text`.
pub fn find_secrets(text: &str) -> Vec<Finding> {
    let c = &*COMPILED;
    let mut out: Vec<Finding> = Vec::new();
    // Spans of `out`, for a logarithmic overlap test.
    let mut kept = DisjointSpans::default();
    crate::work::add(crate::work::Unit::SearchBytes, text.len());
    for idx in c.set.matches(text).iter() {
        crate::work::add(crate::work::Unit::SearchBytes, text.len());
        let rule = &RULES[idx];
        // The per-rule cap counts accepted findings only: low-entropy look-alikes (decoys)
        // are filtered first, so they cannot use up the cap and hide a real key after them.
        let mut accepted = 0usize;
        for caps in c.res[idx].captures_iter(text) {
            if accepted >= MAX_PER_RULE {
                break;
            }
            let Some(m) = caps.get(1).or_else(|| caps.get(0)) else {
                continue;
            };
            if rule.entropy > 0.0 && shannon_entropy(m.as_str()) < rule.entropy {
                continue;
            }
            if rule.id == "generic-api-key" && !looks_like_key(m.as_str()) {
                continue;
            }
            // A specific rule wins over the generic one on overlapping spans.
            if kept.overlaps(&m.range()) {
                continue;
            }
            kept.insert(&m.range());
            accepted += 1;
            out.push(Finding {
                kind: FindingKind::Secret,
                rule: rule.id,
                span: m.range(),
            });
        }
    }
    out.sort_by_key(|f| f.span.start);
    out
}

/// Rules whose secret starts with a fixed prefix (`AKIA`, `ghp_`, `sk-ant-`, …): only these
/// can be recognized when glued to other word characters.
const PREFIXED: &[&str] = &[
    "aws-access-token",
    "gcp-api-key",
    "github-pat",
    "github-fine-grained-pat",
    "gitlab-pat",
    "slack-token",
    "stripe-access-token",
    "openai-api-key",
    "anthropic-api-key",
    "sendgrid-api-token",
    "npm-access-token",
    "google-oauth-token",
    "huggingface-token",
    "jwt",
];

/// The prefixed rules with their word-boundary anchors removed (same rule table, same
/// entropy filters), with a `RegexSet` prefilter as for the anchored rules.
struct Glued {
    set: RegexSet,
    rules: Vec<(&'static Rule, Regex)>,
}

static GLUED: LazyLock<Glued> = LazyLock::new(|| {
    let rules: Vec<(&'static Rule, Regex)> = RULES
        .iter()
        .filter(|r| PREFIXED.contains(&r.id))
        .map(|r| {
            let re =
                r.re.replace(r"(?-u:\b)", "")
                    .replace(r"(?:[^0-9A-Za-z_-]|$)", "")
                    .replace(r"(?:[^0-9a-zA-Z_-]|$)", "");
            (r, Regex::new(&re).expect("static secret rule compiles"))
        })
        .collect();
    Glued {
        set: RegexSet::new(rules.iter().map(|(_, re)| re.as_str()))
            .expect("static secret rules compile"),
        rules,
    }
});

/// Like [`find_secrets`] for the token rules with a fixed prefix, but without the word
/// boundaries around the token: `xAKIA…` or `ghp_…Z` (a key glued to other word
/// characters, which defeats the anchored rules) is found too. The span is the token as
/// the rule shapes it; the caller decides how much of the surrounding word goes with it.
/// Output-side only: a key glued to a word is still a key a reader can cut out.
pub fn find_secrets_glued(text: &str) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    let mut kept = DisjointSpans::default();
    let glued = &*GLUED;
    for idx in glued.set.matches(text).iter() {
        let (rule, re) = &glued.rules[idx];
        let mut accepted = 0usize;
        for caps in re.captures_iter(text) {
            if accepted >= MAX_PER_RULE {
                break;
            }
            let Some(m) = caps.get(1).or_else(|| caps.get(0)) else {
                continue;
            };
            if rule.entropy > 0.0 && shannon_entropy(m.as_str()) < rule.entropy {
                continue;
            }
            if kept.overlaps(&m.range()) {
                continue;
            }
            kept.insert(&m.range());
            accepted += 1;
            out.push(Finding {
                kind: FindingKind::Secret,
                rule: rule.id,
                span: m.range(),
            });
        }
    }
    out.sort_by_key(|f| f.span.start);
    out
}

/// Rejects words, paths and placeholders in the generic rule: a key mixes character classes.
fn looks_like_key(s: &str) -> bool {
    let digits = s.bytes().any(|b| b.is_ascii_digit());
    let upper = s.bytes().any(|b| b.is_ascii_uppercase());
    let lower = s.bytes().any(|b| b.is_ascii_lowercase());
    let classes = digits as u8 + upper as u8 + lower as u8;
    let lowered = s.to_ascii_lowercase();
    classes >= 2
        && !lowered.contains("xxxx")
        && !lowered.contains("example")
        && !lowered.contains("placeholder")
        && !lowered.starts_with("your")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, rule: &str, secret: &str) {
        let f = find_secrets(text);
        let hit = f
            .iter()
            .find(|f| f.rule == rule)
            .unwrap_or_else(|| panic!("{rule} not found in {text:?}: {f:?}"));
        assert_eq!(&text[hit.span.clone()], secret);
    }

    #[test]
    fn known_token_shapes() {
        check(
            "key AKIAIOSFODNN7EXAMPLE here",
            "aws-access-token",
            "AKIAIOSFODNN7EXAMPLE",
        );
        check(
            "ghp_1234567890abcdefghijklmnopqrstuvwxyz ok",
            "github-pat",
            "ghp_1234567890abcdefghijklmnopqrstuvwxyz",
        );
        check(
            "token glpat-Ab3dEfGh1jKlMn0pQr5t end",
            "gitlab-pat",
            "glpat-Ab3dEfGh1jKlMn0pQr5t",
        );
        check(
            "xoxb-2345678901-abcdefGHIJKL",
            "slack-token",
            "xoxb-2345678901-abcdefGHIJKL",
        );
        check(
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "stripe-access-token",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        );
        check(
            "AIzaSyD3k9f8H2jL5mN7pQ1rS4tV6wX8yZ0aBcD rest",
            "gcp-api-key",
            "AIzaSyD3k9f8H2jL5mN7pQ1rS4tV6wX8yZ0aBcD",
        );
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        check(&format!("Bearer {jwt}"), "jwt", jwt);
    }

    #[test]
    fn private_key_block() {
        let key = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----",
            "MIIEow".repeat(20)
        );
        check(&format!("x\n{key}\ny"), "private-key", &key);
    }

    #[test]
    fn adjacent_private_keys_are_separate_findings() {
        // A short first block used to let the lazy body run into the second block's END line.
        let a = format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----",
            "MHcCAQEEIB3k9f8H2jL5mN7pQ1rS4tV6wX8y"
        );
        let b = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----",
            "MIIEow".repeat(20)
        );
        let text = format!("{a}\n{b}\n");
        let f: Vec<_> = find_secrets(&text)
            .into_iter()
            .filter(|f| f.rule == "private-key")
            .collect();
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(&text[f[0].span.clone()], a);
        assert_eq!(&text[f[1].span.clone()], b);
        // Two long blocks, back to back without a newline.
        let text = format!("{b}{b}");
        let n = find_secrets(&text)
            .iter()
            .filter(|f| f.rule == "private-key")
            .count();
        assert_eq!(n, 2);
    }

    #[test]
    fn decoys_do_not_exhaust_the_cap() {
        // 100 low-entropy look-alikes before a real key: the cap counts accepted findings.
        let mut text = String::new();
        for _ in 0..100 {
            text.push_str("api_key = \"aaaaaaaaaaaaaaaaaaaaaaaa\"\n");
        }
        text.push_str("api_key = \"q8Zr2LmX91vTb7Kd4Hs0\"\n");
        let f = find_secrets(&text);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(&text[f[0].span.clone()], "q8Zr2LmX91vTb7Kd4Hs0");
        // The cap itself still holds for real findings.
        let mut many = String::new();
        for i in 0..(MAX_PER_RULE + 10) {
            many.push_str(&format!("token: q8Zr2LmX91vTb7Kd{i:04}\n"));
        }
        let n = find_secrets(&many).len();
        assert_eq!(n, MAX_PER_RULE);
    }

    #[test]
    fn long_generic_secret_is_spanned_whole() {
        // Values longer than the old 200-character cap were cut, leaving the tail unredacted.
        let value: String = (0..300)
            .map(|i| {
                let a = b"Zq8r2LmX91vTb7Kd4Hs0pWnYcE5gJ3uA";
                a[(i * 7 + i / 5) % a.len()] as char
            })
            .collect();
        let text = format!("client_secret=\"{value}\" rest");
        check(&text, "generic-api-key", &value);
    }

    #[test]
    fn glued_tokens_are_found_by_the_unanchored_rules() {
        for (text, rule, secret) in [
            (
                "xAKIAZ7Q2LM4XK3PT6WRB",
                "aws-access-token",
                "AKIAZ7Q2LM4XK3PT6WRB",
            ),
            (
                "ghp_1234567890abcdefghijklmnopqrstuvwxyzZ",
                "github-pat",
                "ghp_1234567890abcdefghijklmnopqrstuvwxyz",
            ),
            (
                "keyAIzaSyD3k9f8H2jL5mN7pQ1rS4tV6wX8yZ0aBcDx",
                "gcp-api-key",
                "AIzaSyD3k9f8H2jL5mN7pQ1rS4tV6wX8yZ0aBcD",
            ),
        ] {
            assert!(
                find_secrets(text).is_empty(),
                "the anchored rule misses {text:?}"
            );
            let f = find_secrets_glued(text);
            assert_eq!(f.len(), 1, "{text:?}: {f:?}");
            assert_eq!(f[0].rule, rule);
            assert_eq!(&text[f[0].span.clone()], secret);
        }
        assert!(find_secrets_glued("AKIAAAAAAAAAAAAAAAAA and prose").is_empty());
    }

    #[test]
    fn generic_needs_entropy_and_mixed_classes() {
        check(
            "api_key = \"q8Zr2LmX91vTb7Kd4Hs0\"",
            "generic-api-key",
            "q8Zr2LmX91vTb7Kd4Hs0",
        );
        assert!(find_secrets("password: your_password_here_please").is_empty());
        assert!(find_secrets("token = aaaaaaaaaaaaaaaaaaaaaaaa").is_empty());
        assert!(find_secrets("How do I rotate my API key safely?").is_empty());
    }
}
