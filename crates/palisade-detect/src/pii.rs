//! PII detection: email, phone, credit card (Luhn), IBAN (mod-97), US SSN, IPv4 and IPv6.
//! Every candidate a checksum or range check can refute is refuted, to keep precision high.
//! Spans are byte ranges into the original text.

use std::sync::LazyLock;

use regex::Regex;

use crate::spans::DisjointSpans;
use crate::types::{Finding, FindingKind};

struct Pii {
    email: Regex,
    phone: Regex,
    card: Regex,
    iban: Regex,
    ssn: Regex,
    ipv4: Regex,
    ipv6: Regex,
}

static PII: LazyLock<Pii> = LazyLock::new(|| {
    Pii {
    email: Regex::new(r"(?-u:\b)[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}(?-u:\b)").expect("static regex"),
    phone: Regex::new(r"(?:\+\d{1,3}[\s.-]?|(?-u:\b))(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?-u:\b)|\+\d{1,3}(?:[\s.-]\d{2,4}){2,4}(?-u:\b)|\+\d{8,14}(?-u:\b)").expect("static regex"),
    card: Regex::new(r"(?-u:\b)\d(?:[ -]?\d){12,18}(?-u:\b)").expect("static regex"),
    iban: Regex::new(r"(?-u:\b)[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?-u:\b)").expect("static regex"),
    ssn: Regex::new(r"(?-u:\b)(\d{3})-(\d{2})-(\d{4})(?-u:\b)").expect("static regex"),
    ipv4: Regex::new(r"(?-u:\b)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?-u:\b)").expect("static regex"),
    ipv6: Regex::new(r"(?i)(?-u:\b)(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}(?-u:\b)|(?-u:\b)(?:[0-9a-f]{1,4}:){1,6}(?::[0-9a-f]{1,4}){1,6}(?-u:\b)").expect("static regex"),
}
});

/// Luhn checksum over the digits of `s` (non-digits ignored).
pub fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() < 12 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.rem_euclid(10) == 0
}

/// IBAN mod-97 check (ISO 13616), spaces ignored.
pub fn iban_valid(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    // The regex's `\d` is Unicode: `BK4९…` (a Devanagari nine) reaches here, and
    // `split_at(4)` below would cut that character in two. An IBAN is ASCII.
    if !compact.is_ascii() || compact.len() < 15 || compact.len() > 34 {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn card_prefix_ok(digits: &str) -> bool {
    let d = digits.as_bytes();
    match d.first() {
        Some(b'4') => true,
        Some(b'5') => matches!(d.get(1), Some(b'1'..=b'5')),
        Some(b'2') => matches!(d.get(1), Some(b'2'..=b'7')),
        Some(b'3') => matches!(d.get(1), Some(b'4' | b'7' | b'0' | b'6' | b'8')),
        Some(b'6') => true,
        _ => false,
    }
}

/// Finds PII in `text`. Spans are byte ranges in `text`.
pub fn find_pii(text: &str) -> Vec<Finding> {
    let p = &*PII;
    // Seven regexes over the text.
    crate::work::add(crate::work::Unit::SearchBytes, 7 * text.len());
    let mut out: Vec<Finding> = Vec::new();
    // A match is kept only if it overlaps no earlier finding (logarithmic test: a text full
    // of addresses must not be quadratic).
    let mut kept = DisjointSpans::default();
    let mut push = |rule: &'static str, span: std::ops::Range<usize>, out: &mut Vec<Finding>| {
        if !kept.overlaps(&span) {
            kept.insert(&span);
            out.push(Finding {
                kind: FindingKind::Pii,
                rule,
                span,
            });
        }
    };
    if text.contains('@') {
        for m in p.email.find_iter(text) {
            push("email", m.range(), &mut out);
        }
    }
    for m in p.card.find_iter(text) {
        let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
        if (13..=19).contains(&digits.len()) && card_prefix_ok(&digits) && luhn_valid(&digits) {
            push("credit-card", m.range(), &mut out);
        }
    }
    for m in p.iban.find_iter(text) {
        if iban_valid(m.as_str()) {
            push("iban", m.range(), &mut out);
        }
    }
    for c in p.ssn.captures_iter(text) {
        let (a, g, s) = (&c[1], &c[2], &c[3]);
        if a != "000" && a != "666" && !a.starts_with('9') && g != "00" && s != "0000" {
            push(
                "us-ssn",
                c.get(0).map(|m| m.range()).unwrap_or_default(),
                &mut out,
            );
        }
    }
    if text.contains('.') {
        for c in p.ipv4.captures_iter(text) {
            let ok = (1..=4).all(|i| {
                c[i].parse::<u16>().is_ok_and(|v| v <= 255)
                    && (c[i].len() == 1 || !c[i].starts_with('0'))
            });
            if ok {
                push(
                    "ipv4",
                    c.get(0).map(|m| m.range()).unwrap_or_default(),
                    &mut out,
                );
            }
        }
    }
    if text.contains(':') {
        for m in p.ipv6.find_iter(text) {
            if m.as_str().matches(':').count() >= 2
                && m.as_str().chars().any(|c| c.is_ascii_digit())
            {
                push("ipv6", m.range(), &mut out);
            }
        }
    }
    for m in p.phone.find_iter(text) {
        let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
        if (9..=15).contains(&digits) {
            push("phone", m.range(), &mut out);
        }
    }
    out.sort_by_key(|f| f.span.start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<(&'static str, String)> {
        find_pii(text)
            .into_iter()
            .map(|f| (f.rule, text[f.span].to_string()))
            .collect()
    }

    #[test]
    fn finds_each_kind_with_spans() {
        assert_eq!(
            rules("mail jane.doe@example.com now"),
            vec![("email", "jane.doe@example.com".into())]
        );
        assert_eq!(
            rules("card 4111 1111 1111 1111 ok"),
            vec![("credit-card", "4111 1111 1111 1111".into())]
        );
        assert_eq!(
            rules("IBAN GB82 WEST 1234 5698 7654 32."),
            vec![("iban", "GB82 WEST 1234 5698 7654 32".into())]
        );
        assert_eq!(
            rules("ssn 123-45-6789"),
            vec![("us-ssn", "123-45-6789".into())]
        );
        assert_eq!(
            rules("host 192.168.1.20 up"),
            vec![("ipv4", "192.168.1.20".into())]
        );
        assert_eq!(
            rules("call +1 415-555-0134 today"),
            vec![("phone", "+1 415-555-0134".into())]
        );
        assert_eq!(
            rules("v6 2001:db8:85a3::8a2e:370:7334"),
            vec![("ipv6", "2001:db8:85a3::8a2e:370:7334".into())]
        );
    }

    /// Unicode digits match the regexes' `\d`: no finder may panic on them (an IBAN head
    /// with a Devanagari nine cut a character in two), and none reports them.
    #[test]
    fn unicode_digits_neither_panic_nor_match() {
        for t in [
            "BK4\u{96F}67767Q3JDL4I4L",
            "GB\u{96E}\u{96F} WEST 1234 5698 7654 32",
            "DE8\u{661}370400440532013000",
            "\u{661}\u{662}\u{663}-\u{664}\u{665}-\u{666}\u{667}\u{668}\u{669}",
            "\u{967}\u{968}.\u{969}.\u{96A}.\u{96B}",
            "+\u{967} \u{968}\u{969}\u{96A} \u{96B}\u{96C}\u{96D} \u{96E}\u{96F}\u{966}\u{967}",
        ] {
            assert!(
                rules(t).iter().all(|(r, _)| *r != "iban"),
                "{t:?}: {:?}",
                rules(t)
            );
        }
        assert!(!iban_valid("BK4\u{96F}67767Q3JDL4I4L"));
    }

    #[test]
    fn checksums_refute_lookalikes() {
        assert!(rules("order 4111 1111 1111 1112").is_empty());
        assert!(rules("GB82 WEST 1234 5698 7654 33")
            .iter()
            .all(|(r, _)| *r != "iban"));
        assert!(rules("version 1.2.3.400").is_empty());
        assert!(rules("ssn 666-12-3456").is_empty());
    }
}
