//! The two matchers of a policy: globs on tenant/route/model for tier assignment, and the
//! link domain allowlist. Both run on the request path, so neither allocates.

/// `*` matches any run of bytes (including none); every other byte matches itself.
/// Case-sensitive: tenant ids and model names are case-sensitive identifiers.
///
/// Linear-time two-pointer matcher: on a mismatch it backtracks only to the last `*`, which
/// is enough because a later `*` subsumes every earlier choice. Matching bytes rather than
/// chars is sound because `*` is ASCII and UTF-8 never uses ASCII bytes inside a sequence.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Position after the last `*` seen, and the text position it is currently matched to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi + 1, ti));
                pi += 1;
            }
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more byte and retry from there.
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    pi = sp;
                    ti = st + 1;
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == b'*')
}

/// The compiled `links.allowed_domains`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DomainAllowlist {
    /// Lower-case host names matched exactly.
    exact: Vec<String>,
    /// Lower-case suffixes with their leading dot (`.docs.example.com` for
    /// `*.docs.example.com`).
    suffixes: Vec<String>,
}

impl DomainAllowlist {
    /// Builds the allowlist from validated, lower-cased patterns.
    pub(crate) fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Self {
        let mut list = DomainAllowlist::default();
        for p in patterns {
            match p.strip_prefix('*') {
                Some(suffix) => list.suffixes.push(suffix.to_owned()),
                None => list.exact.push(p.to_owned()),
            }
        }
        list
    }

    /// True when `host` is allowlisted. See [`Snapshot::link_allowed`](crate::Snapshot::link_allowed).
    pub(crate) fn allows(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        // Fail closed on anything that is not an ASCII host name: a port, a userinfo `@`, a
        // path, or a Unicode (U-label) host the caller forgot to convert to punycode.
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return false;
        }
        let h = host.as_bytes();
        self.exact.iter().any(|e| host.eq_ignore_ascii_case(e))
            || self.suffixes.iter().any(|s| {
                // Strictly longer than the suffix, so `*.x.com` does not allow `x.com` itself
                // (nor the degenerate host `.x.com`).
                h.len() > s.len()
                    && h[h.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
                    && h[..h.len() - s.len()].last() != Some(&b'.')
            })
    }
}

/// Checks one `links.allowed_domains` entry and returns it normalized (lower case, no
/// trailing dot), or why it is rejected.
///
/// Accepted: a host name of LDH labels (letters, digits, hyphens; 1 to 63 characters, no
/// leading or trailing hyphen; at most 253 characters), optionally prefixed by `*.`.
/// Internationalized names must be written in their punycode (`xn--`) form: matching is
/// IDNA-naive byte comparison.
pub(crate) fn normalize_domain_pattern(pattern: &str) -> Result<String, &'static str> {
    let p = pattern.strip_suffix('.').unwrap_or(pattern);
    let (wild, host) = match p.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, p),
    };
    if host.is_empty() {
        return Err("empty host name");
    }
    if host.contains('*') {
        return Err("`*` is only allowed as a leading `*.`");
    }
    if !host.is_ascii() {
        return Err("non-ASCII host name; write it in punycode (xn--) form");
    }
    if host.len() > 253 {
        return Err("host name longer than 253 characters");
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each label must be 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("labels may contain only letters, digits and '-'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("labels may not start or end with '-'");
        }
    }
    // `*.com` would allow every .com site: almost certainly a mistake, and an exfiltration
    // channel to any domain an attacker can register.
    if wild && !host.contains('.') {
        return Err("a wildcard needs at least two labels after `*.`");
    }
    Ok(p.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        let cases = [
            ("gpt-4o*", "gpt-4o", true),
            ("gpt-4o*", "gpt-4o-mini", true),
            ("gpt-4o*", "gpt-4", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("acme", "acme", true),
            ("acme", "Acme", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*-prod", "eu-prod", true),
            ("*-prod", "eu-prod-2", false),
            ("**", "x", true),
            ("a*a*a", "aaaa", true),
            ("*é*", "café au lait", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "{p:?} vs {t:?}");
        }
    }

    fn allowlist(patterns: &[&str]) -> DomainAllowlist {
        let norm: Vec<String> = patterns
            .iter()
            .map(|p| normalize_domain_pattern(p).unwrap())
            .collect();
        DomainAllowlist::new(norm.iter().map(String::as_str))
    }

    #[test]
    fn allowlist_exact_and_suffix() {
        let l = allowlist(&["example.com", "*.docs.example.com", "Intranet."]);
        let cases = [
            ("example.com", true),
            ("EXAMPLE.com", true),
            ("example.com.", true),
            ("www.example.com", false),
            ("docs.example.com", false),
            ("a.docs.example.com", true),
            ("a.b.DOCS.example.com", true),
            ("evildocs.example.com", false),
            (".docs.example.com", false),
            ("a..docs.example.com", false),
            ("intranet", true),
            ("example.com:443", false),
            ("user@example.com", false),
            ("example.com.evil.net", false),
            ("", false),
            ("exämple.com", false),
        ];
        for (host, want) in cases {
            assert_eq!(l.allows(host), want, "{host:?}");
        }
    }

    #[test]
    fn empty_allowlist_allows_nothing() {
        assert!(!DomainAllowlist::default().allows("example.com"));
    }

    #[test]
    fn bad_patterns() {
        for p in [
            "",
            "*.",
            "*",
            "*.com",
            "a.*.com",
            "exa mple.com",
            "-x.com",
            "x-.com",
            "a..b",
            "bücher.de",
            "https://example.com",
            "example.com:443",
        ] {
            assert!(normalize_domain_pattern(p).is_err(), "{p:?} accepted");
        }
        assert_eq!(
            normalize_domain_pattern("*.Docs.Example.com.").unwrap(),
            "*.docs.example.com"
        );
        assert_eq!(
            normalize_domain_pattern("xn--bcher-kva.de").unwrap(),
            "xn--bcher-kva.de"
        );
    }
}
