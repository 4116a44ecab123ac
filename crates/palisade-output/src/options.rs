//! What the output gate does: which classes it neutralizes, which link hosts it lets
//! through, which canaries it looks for, and (for streams) which findings stop the stream.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_detect::Canary;

use crate::error::OutputError;

/// A class of finding the output gate acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Class {
    /// A credential, key or token (palisade-detect's secret rules, plus PEM private-key
    /// blocks without their END line).
    Secret,
    /// Personal data (palisade-detect's PII finders).
    Pii,
    /// A link, image or URL whose destination is not allowed, or that carries encoded data.
    Link,
    /// Markup a reader does not see: HTML comments, zero-width, tag, bidi and
    /// variation-selector characters.
    Hidden,
    /// A planted canary token: proof that protected context leaked.
    Canary,
    /// Streaming only: a construct longer than the guard may hold, dropped unseen.
    Overflow,
}

impl Class {
    /// Stable snake_case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Secret => "secret",
            Class::Pii => "pii",
            Class::Link => "link",
            Class::Hidden => "hidden",
            Class::Canary => "canary",
            Class::Overflow => "overflow",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Class::Secret => 1,
            Class::Pii => 2,
            Class::Link => 4,
            Class::Hidden => 8,
            Class::Canary => 16,
            Class::Overflow => 32,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Class`]es (a small bit set, `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ClassSet(u8);

impl ClassSet {
    /// No class.
    pub const EMPTY: ClassSet = ClassSet(0);

    /// This set plus `class`.
    #[must_use]
    pub const fn with(self, class: Class) -> ClassSet {
        ClassSet(self.0 | class.bit())
    }

    /// True if `class` is in the set.
    pub const fn contains(self, class: Class) -> bool {
        self.0 & class.bit() != 0
    }
}

impl FromIterator<Class> for ClassSet {
    fn from_iter<I: IntoIterator<Item = Class>>(iter: I) -> Self {
        iter.into_iter().fold(ClassSet::EMPTY, ClassSet::with)
    }
}

/// Link hosts the gate lets through: exact names (`docs.rs`) and `*.suffix` patterns
/// (`*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`
/// itself: list both when both are meant). A lone `*` allows every host, leaving only the
/// scheme and exfiltration checks.
///
/// Hosts are compared after the gate's own normalization (lowercase, no port, no
/// userinfo, percent-decoded, IDNA full stops mapped to `.`, no trailing dot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAllowlist {
    any: bool,
    exact: HashSet<String>,
    suffixes: HashSet<String>,
}

impl HostAllowlist {
    /// Builds an allowlist from patterns. Patterns are trimmed and lowercased.
    ///
    /// # Errors
    /// [`OutputError::InvalidHostPattern`] for an entry that is empty, carries a scheme,
    /// path, port, userinfo or whitespace, has an empty label, or has a `*` anywhere but as
    /// the whole first label.
    pub fn new<I, S>(patterns: I) -> Result<Self, OutputError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = HostAllowlist::default();
        for raw in patterns {
            let raw = raw.as_ref();
            let p = raw.trim().to_lowercase();
            let bad = |reason| OutputError::InvalidHostPattern {
                pattern: raw.to_string(),
                reason,
            };
            if p == "*" {
                list.any = true;
                continue;
            }
            let (wild, host) = match p.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, p.as_str()),
            };
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            if host.contains("://") {
                return Err(bad("a host, not a URL, is expected"));
            }
            if host
                .chars()
                .any(|c| matches!(c, '/' | '?' | '#' | '@' | ':' | '\\') || c.is_whitespace())
            {
                return Err(bad(
                    "only a host name is allowed (no path, port or userinfo)",
                ));
            }
            if host.contains('*') {
                return Err(bad(
                    "`*` is only allowed as the whole first label (`*.example.com`)",
                ));
            }
            if host.split('.').any(str::is_empty) {
                return Err(bad("empty label"));
            }
            if wild {
                list.suffixes.insert(host.to_string());
            } else {
                list.exact.insert(host.to_string());
            }
        }
        Ok(list)
    }

    /// True if `host` (already normalized by the gate) is allowed.
    pub fn allows(&self, host: &str) -> bool {
        if self.any || self.exact.contains(host) {
            return true;
        }
        // Walk the host's proper suffixes at label boundaries: cost is the number of labels.
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if self.suffixes.contains(rest) {
                return true;
            }
        }
        false
    }

    /// True if nothing is allowed.
    pub fn is_empty(&self) -> bool {
        !self.any && self.exact.is_empty() && self.suffixes.is_empty()
    }
}

/// A caller-supplied host predicate.
pub type HostPredicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Which link hosts pass. Whatever it says, `javascript:`/`vbscript:`/`data:` URLs, other
/// non-web schemes, and URLs that carry long encoded data are always neutralized.
#[derive(Clone)]
pub enum LinkAllow {
    /// A list of hosts and `*.suffix` patterns.
    Hosts(HostAllowlist),
    /// A caller-supplied predicate over the normalized host (e.g. backed by the tenant's
    /// config). It must be cheap and pure: it runs once per URL.
    Predicate(HostPredicate),
}

impl LinkAllow {
    /// Allows no host: every absolute link and image is neutralized.
    pub fn none() -> Self {
        LinkAllow::Hosts(HostAllowlist::default())
    }

    /// Allows the given host patterns (see [`HostAllowlist`]).
    ///
    /// # Errors
    /// [`OutputError::InvalidHostPattern`] for a malformed pattern.
    pub fn hosts<I, S>(patterns: I) -> Result<Self, OutputError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        HostAllowlist::new(patterns).map(LinkAllow::Hosts)
    }

    /// Allows the hosts for which `f` returns true.
    pub fn predicate(f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        LinkAllow::Predicate(Arc::new(f))
    }

    /// True if the normalized `host` is allowed.
    pub fn allows(&self, host: &str) -> bool {
        match self {
            LinkAllow::Hosts(list) => list.allows(host),
            LinkAllow::Predicate(f) => f(host),
        }
    }
}

impl Default for LinkAllow {
    fn default() -> Self {
        LinkAllow::none()
    }
}

impl fmt::Debug for LinkAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkAllow::Hosts(list) => f.debug_tuple("Hosts").field(list).finish(),
            LinkAllow::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

/// Whether bare domains in text (`evil.com/p?d=…`, no scheme, no `www.`) count as links.
/// Linkify-style renderers (markdown-it's linkify, chat apps) turn them into links; GFM does
/// not. A domain counts when its last label is a two-letter country code or a common
/// generic TLD (`com`, `net`, `org`, `io`-like codes, `dev`, `app`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BareDomains {
    /// Never: only `http(s)://`, `ftp://`, `mailto:`, `www.` and `//host` are bare links.
    Off,
    /// When a path, query or fragment follows the domain (`evil.com/p?d=…`), which is
    /// where an exfiltration payload rides. The default: a bare `example.com` in prose is
    /// left alone, `example.com/anything` is judged like `https://example.com/anything`.
    #[default]
    WithPath,
    /// Every bare domain, `example.com` alone included.
    All,
}

/// What [`crate::sanitize`] neutralizes.
///
/// `Default` turns every class on with no allowed link host and no canary: the strict
/// posture, because an image URL is the exfiltration channel of choice and an operator who
/// wants links lists the hosts they trust.
#[derive(Debug, Clone)]
pub struct SanitizeOptions {
    /// Redact credentials as `[REDACTED:<rule>]`.
    pub secrets: bool,
    /// Redact personal data as `[REDACTED:<kind>]`.
    pub pii: bool,
    /// Neutralize links, images and URLs whose destination is not allowed.
    pub links: bool,
    /// Remove hidden markup (HTML comments, invisible and bidi control characters).
    pub hidden: bool,
    /// Which link hosts pass when `links` is on.
    pub allow: LinkAllow,
    /// Canary tokens to look for; a hit is redacted as `[REDACTED:canary]` and reported in
    /// [`crate::Sanitized::canary_leaked`]. Detection runs whenever this is non-empty.
    pub canaries: Vec<Canary>,
    /// Whether bare domains count as links (when `links` is on). Default
    /// [`BareDomains::WithPath`].
    pub bare_domains: BareDomains,
}

impl Default for SanitizeOptions {
    fn default() -> Self {
        SanitizeOptions {
            secrets: true,
            pii: true,
            links: true,
            hidden: true,
            allow: LinkAllow::none(),
            canaries: Vec::new(),
            bare_domains: BareDomains::default(),
        }
    }
}

impl SanitizeOptions {
    /// Every class off and no canary: `sanitize` returns its input unchanged.
    pub fn off() -> Self {
        SanitizeOptions {
            secrets: false,
            pii: false,
            links: false,
            hidden: false,
            allow: LinkAllow::none(),
            canaries: Vec::new(),
            bare_domains: BareDomains::default(),
        }
    }
}

/// Default for [`GuardOptions::max_hold_bytes`]: twice [`MIN_SAFE_HOLD_BYTES`], room for
/// the longest construct the sanitizer parses whole plus typical JWTs and PEM keys. Holding
/// costs no latency beyond [`GuardOptions::max_hold_time`].
pub const DEFAULT_MAX_HOLD_BYTES: usize = 8192;
/// The smallest accepted `max_hold_bytes`: below this a plain URL or a credential could not
/// be held whole.
pub const MIN_MAX_HOLD_BYTES: usize = 256;
/// The hold bound actually used is never below this: the longest construct the sanitizer
/// parses before deciding (a markdown image with 512 bytes of alt text, a 2,048-byte
/// destination, a 512-byte title and the whitespace between, 3,463 bytes), rounded up. A
/// smaller bound would force cuts through constructs the sanitizer could still judge (an
/// image's destination released, its replacement landing in its title). A configured
/// `max_hold_bytes` between [`MIN_MAX_HOLD_BYTES`] and this is raised to it.
pub const MIN_SAFE_HOLD_BYTES: usize = 4096;
/// Default for [`GuardOptions::lookback_bytes`]: none beyond the context the detectors
/// need, which the guard always keeps (at least [`crate::CONTEXT_CHARS`] visible characters
/// of released text: see `guard.rs`). A larger value rescans more released text at each
/// release: it only widens the window in which a canary encoded across many lines (hex
/// or spaced letters decoded as a whole) is recognized, at a cost per release.
pub const DEFAULT_LOOKBACK_BYTES: usize = 0;
/// Default for [`GuardOptions::max_hold_time`]: text held longer than this is released up
/// to the last position from which nothing could still complete.
pub const DEFAULT_MAX_HOLD_TIME: Duration = Duration::from_millis(250);

/// Options of a [`crate::StreamGuard`].
#[derive(Debug, Clone)]
pub struct GuardOptions {
    /// At most this many bytes of completion text are held back at any time (checked when
    /// `push` returns). See the crate docs for what happens at the bound.
    pub max_hold_bytes: usize,
    /// At least this much already-released text is rescanned with each release, on top of
    /// the [`crate::CONTEXT_CHARS`] visible characters always kept so that a finding whose
    /// context started earlier is still seen.
    pub lookback_bytes: usize,
    /// What to neutralize.
    pub sanitize: SanitizeOptions,
    /// Classes whose (enabled) findings stop the stream. A canary leak always stops it.
    pub block: ClassSet,
    /// Text held back longer than this (by the clock the caller passes to
    /// [`crate::StreamGuard::push_at`] and [`crate::StreamGuard::release_due`]) is released up
    /// to the last position from which no secret, link, canary or markup pattern could still
    /// complete. Only the `_at`/`release_due` calls look at it.
    pub max_hold_time: Duration,
}

impl Default for GuardOptions {
    fn default() -> Self {
        GuardOptions {
            max_hold_bytes: DEFAULT_MAX_HOLD_BYTES,
            lookback_bytes: DEFAULT_LOOKBACK_BYTES,
            sanitize: SanitizeOptions::default(),
            block: ClassSet::EMPTY,
            max_hold_time: DEFAULT_MAX_HOLD_TIME,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let l = HostAllowlist::new(["docs.rs", "*.Example.com "]).unwrap();
        assert!(l.allows("docs.rs"));
        assert!(!l.allows("evil-docs.rs"));
        assert!(l.allows("a.example.com"));
        assert!(l.allows("a.b.example.com"));
        assert!(!l.allows("example.com"));
        assert!(!l.allows("example.com.evil.net"));
        assert!(!l.allows("notexample.com"));
        assert!(HostAllowlist::new(["*"]).unwrap().allows("anything.at.all"));
    }

    #[test]
    fn bad_host_patterns_are_refused() {
        for p in [
            "",
            "https://docs.rs",
            "docs.rs/x",
            "docs.rs:443",
            "a.*.com",
            "*example.com",
            "a..b",
            "u@docs.rs",
        ] {
            assert!(
                matches!(
                    HostAllowlist::new([p]),
                    Err(OutputError::InvalidHostPattern { .. })
                ),
                "{p:?} should be refused"
            );
        }
    }

    #[test]
    fn class_set() {
        let s: ClassSet = [Class::Secret, Class::Link].into_iter().collect();
        assert!(s.contains(Class::Secret) && s.contains(Class::Link));
        assert!(!s.contains(Class::Pii));
        assert!(!ClassSet::EMPTY.contains(Class::Canary));
    }
}
