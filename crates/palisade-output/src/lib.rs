//! Palisade's output gate, text primitives: sanitize a model's completion, and guard a
//! streamed completion so that nothing unsafe is emitted before it has been seen whole.
//!
//! [`sanitize`] neutralizes, per class (each can be switched off in [`SanitizeOptions`]):
//!
//! | class | found by | becomes |
//! |---|---|---|
//! | secrets | palisade-detect's `find_secrets`, plus PEM private keys without an END line | `[REDACTED:<rule>]` |
//! | PII | palisade-detect's `find_pii` | `[REDACTED:<kind>]` |
//! | canaries | palisade-detect's `Canary::detect`, every occurrence | `[REDACTED:canary]`, [`Sanitized::canary_leaked`] |
//! | links | markdown images `![a](u)` | `[image removed: <host>]` |
//! | | markdown links `[t](u)`, HTML `<a href>…</a>` | `t (link removed: <host>)` |
//! | | reference definitions `[r]: u` | `[r]: (link removed: <host>)` |
//! | | autolinks `<u>`, bare `http(s)://`/`www.` URLs, other tags with URL attributes | `(link removed: <host>)` |
//! | | HTML `<img src>` | `[image removed: <host>]` |
//! | hidden | HTML comments, zero-width, tag (U+E0000–E007F), bidi-control characters, extra variation selectors | removed |
//!
//! A link is neutralized when its host is not allowed ([`LinkAllow`]: a host list with
//! `*.suffix` patterns, or a predicate), and always when its scheme is `javascript:`,
//! `vbscript:`, `data:` or any other non-web scheme, or when it carries encoded data (a
//! long base64/hex run in its query, path or host, or more than 2 KiB: rule `exfil-url`).
//! Relative links stay. Everything else is copied byte for byte, and when nothing applies
//! the result borrows the input (no allocation).
//!
//! [`StreamGuard`] applies the same sanitizer to a completion that arrives in deltas. It
//! holds text back until a semantic boundary (a newline, the end of a sentence, a CJK full
//! stop) at which nothing can be cut in two, sanitizes the held text together with a
//! lookback of released text, and releases it. It stops the stream (`stop: true`, for a
//! `finish_reason: "content_filter"`) on a canary leak or a finding of a class marked
//! blocking.
//!
//! # The hold-back bound
//!
//! When [`StreamGuard::push`] returns, fewer than [`GuardOptions::max_hold_bytes`]
//! (default 4,096) bytes are held: no byte of the completion waits for more than that many
//! later bytes (or for [`StreamGuard::finish`]). Memory per stream is bounded by the
//! lookback plus two hold bounds. When the bound is reached without a safe semantic
//! boundary, the guard cuts at the latest safe token boundary instead; if a single
//! construct is longer than the bound, it is never emitted in part: an HTML comment is
//! dropped up to its `-->`, a PEM key up to its END line (shown as
//! `[REDACTED:private-key]`), and any other token up to the next whitespace (shown as
//! `[REDACTED:oversized-token]`, class [`Class::Overflow`]).
//!
//! # Streamed output equals sanitized output
//!
//! For any split of a completion into deltas, the concatenation of every
//! [`Released::text`] equals `sanitize(whole completion).text` when no stop occurred and
//! the hold bound never forced a release ([`StreamGuard::forced_releases`] is 0). A forced
//! release only happens on a run of more than `max_hold_bytes` bytes without a safe
//! boundary (one huge token, a sentence that long, an unterminated link); there the output
//! may differ: the cut falls at a token boundary, an incomplete link's text may go out
//! without its brackets, and oversized constructs are dropped as above, always towards
//! removing more. The property tests check both halves: exact equality for generated
//! completions, markup soup and arbitrary text under any split, and, with the smallest
//! bound, that no secret, no denied URL and no part of a canary is ever released.
//!
//! Latency, not output, is what the holding rules cost: an open `[`, `<`, comment or PEM
//! block holds everything after it until it resolves (a link's text is at most 512 bytes),
//! and a line ending in a digit waits for the next line (a phone number may continue).
//!
//! **Invariant:** this crate is pure: no I/O, no async, no threads, no clock, no
//! randomness. It never re-emits released text and never holds more than the bound. It does
//! not decide HTTP statuses or wire formats: the gateway maps `stop` to `content_filter`.

mod cuts;
mod detectors;
mod edit;
mod error;
mod fold;
mod guard;
mod hidden;
mod json;
mod markup;
mod options;
mod sanitize;
mod url;

pub use error::OutputError;
pub use guard::{Released, StreamGuard};
pub use json::{sanitize_json, JsonStreamGuard};
pub use options::{
    BareDomains, Class, ClassSet, GuardOptions, HostAllowlist, HostPredicate, LinkAllow,
    SanitizeOptions, DEFAULT_LOOKBACK_BYTES, DEFAULT_MAX_HOLD_BYTES, DEFAULT_MAX_HOLD_TIME,
    MIN_MAX_HOLD_BYTES, MIN_SAFE_HOLD_BYTES,
};
pub use palisade_detect::Canary;
pub use sanitize::{sanitize, Applied, Sanitized};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn types_are_send_sync() {
        assert_send_sync::<StreamGuard>();
        assert_send_sync::<SanitizeOptions>();
        assert_send_sync::<GuardOptions>();
    }
}
