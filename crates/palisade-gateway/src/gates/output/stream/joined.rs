//! A Responses stream's output text as a client joins it: the SDKs'
//! `output_text` is every `output_text` (and refusal) part of every message
//! item, concatenated in order. Each part has its own guard (its released
//! text goes back into its own events), so a key split across two parts
//! (`…AKIAIOSF` ending part 0, `ODNN7EXAMPLE…` starting part 1) is whole to
//! nobody but the client. This guard is fed the same deltas, in order, and
//! only judges: a finding that spans the seam between two parts stops the
//! stream, as the whole-body gate withholds a body whose joined parts find
//! something (`gates/output/responses.rs`).
//!
//! Parts must come in the order a client renders them: a delta for a part
//! before the one being streamed (a hostile upstream interleaving parts so
//! that arrival order is not rendering order) is refused.
//!
//! Must not: release text (the parts' own guards do), or count a finding
//! inside one part, which that part's guard reports.

use std::time::Duration;

use palisade_output::{Applied, GuardOptions, OutputError, Released, StreamGuard};

use super::Field;

/// Rules whose finding is the value a name before it makes a secret.
const NAMED_BY_CONTEXT: [&str; 1] = ["generic-api-key"];

/// How far after a seam such a value may start and still have its name
/// before the seam: the guard's context, in bytes of up to 4 per character.
const NAME_REACH_BYTES: usize = palisade_output::CONTEXT_CHARS * 4;

/// Event types whose deltas a client joins into one text.
pub(super) fn joins(kind: &str) -> bool {
    matches!(
        kind,
        "response.output_text.delta" | "response.refusal.delta"
    )
}

/// A delta came for a part before the one being streamed.
#[derive(Debug)]
pub(super) struct OutOfOrder;

/// What the joined text adds to the parts' own judgments.
#[derive(Debug, Default)]
pub(super) struct Verdict {
    /// End the stream: a finding spans a seam, or a blocking one was found.
    pub stop: bool,
    /// The findings behind the stop.
    pub violations: Vec<Applied>,
}

#[derive(Debug)]
pub(super) struct JoinedText {
    guard: StreamGuard,
    /// The part being streamed and its place (`output_index`, part index).
    current: Option<(Field, (u64, u64))>,
    /// Offsets in the joined text where one part ends and the next begins.
    seams: Vec<usize>,
    pushed: usize,
}

impl JoinedText {
    pub(super) fn new(options: GuardOptions) -> Result<Self, OutputError> {
        Ok(Self {
            guard: StreamGuard::new(options)?,
            current: None,
            seams: Vec::new(),
            pushed: 0,
        })
    }

    /// Adds one delta of the part `field` at `place`.
    pub(super) fn push(
        &mut self,
        field: &Field,
        place: (u64, u64),
        text: &str,
        now: Duration,
    ) -> Result<Verdict, OutOfOrder> {
        match &self.current {
            Some((open, _)) if open == field => {}
            Some((_, at)) if place <= *at => return Err(OutOfOrder),
            Some(_) => {
                self.seams.push(self.pushed);
                self.current = Some((field.clone(), place));
            }
            None => self.current = Some((field.clone(), place)),
        }
        self.pushed += text.len();
        let released = self.guard.push_at(text, now);
        Ok(self.judge(released))
    }

    /// Judges what has waited its time bound (as the parts' guards release
    /// theirs).
    pub(super) fn release_due(&mut self, now: Duration) -> Verdict {
        let released = self.guard.release_due(now);
        self.judge(released)
    }

    /// Judges everything still held: the stream is ending.
    pub(super) fn finish(&mut self) -> Verdict {
        let released = self.guard.finish();
        self.judge(released)
    }

    fn judge(&self, released: Released) -> Verdict {
        // A finding spans a seam, or is a value found by the name before it
        // (`password = ` ending one part, the value starting the next: the
        // value's span starts at the seam, and the next part's own guard,
        // without the name, finds nothing).
        let spans_seam = |a: &Applied| {
            let span = &a.span_in_original;
            self.seams.iter().any(|&s| {
                (span.start < s && s < span.end)
                    || (NAMED_BY_CONTEXT.contains(&a.rule)
                        && s <= span.start
                        && span.start < s + NAME_REACH_BYTES)
            })
        };
        let crossing: Vec<Applied> = released
            .violations
            .iter()
            .filter(|a| spans_seam(a))
            .cloned()
            .collect();
        if !crossing.is_empty() {
            return Verdict {
                stop: true,
                violations: crossing,
            };
        }
        Verdict {
            stop: released.stop,
            violations: if released.stop {
                released.violations
            } else {
                Vec::new()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(part: u64) -> Field {
        Field::Event(
            "response.output_text.delta".into(),
            0,
            Some(("content_index", part)),
        )
    }

    fn joined() -> JoinedText {
        JoinedText::new(GuardOptions::default()).unwrap()
    }

    /// A key split across two parts is found at the seam; the same key
    /// inside one part is left to that part's guard.
    #[test]
    fn only_a_finding_across_a_seam_counts() {
        let now = Duration::ZERO;
        let mut split = joined();
        let a = split
            .push(&field(0), (0, 0), "the key is AKIAIOSF", now)
            .unwrap();
        assert!(!a.stop);
        let b = split
            .push(&field(1), (0, 1), "ODNN7EXAMPLE ok. ", now)
            .unwrap();
        let end = split.finish();
        assert!(b.stop || end.stop, "{b:?} {end:?}");
        let found = if b.stop { b.violations } else { end.violations };
        assert!(
            found.iter().any(|a| a.rule == "aws-access-token"),
            "{found:?}"
        );

        let mut whole = joined();
        let a = whole.push(
            &field(0),
            (0, 0),
            "the key is AKIAIOSFODNN7EXAMPLE ok. ",
            now,
        );
        let b = whole
            .push(&field(1), (0, 1), "and more text. ", now)
            .unwrap();
        let end = whole.finish();
        assert!(!a.unwrap().stop && !b.stop && !end.stop);
        assert!(end.violations.is_empty());
    }

    /// A key's name ending one part and its value starting the next: the
    /// value alone is no finding for the next part's guard, joined it is.
    #[test]
    fn a_value_named_across_a_seam_counts() {
        let now = Duration::ZERO;
        let mut j = joined();
        let a = j
            .push(&field(0), (0, 0), "Here it is. password = ", now)
            .unwrap();
        let b = j
            .push(
                &field(1),
                (0, 1),
                "q8Zr2LmX91vTb7Kd4Hs0pWnY and more. ",
                now,
            )
            .unwrap();
        let end = j.finish();
        assert!(!a.stop);
        assert!(b.stop || end.stop, "{b:?} {end:?}");
    }

    /// A part before the one being streamed cannot come back: its text
    /// would be joined in an order no client renders.
    #[test]
    fn a_part_left_or_skipped_back_to_is_refused() {
        let now = Duration::ZERO;
        let mut j = joined();
        j.push(&field(1), (0, 1), "later part ", now).unwrap();
        assert!(j.push(&field(0), (0, 0), "earlier part ", now).is_err());
        let mut j = joined();
        j.push(&field(0), (0, 0), "a ", now).unwrap();
        j.push(&field(1), (0, 1), "b ", now).unwrap();
        assert!(j.push(&field(0), (0, 0), "a again ", now).is_err());
        assert!(j.push(&field(1), (0, 1), "b goes on ", now).is_ok());
    }
}
