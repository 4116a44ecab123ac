//! URL policy: where a link or image destination really points, and whether it may stay.
//!
//! The parse follows what browsers do (the WHATWG URL rules), not what looks plausible:
//! tabs and newlines inside a URL are dropped, `\` counts as `/` for web schemes, any
//! number of slashes may follow `http:`, the host is what follows the last `@` of the
//! authority, and markdown/HTML decoding (backslash escapes, character references) is
//! undone first. Getting this wrong in the permissive direction is how `javascript&colon;`
//! or `https://allowed.example\@evil.example` slip through; getting it wrong in the strict
//! direction only neutralizes a harmless link.

use std::borrow::Cow;

use palisade_detect::chars::{hex_value, percent_decode};

use crate::options::LinkAllow;

/// A URL longer than this is treated as exfiltration: no legitimate link in a chat answer
/// needs it, and it is the same bound the markdown parser uses for a destination.
pub(crate) const MAX_URL_BYTES: usize = 2048;
/// A base64/hex run at least this long in a query or fragment is encoded data.
const MIN_QUERY_BLOB: usize = 32;
/// A mixed-case base64 run at least this long in the path is encoded data (longer than the
/// query bound because slugs and ids live in paths).
const MIN_PATH_BLOB: usize = 48;

/// How the destination was written, which decides the decoding browsers apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Src {
    /// A markdown link destination: backslash escapes and character references.
    Markdown,
    /// An HTML attribute value: character references.
    Html,
    /// Literal text (bare URLs, autolinks): no decoding.
    Bare,
}

/// The decision about one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Leave it alone.
    Allow,
    /// Neutralize it; `label` names the destination in the replacement text.
    Deny {
        /// Stable rule name.
        rule: &'static str,
        /// Host (or scheme) shown to the reader, already made inert.
        label: String,
    },
}

fn deny(rule: &'static str, label: String) -> Verdict {
    Verdict::Deny { rule, label }
}

/// Judges a destination as written in the text.
///
/// The text is judged under every decoding a renderer might apply (the strict one of its
/// source, a lenient one that also takes character references without `;` and in any case,
/// and none at all), and denied if any reading denies it: a gate that decodes less than the
/// renderer misses `&#00000000047;`, one that decodes more can be shown a harmless host
/// (`https://docs.rs&sol@evil.example/` is `evil.example` to a renderer that leaves
/// `&sol` alone).
pub(crate) fn judge(raw: &str, src: Src, allow: &LinkAllow) -> Verdict {
    if raw.len() > MAX_URL_BYTES {
        return deny("exfil-url", host_label(&host_of(authority(raw))));
    }
    let strict = decode(raw, src, false);
    if let v @ Verdict::Deny { .. } = judge_one(&strict, allow) {
        return v;
    }
    let lenient = decode(raw, src, true);
    if lenient != strict {
        if let v @ Verdict::Deny { .. } = judge_one(&lenient, allow) {
            return v;
        }
    }
    // No character references at all (markdown's backslash escapes are universal).
    let plain = if src == Src::Markdown && raw.contains('\\') {
        Cow::Owned(unescape(raw))
    } else {
        Cow::Borrowed(raw)
    };
    if plain != strict {
        if let v @ Verdict::Deny { .. } = judge_one(&plain, allow) {
            return v;
        }
    }
    Verdict::Allow
}

/// Markdown backslash escapes undone, character references left as written.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&n) = chars.peek() {
                if n.is_ascii_punctuation() {
                    out.push(n);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// Judges one reading of a destination (already decoded).
fn judge_one(decoded: &str, allow: &LinkAllow) -> Verdict {
    // Browsers remove ASCII tab and newline anywhere in a URL and trim C0 controls and
    // spaces at both ends.
    let cleaned: Cow<str> = if decoded.contains(['\t', '\n', '\r']) {
        Cow::Owned(
            decoded
                .chars()
                .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
                .collect(),
        )
    } else {
        Cow::Borrowed(decoded)
    };
    let u = cleaned.trim_matches(|c: char| c <= ' ');
    match scheme_of(u) {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            match scheme.as_str() {
                "javascript" | "vbscript" | "livescript" => {
                    deny("script-url", format!("{scheme} URL"))
                }
                "data" => deny("data-url", "data URL".to_string()),
                "http" | "https" => host_verdict(&host_of(authority(rest)), u, allow),
                "mailto" => {
                    let addr = rest.split(['?', '#']).next().unwrap_or("");
                    let domain = addr.rsplit('@').next().unwrap_or("");
                    host_verdict(&normalize_host(domain), u, allow)
                }
                _ => deny("unsupported-scheme", format!("{} URL", inert(&scheme, 16))),
            }
        }
        None => {
            let b = u.as_bytes();
            if b.len() >= 2 && matches!(b[0], b'/' | b'\\') && matches!(b[1], b'/' | b'\\') {
                // Protocol-relative: the page's scheme, someone else's host.
                host_verdict(&host_of(authority(u)), u, allow)
            } else if is_exfil(u, None) {
                deny("exfil-url", "relative URL".to_string())
            } else {
                // A relative link stays on the page's own origin.
                Verdict::Allow
            }
        }
    }
}

fn host_verdict(host: &str, url: &str, allow: &LinkAllow) -> Verdict {
    if is_exfil(url, Some(host)) {
        return deny("exfil-url", host_label(host));
    }
    if !host.is_empty() && allow.allows(host) {
        Verdict::Allow
    } else {
        deny("host-not-allowlisted", host_label(host))
    }
}

/// `scheme:` at the start, per RFC 3986 (letter, then letters, digits, `+`, `-`, `.`).
fn scheme_of(u: &str) -> Option<(&str, &str)> {
    let colon = u.find(':')?;
    let s = &u[..colon];
    let mut chars = s.chars();
    let first = chars.next()?;
    if first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        Some((s, &u[colon + 1..]))
    } else {
        None
    }
}

/// The authority of a web URL after its scheme: leading slashes and backslashes skipped
/// (browsers accept any number), up to the first `/`, `\`, `?` or `#`.
fn authority(rest: &str) -> &str {
    let rest = rest.trim_start_matches(['/', '\\']);
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// The host of a URL that may be cut short (a destination over its limit), for a label.
pub(crate) fn host_of_prefix(u: &str) -> String {
    let rest = match scheme_of(u) {
        Some((_, rest)) => rest,
        None => u,
    };
    host_of(authority(rest))
}

/// The host of an authority: after the last `@`, without the port, normalized.
fn host_of(auth: &str) -> String {
    let host = auth.rsplit('@').next().unwrap_or("");
    let host = if host.starts_with('[') {
        // IPv6 literal: keep the brackets, drop a port after them.
        host.find(']').map_or(host, |i| &host[..=i])
    } else {
        host.rfind(':').map_or(host, |i| &host[..i])
    };
    normalize_host(host)
}

/// Percent-decoded, lowercase, IDNA full stops mapped to `.`, no trailing dot.
fn normalize_host(host: &str) -> String {
    let decoded = if host.contains('%') {
        String::from_utf8_lossy(&percent_decode(host, false)).into_owned()
    } else {
        host.to_string()
    };
    if decoded.is_ascii() {
        let mut h = decoded.to_ascii_lowercase();
        while h.ends_with('.') {
            h.pop();
        }
        return h;
    }
    let mut h: String = decoded
        .chars()
        .map(|c| match c {
            '\u{3002}' | '\u{FF0E}' | '\u{FF61}' => '.',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect();
    while h.ends_with('.') {
        h.pop();
    }
    h
}

/// The host as shown in a replacement: only host characters, no `www.` (so no renderer
/// turns the notice itself back into a link), at most 64 bytes.
pub(crate) fn host_label(host: &str) -> String {
    let h = host.strip_prefix("www.").unwrap_or(host);
    let s = inert(h, 64);
    if s.is_empty() {
        "unknown host".to_string()
    } else {
        s
    }
}

fn inert(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        .take(max)
        .collect()
}

/// Undoes the decoding a renderer applies before the browser sees the URL: backslash
/// escapes in markdown, character references in markdown and HTML. `lenient` also takes
/// named references without their `;` and in any case (what HTML's legacy parsing and
/// sloppy renderers do), and decodes references in bare text too.
pub(crate) fn decode(raw: &str, src: Src, lenient: bool) -> Cow<'_, str> {
    let refs = lenient || src != Src::Bare;
    let escapes = src == Src::Markdown;
    let needs = (refs && raw.contains('&')) || (escapes && raw.contains('\\'));
    if !needs {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if c == '\\' && escapes {
            if let Some(next) = rest[1..].chars().next() {
                if next.is_ascii_punctuation() {
                    out.push(next);
                    rest = &rest[2..];
                    continue;
                }
            }
        }
        if c == '&' && refs {
            // Markdown only takes references with their `;`; HTML attributes also take
            // numeric ones without it.
            let semi = src == Src::Markdown && !lenient;
            if let Some((ch, used)) = char_ref(rest, lenient, semi) {
                out.push(ch);
                rest = &rest[used..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(out)
}

/// Named references that decode to something that matters in a URL (ASCII punctuation,
/// whitespace). HTML names are case-sensitive; `lenient` matching ignores case.
const NAMED: &[(&str, char)] = &[
    ("colon", ':'),
    ("Tab", '\t'),
    ("NewLine", '\n'),
    ("sol", '/'),
    ("bsol", '\\'),
    ("period", '.'),
    ("lpar", '('),
    ("rpar", ')'),
    ("amp", '&'),
    ("AMP", '&'),
    ("quot", '"'),
    ("QUOT", '"'),
    ("apos", '\''),
    ("lt", '<'),
    ("LT", '<'),
    ("gt", '>'),
    ("GT", '>'),
    ("num", '#'),
    ("quest", '?'),
    ("commat", '@'),
    ("equals", '='),
    ("percnt", '%'),
    ("excl", '!'),
    ("dollar", '$'),
    ("lowbar", '_'),
    ("UnderBar", '_'),
    ("hyphen", '\u{2010}'),
    ("dash", '\u{2010}'),
    ("plus", '+'),
    ("comma", ','),
    ("semi", ';'),
    ("lsqb", '['),
    ("lbrack", '['),
    ("rsqb", ']'),
    ("rbrack", ']'),
    ("lcub", '{'),
    ("lbrace", '{'),
    ("rcub", '}'),
    ("rbrace", '}'),
    ("grave", '`'),
    ("DiacriticalGrave", '`'),
    ("Hat", '^'),
    ("verbar", '|'),
    ("vert", '|'),
    ("VerticalLine", '|'),
    ("ast", '*'),
    ("midast", '*'),
    ("nbsp", '\u{A0}'),
    ("NonBreakingSpace", '\u{A0}'),
];

/// A character reference at the start of `s` (which starts with `&`): numeric, with any
/// number of leading zeros (`&#00000000047;` is `/`), decimal or hex, or a named one from
/// [`NAMED`]. With `need_semi` the `;` is required; otherwise numeric references without it
/// are taken, and named ones too when `lenient`. Unknown names are left alone.
fn char_ref(s: &str, lenient: bool, need_semi: bool) -> Option<(char, usize)> {
    let b = s.as_bytes();
    if b.get(1) == Some(&b'#') {
        let hex = matches!(b.get(2), Some(b'x' | b'X'));
        let start = if hex { 3 } else { 2 };
        let mut i = start;
        let mut v: u32 = 0;
        while i < b.len() {
            let d = if hex {
                hex_value(b[i]).map(u32::from)
            } else {
                (b[i] as char).to_digit(10)
            };
            let Some(d) = d else { break };
            // Saturates above the last code point: the value is then U+FFFD either way.
            v = v
                .saturating_mul(if hex { 16 } else { 10 })
                .saturating_add(d)
                .min(0x11_0000);
            i += 1;
        }
        if i == start {
            return None;
        }
        if b.get(i) == Some(&b';') {
            i += 1;
        } else if need_semi {
            return None;
        }
        let c = match v {
            0 => '\u{FFFD}',
            v => char::from_u32(v).unwrap_or('\u{FFFD}'),
        };
        return Some((c, i));
    }
    let name_len = b[1..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    let name = &s[1..1 + name_len];
    let semi = b.get(1 + name_len) == Some(&b';');
    if !semi && (need_semi || !lenient) {
        return None;
    }
    let hit = NAMED.iter().find(|(n, _)| {
        if lenient {
            n.eq_ignore_ascii_case(name)
        } else {
            *n == name
        }
    })?;
    Some((hit.1, 1 + name_len + usize::from(semi)))
}

/// True if the URL carries encoded data: a long base64/hex run in the query or fragment,
/// a long mixed-case base64 path segment, a long base64/hex host label, or sheer length.
/// Runs are split at every character outside the base64 alphabets, so search queries
/// (`how+to+…`) and slugs (`a-guide-to-…`) are not mistaken for payloads.
pub(crate) fn is_exfil(url: &str, host: Option<&str>) -> bool {
    if url.len() > MAX_URL_BYTES {
        return true;
    }
    if let Some(host) = host {
        if host
            .split('.')
            .any(|l| l.len() >= MIN_QUERY_BLOB && blob(l))
        {
            return true;
        }
    }
    let split = url.find(['?', '#']).unwrap_or(url.len());
    let (path, tail) = url.split_at(split);
    let path_runs = path.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')));
    if path_runs
        .into_iter()
        .any(|r| r.len() >= MIN_PATH_BLOB && mixed_b64(r))
    {
        return true;
    }
    // `+` is left out of the runs: in a query it is a space (`how+to+fix+E0382`).
    tail.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/')))
        .any(|r| r.len() >= MIN_QUERY_BLOB && blob(r))
}

fn mixed_b64(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_uppercase())
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && s.bytes().any(|b| b.is_ascii_digit())
}

fn blob(s: &str) -> bool {
    let hex = s.bytes().all(|b| b.is_ascii_hexdigit())
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().any(|b| b.is_ascii_alphabetic());
    hex || mixed_b64(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> LinkAllow {
        LinkAllow::hosts(["docs.rs", "*.example.com"]).unwrap()
    }

    fn check(url: &str, src: Src, expect: Option<(&'static str, &str)>) {
        let got = judge(url, src, &allow());
        match expect {
            None => assert_eq!(got, Verdict::Allow, "{url:?}"),
            Some((rule, label)) => assert_eq!(
                got,
                Verdict::Deny {
                    rule,
                    label: label.to_string()
                },
                "{url:?}"
            ),
        }
    }

    #[test]
    fn hosts_and_schemes() {
        check("https://docs.rs/regex", Src::Markdown, None);
        check("HTTPS://WWW.Example.COM./x", Src::Markdown, None);
        check("/relative/path?x=1", Src::Markdown, None);
        check("#anchor", Src::Markdown, None);
        check(
            "https://evil.example/x",
            Src::Bare,
            Some(("host-not-allowlisted", "evil.example")),
        );
        check(
            "https://www.evil.example/x",
            Src::Bare,
            Some(("host-not-allowlisted", "evil.example")),
        );
        check(
            "javascript:alert(1)",
            Src::Markdown,
            Some(("script-url", "javascript URL")),
        );
        check(
            "data:image/png;base64,AAAA",
            Src::Html,
            Some(("data-url", "data URL")),
        );
        check(
            "ftp://docs.rs/x",
            Src::Html,
            Some(("unsupported-scheme", "ftp URL")),
        );
    }

    #[test]
    fn browser_parsing_tricks() {
        // Encoded schemes.
        check(
            "javascript&colon;alert(1)",
            Src::Markdown,
            Some(("script-url", "javascript URL")),
        );
        check(
            "&#106;avascript:alert(1)",
            Src::Html,
            Some(("script-url", "javascript URL")),
        );
        check(
            "&#x6A;avascript:x",
            Src::Html,
            Some(("script-url", "javascript URL")),
        );
        check(
            "java\tscript:x",
            Src::Html,
            Some(("script-url", "javascript URL")),
        );
        check(
            "javascript\\:x",
            Src::Markdown,
            Some(("script-url", "javascript URL")),
        );
        check(
            " \u{1}javascript:x",
            Src::Html,
            Some(("script-url", "javascript URL")),
        );
        // A reference name cut by a multibyte character is not a reference (and no panic).
        check("&colon\u{e9}x", Src::Html, None);
        // Host confusion.
        check(
            "https://docs.rs\\@evil.example/",
            Src::Html,
            None, // backslash ends the authority: the host really is docs.rs
        );
        check(
            "https://docs.rs@evil.example/",
            Src::Html,
            Some(("host-not-allowlisted", "evil.example")),
        );
        check(
            "https:evil.example/x",
            Src::Markdown,
            Some(("host-not-allowlisted", "evil.example")),
        );
        check(
            "//evil.example/x",
            Src::Markdown,
            Some(("host-not-allowlisted", "evil.example")),
        );
        // In markdown `\/` is an escaped `/`: a path on the page's own origin. In HTML the
        // backslash reaches the browser, which reads it as a slash.
        check("\\/evil.example/x", Src::Markdown, None);
        check(
            "\\/evil.example/x",
            Src::Html,
            Some(("host-not-allowlisted", "evil.example")),
        );
        check(
            "https://evil\u{3002}example/x",
            Src::Bare,
            Some(("host-not-allowlisted", "evil.example")),
        );
        check(
            "https://%65vil.example/",
            Src::Bare,
            Some(("host-not-allowlisted", "evil.example")),
        );
        check("https://docs.rs:443/x", Src::Bare, None);
    }

    #[test]
    fn exfiltration_shapes() {
        let b64 = "c2VjcmV0IGRhdGEgZnJvbSB0aGUgdXNlcjogaHVudGVyMg";
        check(
            &format!("https://evil.example/p?d={b64}"),
            Src::Markdown,
            Some(("exfil-url", "evil.example")),
        );
        // Even an allowed host loses a URL that carries a payload.
        check(
            &format!("https://docs.rs/p?d={b64}"),
            Src::Markdown,
            Some(("exfil-url", "docs.rs")),
        );
        check(
            &format!(
                "https://{}.example.com/x.png",
                "6a6f686e2e646f6540636f6d70616e792e636f6d"
            ),
            Src::Markdown,
            Some((
                "exfil-url",
                "6a6f686e2e646f6540636f6d70616e792e636f6d.example.com",
            )),
        );
        // Ordinary long URLs are not payloads.
        check(
            "https://docs.rs/a-complete-guide-to-error-handling-in-rust-2024-edition",
            Src::Bare,
            None,
        );
        check(
            "https://docs.rs/search?q=how+to+fix+error+E0382+borrow+of+moved+value",
            Src::Bare,
            None,
        );
        check(
            "https://docs.rs/commit/3f786850e387550fdab836ed7e6dc881de23001b",
            Src::Bare,
            None,
        );
        let long = format!("https://docs.rs/{}", "a/".repeat(1100));
        assert!(matches!(
            judge(&long, Src::Bare, &allow()),
            Verdict::Deny {
                rule: "exfil-url",
                ..
            }
        ));
    }

    #[test]
    fn predicate_allowlist() {
        let a = LinkAllow::predicate(|h| h.ends_with(".corp"));
        assert_eq!(judge("https://wiki.corp/x", Src::Bare, &a), Verdict::Allow);
        assert!(matches!(
            judge("https://wiki.corp.evil/x", Src::Bare, &a),
            Verdict::Deny { .. }
        ));
    }
}
