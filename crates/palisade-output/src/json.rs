//! JSON mode: a completion the client will parse (`response_format` JSON) is judged in the
//! form `JSON.parse` gives it. Escapes (`\u0041\u004b\u0049\u0041…`, `\/`) would otherwise
//! carry a key, a token or a canary past a gate that reads the raw text.
//!
//! The text is split into segments: string literals and what lies between them. Each
//! string's value is decoded, sanitized as a text of its own and written back with only the
//! escapes JSON requires (`\"`, `\\`, control characters); each stretch between strings is
//! sanitized as it is (in valid JSON it is punctuation, numbers and literals). A canary
//! spread over several string values (`"pls-7kq2", "m9x4…"`) is looked for in the
//! skeleton of all decoded values together. [`JsonStreamGuard`] does the same for a stream,
//! one [`StreamGuard`] per segment, so streamed output equals [`sanitize_json`] of the
//! whole, as for plain text.
//!
//! Malformed JSON is judged the same way (a string runs to its closing quote or the end;
//! an invalid escape is kept as text): nothing is relayed unjudged, and a client's parser
//! refuses what is left of it.

use std::borrow::Cow;
use std::time::Duration;

use palisade_detect::Canary;

use crate::detectors::canary_core;
use crate::error::OutputError;
use crate::findings::Applied;
use crate::fold::fold_char;
use crate::guard::{Released, StreamGuard};
use crate::options::{Class, GuardOptions, SanitizeOptions};
use crate::sanitize::{sanitize, Sanitized};

/// Writes `s` as the content of a JSON string: only `"`, `\` and control characters are
/// escaped.
fn encode_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

/// Decodes JSON string content incrementally: escapes may be split across deltas.
#[derive(Debug, Default, Clone)]
struct Decoder {
    /// An escape not complete yet (`\`, `\u00`…).
    pending: String,
    /// A high surrogate waiting for its low half.
    high: Option<u16>,
}

impl Decoder {
    /// Decodes `raw` (content only, no closing quote) into `out`.
    fn feed(&mut self, raw: &str, out: &mut String) {
        for c in raw.chars() {
            if self.pending.is_empty() {
                if c == '\\' {
                    self.pending.push(c);
                } else {
                    self.flush_high(out);
                    out.push(c);
                }
                continue;
            }
            self.pending.push(c);
            let p = self.pending.as_bytes();
            if p.len() == 2 {
                let simple = match p[1] {
                    b'"' => Some('"'),
                    b'\\' => Some('\\'),
                    b'/' => Some('/'),
                    b'b' => Some('\u{8}'),
                    b'f' => Some('\u{c}'),
                    b'n' => Some('\n'),
                    b'r' => Some('\r'),
                    b't' => Some('\t'),
                    b'u' => None,
                    _ => {
                        // Not an escape: kept as written.
                        self.flush_high(out);
                        out.push_str(&std::mem::take(&mut self.pending));
                        continue;
                    }
                };
                if let Some(s) = simple {
                    self.flush_high(out);
                    out.push(s);
                    self.pending.clear();
                }
                continue;
            }
            if !c.is_ascii_hexdigit() {
                self.flush_high(out);
                out.push_str(&std::mem::take(&mut self.pending));
                continue;
            }
            if self.pending.len() == 6 {
                let v = u16::from_str_radix(&self.pending[2..], 16).unwrap_or(0xFFFD);
                self.pending.clear();
                match (self.high.take(), v) {
                    (Some(h), 0xDC00..=0xDFFF) => {
                        let cp =
                            0x10000 + ((u32::from(h) - 0xD800) << 10) + (u32::from(v) - 0xDC00);
                        out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                    }
                    (h, 0xD800..=0xDBFF) => {
                        if h.is_some() {
                            out.push('\u{FFFD}');
                        }
                        self.high = Some(v);
                    }
                    (h, v) => {
                        if h.is_some() {
                            out.push('\u{FFFD}');
                        }
                        out.push(char::from_u32(u32::from(v)).unwrap_or('\u{FFFD}'));
                    }
                }
            }
        }
    }

    fn flush_high(&mut self, out: &mut String) {
        if self.high.take().is_some() {
            out.push('\u{FFFD}');
        }
    }

    /// The string (or the text) ended: what is pending is kept as it reads.
    fn end(&mut self, out: &mut String) {
        self.flush_high(out);
        out.push_str(&std::mem::take(&mut self.pending));
    }
}

/// Splits `text` into segments: `(is_string, raw range)`; a string's range is its content
/// (without quotes), and `closed` says whether its closing quote is there.
fn segments(text: &str) -> Vec<(bool, std::ops::Range<usize>, bool)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut start = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        out.push((false, start..i, true));
        let s = i + 1;
        let mut k = s;
        let mut closed = false;
        while k < b.len() {
            match b[k] {
                b'\\' => k += 2,
                b'"' => {
                    closed = true;
                    break;
                }
                _ => k += 1,
            }
        }
        let e = k.min(b.len());
        out.push((true, s..e, closed));
        i = if closed { e + 1 } else { b.len() };
        start = i;
    }
    out.push((false, start..b.len(), true));
    out
}

/// The cores (forwards and reversed) of `canaries`.
fn cores(canaries: &[Canary]) -> Vec<Vec<u8>> {
    canaries
        .iter()
        .map(canary_core)
        .filter(|c| !c.is_empty())
        .flat_map(|c| [c.bytes().collect(), c.bytes().rev().collect()])
        .collect()
}

/// A rolling canary skeleton over decoded string values.
#[derive(Debug, Default, Clone)]
struct Skeleton {
    tail: Vec<u8>,
}

impl Skeleton {
    /// Adds `text`; true if some core now appears in the skeleton.
    fn push(&mut self, text: &str, cores: &[Vec<u8>]) -> bool {
        if cores.is_empty() {
            return false;
        }
        let longest = cores.iter().map(Vec::len).max().unwrap_or(0);
        let mut hit = false;
        for c in text.chars() {
            let c = fold_char(c).unwrap_or(c);
            if !c.is_ascii_alphanumeric() {
                continue;
            }
            self.tail.push(c.to_ascii_lowercase() as u8);
            hit |= cores.iter().any(|k| self.tail.ends_with(k));
            if self.tail.len() > 4 * longest {
                self.tail.drain(..self.tail.len() - longest);
            }
        }
        hit
    }
}

/// The skeleton of string values without the object keys between them (`{"a": "pls-7kq2",
/// "b": "m9x4…"}` reads `7kq2m9x4…` to a client that prints the values): a string is a key
/// when the next thing after it is a `:`, which is known only once that arrives.
#[derive(Debug, Default, Clone)]
struct Values {
    skel: Skeleton,
    /// The last string, until it is known not to be a key.
    last: Option<String>,
}

impl Values {
    fn string(&mut self, value: &str) {
        self.last = Some(value.to_string());
    }

    /// Text between strings; true if a core appeared.
    fn outside(&mut self, text: &str, cores: &[Vec<u8>]) -> bool {
        let Some(c) = text.chars().find(|c| !c.is_whitespace()) else {
            return false;
        };
        match self.last.take() {
            Some(_) if c == ':' => false,
            Some(v) => self.skel.push(&v, cores),
            None => false,
        }
    }

    /// The end of the text; true if a core appeared.
    fn end(&mut self, cores: &[Vec<u8>]) -> bool {
        match self.last.take() {
            Some(v) => self.skel.push(&v, cores),
            None => false,
        }
    }
}

/// The finding reported when a canary is spread over several string values.
fn spread_canary(span: std::ops::Range<usize>) -> Applied {
    Applied {
        class: Class::Canary,
        rule: "canary-token",
        span_in_original: span,
    }
}

/// Sanitizes a completion the client parses as JSON (see the module docs). Findings
/// inside a string value are reported with the span of the whole literal in `text`.
/// Borrows `text` when nothing changed.
///
/// ```
/// use palisade_output::{sanitize_json, SanitizeOptions};
/// let s = sanitize_json(r#"{"key": "\u0041KIAZ7Q2LM4XK3PT6WRB"}"#, &SanitizeOptions::default());
/// assert_eq!(s.text, r#"{"key": "[REDACTED:aws-access-token]"}"#);
/// ```
pub fn sanitize_json<'a>(text: &'a str, opts: &SanitizeOptions) -> Sanitized<'a> {
    let cores = cores(&opts.canaries);
    let mut skel = Skeleton::default();
    let mut values = Values::default();
    let mut out = String::with_capacity(text.len());
    let mut actions = Vec::new();
    let mut leaked = false;
    let mut spread = false;
    for (is_string, r, closed) in segments(text) {
        if !is_string {
            spread |= values.outside(&text[r.clone()], &cores);
            let s = sanitize(&text[r.clone()], opts);
            out.push_str(&s.text);
            leaked |= s.canary_leaked;
            actions.extend(s.actions.into_iter().map(|a| Applied {
                span_in_original: a.span_in_original.start + r.start
                    ..a.span_in_original.end + r.start,
                ..a
            }));
            continue;
        }
        let mut value = String::new();
        let mut d = Decoder::default();
        d.feed(&text[r.clone()], &mut value);
        d.end(&mut value);
        spread |= skel.push(&value, &cores);
        values.string(&value);
        let s = sanitize(&value, opts);
        leaked |= s.canary_leaked;
        let literal = r.start - 1..(r.end + usize::from(closed));
        actions.extend(s.actions.into_iter().map(|a| Applied {
            span_in_original: literal.clone(),
            ..a
        }));
        out.push('"');
        encode_into(&mut out, &s.text);
        if closed {
            out.push('"');
        }
    }
    spread |= values.end(&cores);
    if spread && !leaked {
        actions.push(spread_canary(0..text.len()));
    }
    leaked |= spread;
    actions.sort_by_key(|a| (a.span_in_original.start, a.span_in_original.end));
    let text = if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    };
    Sanitized {
        text,
        actions,
        canary_leaked: leaked,
    }
}

/// Guards a streamed completion the client parses as JSON: [`sanitize_json`] for a stream.
/// Same calls as [`StreamGuard`]; each segment (string value, or what lies between
/// strings) is held and judged by a guard of its own, and released in order.
#[derive(Debug)]
pub struct JsonStreamGuard {
    opts: GuardOptions,
    cores: Vec<Vec<u8>>,
    /// The guard of the current segment.
    cur: StreamGuard,
    in_string: bool,
    /// The last byte of raw string content was an unfinished `\`: the next byte is
    /// escaped (a quote there does not end the string).
    escaped: bool,
    decoder: Decoder,
    skel: Skeleton,
    values: Values,
    /// The current string's decoded value (for `values`).
    value: String,
    /// Bytes of completion pushed so far (for spans).
    total: usize,
    stopped: bool,
    finished: bool,
}

impl JsonStreamGuard {
    /// A guard for one JSON completion.
    ///
    /// # Errors
    /// As [`StreamGuard::new`].
    pub fn new(opts: GuardOptions) -> Result<Self, OutputError> {
        let cur = StreamGuard::new(opts.clone())?;
        Ok(JsonStreamGuard {
            cores: cores(&opts.sanitize.canaries),
            opts,
            cur,
            in_string: false,
            escaped: false,
            decoder: Decoder::default(),
            skel: Skeleton::default(),
            values: Values::default(),
            value: String::new(),
            total: 0,
            stopped: false,
            finished: false,
        })
    }

    /// Bytes received but not released yet (of the current segment).
    pub fn held_bytes(&self) -> usize {
        self.cur.held_bytes()
    }

    /// True once a blocking finding stopped the stream.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    fn take(&mut self, r: Released, out: &mut Released) {
        if self.in_string {
            encode_into(&mut out.text, &r.text);
        } else {
            out.text.push_str(&r.text);
        }
        out.violations.extend(r.violations);
        if r.stop {
            self.stopped = true;
            out.stop = true;
        }
    }

    /// Ends the current segment and starts the next (a string when `string`).
    fn switch(&mut self, string: bool, out: &mut Released) {
        if self.in_string {
            let mut tail = String::new();
            self.decoder.end(&mut tail);
            if self.skel.push(&tail, &self.cores) {
                self.spread_stop(out);
                return;
            }
            self.value.push_str(&tail);
            self.values.string(&std::mem::take(&mut self.value));
            let r = self.cur.push(&tail);
            self.take(r, out);
        }
        if self.stopped {
            return;
        }
        let r = self.cur.finish();
        self.take(r, out);
        if self.stopped {
            return;
        }
        if self.in_string {
            out.text.push('"');
        }
        self.in_string = string;
        self.escaped = false;
        self.decoder = Decoder::default();
        match StreamGuard::new(self.opts.clone()) {
            Ok(g) => self.cur = g,
            Err(_) => self.stopped = true,
        }
        if string {
            out.text.push('"');
        }
    }

    fn spread_stop(&mut self, out: &mut Released) {
        self.stopped = true;
        out.stop = true;
        out.violations.push(spread_canary(0..self.total));
    }

    /// Pushes raw string content (no quote) through the decoder into the current guard.
    fn push_content(&mut self, raw: &str, now: Option<Duration>, out: &mut Released) {
        if raw.is_empty() {
            return;
        }
        let r = if self.in_string {
            let mut value = String::new();
            self.decoder.feed(raw, &mut value);
            if self.skel.push(&value, &self.cores) {
                self.spread_stop(out);
                return;
            }
            self.value.push_str(&value);
            match now {
                Some(t) => self.cur.push_at(&value, t),
                None => self.cur.push(&value),
            }
        } else {
            if self.values.outside(raw, &self.cores) {
                self.spread_stop(out);
                return;
            }
            match now {
                Some(t) => self.cur.push_at(raw, t),
                None => self.cur.push(raw),
            }
        };
        self.take(r, out);
    }

    fn push_inner(&mut self, delta: &str, now: Option<Duration>) -> Released {
        let mut out = Released::default();
        if self.stopped {
            out.stop = true;
            return out;
        }
        if self.finished {
            return out;
        }
        self.total += delta.len();
        let b = delta.as_bytes();
        let mut from = 0;
        let mut i = 0;
        while i < b.len() && !self.stopped {
            if self.in_string && self.escaped {
                self.escaped = false;
                i += 1;
                continue;
            }
            match b[i] {
                b'\\' if self.in_string => {
                    self.escaped = true;
                    i += 1;
                }
                b'"' => {
                    self.push_content(&delta[from..i], now, &mut out);
                    if self.stopped {
                        break;
                    }
                    let string = !self.in_string;
                    self.switch(string, &mut out);
                    i += 1;
                    from = i;
                }
                _ => i += 1,
            }
        }
        if !self.stopped {
            self.push_content(&delta[from..], now, &mut out);
        }
        if let (Some(t), false) = (now, self.stopped) {
            let r = self.cur.release_due(t);
            self.take(r, &mut out);
        }
        out
    }

    /// Takes the next delta of the completion.
    pub fn push(&mut self, delta: &str) -> Released {
        self.push_inner(delta, None)
    }

    /// Takes the next delta, which arrived at `now`; see [`StreamGuard::push_at`].
    pub fn push_at(&mut self, delta: &str, now: Duration) -> Released {
        self.push_inner(delta, Some(now))
    }

    /// See [`StreamGuard::release_due`].
    pub fn release_due(&mut self, now: Duration) -> Released {
        let mut out = Released::default();
        if self.stopped {
            out.stop = true;
            return out;
        }
        let r = self.cur.release_due(now);
        self.take(r, &mut out);
        out
    }

    /// See [`StreamGuard::next_due`].
    pub fn next_due(&self) -> Option<Duration> {
        self.cur.next_due()
    }

    /// Ends the completion: releases everything still held.
    pub fn finish(&mut self) -> Released {
        let mut out = Released::default();
        if self.stopped {
            out.stop = true;
            return out;
        }
        if self.finished {
            return out;
        }
        self.finished = true;
        if self.in_string {
            let mut tail = String::new();
            self.decoder.end(&mut tail);
            if self.skel.push(&tail, &self.cores) {
                self.spread_stop(&mut out);
                return out;
            }
            let r = self.cur.push(&tail);
            self.take(r, &mut out);
            if self.stopped {
                return out;
            }
            self.value.push_str(&tail);
            self.values.string(&std::mem::take(&mut self.value));
        }
        if self.values.end(&self.cores) {
            self.spread_stop(&mut out);
            return out;
        }
        let r = self.cur.finish();
        self.take(r, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::LinkAllow;

    fn opts() -> SanitizeOptions {
        SanitizeOptions {
            allow: LinkAllow::hosts(["docs.rs"]).unwrap(),
            ..SanitizeOptions::default()
        }
    }

    fn check(input: &str, expect: &str) {
        let s = sanitize_json(input, &opts());
        assert_eq!(s.text, expect, "{input:?}: {:?}", s.actions);
        // Streamed in every delta size: the same.
        for n in [1, 2, 3, 5, 7] {
            let mut g = JsonStreamGuard::new(GuardOptions {
                sanitize: opts(),
                ..GuardOptions::default()
            })
            .unwrap();
            let mut out = String::new();
            let chars: Vec<char> = input.chars().collect();
            for piece in chars.chunks(n) {
                let d: String = piece.iter().collect();
                out += &g.push(&d).text;
            }
            out += &g.finish().text;
            assert_eq!(out, expect, "{input:?} in deltas of {n}");
        }
    }

    #[test]
    fn escapes_are_judged_decoded() {
        check(
            r#"{"key": "\u0041\u004b\u0049\u0041Z7Q2LM4XK3PT6WRB"}"#,
            r#"{"key": "[REDACTED:aws-access-token]"}"#,
        );
        check(
            r#"{"img": "![x](\/\/evil.example\/p.png)"}"#,
            r#"{"img": "[image removed: evil.example]"}"#,
        );
        check(
            r#"["ok \"quoted\" \\ line\nnext", 1, true, null]"#,
            r#"["ok \"quoted\" \\ line\nnext", 1, true, null]"#,
        );
        // Unnecessary escapes come out as the characters they stand for.
        check(r#"{"a": "\u0068i\/"}"#, r#"{"a": "hi/"}"#);
        // Surrogate pairs, lone surrogates, invalid escapes, an unterminated string.
        check(
            r#"["\ud83d\ude00", "\ud83d x"]"#,
            "[\"😀\", \"\u{FFFD} x\"]",
        );
        check(r#"["a\qb"]"#, r#"["a\\qb"]"#);
        check(r#"{"a": "AKIAZ7Q2LM4XK3P"#, r#"{"a": "AKIAZ7Q2LM4XK3P"#);
        // Hidden characters written as escapes.
        check(r#"{"a": "ig\u200bnore"}"#, r#"{"a": "ignore"}"#);
    }

    #[test]
    fn canary_in_escapes_and_across_values() {
        let canary = Canary::from_random(&[5; 16]);
        let core = canary.token.trim_start_matches("pls-").to_string();
        let o = SanitizeOptions {
            canaries: vec![canary],
            ..opts()
        };
        let escaped: String = core
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        let split = format!(r#"{{"a": "{}", "b": "{}"}}"#, &core[..8], &core[8..]);
        for text in [format!(r#"{{"m": "{escaped}"}}"#), split] {
            assert!(sanitize_json(&text, &o).canary_leaked, "{text}");
            let mut g = JsonStreamGuard::new(GuardOptions {
                sanitize: o.clone(),
                ..GuardOptions::default()
            })
            .unwrap();
            let mut stopped = false;
            let mut out = String::new();
            for c in text.chars() {
                let r = g.push(&c.to_string());
                stopped |= r.stop;
                out += &r.text;
            }
            stopped |= g.finish().stop;
            assert!(stopped, "{text}: {out}");
        }
    }

    #[test]
    fn plain_json_is_borrowed() {
        let t = r#"{"city": "Paris", "n": [1, 2.5e3, -4], "ok": true}"#;
        assert!(matches!(sanitize_json(t, &opts()).text, Cow::Borrowed(_)));
    }
}
