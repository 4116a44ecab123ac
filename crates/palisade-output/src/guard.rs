//! The stream guard: releases a streamed completion only once what is released can no
//! longer turn into (part of) a secret, a URL or a canary.
//!
//! The guard keeps one buffer: a lookback of released text, then the held text. After a
//! delta that completes a semantic boundary (or fills the hold bound) it analyzes the whole
//! buffer with the sanitizer, in "more may come" mode, and releases the held text up to
//! the latest safe cut, with the sanitizer's edits applied. A cut is safe when:
//!
//! * it follows a newline, a `.`/`!`/`?` and a whitespace character, or a CJK full stop;
//! * no parsed construct (link, image, tag, URL, PEM block, comment) and no edit spans it,
//!   and no construct the window ended inside of starts before it;
//! * it is not inside the last token (which may still grow);
//! * the line before a newline does not end in a digit or `)` (a phone number continues
//!   across a line break) or a JSON `"type":` key (blank lines after it included);
//! * no canary's alphanumeric skeleton could run across it.
//!
//! Windows always start at an earlier cut, so every window is parsed exactly as the whole
//! text would be from there, which is what makes the released text equal `sanitize` of the
//! whole completion (see the crate docs for the precise statement).
//!
//! The lookback is incremental: after each release it is trimmed to the latest earlier cut
//! that still leaves [`CONTEXT_CHARS`] characters of what the detectors read (more than
//! any of them reaches back across a cut), so each analysis covers the new text and that
//! context, not a fixed span of released text; what leaves the buffer is carried forward
//! as its canary skeleton (`pre_skel`).

mod action;
mod text;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::Duration;

use crate::detectors::{pem_end, PEM_END_MAX};
use crate::edit::render;
use crate::error::OutputError;
use crate::findings::{Analysis, Applied, Open};
use crate::markup::{BLOCK_PREFIX_MAX, MAX_CONSTRUCT_BYTES};
use crate::options::{Class, GuardOptions, MIN_MAX_HOLD_BYTES, MIN_SAFE_HOLD_BYTES};
use crate::sanitize::analyze;

use action::{Action, DropMode};
use text::{ceil_boundary, floor_boundary, has_boundary, remember};

const _: () = assert!(MAX_CONSTRUCT_BYTES < MIN_SAFE_HOLD_BYTES);

/// How many canary-skeleton characters of text no longer held are remembered (more than
/// any canary core).
const PRE_SKELETON: usize = 32;

/// How much released text every analysis window keeps in front of the held text, in
/// characters of the text the detectors read (hidden marks and comments removed): more
/// than the farthest any detector reaches back across a release point. Windows start at
/// an earlier release point at least this far back, so each is parsed as the whole text
/// is from there (see the module docs), and released text is rescanned only as context,
/// not re-analysed whole at every release. What reaches back across a release point:
///
/// * a key's name before its value (`secret. = q8Zr…`): palisade-detect's generic rule reads
///   a name of at most 13 characters, 20 word characters, a quote, 5 spaces, a 2-character
///   separator, 5 spaces and a quote before the value ([`SECRET_NAME_REACH`]);
/// * a PII number written in groups with spaces (an IBAN: 44 characters at most,
///   [`PII_SPAN_MAX`]); phone numbers and cards are shorter;
/// * a reference definition's line start, looked for [`BLOCK_PREFIX_MAX`] bytes back from
///   its `[` (each character is at least one byte, so this many characters suffice);
/// * a canary written out with a separator after every character of its 20-character
///   token, whatever the encoding of its characters (3 characters each:
///   [`ENCODED_CANARY_MAX`]). A canary spread farther than that by whitespace is caught by
///   the skeleton the guard remembers (`pre_skel`); one found only by decoding the whole
///   text is caught within a window, as the crate docs say.
///
/// Every construct the markup parsers read is held while it may grow (the window cannot
/// start inside one), and a JSON `"type":` key holds any cut after it (its rule allows any
/// whitespace), so none of them needs context.
pub const CONTEXT_CHARS: usize = 96;

/// See [`CONTEXT_CHARS`].
const SECRET_NAME_REACH: usize = 13 + 20 + 1 + 5 + 2 + 5 + 1;
/// See [`CONTEXT_CHARS`].
const PII_SPAN_MAX: usize = 4 + 7 * 5 + 5;
/// See [`CONTEXT_CHARS`].
const ENCODED_CANARY_MAX: usize = 20 * 3;
const _: () = assert!(CONTEXT_CHARS >= SECRET_NAME_REACH);
const _: () = assert!(CONTEXT_CHARS >= PII_SPAN_MAX);
const _: () = assert!(CONTEXT_CHARS > BLOCK_PREFIX_MAX);
const _: () = assert!(CONTEXT_CHARS >= ENCODED_CANARY_MAX);

/// The context kept is at most this many bytes even when [`CONTEXT_CHARS`] characters
/// reach farther back (invisible padding): the cost of each analysis, and the memory of a
/// stream, stay bounded. Four times the fixed lookback this replaced, so a key name padded
/// with invisible marks is read across a release point from farther than before.
const CONTEXT_BYTES_MAX: usize = 2048;

/// How much of a dropped token is kept to recognize a `-----BEGIN` or `<!--` that
/// straddles two deltas (one byte less than the longer opener).
const SKIP_TAIL: usize = 9;

/// What one call of [`StreamGuard::push`] or [`StreamGuard::finish`] lets through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Released {
    /// Sanitized text to forward now (may be empty). Never repeats earlier text.
    pub text: String,
    /// What was neutralized in `text`, and on a stop, what caused it. Spans are byte
    /// offsets into the whole completion as pushed.
    pub violations: Vec<Applied>,
    /// A blocking finding: end the stream now with `finish_reason: "content_filter"`.
    /// Nothing of the segment holding the finding is released, and every later call
    /// releases nothing and repeats `stop`.
    pub stop: bool,
}

impl Released {
    /// Nothing to forward and nothing to report.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.violations.is_empty() && !self.stop
    }
}

#[derive(Debug)]
enum Mode {
    Open,
    /// Inside an HTML comment longer than the hold bound: dropping until `-->`.
    SkipComment {
        tail: Vec<u8>,
        start: usize,
    },
    /// Inside a PEM private key longer than the hold bound: dropping until its END line.
    SkipPem {
        tail: String,
        start: usize,
    },
    /// Inside a token longer than the hold bound: dropping until whitespace, or until the
    /// start of a PEM block or comment (which must not lose its opener). `tail` is the end
    /// of what was dropped, in case such an opener straddles two deltas.
    SkipToken {
        tail: String,
    },
    Stopped,
    Finished,
}

/// Guards one streamed completion. Feed it every content delta in order with
/// [`push`](Self::push), then call [`finish`](Self::finish) when the upstream ends; forward
/// each [`Released::text`] as it comes.
///
/// ```
/// use palisade_output::{GuardOptions, StreamGuard};
/// let mut g = StreamGuard::new(GuardOptions::default()).unwrap();
/// let mut out = String::new();
/// for delta in ["Your key is AKIAZ7Q2", "LM4XK3PT6WRB. Keep", " it safe."] {
///     out += &g.push(delta).text;
/// }
/// out += &g.finish().text;
/// assert_eq!(out, "Your key is [REDACTED:aws-access-token]. Keep it safe.");
/// ```
#[derive(Debug)]
pub struct StreamGuard {
    opts: GuardOptions,
    /// Lookback (released) followed by held (not yet released) text, raw.
    buf: String,
    /// Where the held text starts in `buf`.
    held_at: usize,
    /// Offset of `buf[held_at]` in the whole completion.
    held_abs: usize,
    /// Earlier release points in `buf`: where the lookback may be trimmed to.
    clean: Vec<usize>,
    /// From where in `buf` to look for a new boundary.
    check_from: usize,
    mode: Mode,
    /// Releases forced by the hold bound (including dropped oversized constructs).
    forced: u64,
    /// Releases forced by the hold time.
    timed: u64,
    /// The canary skeleton (lowercase ASCII alphanumerics, compatibility forms folded) of
    /// the last text that left the buffer, released or dropped: a canary spread thinly
    /// enough (long whitespace runs between its characters) may have started there.
    pre_skel: Vec<u8>,
    /// When each delta arrived (the caller's clock): the completion offset of its first
    /// byte and the time. Only deltas that may still be held are kept.
    arrivals: VecDeque<(usize, Duration)>,
    /// Bytes of completion pushed so far.
    total: usize,
    /// After an analysis that could release nothing from a long hold (a canary prefix, an
    /// open construct), the buffer length below which another is not worth running: the
    /// hold must grow by a quarter first, so re-analysis of a long hold costs amortized
    /// linear time (the output does not depend on where cuts fall).
    stalled: usize,
}

impl StreamGuard {
    /// A guard for one completion.
    ///
    /// # Errors
    /// [`OutputError::HoldTooSmall`] if `max_hold_bytes` is below [`MIN_MAX_HOLD_BYTES`].
    ///
    /// A `max_hold_bytes` below [`MIN_SAFE_HOLD_BYTES`] is raised to it (see
    /// [`Self::max_hold_bytes`]): a smaller bound would force cuts through links the
    /// sanitizer could still judge whole.
    pub fn new(mut opts: GuardOptions) -> Result<Self, OutputError> {
        if opts.max_hold_bytes < MIN_MAX_HOLD_BYTES {
            return Err(OutputError::HoldTooSmall {
                got: opts.max_hold_bytes,
                min: MIN_MAX_HOLD_BYTES,
            });
        }
        opts.max_hold_bytes = opts.max_hold_bytes.max(MIN_SAFE_HOLD_BYTES);
        Ok(StreamGuard {
            opts,
            buf: String::new(),
            held_at: 0,
            held_abs: 0,
            clean: vec![0],
            check_from: 0,
            mode: Mode::Open,
            forced: 0,
            timed: 0,
            pre_skel: Vec::new(),
            arrivals: VecDeque::new(),
            total: 0,
            stalled: 0,
        })
    }

    /// The hold bound in use: `max_hold_bytes` as configured, or [`MIN_SAFE_HOLD_BYTES`] if
    /// that is larger.
    pub fn max_hold_bytes(&self) -> usize {
        self.opts.max_hold_bytes
    }

    /// How many releases the hold time forced ([`Self::push_at`], [`Self::release_due`]).
    /// Unlike byte-forced releases, they never change the output.
    pub fn timed_releases(&self) -> u64 {
        self.timed
    }

    /// Bytes received but not released yet (at most `max_hold_bytes` between calls).
    pub fn held_bytes(&self) -> usize {
        self.buf.len() - self.held_at
    }

    /// How many times the hold bound forced a release without a semantic boundary (worth a
    /// metric: each one is a place where the output may differ from `sanitize` of the
    /// whole completion, always by removing more).
    pub fn forced_releases(&self) -> u64 {
        self.forced
    }

    /// True once a blocking finding stopped the stream.
    pub fn is_stopped(&self) -> bool {
        matches!(self.mode, Mode::Stopped)
    }

    /// Takes the next delta of the completion.
    pub fn push(&mut self, delta: &str) -> Released {
        let mut out = Released::default();
        match self.mode {
            Mode::Stopped => {
                out.stop = true;
                return out;
            }
            Mode::Finished => return out,
            _ => {}
        }
        self.total += delta.len();
        let mut rest = delta;
        // A huge delta is taken in slices of at most the hold bound, so that one analysis
        // never covers more than the lookback and two bounds.
        while !rest.is_empty() && !out.stop {
            let take = floor_boundary(rest, self.opts.max_hold_bytes);
            let (slice, r) = rest.split_at(take);
            rest = r;
            self.feed(slice, &mut out);
        }
        out
    }

    /// Takes the next delta, which arrived at `now` (any monotonic clock of the caller's:
    /// the guard reads none), then releases what has been held longer than
    /// [`GuardOptions::max_hold_time`] as [`Self::release_due`] does.
    pub fn push_at(&mut self, delta: &str, now: Duration) -> Released {
        if !delta.is_empty() && matches!(self.mode, Mode::Open | Mode::SkipToken { .. }) {
            self.arrivals.push_back((self.total, now));
        }
        let mut out = self.push(delta);
        if !out.stop {
            let due = self.release_due(now);
            out.text.push_str(&due.text);
            out.violations.extend(due.violations);
            out.stop |= due.stop;
        }
        out
    }

    /// Releases held text that has waited longer than [`GuardOptions::max_hold_time`] at
    /// `now`: up to the last position from which no secret, link, canary or markup pattern
    /// could still complete (the end of a sentence if there is one, otherwise a token
    /// boundary that no finder, construct or canary prefix spans). What stays held is a
    /// pattern that may still complete (the last token, an open link or tag, a canary
    /// prefix). The released text is exactly what [`crate::sanitize`] of the whole
    /// completion has there. Call it from a timer when no delta arrives;
    /// [`Self::next_due`] says when.
    pub fn release_due(&mut self, now: Duration) -> Released {
        let mut out = Released::default();
        match self.mode {
            Mode::Stopped => {
                out.stop = true;
                return out;
            }
            Mode::Open => {}
            _ => return out,
        }
        if self.next_due().is_some_and(|due| due <= now) {
            self.release_timed(&mut out);
        }
        out
    }

    /// When the oldest held text will have waited [`GuardOptions::max_hold_time`] (by the
    /// clock given to [`Self::push_at`]); `None` when nothing timed is held.
    pub fn next_due(&self) -> Option<Duration> {
        if self.held_bytes() == 0 || !matches!(self.mode, Mode::Open) {
            return None;
        }
        let k = self
            .arrivals
            .partition_point(|&(off, _)| off <= self.held_abs);
        let (_, at) = self.arrivals.get(k.checked_sub(1)?)?;
        Some(at.saturating_add(self.opts.max_hold_time))
    }

    /// Ends the completion: releases everything still held, sanitized as the end of text.
    pub fn finish(&mut self) -> Released {
        let mut out = Released::default();
        match std::mem::replace(&mut self.mode, Mode::Finished) {
            Mode::Stopped => {
                self.mode = Mode::Stopped;
                out.stop = true;
            }
            Mode::Finished | Mode::SkipToken { .. } => {}
            Mode::SkipComment { start, .. } => out.violations.push(Applied {
                class: Class::Hidden,
                rule: "html-comment",
                span_in_original: start..self.held_abs,
            }),
            Mode::SkipPem { start, .. } => out.violations.push(Applied {
                class: Class::Secret,
                rule: "private-key",
                span_in_original: start..self.held_abs,
            }),
            Mode::Open => {
                self.mode = Mode::Open;
                self.release(true, &mut out);
                if !out.stop {
                    self.mode = Mode::Finished;
                }
            }
        }
        self.buf = String::new();
        self.held_at = 0;
        out
    }

    fn feed(&mut self, slice: &str, out: &mut Released) {
        let s = self.skip(slice, out);
        if s.is_empty() {
            return;
        }
        self.buf.push_str(&s);
        let boundary = has_boundary(&self.buf, self.check_from);
        self.check_from = self.buf.len();
        if self.held_bytes() >= self.opts.max_hold_bytes
            || (boundary && self.buf.len() >= self.stalled)
        {
            self.release(false, out);
        }
    }

    /// In a skip mode, consumes `slice` up to the end of what is being dropped and returns
    /// the rest.
    fn skip<'s>(&mut self, slice: &'s str, out: &mut Released) -> Cow<'s, str> {
        match &mut self.mode {
            Mode::SkipComment { tail, start } => {
                let mut hay = std::mem::take(tail);
                let keep = hay.len();
                hay.extend_from_slice(slice.as_bytes());
                let end = [&b"-->"[..], &b"--!>"[..]]
                    .iter()
                    .filter_map(|pat| {
                        hay.windows(pat.len())
                            .position(|w| w == *pat)
                            .map(|k| k + pat.len())
                    })
                    .min();
                match end {
                    Some(e) => {
                        let used = e.saturating_sub(keep).min(slice.len());
                        out.violations.push(Applied {
                            class: Class::Hidden,
                            rule: "html-comment",
                            span_in_original: *start..self.held_abs + used,
                        });
                        self.held_abs += used;
                        self.mode = Mode::Open;
                        Cow::Borrowed(slice.get(used..).unwrap_or(""))
                    }
                    None => {
                        *tail = hay[hay.len().saturating_sub(3)..].to_vec();
                        self.held_abs += slice.len();
                        Cow::Borrowed("")
                    }
                }
            }
            Mode::SkipPem { tail, start } => {
                let mut hay = std::mem::take(tail);
                let keep = hay.len();
                hay.push_str(slice);
                match pem_end(&hay) {
                    Some(e) => {
                        let used = e.saturating_sub(keep).min(slice.len());
                        out.violations.push(Applied {
                            class: Class::Secret,
                            rule: "private-key",
                            span_in_original: *start..self.held_abs + used,
                        });
                        self.held_abs += used;
                        self.mode = Mode::Open;
                        Cow::Borrowed(slice.get(used..).unwrap_or(""))
                    }
                    None => {
                        let from = ceil_boundary(&hay, hay.len().saturating_sub(PEM_END_MAX));
                        *tail = hay[from..].to_string();
                        self.held_abs += slice.len();
                        remember(&mut self.pre_skel, slice);
                        Cow::Borrowed("")
                    }
                }
            }
            Mode::SkipToken { tail } => {
                let mut hay = std::mem::take(tail);
                let keep = hay.len();
                hay.push_str(slice);
                let stop = [
                    hay.find(|c: char| c.is_ascii_whitespace()),
                    hay.find("-----BEGIN"),
                    hay.find("<!--"),
                ]
                .into_iter()
                .flatten()
                .min();
                match stop {
                    Some(k) => {
                        // `hay[j]` is at completion offset `held_abs - keep + j`: the
                        // kept tail was counted as dropped already.
                        self.held_abs = (self.held_abs + k) - keep;
                        self.mode = Mode::Open;
                        remember(&mut self.pre_skel, &hay[keep.min(k)..k]);
                        Cow::Owned(hay[k..].to_string())
                    }
                    None => {
                        let from = ceil_boundary(&hay, hay.len().saturating_sub(SKIP_TAIL));
                        *tail = hay[from..].to_string();
                        self.held_abs += slice.len();
                        remember(&mut self.pre_skel, slice);
                        Cow::Borrowed("")
                    }
                }
            }
            _ => Cow::Borrowed(slice),
        }
    }

    /// A blocking finding in the analysis: any canary (also one that started in text no
    /// longer held), or a finding of a blocking class.
    fn stop_for(&self, a: &Analysis<'_>) -> Option<Action> {
        let mut blocking = a.blocking(self.held_at, self.opts.block);
        if blocking.is_empty() && a.canary_across() {
            blocking.push(Applied {
                class: Class::Canary,
                rule: "canary-token",
                span_in_original: 0..self.buf.len(),
            });
        }
        (!blocking.is_empty()).then_some(Action::Stop(blocking))
    }

    fn release(&mut self, at_eof: bool, out: &mut Released) {
        loop {
            let held = self.held_bytes();
            if held == 0 {
                return;
            }
            // The analysis borrows the buffer; collect what to do, then act.
            let action = {
                let mut a = analyze(&self.buf, &self.opts.sanitize, at_eof);
                a.set_pre_skeleton(&self.pre_skel);
                match self.stop_for(&a) {
                    Some(stop) => stop,
                    None => {
                        let cut = if at_eof {
                            Some(self.buf.len())
                        } else {
                            a.semantic_cut(self.held_at)
                        };
                        match cut {
                            Some(b) => self.segment(&a, b),
                            None if held < self.opts.max_hold_bytes => {
                                self.stall();
                                return;
                            }
                            None => {
                                self.forced += 1;
                                self.forced(&a)
                            }
                        }
                    }
                }
            };
            if !self.apply(action, out) {
                return;
            }
            if at_eof || self.held_bytes() < self.opts.max_hold_bytes {
                return;
            }
        }
    }

    /// The hold time ran out: releases up to the latest quiet cut, if there is one.
    fn release_timed(&mut self, out: &mut Released) {
        if self.held_bytes() == 0 || self.buf.len() < self.stalled {
            return;
        }
        let action = {
            let mut a = analyze(&self.buf, &self.opts.sanitize, false);
            a.set_pre_skeleton(&self.pre_skel);
            match self.stop_for(&a) {
                Some(stop) => stop,
                None => match a
                    .semantic_cut(self.held_at)
                    .or_else(|| a.quiet_cut(self.held_at))
                {
                    Some(b) => self.segment(&a, b),
                    None => {
                        self.stall();
                        return;
                    }
                },
            }
        };
        self.timed += 1;
        self.apply(action, out);
    }

    /// Records a fruitless analysis of a long hold (see `stalled`).
    fn stall(&mut self) {
        let held = self.held_bytes();
        self.stalled = if held >= 512 {
            self.buf.len() + held / 4
        } else {
            0
        };
    }

    /// Carries out `action`; false when nothing more can be released now.
    fn apply(&mut self, action: Action, out: &mut Released) -> bool {
        match action {
            Action::Stop(blocking) => {
                for f in blocking {
                    out.violations.push(self.absolute(f));
                }
                out.stop = true;
                self.mode = Mode::Stopped;
                self.buf = String::new();
                self.held_at = 0;
                self.arrivals.clear();
                false
            }
            Action::Emit {
                text,
                findings,
                cut,
                context,
            } => {
                out.text.push_str(&text);
                for f in findings {
                    out.violations.push(self.absolute(f));
                }
                self.advance(cut, context);
                true
            }
            Action::Drop {
                marker,
                finding,
                mode,
            } => {
                out.text.push_str(marker);
                let len = self.held_bytes();
                if let Some(f) = finding {
                    out.violations.push(Applied {
                        span_in_original: self.held_abs..self.held_abs + len,
                        ..f
                    });
                }
                let start = self.held_abs;
                // The terminator is looked for only after the opener (an earlier block's
                // END line in the same held text must not end this one).
                let n = self.buf.len();
                self.mode = match mode {
                    DropMode::Comment(p) => Mode::SkipComment {
                        tail: self.buf.as_bytes()[n.saturating_sub(3).max(p + 4).min(n)..].to_vec(),
                        start,
                    },
                    DropMode::Pem(p) => Mode::SkipPem {
                        tail: self.buf
                            [ceil_boundary(&self.buf, n.saturating_sub(PEM_END_MAX).max(p))..]
                            .to_string(),
                        start,
                    },
                    DropMode::Token => {
                        let held = &self.buf[self.held_at..];
                        let word = held
                            .rfind(|c: char| c.is_ascii_whitespace())
                            .map_or(0, |i| i + 1);
                        let from =
                            ceil_boundary(held, held.len().saturating_sub(SKIP_TAIL).max(word));
                        Mode::SkipToken {
                            tail: held[from..].to_string(),
                        }
                    }
                    DropMode::None => Mode::Open,
                };
                self.held_abs += len;
                if matches!(mode, DropMode::Comment(_)) {
                    // A comment is hidden: the text after it follows the lookback.
                    self.buf.truncate(self.held_at);
                } else {
                    // The dropped text stood between the lookback and what comes next: both
                    // leave the buffer (in order, into the canary memory), so nothing after
                    // the drop is read as adjacent to text before it.
                    remember(&mut self.pre_skel, &self.buf);
                    self.buf.clear();
                    self.held_at = 0;
                    self.clean = vec![0];
                }
                self.stalled = 0;
                self.check_from = self.buf.len();
                false
            }
        }
    }

    /// The held text up to `b`, sanitized, and the findings that start in it.
    fn segment(&self, a: &Analysis<'_>, b: usize) -> Action {
        let s = self.held_at;
        let text = render(&self.buf, &a.edits, s..b).into_owned();
        let findings = a
            .findings
            .iter()
            .filter(|f| f.span_in_original.start >= s && f.span_in_original.start < b)
            .cloned()
            .collect();
        Action::Emit {
            text,
            findings,
            cut: b,
            context: a.context_start(b, CONTEXT_CHARS),
        }
    }

    /// The hold bound is reached and there is no semantic boundary to cut at.
    fn forced(&self, a: &Analysis<'_>) -> Action {
        if let Some(b) = a.forced_cut(self.held_at, true) {
            return self.segment(a, b);
        }
        match a.open_skip {
            Some((p, Open::Comment)) if p == self.held_at => {
                return Action::Drop {
                    marker: "",
                    finding: None,
                    mode: DropMode::Comment(p),
                }
            }
            Some((p, Open::Pem)) if p == self.held_at => {
                return Action::Drop {
                    marker: "[REDACTED:private-key]",
                    finding: None,
                    mode: DropMode::Pem(p),
                }
            }
            _ => {}
        }
        // No safe cut: an open link or tag never reaches here (the bound is at least the
        // longest construct the sanitizer reads before deciding), so what is held is one
        // construct longer than the bound. It is dropped, never emitted in part.
        // One construct longer than the bound: it is dropped, never emitted in part.
        let held = &self.buf[self.held_at..];
        let mode = match a.open_skip {
            Some((p, Open::Comment)) => DropMode::Comment(p),
            Some((p, Open::Pem)) => DropMode::Pem(p),
            _ if held.ends_with(|c: char| c.is_ascii_whitespace()) => DropMode::None,
            _ => DropMode::Token,
        };
        Action::Drop {
            marker: "[REDACTED:oversized-token]",
            finding: Some(Applied {
                class: Class::Overflow,
                rule: "oversized-token",
                span_in_original: 0..0,
            }),
            mode,
        }
    }

    /// Marks `buf[..b]` released and trims the lookback to the latest release point at or
    /// before `context` (the start of the context the next window needs, see
    /// [`CONTEXT_CHARS`]) that also leaves `lookback_bytes` of it, and that keeps at most
    /// [`CONTEXT_BYTES_MAX`] before `b` where release points allow.
    fn advance(&mut self, b: usize, context: usize) {
        self.stalled = 0;
        self.held_abs += b - self.held_at;
        self.held_at = b;
        // Arrival times of deltas wholly released are no longer needed.
        while self.arrivals.len() > 1 && self.arrivals[1].0 <= self.held_abs {
            self.arrivals.pop_front();
        }
        if self.clean.last() != Some(&b) {
            self.clean.push(b);
        }
        let target = context
            .max(b.saturating_sub(CONTEXT_BYTES_MAX))
            .min(b.saturating_sub(self.opts.lookback_bytes));
        // `clean[0]` is 0, so there is always a release point at or before the target.
        let idx = self.clean.partition_point(|&c| c <= target);
        let mut cut = self.clean[..idx].last().copied().unwrap_or(0);
        if b - cut > CONTEXT_BYTES_MAX + self.opts.max_hold_bytes {
            // No release point near enough (one delta brought a very long segment): trim
            // anyway, so memory and the cost of each analysis stay bounded.
            cut = ceil_boundary(&self.buf, b - CONTEXT_BYTES_MAX);
        }
        if cut > 0 {
            let gone = &self.buf[..cut];
            remember(&mut self.pre_skel, gone);
            self.buf.drain(..cut);
            self.held_at -= cut;
            self.check_from = self.check_from.saturating_sub(cut);
            self.clean.retain(|&c| c >= cut);
            for c in &mut self.clean {
                *c -= cut;
            }
            if self.clean.first() != Some(&0) {
                self.clean.insert(0, 0);
            }
        }
    }

    /// A finding's span, from buffer to completion offsets.
    fn absolute(&self, f: Applied) -> Applied {
        let map = |p: usize| {
            if p >= self.held_at {
                self.held_abs + (p - self.held_at)
            } else {
                self.held_abs.saturating_sub(self.held_at - p)
            }
        };
        let r = &f.span_in_original;
        Applied {
            span_in_original: map(r.start)..map(r.end),
            ..f
        }
    }
}
