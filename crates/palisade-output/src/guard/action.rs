//! What one analysis of the guard's buffer decides: stop the stream, emit up to a
//! cut, or drop a construct that cannot be released. Plain data; the guard applies it.

use crate::findings::Applied;

pub(super) enum Action {
    Stop(Vec<Applied>),
    Emit {
        text: String,
        findings: Vec<Applied>,
        cut: usize,
        /// Where the context the next window needs starts (see [`CONTEXT_CHARS`](super::CONTEXT_CHARS)).
        context: usize,
    },
    Drop {
        marker: &'static str,
        finding: Option<Applied>,
        mode: DropMode,
    },
}

pub(super) enum DropMode {
    /// Skip to the end of the comment opened at this buffer position.
    Comment(usize),
    /// Skip to the END line of the PEM block opened at this buffer position.
    Pem(usize),
    Token,
    None,
}
