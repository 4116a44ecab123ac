//! Links and images: markdown inline links and images, reference definitions, autolinks,
//! bare URLs, and HTML tags with URL attributes. One left-to-right pass, every attempt
//! bounded, so the cost is linear in the text.
//!
//! Each parser answers yes, no, or "more": the text ended before it could decide. In a
//! stream's window "more" means "hold from here"; at the end of the text it means no. The
//! parse is a close, deliberately more permissive relative of CommonMark's: anything a
//! renderer might turn into a request or a click is treated as a link.

use std::ops::Range;

use crate::options::{Class, LinkAllow};
use crate::sanitize::{Applied, Phase2};
use crate::url::{judge, Src, Verdict, MAX_URL_BYTES};

/// Longest link text (or image alt text) parsed as such.
pub(crate) const MAX_LINK_TEXT: usize = 512;
/// Longest link title.
const MAX_TITLE: usize = 512;
/// Longest HTML start tag.
const MAX_TAG: usize = 1024;
/// How far after `<a href=…>` its `</a>` is looked for.
const MAX_ELEMENT: usize = 1024;
/// Deepest parenthesis nesting inside a destination.
const MAX_PARENS: usize = 32;

/// HTML attributes whose value is fetched or followed by a browser.
const URL_ATTRS: &[&str] = &[
    "href",
    "src",
    "srcset",
    "action",
    "formaction",
    "poster",
    "background",
    "data",
    "cite",
    "longdesc",
    "lowsrc",
    "dynsrc",
    "ping",
    "xlink:href",
    "style",
];

enum P<T> {
    Yes(T),
    No,
    More,
}

/// What the main loop does next.
enum Step {
    Next,
    Jump(usize),
    /// Scan inside a link's text (up to `limit`), then continue at `resume`.
    Enter {
        limit: usize,
        resume: usize,
    },
    Open,
}

struct Scan<'t, 'o> {
    t: &'t str,
    b: &'t [u8],
    at_eof: bool,
    allow: &'o LinkAllow,
}

fn blank_after_newline(b: &[u8], nl: usize, end: usize) -> P<bool> {
    let mut k = nl + 1;
    while k < end && matches!(b[k], b' ' | b'\t' | b'\r') {
        k += 1;
    }
    if k == end {
        return P::More;
    }
    P::Yes(b[k] == b'\n')
}

impl Scan<'_, '_> {
    fn more_possible(&self, end: usize) -> bool {
        end == self.b.len() && !self.at_eof
    }

    fn eot<T>(&self, end: usize) -> P<T> {
        if self.more_possible(end) {
            P::More
        } else {
            P::No
        }
    }

    fn at_line_start(&self, i: usize) -> bool {
        let line = self.b[..i]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1);
        i - line <= 3 && self.b[line..i].iter().all(|&c| c == b' ')
    }

    /// Skips spaces and tabs and at most one line ending (not a blank line).
    fn skip_ws(&self, mut j: usize, end: usize) -> usize {
        let b = self.b;
        while j < end && matches!(b[j], b' ' | b'\t') {
            j += 1;
        }
        let nl = if j < end && b[j] == b'\r' && j + 1 < end && b[j + 1] == b'\n' {
            Some(j + 1)
        } else if j < end && b[j] == b'\n' {
            Some(j)
        } else {
            None
        };
        if let Some(nl) = nl {
            let mut k = nl + 1;
            while k < end && matches!(b[k], b' ' | b'\t') {
                k += 1;
            }
            if k < end && matches!(b[k], b'\n' | b'\r') {
                // A blank line: stop at it, the caller sees a character it does not expect.
                return nl;
            }
            j = k;
        }
        j
    }

    /// `[` at `open` to its matching `]` (nested brackets balanced, escapes skipped, no
    /// blank line, at most [`MAX_LINK_TEXT`] bytes).
    fn link_text(&self, open: usize, end: usize, label: bool) -> P<usize> {
        let b = self.b;
        let stop = end.min(open + 1 + MAX_LINK_TEXT);
        let mut depth = 1usize;
        let mut j = open + 1;
        while j < stop {
            match b[j] {
                b'\\' => {
                    j += 2;
                    continue;
                }
                b'[' if label => return P::No,
                b'[' => depth += 1,
                b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return P::Yes(j);
                    }
                }
                b'\n' => match blank_after_newline(b, j, end) {
                    P::Yes(true) => return P::No,
                    P::Yes(false) => {}
                    P::More | P::No => return self.eot(end),
                },
                _ => {}
            }
            j += 1;
        }
        if stop < end {
            P::No
        } else {
            self.eot(end)
        }
    }

    /// A destination at `j`: `<…>` or a raw run without spaces, parentheses balanced.
    fn destination(&self, j: usize, end: usize) -> P<(Range<usize>, usize)> {
        let b = self.b;
        if j >= end {
            return self.eot(end);
        }
        if b[j] == b'<' {
            let s = j + 1;
            let mut k = s;
            loop {
                if k >= end {
                    return self.eot(end);
                }
                if k - s > MAX_URL_BYTES {
                    return P::No;
                }
                match b[k] {
                    b'>' => return P::Yes((s..k, k + 1)),
                    b'\n' | b'<' => return P::No,
                    b'\\' => k += 2,
                    _ => k += 1,
                }
            }
        }
        let s = j;
        let mut k = j;
        let mut depth = 0usize;
        loop {
            if k >= end {
                return self.eot(end);
            }
            if k - s > MAX_URL_BYTES {
                return P::No;
            }
            let c = b[k];
            if c <= b' ' || c == 0x7f {
                break;
            }
            match c {
                b'\\' if k + 1 < end && b[k + 1].is_ascii_punctuation() => {
                    k += 2;
                    continue;
                }
                b'(' => {
                    depth += 1;
                    if depth > MAX_PARENS {
                        return P::No;
                    }
                }
                b')' => {
                    if depth == 0 {
                        break;
                    }
                    depth -= 1;
                }
                _ => {}
            }
            k += 1;
        }
        P::Yes((s..k, k))
    }

    /// A title starting at `j` (`"…"`, `'…'` or `(…)`); returns the position after it.
    fn title(&self, j: usize, end: usize) -> P<usize> {
        let b = self.b;
        let close = match b[j] {
            b'(' => b')',
            q => q,
        };
        let mut k = j + 1;
        loop {
            if k >= end {
                return self.eot(end);
            }
            if k - j > MAX_TITLE {
                return P::No;
            }
            match b[k] {
                c if c == close => return P::Yes(k + 1),
                b'\\' => {
                    k += 2;
                    continue;
                }
                b'(' if close == b')' => return P::No,
                b'\n' => match blank_after_newline(b, k, end) {
                    P::Yes(true) => return P::No,
                    P::Yes(false) => {}
                    P::More | P::No => return self.eot(end),
                },
                _ => {}
            }
            k += 1;
        }
    }

    /// `(destination "title")` at `p` (which is `(`): the end after `)` and the destination.
    fn inline_tail(&self, p: usize, end: usize) -> P<(usize, Range<usize>)> {
        let b = self.b;
        let j = self.skip_ws(p + 1, end);
        if j >= end {
            return self.eot(end);
        }
        if b[j] == b')' {
            return P::Yes((j + 1, j..j));
        }
        let (dest, after) = match self.destination(j, end) {
            P::Yes(x) => x,
            P::No => return P::No,
            P::More => return P::More,
        };
        let mut j = self.skip_ws(after, end);
        if j >= end {
            return self.eot(end);
        }
        if j > after && matches!(b[j], b'"' | b'\'' | b'(') {
            j = match self.title(j, end) {
                P::Yes(k) => self.skip_ws(k, end),
                P::No => return P::No,
                P::More => return P::More,
            };
            if j >= end {
                return self.eot(end);
            }
        }
        if b[j] == b')' {
            P::Yes((j + 1, dest))
        } else {
            P::No
        }
    }

    /// A reference definition's tail from its `:` at `colon`: destination, optional title,
    /// then the end of the line. Returns the line end (exclusive of the newline) and the
    /// destination.
    fn def_tail(&self, colon: usize, end: usize) -> P<(usize, Range<usize>)> {
        let b = self.b;
        let j = self.skip_ws(colon + 1, end);
        let (dest, after) = match self.destination(j, end) {
            P::Yes(x) => x,
            P::No => return P::No,
            P::More => return P::More,
        };
        if dest.is_empty() && b.get(j) != Some(&b'<') {
            return P::No;
        }
        let line_end = |mut k: usize| -> P<usize> {
            while k < end && matches!(b[k], b' ' | b'\t' | b'\r') {
                k += 1;
            }
            if k >= end {
                return if self.more_possible(end) {
                    P::More
                } else {
                    P::Yes(end)
                };
            }
            if b[k] == b'\n' {
                P::Yes(k)
            } else {
                P::No
            }
        };
        let mut k = after;
        while k < end && matches!(b[k], b' ' | b'\t') {
            k += 1;
        }
        if k > after && k < end && matches!(b[k], b'"' | b'\'' | b'(') {
            return match self.title(k, end) {
                P::Yes(t) => match line_end(t) {
                    P::Yes(e) => P::Yes((e, dest)),
                    P::No => P::No,
                    P::More => P::More,
                },
                P::No => P::No,
                P::More => P::More,
            };
        }
        match line_end(after) {
            P::Yes(e) => P::Yes((e, dest)),
            P::No => P::No,
            P::More => P::More,
        }
    }

    fn deny(
        &self,
        out: &mut Phase2,
        rule: &'static str,
        whole: Range<usize>,
        edits: &[(Range<usize>, String)],
    ) {
        for (span, with) in edits {
            out.edit(span.clone(), with.clone());
        }
        out.findings.push(Applied {
            class: Class::Link,
            rule,
            span_in_original: whole,
        });
    }

    /// `![alt](dest)` with `!` at `i`.
    fn image(&self, i: usize, end: usize, out: &mut Phase2) -> Step {
        let close = match self.link_text(i + 1, end, false) {
            P::Yes(c) => c,
            P::No => return Step::Next,
            P::More => return Step::Open,
        };
        if close + 1 >= end {
            return if self.more_possible(end) {
                Step::Open
            } else {
                Step::Next
            };
        }
        if self.b[close + 1] != b'(' {
            return Step::Next;
        }
        match self.inline_tail(close + 1, end) {
            P::Yes((e, dest)) => {
                out.zones.push(i..e);
                if let Verdict::Deny { rule, label } =
                    judge(&self.t[dest], Src::Markdown, self.allow)
                {
                    self.deny(
                        out,
                        rule,
                        i..e,
                        &[(i..e, format!("[image removed: {label}]"))],
                    );
                    out.markers.push(i..e);
                }
                Step::Jump(e)
            }
            P::No => Step::Next,
            P::More => Step::Open,
        }
    }

    /// `[` at `i`: a reference definition (at a line start) or an inline link.
    fn bracket(&self, i: usize, end: usize, out: &mut Phase2) -> Step {
        if self.at_line_start(i) {
            match self.link_text(i, end, true) {
                P::Yes(close) if close + 1 < end && self.b[close + 1] == b':' && close > i + 1 => {
                    match self.def_tail(close + 1, end) {
                        P::Yes((line_end, dest)) => {
                            out.zones.push(i..line_end);
                            if let Verdict::Deny { rule, label } =
                                judge(&self.t[dest.clone()], Src::Markdown, self.allow)
                            {
                                self.deny(
                                    out,
                                    rule,
                                    i..line_end,
                                    &[(dest.start..line_end, format!("(link removed: {label})"))],
                                );
                            }
                            return Step::Jump(line_end.max(i + 1));
                        }
                        P::More => return Step::Open,
                        P::No => {}
                    }
                }
                P::Yes(close) if close + 1 >= end && self.more_possible(end) => return Step::Open,
                P::More => return Step::Open,
                _ => {}
            }
        }
        let close = match self.link_text(i, end, false) {
            P::Yes(c) => c,
            P::No => return Step::Next,
            P::More => return Step::Open,
        };
        if close + 1 >= end {
            return if self.more_possible(end) {
                Step::Open
            } else {
                Step::Next
            };
        }
        if self.b[close + 1] != b'(' {
            return Step::Next;
        }
        match self.inline_tail(close + 1, end) {
            P::Yes((e, dest)) => {
                out.zones.push(i..e);
                if let Verdict::Deny { rule, label } =
                    judge(&self.t[dest], Src::Markdown, self.allow)
                {
                    // The text stays (and is scanned: it may hold an image); the brackets
                    // and destination go.
                    self.deny(
                        out,
                        rule,
                        i..e,
                        &[
                            (i..i + 1, String::new()),
                            (close..e, format!(" (link removed: {label})")),
                        ],
                    );
                }
                Step::Enter {
                    limit: close,
                    resume: e,
                }
            }
            P::No => Step::Next,
            P::More => Step::Open,
        }
    }

    /// `<scheme:…>` at `i`.
    fn autolink(&self, i: usize, end: usize) -> P<(usize, Range<usize>)> {
        let b = self.b;
        let mut j = i + 1;
        while j < end && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'+' | b'.' | b'-')) {
            j += 1;
        }
        let scheme_len = j - i - 1;
        if j >= end {
            return if scheme_len <= 32 && (scheme_len == 0 || b[i + 1].is_ascii_alphabetic()) {
                self.eot(end)
            } else {
                P::No
            };
        }
        if !(2..=32).contains(&scheme_len) || !b[i + 1].is_ascii_alphabetic() || b[j] != b':' {
            return P::No;
        }
        let s = i + 1;
        let mut k = j + 1;
        loop {
            if k >= end {
                return self.eot(end);
            }
            if k - s > MAX_URL_BYTES {
                return P::No;
            }
            match b[k] {
                b'>' => return P::Yes((k + 1, s..k)),
                b'<' => return P::No,
                c if c <= b' ' => return P::No,
                _ => k += 1,
            }
        }
    }

    /// An HTML start tag at `i`: its end, lowercase name and attributes.
    #[allow(clippy::type_complexity)] // a private parse result, named by its use right below
    fn tag(&self, i: usize, end: usize) -> P<(usize, String, Vec<(String, Option<Range<usize>>)>)> {
        let b = self.b;
        let mut j = i + 1;
        if j >= end {
            return self.eot(end);
        }
        if !b[j].is_ascii_alphabetic() {
            return P::No;
        }
        while j < end && (b[j].is_ascii_alphanumeric() || b[j] == b'-') {
            j += 1;
        }
        let name = self.t[i + 1..j].to_ascii_lowercase();
        let mut attrs = Vec::new();
        loop {
            if j - i > MAX_TAG {
                return P::No;
            }
            let ws = j;
            while j < end && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= end {
                return self.eot(end);
            }
            match b[j] {
                b'>' => return P::Yes((j + 1, name, attrs)),
                b'/' => {
                    if j + 1 >= end {
                        return self.eot(end);
                    }
                    return if b[j + 1] == b'>' {
                        P::Yes((j + 2, name, attrs))
                    } else {
                        P::No
                    };
                }
                _ => {}
            }
            if j == ws {
                return P::No;
            }
            if !(b[j].is_ascii_alphabetic() || matches!(b[j], b'_' | b':')) {
                return P::No;
            }
            let ns = j;
            while j < end
                && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'.' | b':' | b'-'))
            {
                j += 1;
            }
            let attr = self.t[ns..j].to_ascii_lowercase();
            let after_name = j;
            while j < end && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= end {
                return self.eot(end);
            }
            if b[j] != b'=' {
                attrs.push((attr, None));
                j = after_name;
                continue;
            }
            j += 1;
            while j < end && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= end {
                return self.eot(end);
            }
            let value = match b[j] {
                q @ (b'"' | b'\'') => {
                    let s = j + 1;
                    let Some(k) = b[s..end].iter().position(|&c| c == q) else {
                        return if end - s > MAX_TAG {
                            P::No
                        } else {
                            self.eot(end)
                        };
                    };
                    j = s + k + 1;
                    s..s + k
                }
                _ => {
                    let s = j;
                    while j < end
                        && !b[j].is_ascii_whitespace()
                        && !matches!(b[j], b'"' | b'\'' | b'=' | b'<' | b'>' | b'`')
                    {
                        j += 1;
                    }
                    if j >= end {
                        return self.eot(end);
                    }
                    if j == s {
                        return P::No;
                    }
                    s..j
                }
            };
            attrs.push((attr, Some(value)));
        }
    }

    /// The first URL in a tag's attributes that is denied.
    fn tag_verdict(
        &self,
        attrs: &[(String, Option<Range<usize>>)],
    ) -> Option<(&'static str, String)> {
        for (name, value) in attrs {
            let Some(v) = value else { continue };
            if !URL_ATTRS.contains(&name.as_str()) {
                continue;
            }
            let v = &self.t[v.clone()];
            let urls: Vec<&str> = match name.as_str() {
                "srcset" => v
                    .split(',')
                    .filter_map(|c| c.split_whitespace().next())
                    .collect(),
                "ping" => v.split_whitespace().collect(),
                "style" => css_urls(v),
                _ => vec![v],
            };
            for u in urls {
                if let Verdict::Deny { rule, label } = judge(u, Src::Html, self.allow) {
                    return Some((rule, label));
                }
            }
        }
        None
    }

    /// `</a>` after a denied `<a …>` ending at `from`: its span, `No` if another `<a`
    /// comes first or it is not within [`MAX_ELEMENT`].
    fn closing_a(&self, from: usize, end: usize) -> P<Range<usize>> {
        let b = self.b;
        let stop = end.min(from + MAX_ELEMENT);
        let mut k = from;
        while k < stop {
            if b[k] == b'<' {
                let rest = &b[k..end];
                if rest.len() < 4 {
                    return self.eot(end);
                }
                if rest[1] == b'/' && rest[2].eq_ignore_ascii_case(&b'a') {
                    let mut m = k + 3;
                    while m < end && b[m].is_ascii_whitespace() {
                        m += 1;
                    }
                    if m >= end {
                        return self.eot(end);
                    }
                    if b[m] == b'>' {
                        return P::Yes(k..m + 1);
                    }
                }
                if rest[1].eq_ignore_ascii_case(&b'a')
                    && (rest[2].is_ascii_whitespace() || rest[2] == b'>')
                {
                    return P::No;
                }
            }
            k += 1;
        }
        if stop < end {
            P::No
        } else {
            self.eot(end)
        }
    }

    /// `<` at `i`: an autolink or an HTML tag.
    fn angle(&self, i: usize, end: usize, out: &mut Phase2) -> Step {
        match self.autolink(i, end) {
            P::Yes((e, url)) => {
                out.zones.push(i..e);
                if let Verdict::Deny { rule, label } = judge(&self.t[url], Src::Bare, self.allow) {
                    self.deny(
                        out,
                        rule,
                        i..e,
                        &[(i..e, format!("(link removed: {label})"))],
                    );
                }
                return Step::Jump(e);
            }
            P::More => return Step::Open,
            P::No => {}
        }
        let (tag_end, name, attrs) = match self.tag(i, end) {
            P::Yes(t) => t,
            P::No => return Step::Next,
            P::More => return Step::Open,
        };
        let Some((rule, label)) = self.tag_verdict(&attrs) else {
            // An allowed tag: scan inside it too (a URL in another attribute).
            out.zones.push(i..tag_end);
            return Step::Next;
        };
        match name.as_str() {
            "a" => match self.closing_a(tag_end, end) {
                P::Yes(close) => {
                    out.zones.push(i..close.end);
                    self.deny(
                        out,
                        rule,
                        i..close.end,
                        &[
                            (i..tag_end, String::new()),
                            (close, format!(" (link removed: {label})")),
                        ],
                    );
                }
                P::More => return Step::Open,
                P::No => {
                    out.zones.push(i..tag_end);
                    self.deny(out, rule, i..tag_end, &[(i..tag_end, String::new())]);
                }
            },
            "img" | "image" => {
                out.zones.push(i..tag_end);
                self.deny(
                    out,
                    rule,
                    i..tag_end,
                    &[(i..tag_end, format!("[image removed: {label}]"))],
                );
                out.markers.push(i..tag_end);
            }
            _ => {
                out.zones.push(i..tag_end);
                self.deny(
                    out,
                    rule,
                    i..tag_end,
                    &[(i..tag_end, format!("(link removed: {label})"))],
                );
            }
        }
        Step::Jump(tag_end)
    }

    /// A bare `http://`, `https://` or `www.` URL at `i`, ended the way GFM ends autolinks
    /// (whitespace or `<`; trailing punctuation and unbalanced `)` are not part of it), and
    /// also at quotes and backticks.
    fn bare(&self, i: usize, end: usize, out: &mut Phase2) -> Step {
        let b = self.b;
        let rest = &b[i..end];
        let starts = |p: &[u8]| rest.len() >= p.len() && rest[..p.len()].eq_ignore_ascii_case(p);
        let prefix = if starts(b"https://") {
            8
        } else if starts(b"http://") {
            7
        } else if starts(b"www.") && rest.get(4).is_some_and(u8::is_ascii_alphanumeric) {
            4
        } else {
            return Step::Next;
        };
        let mut j = i + prefix;
        while j < end && !(b[j] <= b' ' || matches!(b[j], b'<' | b'>' | b'"' | b'\'' | b'`' | 0x7f))
        {
            j += 1;
        }
        if j >= end && self.more_possible(end) {
            return Step::Open;
        }
        let j = trim_url_end(self.t, i + prefix, j);
        if j <= i + prefix {
            return Step::Jump(i + prefix);
        }
        out.zones.push(i..j);
        let url = &self.t[i..j];
        let verdict = if prefix == 4 {
            judge(&format!("http://{url}"), Src::Bare, self.allow)
        } else {
            judge(url, Src::Bare, self.allow)
        };
        if let Verdict::Deny { rule, label } = verdict {
            self.deny(
                out,
                rule,
                i..j,
                &[(i..j, format!("(link removed: {label})"))],
            );
        }
        Step::Jump(j)
    }
}

/// Trailing punctuation that ends a sentence rather than a URL.
fn trim_url_end(t: &str, min: usize, mut j: usize) -> usize {
    loop {
        let Some(c) = t[..j].chars().next_back() else {
            return j;
        };
        if j <= min {
            return j;
        }
        let drop = match c {
            '?' | '!' | '.' | ',' | ':' | '*' | '_' | '~' | ';' => true,
            ')' => {
                let s = &t[..j];
                let url = &s[min.min(s.len())..];
                url.matches(')').count() > url.matches('(').count()
            }
            '。' | '，' | '、' | '！' | '？' | '）' | '」' | '』' | '】' | '；' | '：' => {
                true
            }
            _ => false,
        };
        if !drop {
            return j;
        }
        j -= c.len_utf8();
    }
}

/// `url(…)` references in a CSS declaration list.
fn css_urls(v: &str) -> Vec<&str> {
    let lower = v.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(k) = lower[from..].find("url(") {
        let s = from + k + 4;
        let e = lower[s..].find(')').map_or(v.len(), |x| s + x);
        out.push(v[s..e].trim().trim_matches(['"', '\'']));
        from = e;
    }
    out
}

/// Scans the stripped text `t` for links, images and URLs.
pub(crate) fn scan(t: &str, at_eof: bool, allow: &LinkAllow, out: &mut Phase2) {
    let s = Scan {
        t,
        b: t.as_bytes(),
        at_eof,
        allow,
    };
    let b = s.b;
    let n = b.len();
    let mut i = 0;
    let mut stack: Vec<(usize, usize)> = Vec::new();
    loop {
        while let Some(&(limit, resume)) = stack.last() {
            if i >= limit {
                i = resume.max(i);
                stack.pop();
            } else {
                break;
            }
        }
        if i >= n {
            break;
        }
        let end = stack.last().map_or(n, |s| s.0);
        let step = match b[i] {
            b'!' if i + 1 < end && b[i + 1] == b'[' => s.image(i, end, out),
            b'[' => s.bracket(i, end, out),
            b'<' => s.angle(i, end, out),
            b'h' | b'H' | b'w' | b'W' if i == 0 || !b[i - 1].is_ascii_alphanumeric() => {
                s.bare(i, end, out)
            }
            _ => Step::Next,
        };
        match step {
            Step::Next => i += 1,
            Step::Jump(j) => i = j.max(i + 1),
            Step::Enter { limit, resume } => {
                stack.push((limit, resume));
                i += 1;
            }
            Step::Open => {
                // Keep scanning: when the guard must cut past an incomplete construct (it
                // outgrew the hold bound), what follows it still needs its own edits.
                out.open_at(i);
                i += 1;
            }
        }
    }
}

/// After a replacement that reads `[…]` (a redaction or a removed image), a following
/// `(…)` or, at a line start, `:` would make the notice itself a link or a link
/// definition: `AKIA…(javascript:…)` must not become `[REDACTED:…](javascript:…)`. Such a
/// tail is judged like any destination.
pub(crate) fn marker_tails(t: &str, at_eof: bool, allow: &LinkAllow, out: &mut Phase2) {
    let s = Scan {
        t,
        b: t.as_bytes(),
        at_eof,
        allow,
    };
    let n = t.len();
    let markers = std::mem::take(&mut out.markers);
    for m in &markers {
        let e = m.end;
        if e >= n {
            if s.more_possible(n) {
                out.open_at(m.start);
            }
            continue;
        }
        let tail = match s.b[e] {
            b'(' => s
                .inline_tail(e, n)
                .map(|(end, dest)| (e..end, dest, " (link removed: ")),
            b':' if s.at_line_start(m.start) => s
                .def_tail(e, n)
                .map(|(end, dest)| (dest.start..end, dest, "(link removed: ")),
            _ => continue,
        };
        match tail {
            P::Yes((span, dest, prefix)) => {
                if let Verdict::Deny { rule, label } = judge(&t[dest], Src::Markdown, allow) {
                    out.zones.push(m.start..span.end);
                    let whole = m.start..span.end;
                    s.deny(out, rule, whole, &[(span, format!("{prefix}{label})"))]);
                }
            }
            P::More => out.open_at(m.start),
            P::No => {}
        }
    }
    out.markers = markers;
}

impl<T> P<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> P<U> {
        match self {
            P::Yes(x) => P::Yes(f(x)),
            P::No => P::No,
            P::More => P::More,
        }
    }
}
