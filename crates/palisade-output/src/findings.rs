//! What one sanitizer pass found and will change: the public [`Applied`] record, the
//! second phase's accumulator ([`Phase2`], filled by the markup scanners) and the whole
//! [`Analysis`] of a text or stream window that `sanitize`, the cut finder and the stream
//! guard read.
//!
//! Plain data shared by the passes, so none of them imports another's internals.

use std::borrow::Cow;
use std::ops::Range;

use crate::edit::{Edit, OffsetMap};
use crate::options::Class;

/// One thing the gate did (or, for a flagged encoded canary, found).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Applied {
    /// What kind of finding it is.
    pub class: Class,
    /// Stable rule name: the palisade-detect rule for secrets (`aws-access-token`), the PII
    /// kind (`email`), `canary-token` / `canary-token-encoded`, the URL verdict for links
    /// (`host-not-allowlisted`, `exfil-url`, `script-url`, `data-url`,
    /// `unsupported-scheme`), the hidden-markup kind (`html-comment`, `zero-width`,
    /// `unicode-tag`, `bidi-control`, `variation-selector`), or `oversized-token`.
    pub rule: &'static str,
    /// Byte span of the whole construct in the original text (for a stream: in the whole
    /// completion so far). A finding inside another one's span (a key inside a removed URL)
    /// is still reported; its text went with the outer construct.
    pub span_in_original: Range<usize>,
}

/// Findings and edits of the second phase, in STRIPPED-text coordinates.
#[derive(Debug, Default)]
pub(crate) struct Phase2 {
    pub edits: Vec<Edit>,
    pub findings: Vec<Applied>,
    /// Whole extents of parsed constructs (allowed ones too): a stream is never cut inside.
    pub zones: Vec<Range<usize>>,
    /// Replacements that read `[…]`, whose next character is checked by
    /// [`markup::marker_tails`].
    pub markers: Vec<Range<usize>>,
    /// Start of the first construct the text ended inside of.
    pub open: Option<usize>,
}

impl Phase2 {
    pub fn edit(&mut self, span: Range<usize>, with: String) {
        self.edits.push(Edit { span, with });
    }

    pub fn open_at(&mut self, p: usize) {
        self.open = Some(self.open.map_or(p, |o| o.min(p)));
    }

    pub(crate) fn redact(
        &mut self,
        class: Class,
        rule: &'static str,
        span: Range<usize>,
        label: &str,
    ) {
        self.edit(span.clone(), format!("[REDACTED:{label}]"));
        self.markers.push(span.clone());
        self.findings.push(Applied {
            class,
            rule,
            span_in_original: span,
        });
    }
}

/// What kind of construct a window ended inside of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Open {
    /// An HTML comment without its `-->`.
    Comment,
    /// A PEM private-key block without its END line.
    Pem,
    /// A link, image, tag or URL not yet complete.
    Markup,
}

/// Everything known about one text (or one window of a stream).
#[derive(Debug)]
pub(crate) struct Analysis<'a> {
    pub(crate) text: &'a str,
    pub(crate) stripped: Cow<'a, str>,
    pub(crate) map: OffsetMap,
    /// Resolved edits, original coordinates.
    pub(crate) edits: Vec<Edit>,
    /// Findings, original coordinates, by start.
    pub(crate) findings: Vec<Applied>,
    pub(crate) canary_leaked: bool,
    /// The earliest construct the window ended inside of (original coordinates).
    pub(crate) open: Option<(usize, Open)>,
    /// The earliest comment or PEM block the window ended inside of: the constructs the
    /// guard skips to their end when they outgrow the hold bound.
    pub(crate) open_skip: Option<(usize, Open)>,
    /// Spans a cut must not fall strictly inside (original coordinates, sorted, merged).
    pub(crate) nocut: Vec<Range<usize>>,
    /// Canary cores (lowercase skeletons), forwards and reversed.
    pub(crate) cores: Vec<Vec<u8>>,
    /// The text's canary skeleton: lowercase ASCII alphanumerics of the folded text, with
    /// their stripped positions (only when there are canaries).
    pub(crate) skel: Vec<(usize, u8)>,
    /// The skeleton of what came before the window (the stream guard's memory of text it
    /// no longer holds): a canary may have started there.
    pub(crate) pre_skel: Vec<u8>,
    pub(crate) at_eof: bool,
    /// Start (stripped coordinates) of the last, possibly incomplete, token.
    pub(crate) trailing: usize,
}
