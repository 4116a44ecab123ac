//! Raw HTML, for renderers that let it through: autolinks `<scheme:…>`, start tags with
//! URL-bearing attributes (`href`, `src`, `srcset`, `style`, …), event handlers,
//! `<script>`, and `<style>` elements, whose CSS is judged for `url(…)`, `@import` and
//! quoted URLs.
//!
//! Attribute values are decoded (character references, any number of leading zeros)
//! before they are split into URLs, as a browser does: `srcset="a&#44; //evil 2x"` holds
//! two candidates. CSS with escapes (`\75 rl(`) cannot be judged without a CSS tokenizer,
//! so it is neutralized; so is a tag or `<style>` element over its limit.

use std::ops::Range;

use super::{Phase2, Scan, Step, MAX_ELEMENT, MAX_STYLE, MAX_TAG, P};
use crate::url::{decode, Src, MAX_URL_BYTES};

/// HTML attributes whose value is fetched or followed by a browser.
const URL_ATTRS: &[&str] = &[
    "href",
    "src",
    "srcset",
    "imagesrcset",
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
    "manifest",
    "codebase",
    "archive",
    "icon",
];

/// A parsed start tag: its end, lowercase name and attributes (name, value span).
type Tag = (usize, String, Vec<(String, Option<Range<usize>>)>);

/// The URL references in a CSS text, or `None` if it cannot be judged (it has escapes).
/// References are `url(…)` targets and quoted strings (`@import "…"`, `image-set("…")`):
/// a quoted string that is not a URL is judged as a harmless relative one.
fn css_refs(css: &str) -> Option<Vec<&str>> {
    if css.contains('\\') {
        return None;
    }
    let b = css.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                let e = b[i + 1..]
                    .iter()
                    .position(|&c| c == q)
                    .map_or(b.len(), |k| i + 1 + k);
                out.push(&css[i + 1..e]);
                i = e + 1;
            }
            b'(' if i >= 3 && b[i - 3..i].eq_ignore_ascii_case(b"url") => {
                let e = b[i + 1..]
                    .iter()
                    .position(|&c| c == b')')
                    .map_or(b.len(), |k| i + 1 + k);
                let v = css[i + 1..e].trim();
                if !v.starts_with(['"', '\'']) {
                    out.push(v);
                    i = e + 1;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    Some(out)
}

impl Scan<'_, '_> {
    /// `<scheme:…>` at `i`.
    fn autolink(&self, i: usize, end: usize) -> P<(usize, Range<usize>)> {
        let b = self.b;
        let mut j = i + 1;
        while j < end
            && j - i <= 34
            && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'+' | b'.' | b'-'))
        {
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

    /// An HTML start tag at `i`: its end, lowercase name and attributes. `Over` when it is
    /// still going at [`MAX_TAG`] bytes.
    fn tag(&self, i: usize, end: usize) -> P<Tag> {
        let b = self.b;
        let mut j = i + 1;
        if j >= end {
            return self.eot(end);
        }
        if !b[j].is_ascii_alphabetic() {
            return P::No;
        }
        while j < end && j - i <= MAX_TAG && (b[j].is_ascii_alphanumeric() || b[j] == b'-') {
            j += 1;
        }
        let name = self.t[i + 1..j].to_ascii_lowercase();
        let mut attrs = Vec::new();
        let limit = end.min(i + 1 + MAX_TAG);
        let over = |j: usize| {
            if j >= limit && limit < end {
                Some(P::Over(limit))
            } else {
                None
            }
        };
        loop {
            if let Some(o) = over(j) {
                return o;
            }
            let ws = j;
            while j < limit && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if let Some(o) = over(j) {
                return o;
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
            while j < limit
                && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'.' | b':' | b'-'))
            {
                j += 1;
            }
            let attr = self.t[ns..j].to_ascii_lowercase();
            let after_name = j;
            while j < limit && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if let Some(o) = over(j) {
                return o;
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
            while j < limit && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if let Some(o) = over(j) {
                return o;
            }
            if j >= end {
                return self.eot(end);
            }
            let value = match b[j] {
                q @ (b'"' | b'\'') => {
                    let s = j + 1;
                    let Some(k) = b[s..limit].iter().position(|&c| c == q) else {
                        return over(limit).unwrap_or_else(|| self.eot(end));
                    };
                    j = s + k + 1;
                    s..s + k
                }
                _ => {
                    let s = j;
                    while j < limit
                        && !b[j].is_ascii_whitespace()
                        && !matches!(b[j], b'"' | b'\'' | b'=' | b'<' | b'>' | b'`')
                    {
                        j += 1;
                    }
                    if let Some(o) = over(j) {
                        return o;
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

    /// The first reason a tag's attributes are denied: a URL that is not allowed, an event
    /// handler, inline HTML (`srcdoc`), or CSS that cannot be judged.
    fn tag_verdict(
        &self,
        name: &str,
        attrs: &[(String, Option<Range<usize>>)],
    ) -> Option<(&'static str, String)> {
        if name == "script" {
            return Some(("script-url", "script".to_string()));
        }
        for (attr, value) in attrs {
            if attr.starts_with("on") && attr.len() > 2 && attr != "open" {
                return Some(("script-url", "event handler".to_string()));
            }
            let Some(v) = value else { continue };
            if attr == "srcdoc" {
                return Some(("opaque-html", "inline document".to_string()));
            }
            let meta_refresh = name == "meta" && attr == "content";
            if !URL_ATTRS.contains(&attr.as_str()) && !meta_refresh {
                continue;
            }
            // The browser decodes the attribute before it splits it into URLs.
            let raw = &self.t[v.clone()];
            let v = decode(raw, Src::Html, true);
            let urls: Vec<&str> = match attr.as_str() {
                "srcset" | "imagesrcset" => v
                    .split(',')
                    .filter_map(|c| c.split_whitespace().next())
                    .collect(),
                "ping" | "archive" => v.split_whitespace().collect(),
                "style" => match css_refs(&v) {
                    Some(refs) => refs,
                    None => return Some(("opaque-css", "CSS".to_string())),
                },
                "content" => {
                    let lower = v.to_ascii_lowercase();
                    match lower.find("url=") {
                        Some(k) => vec![v[k + 4..].trim().trim_matches(['"', '\''])],
                        None => Vec::new(),
                    }
                }
                _ => vec![&*v],
            };
            for u in urls {
                // Judged as decoded, and once more as written (a second decoding can only
                // find more to deny).
                if let Some(d) = self.verdict(u, Src::Html) {
                    return Some(d);
                }
            }
            if let Some(d) = self.verdict(raw, Src::Html) {
                if !matches!(attr.as_str(), "srcset" | "imagesrcset" | "ping" | "style") {
                    return Some(d);
                }
            }
        }
        None
    }

    /// `</name>` after a start tag ending at `from`, within `max` bytes: its span. `No` if
    /// another start tag of the same name comes first or it is not within `max`.
    fn closing(&self, name: &str, from: usize, end: usize, max: usize) -> P<Range<usize>> {
        let b = self.b;
        let nb = name.as_bytes();
        let stop = end.min(from + max);
        let mut k = from;
        while k < stop {
            if b[k] == b'<' {
                let rest = &b[k..end];
                if rest.len() < nb.len() + 3 {
                    return self.eot(end);
                }
                if rest[1] == b'/' && rest[2..2 + nb.len()].eq_ignore_ascii_case(nb) {
                    let mut m = k + 2 + nb.len();
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
                if rest[1..1 + nb.len()].eq_ignore_ascii_case(nb)
                    && (rest[1 + nb.len()].is_ascii_whitespace() || rest[1 + nb.len()] == b'>')
                {
                    return P::No;
                }
            }
            k += 1;
        }
        if stop < end {
            P::Over(stop)
        } else {
            self.eot(end)
        }
    }

    /// A `<style>` element whose start tag ends at `tag_end`.
    fn style(&self, i: usize, tag_end: usize, end: usize, out: &mut Phase2) -> Step {
        let close = match self.closing("style", tag_end, end, MAX_STYLE) {
            P::Yes(c) => c,
            P::More => return Step::Open,
            // No end within the limit: the CSS cannot be judged whole. Without its start
            // tag it is plain text to every renderer.
            P::No | P::Over(_) => {
                out.zones.push(i..tag_end);
                self.deny(
                    out,
                    "opaque-css",
                    i..tag_end,
                    &[(i..tag_end, "(link removed: CSS)".to_string())],
                );
                return Step::Jump(tag_end);
            }
        };
        out.zones.push(i..close.end);
        let css = &self.t[tag_end..close.start];
        let verdict = match css_refs(css) {
            None => Some(("opaque-css", "CSS".to_string())),
            Some(refs) => refs.into_iter().find_map(|u| self.verdict(u, Src::Bare)),
        };
        if let Some((rule, label)) = verdict {
            self.deny(
                out,
                rule,
                i..close.end,
                &[(i..close.end, format!("(link removed: {label})"))],
            );
        }
        Step::Jump(close.end)
    }

    /// `<` at `i`: an autolink or an HTML tag.
    pub(super) fn angle(&self, i: usize, end: usize, out: &mut Phase2) -> Step {
        match self.autolink(i, end) {
            P::Yes((e, url)) => {
                out.zones.push(i..e);
                if let Some((rule, label)) = self.verdict(&self.t[url], Src::Bare) {
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
            P::No | P::Over(_) => {}
        }
        let (tag_end, name, attrs) = match self.tag(i, end) {
            P::Yes(t) => t,
            P::No => return Step::Next,
            P::More => return Step::Open,
            // A start tag too long to judge: without its `<` it is text to a browser.
            P::Over(_) => {
                out.zones.push(i..i + 1);
                self.deny(out, "oversized-tag", i..i + 1, &[(i..i + 1, String::new())]);
                return Step::Next;
            }
        };
        let verdict = self.tag_verdict(&name, &attrs);
        if name == "style" && verdict.is_none() {
            return self.style(i, tag_end, end, out);
        }
        let Some((rule, label)) = verdict else {
            // An allowed tag: scan inside it too (a URL in another attribute).
            out.zones.push(i..tag_end);
            return Step::Next;
        };
        match name.as_str() {
            "a" => match self.closing("a", tag_end, end, MAX_ELEMENT) {
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
                P::No | P::Over(_) => {
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
}

#[cfg(test)]
mod tests {
    use super::css_refs;

    #[test]
    fn css_references() {
        assert_eq!(
            css_refs("a{background:url( //evil.example/x )} @import '//e.example/y.css';"),
            Some(vec!["//evil.example/x", "//e.example/y.css"])
        );
        assert_eq!(
            css_refs("b{background:URL(\"//q.example/z\")}"),
            Some(vec!["//q.example/z"])
        );
        assert_eq!(css_refs("b{background:\\75 rl(//x)}"), None);
    }
}
