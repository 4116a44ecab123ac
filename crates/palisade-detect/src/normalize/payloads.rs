//! Encoded payloads: base64, hex, percent-encoding, rot13, HTML comments and hidden markup
//! found in the text, decoded when they read as text. Decoding depth and volume are bounded
//! (`MAX_DEPTH`, `MAX_PAYLOADS`, `MAX_PAYLOAD_BYTES`).

use std::ops::Range;
use std::sync::LazyLock;

use base64::Engine as _;
use regex::Regex;

use super::canonical::count_triggers;
use super::{truncate, MAX_PAYLOADS, MAX_PAYLOAD_BYTES};
use crate::chars::percent_decode;
use crate::types::Reason;

static B64_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9+/_-]{20,}={0,2}").expect("static regex"));
static HEX_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:(?:\\x|0x)?[0-9a-fA-F]{2}[ :]?){10,}").expect("static regex"));
static URL_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:%[0-9a-fA-F]{2}[^%\s]{0,3}){4,}").expect("static regex"));
static COMMENT_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<!--(.{0,4000}?)-->").expect("static regex"));
static HIDDEN_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:px|pt|em)?\b|opacity\s*:\s*0(?:\.0+)?\s*[;\x22']|color\s*:\s*(?:white|#fff(?:fff)?)\b|<[a-z]+[^>]{0,200}\shidden[\s>=]",
    )
    .expect("static regex")
});

/// The two base64 alphabets payloads are decoded with, lenient about padding.
struct Base64Engines {
    std: base64::engine::general_purpose::GeneralPurpose,
    url: base64::engine::general_purpose::GeneralPurpose,
}

/// Built at compile time: constructing an engine fills two 256-entry decode tables, which
/// cost ~2,000 instructions when it was done per call (the canary's quick check asks once
/// per output string).
static BASE64: Base64Engines = Base64Engines::new();

impl Base64Engines {
    const fn new() -> Self {
        let config = base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true);
        Self {
            std: base64::engine::general_purpose::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                config,
            ),
            url: base64::engine::general_purpose::GeneralPurpose::new(
                &base64::alphabet::URL_SAFE,
                config,
            ),
        }
    }

    /// The bytes a match of `B64_RE` decodes to, whatever they are: either alphabet,
    /// padding optional, a trailing partial quantum dropped if need be.
    fn raw(&self, s: &str) -> Option<Vec<u8>> {
        let trimmed = s.trim_end_matches('=');
        let usable = &trimmed[..trimmed.len() - trimmed.len() % 4];
        self.std
            .decode(trimmed)
            .or_else(|_| self.url.decode(trimmed))
            .or_else(|_| self.std.decode(usable))
            .ok()
    }

    /// The payload a match of `B64_RE` decodes to, if it is one: text, or nested base64.
    fn payload(&self, s: &str) -> Option<String> {
        // Plain identifiers and words are not base64 payloads.
        if !s
            .bytes()
            .any(|b| b.is_ascii_digit() || b == b'+' || b == b'/' || b == b'=')
            && !s.bytes().any(|b| b.is_ascii_uppercase())
        {
            return None;
        }
        let bytes = self.raw(s)?;
        let nested = bytes.len() >= 20
            && bytes.iter().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')
            });
        if nested {
            String::from_utf8(bytes).ok()
        } else {
            printable_text(&bytes)
        }
    }
}

/// True if `text` holds a base64 run that decodes to a payload (every run is tried, not
/// only the first 64 `find_encoded` looks at), or one whose raw bytes `raw` accepts. For
/// the canary quick path: one scan for both questions.
pub(crate) fn may_hold_base64_or(text: &str, mut raw: impl FnMut(&[u8]) -> bool) -> bool {
    let engines = &BASE64;
    B64_RE.find_iter(text).any(|m| {
        engines.payload(m.as_str()).is_some()
            || engines.raw(m.as_str()).is_some_and(|bytes| raw(&bytes))
    })
}

/// True if `text` may hold a hex payload: the hex pattern matches somewhere (decoding and
/// the printable check are not done, so this errs towards true). For the canary quick path.
pub(crate) fn may_hold_hex(text: &str) -> bool {
    HEX_RE.is_match(text)
}

/// The raw bytes of every base64 and hex run of `text`, decoded leniently whether or not
/// they read as text (a bare canary core encoded is no sentence). For the canary
/// detection, which looks for its core in them; bounded by the text's length.
pub(crate) fn decoded_runs(text: &str) -> impl Iterator<Item = Vec<u8>> + '_ {
    let engines = &BASE64;
    let base64 = B64_RE
        .find_iter(text)
        .filter_map(move |m| engines.raw(m.as_str()));
    let hex = HEX_RE.find_iter(text).filter_map(|m| {
        let digits = hex_digits(m.as_str());
        let even = &digits[..digits.len() & !1];
        hex::decode(even).ok()
    });
    base64.chain(hex)
}

/// The hex digits of a `HEX_RE` match, its `\x`/`0x` prefixes and separators dropped.
fn hex_digits(run: &str) -> String {
    run.replace("\\x", "")
        .replace("0x", "")
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect()
}

fn printable_text(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(bytes).ok()?;
    let total = s.chars().count();
    if total < 6 {
        return None;
    }
    let good = s
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t' | '\r'))
        .count();
    let letters = s
        .chars()
        .filter(|&c| crate::ctype::is_alphabetic(c))
        .count();
    if good * 100 >= total * 95 && letters * 2 >= total && s.contains(' ') {
        Some(s.to_string())
    } else {
        None
    }
}

pub(super) fn find_encoded(
    original: &str,
    canon: &str,
    payloads: &mut Vec<(&'static str, String, Option<Range<usize>>)>,
    reasons: &mut Vec<Reason>,
) {
    let mut push = |code: &'static str,
                    kind: &'static str,
                    text: String,
                    span: Option<Range<usize>>,
                    reasons: &mut Vec<Reason>| {
        if payloads.len() >= MAX_PAYLOADS {
            return;
        }
        if !reasons.iter().any(|r| r.code == code) {
            reasons.push(Reason {
                code,
                detail: Some(truncate(&text, 80)),
                span: span.clone(),
            });
        }
        payloads.push((kind, text, span));
    };
    // Five regexes over the original text (B64, HEX, URL, COMMENT, HIDDEN).
    crate::work::add(crate::work::Unit::SearchBytes, 5 * original.len());
    let engines = &BASE64;
    for m in B64_RE.find_iter(original).take(64) {
        if let Some(t) = engines.payload(m.as_str()) {
            push("base64_payload", "base64", t, Some(m.range()), reasons);
        }
    }
    for m in HEX_RE.find_iter(original).take(32) {
        let digits = hex_digits(m.as_str());
        if digits.len() & 1 == 1 {
            continue;
        }
        if let Ok(bytes) = hex::decode(&digits) {
            if let Some(t) = printable_text(&bytes) {
                push("hex_payload", "hex", t, Some(m.range()), reasons);
            }
        }
    }
    for m in URL_RE.find_iter(original).take(32) {
        let bytes = percent_decode(m.as_str(), true);
        if let Ok(t) = String::from_utf8(bytes) {
            if t.chars()
                .filter(|&c| crate::ctype::is_alphabetic(c))
                .count()
                >= 4
            {
                push("url_encoded_payload", "url", t, Some(m.range()), reasons);
            }
        }
    }
    for c in COMMENT_RE.captures_iter(original).take(16) {
        let body = c.get(1).map_or("", |m| m.as_str()).trim();
        if body
            .chars()
            .filter(|&c| crate::ctype::is_alphabetic(c))
            .count()
            >= 3
        {
            let span = c.get(0).map(|m| m.range());
            push(
                "html_comment",
                "html_comment",
                body.to_string(),
                span,
                reasons,
            );
        }
    }
    if let Some(m) = HIDDEN_RE.find(original) {
        reasons.push(Reason::with_span("hidden_markup", m.range()));
    }
    // ROT13: worth reporting when the rotated text spells several trigger words the plain
    // text does not, or when a stretch of it reads as common English only rotated.
    let ascii_letters = canon.bytes().filter(u8::is_ascii_alphabetic).count();
    if ascii_letters >= 12 {
        let limit = canon.len().min(MAX_PAYLOAD_BYTES);
        let mut end = limit;
        while !canon.is_char_boundary(end) {
            end -= 1;
        }
        let rot = super::rot13::rotate(&canon[..end]);
        let plain = count_triggers(canon);
        let rotated = count_triggers(&rot);
        if rotated >= 2 && rotated > plain * 2 {
            push("rot13_payload", "rot13", rot, None, reasons);
        } else if let Some(span) = super::rot13::rotated_english(&canon[..end]) {
            // No override words, but a stretch that only reads as English rotated.
            let rot = super::rot13::rotate(&canon[span]);
            push("rot13_payload", "rot13", rot, None, reasons);
        }
    }
}
