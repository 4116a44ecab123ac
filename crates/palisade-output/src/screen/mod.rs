//! The clean-text screen: a one-pass, allocation-free proof that [`crate::sanitize`] would
//! find nothing in a text, so that the common case (`"stop"`, `"assistant"`, a response id,
//! a model name, a plain sentence) skips the full analysis and its fixed cost (folding,
//! stripping, the secret and PII regex sets, canary skeletons, the analysis vectors).
//!
//! It must be exact in the safe direction: [`is_clean`] answers `true` only for a text in
//! which the full analysis finds no finding, makes no edit and sees no canary. It may answer
//! `false` for a clean text (the full analysis then runs and finds nothing). The property
//! tests in `screen::tests` compare the two on generated adversarial input.
//!
//! Must not: change what any detector finds, allocate, or look at anything but the text and
//! the options. Every condition below is derived from a detector's definition; a detector
//! that changes (a new secret rule, a new PII kind, a new link trigger) must change its
//! condition here, and `tests::secret_rule_table_is_the_one_screened` fails until it does
//! for the secret rules.
//!
//! Why each "clean" is sound. Non-ASCII characters are let through only when inert (see
//! [`inert`]: not hidden, not folded, no Unicode digit or space, no case variant of an
//! ASCII letter the case-insensitive rules would take), so the stripped and folded views
//! are the text itself and no Unicode regex class matches anything the ASCII reasoning
//! below does not see; their bytes count as key characters. Then:
//!
//! * hidden markup: with inert characters, none but HTML comments, which need `<`;
//! * secrets (palisade-detect's rule table, anchored and glued, and PEM blocks): a PEM
//!   block needs `-----`. Every other rule's match holds a run of at least 15 characters
//!   of `[A-Za-z0-9_+/=.~-]` (the shortest, `xoxb-` and ten characters, is 15), and a
//!   literal only it can start with: a prefix (`AKIA`, `ghp_`, `sk-`, `ya29.`, `.ey` for
//!   a JWT's second part, …), `~` (Azure AD secrets), or for the generic and Azure storage
//!   rules a keyword (`secret`, `token`, `accountkey`, …, any case) together with `=` or
//!   `:`. Without a long run, or without any such literal, no rule matches;
//! * PII: an e-mail needs `@`; a phone number 10 digits, or `+` and 9 (the finder keeps
//!   9 to 15); a card 13 digits; an SSN the shape `ddd-dd-dddd`; an IPv4 address a digit,
//!   a dot and a digit; an IPv6 address `::` or a colon between two hex digits; an IBAN
//!   two capitals followed by two digits;
//! * links: markup needs `[`, `]` or `<`; a bare URL `:` (scheme), `//` or `www.`; a bare
//!   domain with a path `/`, `?`, `#` or `:` after it (with [`BareDomains::All`], any
//!   dot). When one of these is present the link scanner itself runs (it is exact and
//!   allocates only for what it finds);
//! * canaries: the forward search is palisade-detect's own `Canary::detect`, exactly as
//!   the full analysis runs it first; the reversed search is the same substring search in
//!   the lowercase alphanumeric skeleton, done bit-parallel instead of on a copy.

use palisade_detect::chars::{
    is_bidi_control, is_invisible_mark, is_tag, is_variation_selector, is_zero_width,
};
use palisade_detect::Canary;

use crate::findings::Phase2;
use crate::fold::fold_char;
use crate::markup;
use crate::options::{BareDomains, SanitizeOptions};

/// The shortest run of key characters any secret rule's match holds.
const MIN_SECRET_RUN: usize = 15;

/// Bytes a secret value or prefix is made of (the generic rule's value class, which holds
/// every other rule's token characters).
fn key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'/' | b'=' | b'.' | b'~')
}

fn hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

/// True if `b[i..]` starts with `lit`, ASCII case ignored.
fn starts_ci(b: &[u8], i: usize, lit: &[u8]) -> bool {
    b.get(i..i + lit.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(lit))
}

fn starts(b: &[u8], i: usize, lit: &[u8]) -> bool {
    b.get(i..i + lit.len()).is_some_and(|s| s == lit)
}

/// A literal only a specific secret rule starts with (case-sensitive, as the rules are).
fn secret_prefix_at(b: &[u8], i: usize) -> bool {
    let s = |lit: &[u8]| starts(b, i, lit);
    match b[i] {
        // aws-access-token (A3T?, AKIA, ASIA, ABIA, ACCA), gcp-api-key (AIza).
        b'A' => [&b"A3T"[..], b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"AIza"]
            .iter()
            .any(|l| s(l)),
        // github-pat (gh[pousr]_), github-fine-grained-pat, gitlab-pat.
        b'g' => {
            (s(b"gh")
                && matches!(b.get(i + 2), Some(b'p' | b'o' | b'u' | b's' | b'r'))
                && b.get(i + 3) == Some(&b'_'))
                || s(b"github_pat_")
                || s(b"glpat-")
        }
        // slack-token.
        b'x' => s(b"xox"),
        // slack-webhook-url, huggingface-token.
        b'h' => s(b"hooks.slack.com") || s(b"hf_"),
        // stripe-access-token (sk_, rk_), openai and anthropic (sk-), gcp-service-account.
        b's' => s(b"sk_") || s(b"sk-") || s(b"service_account"),
        b'r' => s(b"rk_"),
        // sendgrid-api-token.
        b'S' => s(b"SG."),
        // npm-access-token.
        b'n' => s(b"npm_"),
        // google-oauth-token.
        b'y' => s(b"ya29."),
        // jwt: `ey…` `.ey…`.
        b'.' => s(b".ey"),
        // azure-ad-client-secret (`\dQ~`).
        b'~' => true,
        _ => false,
    }
}

/// A keyword of the generic rule or the Azure storage rule (both case-insensitive); a
/// match also needs `=` or `:` after it.
fn secret_keyword_at(b: &[u8], i: usize) -> bool {
    let s = |lit: &[u8]| starts_ci(b, i, lit);
    match b[i].to_ascii_lowercase() {
        // api[_-]?key, apikey, auth[_-]?key, access[_-]?key, AccountKey=.
        b'a' => s(b"api") || s(b"auth") || s(b"access") || s(b"accountkey"),
        // secret, client[_-]?secret.
        b's' => s(b"secret"),
        b't' => s(b"token"),
        // passw(or)?d, pwd, private[_-]?key.
        b'p' => s(b"passw") || s(b"pwd") || s(b"private"),
        // credentials?.
        b'c' => s(b"credential"),
        _ => false,
    }
}

/// True if the full analysis of `text` under `opts` would provably find nothing: then
/// [`crate::sanitize`] returns the text borrowed with no action. See the module docs.
pub(crate) fn is_clean(text: &str, opts: &SanitizeOptions) -> bool {
    let b = text.as_bytes();
    let links_on = opts.links;
    let domains = opts.bare_domains;
    // Secrets.
    let mut run = 0usize;
    let mut long_run = false;
    let mut prefix = false;
    let mut keyword = false;
    let mut assign = false;
    // PII.
    let mut digits = 0usize;
    let mut plus = false;
    // Links: whether the scanner has to look.
    let mut link_trigger = false;
    for (i, &c) in b.iter().enumerate() {
        if !c.is_ascii() {
            // A non-ASCII character is let through only when it changes no view and no
            // regex class can take it (see `inert`). Its bytes continue a key run: the
            // run bound then stays an over-estimate whatever the character.
            if c >= 0xC0
                && !text
                    .get(i..)
                    .and_then(|r| r.chars().next())
                    .is_some_and(inert)
            {
                return false;
            }
            run += 1;
            long_run |= run >= MIN_SECRET_RUN;
            continue;
        }
        if key_char(c) {
            run += 1;
            long_run |= run >= MIN_SECRET_RUN;
        } else {
            run = 0;
        }
        if opts.secrets {
            prefix = prefix || secret_prefix_at(b, i);
            keyword = keyword || secret_keyword_at(b, i);
            assign |= matches!(c, b'=' | b':');
            if c == b'-' && starts(b, i, b"-----") {
                return false;
            }
            if long_run && (prefix || (keyword && assign)) {
                return false;
            }
        }
        let next = b.get(i + 1).copied();
        if opts.pii {
            let prev = if i == 0 { None } else { Some(b[i - 1]) };
            let pii = match c {
                b'@' => true,
                b'+' => {
                    plus = true;
                    false
                }
                b':' => next == Some(b':') || (prev.is_some_and(hex) && next.is_some_and(hex)),
                b'0'..=b'9' => {
                    digits += 1;
                    // IPv4 (`d.d`), SSN (`ddd-dd-dddd`).
                    (next == Some(b'.') && b.get(i + 2).is_some_and(u8::is_ascii_digit))
                        || ssn_shape(b, i)
                }
                // IBAN: two capitals, two digits.
                b'A'..=b'Z' => {
                    next.is_some_and(|n| n.is_ascii_uppercase())
                        && b.get(i + 2).is_some_and(u8::is_ascii_digit)
                        && b.get(i + 3).is_some_and(u8::is_ascii_digit)
                }
                _ => false,
            };
            if pii || digits >= 10 || (plus && digits >= 9) {
                return false;
            }
        }
        if c == b'<' && (opts.hidden || links_on) {
            return false;
        }
        if links_on && !link_trigger {
            link_trigger = match c {
                b'[' | b']' | b':' => true,
                b'/' | b'?' | b'#' => domains != BareDomains::Off || next == Some(b'/'),
                b'.' => domains == BareDomains::All,
                b'w' | b'W' => starts_ci(b, i, b"www."),
                _ => false,
            };
        }
    }
    // A long run that only became long at the text's last (non-ASCII) bytes.
    if opts.secrets && long_run && (prefix || (keyword && assign)) {
        return false;
    }
    if links_on && link_trigger && !links_clean(text, opts) {
        return false;
    }
    opts.canaries.iter().all(|c| canary_clean(text, c))
}

/// A non-ASCII character that no detector can see as anything: not hidden markup (the
/// stripped view keeps it), not a compatibility form (the folded view keeps it), not a
/// Unicode digit (the PII regexes' `\d` is Unicode: `١٢٣-٤٥-٦٧٨٩` is an SSN to them), not
/// whitespace (`\s`), and not `ſ` or the Kelvin sign (the case-insensitive secret rules
/// read them as `s` and `k`). It is no link syntax (the scanner's triggers are ASCII), and
/// the canary searches are run as the full analysis runs them.
fn inert(c: char) -> bool {
    !(is_tag(c)
        || is_bidi_control(c)
        || is_invisible_mark(c)
        || is_zero_width(c)
        || is_variation_selector(c)
        || c.is_numeric()
        || c.is_whitespace()
        || matches!(c, '\u{17F}' | '\u{212A}'))
        && fold_char(c).is_none()
}

/// `ddd-dd-dddd` starting at `i`.
fn ssn_shape(b: &[u8], i: usize) -> bool {
    const SHAPE: &[u8; 11] = b"ddd-dd-dddd";
    b.get(i..i + SHAPE.len()).is_some_and(|s| {
        s.iter().zip(SHAPE).all(|(&c, &p)| match p {
            b'd' => c.is_ascii_digit(),
            _ => c == p,
        })
    })
}

/// The link scanner over `text` (which the caller has checked is its own stripped view)
/// finds nothing.
fn links_clean(text: &str, opts: &SanitizeOptions) -> bool {
    let mut p2 = Phase2::default();
    markup::scan(text, true, &opts.allow, opts.bare_domains, &mut p2);
    p2.edits.is_empty() && p2.findings.is_empty() && p2.markers.is_empty()
}

/// Neither search of the full analysis finds `canary` in the ASCII `text`.
fn canary_clean(text: &str, canary: &Canary) -> bool {
    // The forward search: exactly the full analysis's first call (`canary_hits` stops at
    // the first `None`).
    if canary.detect(text).is_some() {
        return false;
    }
    // The reversed search (`detectors::reversed_hits`): the reversed core in the lowercase
    // ASCII-alphanumeric skeleton. Shift-and over the core's characters, last first.
    let core = canary
        .token
        .trim_start_matches("pls-")
        .bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase());
    let mut masks = [0u64; 128];
    let mut m = 0usize;
    // Reversed: the core's last character is the pattern's first.
    let len = core.clone().count();
    if len == 0 {
        return true;
    }
    if len > 64 {
        return false;
    }
    for (k, c) in core.enumerate() {
        masks[usize::from(c)] |= 1 << (len - 1 - k);
        m += 1;
    }
    let hit = 1u64 << (m - 1);
    let mut state = 0u64;
    for &c in text.as_bytes() {
        if !c.is_ascii_alphanumeric() {
            continue;
        }
        state = ((state << 1) | 1) & masks[usize::from(c.to_ascii_lowercase())];
        if state & hit != 0 {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests;
