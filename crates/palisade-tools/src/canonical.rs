//! Canonical JSON for tool-call arguments: RFC 8785 (JSON Canonicalization Scheme, JCS),
//! computed from the exact text the model wrote, so an executor in any language can
//! recompute the hash a capability token names.
//!
//! - Object members are sorted by the UTF-16 code units of their names (RFC 8785 §3.2.3);
//!   no insignificant whitespace; strings escaped as ECMAScript's `JSON.stringify` does.
//! - **Duplicate member names are refused** (I-JSON, RFC 7493 §2.3): a parser that keeps the
//!   first and one that keeps the last would run different calls under one hash. Names are
//!   compared after unescaping (`"a"` and `"\u0061"` are the same name).
//! - Lone surrogates (`"\ud800"`) are refused: they are not Unicode text.
//! - **Numbers keep their exact value.** RFC 8785 writes a number as ECMAScript writes the
//!   IEEE double it parses to; that collapses `100000000000000000000` and
//!   `100000000000000000001` (and a 20-digit id with its neighbour) into one hash. Here a
//!   number is written from the exact decimal value of its text, in ECMAScript's layout
//!   (`Number::toString`: plain up to 21 integer digits, `0.000001`, then `1e-7`, `1e+21`).
//!   For every number written as ECMAScript writes its double (what JSON encoders write),
//!   that is byte for byte RFC 8785. A number written with more digits than a double holds
//!   keeps them (as does the rare shortest form that breaks a tie the other way than
//!   ECMAScript, e.g. `1424953923781206.3`): a stock JCS library rounds it and computes
//!   another hash, so such an executor refuses the token (it fails closed); it never
//!   accepts other arguments. Two numbers hash alike only if their values are equal.
//!
//! The parser reads the raw text itself (not `serde_json::Value`, which keeps the last of
//! duplicate names and rounds numbers to doubles), with a depth limit so hostile nesting
//! cannot exhaust the stack.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Deepest nesting of arrays and objects accepted (as `serde_json`'s default).
const MAX_DEPTH: usize = 128;

/// Largest decimal exponent a number may have, so exponent arithmetic cannot overflow and
/// a canonical form stays short (`1e999999999999` is refused rather than expanded).
const MAX_EXPONENT: i64 = 1_000_000_000;

/// Why arguments have no canonical form: a call with them is never released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    /// Not JSON (RFC 8259), at this byte offset.
    #[error("tool arguments are not valid JSON (at byte {offset}): {what}")]
    Syntax {
        /// Byte offset of the problem.
        offset: usize,
        /// What was expected.
        what: &'static str,
    },
    /// An object names the same member twice.
    #[error("tool arguments name the member `{name}` twice")]
    DuplicateName {
        /// The name (truncated to 64 characters).
        name: String,
    },
    /// A `\uD800`-style escape that is not half of a surrogate pair.
    #[error("tool arguments contain a lone surrogate escape (at byte {offset})")]
    LoneSurrogate {
        /// Byte offset of the escape.
        offset: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("tool arguments are nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A number whose exponent is beyond any sensible value.
    #[error("tool arguments contain a number out of range (at byte {offset})")]
    NumberOutOfRange {
        /// Byte offset of the number.
        offset: usize,
    },
}

/// The canonical form of the JSON text `text` (see the module documentation).
///
/// # Errors
/// [`CanonicalError`] when `text` is not one JSON value, names a member twice, holds a lone
/// surrogate, nests deeper than 128 levels, or has an absurd exponent.
pub fn canonical_text(text: &str) -> Result<String, CanonicalError> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    let mut out = String::with_capacity(text.len());
    parser.skip_ws();
    parser.value(&mut out, 0)?;
    parser.skip_ws();
    if parser.pos != parser.bytes.len() {
        return Err(parser.syntax("end of input after the value"));
    }
    Ok(out)
}

/// The canonical form of an already parsed `value`. Its numbers are what `serde_json`
/// holds: integers exactly, other numbers as doubles (written as RFC 8785 writes them).
///
/// # Errors
/// [`CanonicalError::TooDeep`] for a value nested deeper than 128 levels.
pub fn canonical_json(value: &Value) -> Result<String, CanonicalError> {
    // serde_json writes integers exactly and doubles in their shortest round-trip form,
    // which is exactly the input `canonical_text` turns into RFC 8785's number form.
    canonical_text(&value.to_string())
}

/// The hex SHA-256 of the canonical form of a call's `arguments` string (OpenAI sends
/// arguments as a JSON-encoded string).
///
/// # Errors
/// As [`canonical_text`].
pub fn arguments_sha256(arguments: &str) -> Result<String, CanonicalError> {
    Ok(hex::encode(Sha256::digest(
        canonical_text(arguments)?.as_bytes(),
    )))
}

/// The hex SHA-256 of the canonical form of `value`.
///
/// # Errors
/// As [`canonical_json`].
pub fn value_sha256(value: &Value) -> Result<String, CanonicalError> {
    Ok(hex::encode(Sha256::digest(
        canonical_json(value)?.as_bytes(),
    )))
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn syntax(&self, what: &'static str) -> CanonicalError {
        CanonicalError::Syntax {
            offset: self.pos,
            what,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &'static str, out: &mut String) -> Result<(), CanonicalError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            out.push_str(word);
            Ok(())
        } else {
            Err(self.syntax("a JSON value"))
        }
    }

    fn value(&mut self, out: &mut String, depth: usize) -> Result<(), CanonicalError> {
        match self.peek() {
            Some(b'{') => self.object(out, depth + 1),
            Some(b'[') => self.array(out, depth + 1),
            Some(b'"') => {
                let s = self.string()?;
                write_string(&s, out);
                Ok(())
            }
            Some(b't') => self.literal("true", out),
            Some(b'f') => self.literal("false", out),
            Some(b'n') => self.literal("null", out),
            Some(b'-' | b'0'..=b'9') => self.number(out),
            _ => Err(self.syntax("a JSON value")),
        }
    }

    fn array(&mut self, out: &mut String, depth: usize) -> Result<(), CanonicalError> {
        if depth > MAX_DEPTH {
            return Err(CanonicalError::TooDeep);
        }
        self.pos += 1; // '['
        out.push('[');
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            out.push(']');
            return Ok(());
        }
        loop {
            self.skip_ws();
            self.value(out, depth)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    out.push(',');
                }
                Some(b']') => {
                    self.pos += 1;
                    out.push(']');
                    return Ok(());
                }
                _ => return Err(self.syntax("`,` or `]`")),
            }
        }
    }

    fn object(&mut self, out: &mut String, depth: usize) -> Result<(), CanonicalError> {
        if depth > MAX_DEPTH {
            return Err(CanonicalError::TooDeep);
        }
        self.pos += 1; // '{'
        let mut members: Vec<(Vec<u16>, String, String)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            out.push_str("{}");
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.syntax("a member name"));
            }
            let name = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.syntax("`:`"));
            }
            self.pos += 1;
            self.skip_ws();
            let mut value = String::new();
            self.value(&mut value, depth)?;
            // RFC 8785 §3.2.3: members sort by the UTF-16 code units of their names.
            members.push((name.encode_utf16().collect(), name, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.syntax("`,` or `}`")),
            }
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(dup) = members.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(CanonicalError::DuplicateName {
                name: dup[0].1.chars().take(64).collect(),
            });
        }
        out.push('{');
        for (i, (_, name, value)) in members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_string(name, out);
            out.push(':');
            out.push_str(value);
        }
        out.push('}');
        Ok(())
    }

    /// A string token, unescaped.
    fn string(&mut self) -> Result<String, CanonicalError> {
        self.pos += 1; // '"'
        let mut s = String::new();
        loop {
            let start = self.pos;
            // Copy the run of plain characters at once; `text` is valid UTF-8 and the run
            // stops only at ASCII bytes, so the slice is on character boundaries.
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            s.push_str(&self.text[start..self.pos]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(s);
                }
                Some(b'\\') => self.escape(&mut s)?,
                Some(_) => return Err(self.syntax("no raw control character in a string")),
                None => return Err(self.syntax("the end of the string")),
            }
        }
    }

    fn escape(&mut self, s: &mut String) -> Result<(), CanonicalError> {
        let at = self.pos;
        self.pos += 1; // '\'
        let c = self.peek().ok_or_else(|| self.syntax("an escape"))?;
        self.pos += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate must be followed by an escaped low one.
                    if self.bytes[self.pos..].starts_with(b"\\u") {
                        self.pos += 2;
                        let low = self.hex4()?;
                        if (0xDC00..0xE000).contains(&low) {
                            let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                            char::from_u32(code)
                                .ok_or(CanonicalError::LoneSurrogate { offset: at })?
                        } else {
                            return Err(CanonicalError::LoneSurrogate { offset: at });
                        }
                    } else {
                        return Err(CanonicalError::LoneSurrogate { offset: at });
                    }
                } else {
                    char::from_u32(unit).ok_or(CanonicalError::LoneSurrogate { offset: at })?
                }
            }
            _ => {
                self.pos = at;
                return Err(self.syntax("a valid escape"));
            }
        };
        s.push(ch);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, CanonicalError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.syntax("four hex digits"))?;
        let mut unit = 0u32;
        for d in digits {
            let v = char::from(*d)
                .to_digit(16)
                .ok_or_else(|| self.syntax("four hex digits"))?;
            unit = unit * 16 + v;
        }
        self.pos += 4;
        Ok(unit)
    }

    /// A number token, written in canonical form.
    fn number(&mut self, out: &mut String) -> Result<(), CanonicalError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(self.syntax("a digit")),
        }
        let int_digits = &self.text[int_start..self.pos];
        let mut frac_digits = "";
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let frac_start = self.pos;
            self.skip_digits();
            if self.pos == frac_start {
                return Err(self.syntax("a digit after `.`"));
            }
            frac_digits = &self.text[frac_start..self.pos];
        }
        let mut exponent: i64 = 0;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            let negative_exp = match self.peek() {
                Some(b'-') => {
                    self.pos += 1;
                    true
                }
                Some(b'+') => {
                    self.pos += 1;
                    false
                }
                _ => false,
            };
            let exp_start = self.pos;
            self.skip_digits();
            if self.pos == exp_start {
                return Err(self.syntax("a digit in the exponent"));
            }
            for d in self.text[exp_start..self.pos].bytes() {
                exponent = exponent * 10 + i64::from(d - b'0');
                if exponent > MAX_EXPONENT {
                    return Err(CanonicalError::NumberOutOfRange { offset: start });
                }
            }
            if negative_exp {
                exponent = -exponent;
            }
        }
        let out_of_range = CanonicalError::NumberOutOfRange { offset: start };
        let frac_len = i64::try_from(frac_digits.len()).map_err(|_| out_of_range.clone())?;
        write_number(negative, int_digits, frac_digits, exponent - frac_len, out)
            .ok_or(out_of_range)
    }

    fn skip_digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }
}

/// Writes the number `±(int_digits frac_digits) × 10^exp10` in ECMAScript's
/// `Number::toString` layout, from its exact digits. `None` when the exponent is beyond
/// [`MAX_EXPONENT`] after normalization.
fn write_number(
    negative: bool,
    int_digits: &str,
    frac_digits: &str,
    mut exp10: i64,
    out: &mut String,
) -> Option<()> {
    // The significant digits: no leading zeros, no trailing zeros (moved into exp10).
    let all = int_digits.bytes().chain(frac_digits.bytes());
    let mut digits: Vec<u8> = all.skip_while(|d| *d == b'0').collect();
    while digits.last() == Some(&b'0') {
        digits.pop();
        exp10 += 1;
    }
    if digits.is_empty() {
        // Zero, whatever its sign or exponent (`-0`, `0.0e5`): RFC 8785 writes `0`.
        out.push('0');
        return Some(());
    }
    let k = i64::try_from(digits.len()).ok()?;
    // ECMAScript's n: the value is 0.d1d2…dk × 10^n.
    let n = exp10.checked_add(k)?;
    if n.abs() > MAX_EXPONENT {
        return None;
    }
    // Digits are ASCII.
    let digits = String::from_utf8(digits).ok()?;
    if negative {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', usize::try_from(n - k).ok()?));
    } else if 0 < n && n <= 21 {
        let (head, tail) = digits.split_at(usize::try_from(n).ok()?);
        out.push_str(head);
        out.push('.');
        out.push_str(tail);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', usize::try_from(-n).ok()?));
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = n - 1;
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        out.push_str(&e.abs().to_string());
    }
    Some(())
}

/// Writes `s` as a JSON string the way ECMAScript's `JSON.stringify` does (RFC 8785
/// §3.2.2.2): `"` and `\` escaped, the control characters with a short escape as such, the
/// others as `\u00xx` in lower case, everything else as itself.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests;
