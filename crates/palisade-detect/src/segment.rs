//! Sentence segmentation shared by the concept finder and the feature extractor: the text
//! cut into runs of whole sentences (or lines) of bounded size, so a short instruction
//! planted in a long document is scored inside its own segment.
//!
//! A leaf module: it depends on nothing else in the crate, so `concepts` and `features`
//! can both import it without importing each other. Linear time, no allocation beyond the
//! returned ranges.

/// Maximum bytes of one segment for segment-level scoring.
pub const SEGMENT_BYTES: usize = 400;

/// Splits text into segments of whole sentences (or lines) of at most [`SEGMENT_BYTES`]
/// (longer sentences are cut). A short instruction planted in a long document dominates its
/// own segment even when it is diluted in the whole text. Linear time.
pub fn segments(text: &str) -> Vec<std::ops::Range<usize>> {
    crate::work::add(crate::work::Unit::SegmentBytes, text.len());
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut last_cut = 0usize;
    let bytes = text.as_bytes();
    let mut i = 0usize;
    for (pos, c) in text.char_indices() {
        if pos < i {
            continue;
        }
        let end = pos + c.len_utf8();
        let boundary = matches!(c, '\n' | '。' | '！' | '？')
            || (matches!(c, '.' | '!' | '?' | ';')
                && bytes.get(end).is_none_or(|b| b.is_ascii_whitespace()));
        if boundary {
            last_cut = end;
        }
        if end - start > SEGMENT_BYTES {
            let cut = if last_cut > start { last_cut } else { pos };
            if cut > start {
                out.push(start..cut);
            }
            start = cut;
        }
        i = end;
    }
    if start < text.len() {
        out.push(start..text.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_text() {
        let t = "First sentence. Second one!\nThird line without end";
        let segs = segments(t);
        assert_eq!(segs.first().unwrap().start, 0);
        assert_eq!(segs.last().unwrap().end, t.len());
        let long = "word ".repeat(500);
        let segs = segments(&long);
        assert!(segs.len() >= 6);
        assert!(segs.iter().all(|r| r.end - r.start <= SEGMENT_BYTES + 4));
        for w in segs.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
    }
}
