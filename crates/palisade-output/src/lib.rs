//! Palisade's output gate, text primitives: sanitize a model's completion, and guard a
//! streamed completion so that nothing unsafe is emitted before it has been seen whole.
//!
//! # The invariant
//!
//! **Anything the gate cannot parse and judge completely is neutralized or refused, never
//! relayed; streamed output equals whole output.** Every representation a client renders
//! or decodes is judged in the form the client sees: markdown and HTML as renderers read
//! them (character references with any padding, code spans, containers, CSS), text with
//! invisible marks removed and compatibility forms folded, JSON string values decoded
//! ([`sanitize_json`]). A construct over one of the parser's limits (alt text, destination,
//! title, tag, style element) is neutralized, not passed; a `](…)` or `]:` the bracket
//! matcher could not pair is judged on its own. The tests that check it:
//! `tests/properties.rs` (streamed equals whole for generated, adversarial and JSON
//! completions under any split and any timing, and nothing forbidden released with the
//! smallest bound) and the unit tests of each finding (`markup::tests`,
//! `sanitize::tests::evasions_are_normalized_before_matching`, `json::tests`).
//!
//! [`sanitize`] neutralizes, per class (each can be switched off in [`SanitizeOptions`]):
//!
//! | class | found by | becomes |
//! |---|---|---|
//! | secrets | palisade-detect's `find_secrets` (and `find_secrets_glued`: a key glued to word characters takes its word), plus PEM private keys without an END line | `[REDACTED:<rule>]` |
//! | PII | palisade-detect's `find_pii` | `[REDACTED:<kind>]` |
//! | canaries | palisade-detect's `Canary::detect`, every occurrence, also reversed | `[REDACTED:canary]`, [`Sanitized::canary_leaked`] |
//! | links | markdown images `![a](u)` | `[image removed: <host>]` |
//! | | markdown links `[t](u)`, HTML `<a href>…</a>` | `t (link removed: <host>)` |
//! | | reference definitions `[r]: u` (also after `>` and list markers) | `[r]: (link removed: <host>)` |
//! | | a `](u)` or `]: u` whose `[` was not matched | `] (link removed: <host>)` |
//! | | autolinks `<u>`, bare `http(s)://`, `ftp://`, `mailto:`, `www.` and `//host` URLs, bare domains with a path ([`BareDomains`]), other tags with URL attributes, `<style>` elements, `<script>`, event handlers | `(link removed: <host>)` |
//! | | HTML `<img src>` / `srcset` | `[image removed: <host>]` |
//! | hidden | HTML comments, zero-width, tag (U+E0000–E007F), bidi-control characters and marks (LRM, RLM, ALM), other invisible format characters, extra variation selectors | removed |
//!
//! Credentials, PII and canaries are matched after hidden markup is removed and with
//! compatibility forms (fullwidth, mathematical, enclosed) folded to ASCII; the character
//! classes are palisade-detect's (`palisade_detect::chars`), shared with the input side.
//! Redactions cover the original spans.
//!
//! A link is neutralized when its host is not allowed ([`LinkAllow`]: a host list with
//! `*.suffix` patterns, or a predicate), and always when its scheme is `javascript:`,
//! `vbscript:`, `data:` or any other non-web scheme, or when it carries encoded data (a
//! long base64/hex run in its query, path or host, or more than 2 KiB: rule `exfil-url`).
//! A destination is judged under every decoding a renderer might apply and denied if any
//! reading denies it. Relative links stay. Everything else is copied byte for byte, and
//! when nothing applies the result borrows the input (no allocation).
//!
//! Most strings of a response (`"stop"`, the id, the model, plain prose) hold nothing. A
//! one-pass screen proves that from each detector's triggers (a text without any, whose
//! non-ASCII characters are inert: see `screen`'s docs for the derivation) and then skips
//! the analysis and its fixed cost. It only ever answers "clean" where the analysis finds
//! nothing: `screen::tests` compares the two on generated adversarial input (a real-shaped
//! secret of every rule, near misses, PII and link syntax, every canary form, side-field
//! shapes, odd Unicode blocks, characters it must refuse), and an ignored long run does so
//! on a million texts in release.
//!
//! [`StreamGuard`] applies the same sanitizer to a completion that arrives in deltas. It
//! holds text back until a semantic boundary (a newline, the end of a sentence, a CJK full
//! stop) at which nothing can be cut in two, sanitizes the held text together with the
//! context of released text its detectors need ([`CONTEXT_CHARS`] visible characters,
//! from an earlier release point; not a fixed span rescanned at every release), and
//! releases it. It stops the stream (`stop: true`, for a
//! `finish_reason: "content_filter"`) on a canary leak (also one spread so thinly over the
//! stream that its start is no longer held: the guard remembers the canary skeleton of what
//! it let go) or a finding of a class marked blocking. [`JsonStreamGuard`] does the same
//! for JSON mode.
//!
//! # Holding back without holding up
//!
//! By bytes: when [`StreamGuard::push`] returns, fewer than
//! [`StreamGuard::max_hold_bytes`] bytes are held ([`GuardOptions::max_hold_bytes`],
//! default 8,192, never less than [`MIN_SAFE_HOLD_BYTES`] = 4,096: the longest construct the
//! parser reads before deciding is 3,463 bytes, so the bound never forces a cut through a
//! link it could still judge). When the bound is reached without a safe semantic boundary,
//! the guard cuts at the latest safe token boundary instead; if a single construct is
//! longer than the bound, it is never emitted in part: an HTML comment is dropped up to its
//! `-->`, a PEM key up to its END line (shown as `[REDACTED:private-key]`), and any other
//! token up to the next whitespace (shown as `[REDACTED:oversized-token]`, class
//! [`Class::Overflow`]). Memory per stream is bounded by the kept context (at most 2 KiB
//! plus one hold bound) plus two hold bounds.
//!
//! By time: with [`StreamGuard::push_at`] and [`StreamGuard::release_due`] the caller
//! passes its clock (the crate reads none). Text held longer than
//! [`GuardOptions::max_hold_time`] (default 250 ms) is released up to the last position from
//! which no secret, link, canary or markup pattern could still complete: a token boundary
//! outside every construct and edit, not after a code-like group that a card, phone or IBAN
//! finder may continue, not inside a possible canary. [`StreamGuard::next_due`] says when to
//! call again. A stream of words without sentence punctuation (code, lists, tables, many
//! languages) then flows with at most that delay instead of arriving all at the end.
//!
//! # Streamed output equals whole output
//!
//! For any split of a completion into deltas and any timing of time-forced releases:
//! the stream stops exactly when the whole completion leaks a canary (one that
//! palisade-detect locates; a canary found only by decoding the whole text, such as spaced
//! letters joined across far-apart windows, is caught within a window: at least
//! [`CONTEXT_CHARS`] characters of released text and the held text) or has a blocking
//! finding, and otherwise the concatenation of every [`Released::text`] equals
//! `sanitize(whole completion).text`, unless the byte bound forced a release
//! ([`StreamGuard::forced_releases`] > 0: one run of more than `max_hold_bytes` bytes without
//! a safe boundary). There the output may differ, always towards removing more: the cut
//! falls at a token boundary and oversized constructs are dropped as above. Time-forced
//! releases ([`StreamGuard::timed_releases`]) never change the output.
//!
//! **Invariant:** this crate is pure: no I/O, no async, no threads, no clock, no
//! randomness. It never re-emits released text and never holds more than the bound. It does
//! not decide HTTP statuses or wire formats: the gateway maps `stop` to `content_filter`.
//! Everything is linear in the input: every parse is bounded by a limit, and a long hold is
//! re-analyzed only after it grows by a quarter.

mod cuts;
mod detectors;
mod edit;
mod error;
mod findings;
mod fold;
mod guard;
mod hidden;
mod json;
mod markup;
mod options;
mod sanitize;
mod screen;
mod url;

pub use error::OutputError;
pub use findings::Applied;
pub use guard::{Released, StreamGuard, CONTEXT_CHARS};
pub use json::{sanitize_json, JsonStreamGuard};
pub use options::{
    BareDomains, Class, ClassSet, GuardOptions, HostAllowlist, HostPredicate, LinkAllow,
    SanitizeOptions, DEFAULT_LOOKBACK_BYTES, DEFAULT_MAX_HOLD_BYTES, DEFAULT_MAX_HOLD_TIME,
    MIN_MAX_HOLD_BYTES, MIN_SAFE_HOLD_BYTES,
};
pub use palisade_detect::Canary;
pub use sanitize::{sanitize, Sanitized};

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
