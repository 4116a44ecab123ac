//! Bare URLs in text, as linkifiers find them: `http(s)://`, `ftp://`, `mailto:` and
//! `www.` (GFM's autolink extension and linkify-it), protocol-relative `//host/…`
//! (linkify-it), and, by [`BareDomains`], bare domains such as `evil.com/p?d=…` (linkify-it's
//! fuzzy links). A URL ends the way GFM ends autolinks (whitespace or `<`; trailing
//! punctuation and unbalanced `)` are not part of it), and also at quotes and backticks.

use super::{Phase2, Scan, Step};
use crate::options::BareDomains;
use crate::url::Src;

/// The delegated two-letter country-code top-level domains.
const CCTLDS: &str = "ac ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bm bn bo br bs bt bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec ee eg er es et eu fi fj fk fm fo fr ga gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mg mh mk ml mm mn mo mp mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt pw py qa re ro rs ru rw sa sb sc sd se sg sh si sk sl sm sn so sr ss st su sv sx sy sz tc td tf tg th tj tk tl tm tn to tr tt tv tw tz ua ug uk us uy uz va vc ve vg vi vn vu wf ws ye yt za zm zw";

/// Top-level domains a linkifier turns a bare `name.tld` into a link for, besides the
/// country codes: linkify-it's default list and the common generic ones.
const TLDS: &[&str] = &[
    "app", "art", "asia", "biz", "blog", "cloud", "club", "com", "coop", "dev", "edu", "email",
    "fun", "gov", "info", "link", "live", "mil", "museum", "name", "net", "news", "online", "org",
    "page", "pro", "shop", "site", "space", "store", "tech", "top", "web", "website", "wiki",
    "work", "xxx", "xyz", "zip",
];

/// Bytes after which a bare domain may not start (it would be part of a word, a path, an
/// e-mail address or a query).
const NOT_BEFORE_DOMAIN: &[u8] = b".-_@/\\:%&=?#+~$";

/// True if a bare URL of some kind may start at `i` (whose byte is `c`): after something
/// other than a letter or digit (and for `//`, other than `:` and `/`).
pub(super) fn may_start(b: &[u8], i: usize, c: u8) -> bool {
    let prev = if i == 0 { None } else { Some(b[i - 1]) };
    match c {
        b'/' => {
            b.get(i + 1) == Some(&b'/')
                && !prev.is_some_and(|p| p.is_ascii_alphanumeric() || matches!(p, b':' | b'/'))
        }
        c if c.is_ascii_alphanumeric() => !prev.is_some_and(|p| p.is_ascii_alphanumeric()),
        _ => false,
    }
}

fn is_url_end(c: u8) -> bool {
    c <= b' ' || matches!(c, b'<' | b'>' | b'"' | b'\'' | b'`' | 0x7f)
}

/// A top-level domain a linkifier accepts.
fn linkable_tld(label: &str) -> bool {
    let lower = label.to_ascii_lowercase();
    (lower.len() == 2 && CCTLDS.split(' ').any(|c| c == lower)) || TLDS.iter().any(|t| *t == lower)
}

impl Scan<'_, '_> {
    /// A bare URL at `i` (see the module docs).
    pub(super) fn bare(&self, i: usize, end: usize, out: &mut Phase2) -> Step {
        let b = self.b;
        if !matches!(b[i].to_ascii_lowercase(), b'h' | b'f' | b'm' | b'w' | b'/') {
            return self.bare_domain(i, end, out);
        }
        let rest = &b[i..end];
        let starts = |p: &[u8]| rest.len() >= p.len() && rest[..p.len()].eq_ignore_ascii_case(p);
        // (bytes of the prefix, whether to judge it as `http://` + the text)
        let (prefix, add_scheme) = if starts(b"https://") {
            (8, false)
        } else if starts(b"http://") {
            (7, false)
        } else if starts(b"ftp://") {
            (6, false)
        } else if starts(b"mailto:") {
            (7, false)
        } else if starts(b"www.") && rest.get(4).is_some_and(u8::is_ascii_alphanumeric) {
            (4, true)
        } else if starts(b"//") {
            match self.host_run(i + 2, end) {
                Some((h, dots)) if dots > 0 && h > i + 2 => (2, false),
                Some(_) => return Step::Next,
                None => return Step::Open,
            }
        } else {
            return self.bare_domain(i, end, out);
        };
        self.bare_url(i, i + prefix, end, add_scheme, out)
    }

    /// From `i`, the end of a host-like run (labels of letters, digits, `-`, non-ASCII) and
    /// how many dots it has; `None` if the text ends inside it while more may come.
    fn host_run(&self, i: usize, end: usize) -> Option<(usize, usize)> {
        let b = self.b;
        let mut j = i;
        let mut dots = 0;
        while j < end
            && (b[j].is_ascii_alphanumeric() || b[j] >= 0x80 || b[j] == b'-' || b[j] == b'.')
        {
            if b[j] == b'.' {
                dots += 1;
            }
            j += 1;
        }
        if j >= end && self.more_possible(end) {
            None
        } else {
            Some((j, dots))
        }
    }

    /// A bare domain at `i` (`evil.com/p?d=…`), by the [`BareDomains`] option.
    fn bare_domain(&self, i: usize, end: usize, out: &mut Phase2) -> Step {
        let b = self.b;
        if self.domains == BareDomains::Off
            || (i > 0 && (b[i - 1] >= 0x80 || NOT_BEFORE_DOMAIN.contains(&b[i - 1])))
        {
            return Step::Next;
        }
        // Runs from two starts never overlap (a start needs a non-run byte before it), so
        // this stays linear; on failure the scan goes on inside the run (an `https://`
        // after `see.` is still found).
        let Some((h, dots)) = self.host_run(i, end) else {
            return Step::Open;
        };
        // On failure the scan goes on after the letters and digits at `i` (none of which
        // can start anything: each follows a letter or digit).
        let skip = Step::Jump(
            i + b[i..h]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count()
                .max(1),
        );
        if dots == 0 {
            return skip;
        }
        let host = &self.t[i..h];
        let host = host.trim_end_matches('.');
        let Some(tld) = host.rsplit('.').next() else {
            return skip;
        };
        if !linkable_tld(tld) || host.split('.').any(str::is_empty) {
            return skip;
        }
        let tail_ok = match b.get(h) {
            None => self.domains == BareDomains::All,
            Some(b'/' | b'?' | b'#') => true,
            Some(b':') => b.get(h + 1).is_some_and(u8::is_ascii_digit),
            Some(&c) => {
                self.domains == BareDomains::All
                    && !matches!(c, b'@' | b'_')
                    && !c.is_ascii_alphanumeric()
            }
        };
        if !tail_ok {
            return skip;
        }
        self.bare_url(i, i, end, true, out)
    }

    /// A bare URL from `i`, whose prefix ends at `from`: runs to its GFM end and is judged
    /// (with `http://` in front when `add_scheme`).
    fn bare_url(
        &self,
        i: usize,
        from: usize,
        end: usize,
        add_scheme: bool,
        out: &mut Phase2,
    ) -> Step {
        let b = self.b;
        let mut j = from.min(end);
        while j < end && !is_url_end(b[j]) {
            j += 1;
        }
        if j >= end && self.more_possible(end) {
            return Step::Open;
        }
        let j = trim_url_end(self.t, from, j);
        if j <= from {
            return Step::Jump(from.max(i + 1));
        }
        out.zones.push(i..j);
        let url = &self.t[i..j];
        let verdict = if add_scheme {
            self.verdict(&format!("http://{url}"), Src::Bare)
        } else {
            self.verdict(url, Src::Bare)
        };
        if let Some((rule, label)) = verdict {
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
    let url = t.get(min..j).unwrap_or("");
    let open = url.matches('(').count();
    let mut close = url.matches(')').count();
    loop {
        let Some(c) = t[..j].chars().next_back() else {
            return j;
        };
        if j <= min {
            return j;
        }
        let drop = match c {
            '?' | '!' | '.' | ',' | ':' | '*' | '_' | '~' | ';' => true,
            ')' => close > open,
            '。' | '，' | '、' | '！' | '？' | '）' | '」' | '』' | '】' | '；' | '：' => {
                true
            }
            _ => false,
        };
        if !drop {
            return j;
        }
        if c == ')' {
            close -= 1;
        }
        j -= c.len_utf8();
    }
}
