//! Text helpers of the stream guard: semantic boundaries, char-boundary rounding
//! and the canary skeleton carried past the kept context. Pure functions on `str`.

use crate::fold::fold_char;

use super::PRE_SKELETON;

/// Appends the canary skeleton of `text` to `skel`, keeping the last [`PRE_SKELETON`].
pub(super) fn remember(skel: &mut Vec<u8>, text: &str) {
    for c in text.chars() {
        let c = fold_char(c).unwrap_or(c);
        if c.is_ascii_alphanumeric() {
            skel.push(c.to_ascii_lowercase() as u8);
        }
    }
    if skel.len() > PRE_SKELETON {
        skel.drain(..skel.len() - PRE_SKELETON);
    }
}

/// A semantic boundary ends at or after `from`.
pub(super) fn has_boundary(buf: &str, from: usize) -> bool {
    let b = buf.as_bytes();
    (from..b.len()).any(|i| match b[i] {
        b'\n' => true,
        c if c.is_ascii_whitespace() => i > 0 && matches!(b[i - 1], b'.' | b'!' | b'?'),
        0xE3 | 0xEF => ["。", "！", "？"]
            .iter()
            .any(|s| b[i..].starts_with(s.as_bytes())),
        _ => false,
    })
}

/// The largest char boundary in `s` at or below `max`, but at least one character.
pub(super) fn floor_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut k = max;
    while k > 0 && !s.is_char_boundary(k) {
        k -= 1;
    }
    if k == 0 {
        s.chars().next().map_or(s.len(), char::len_utf8)
    } else {
        k
    }
}

/// The smallest char boundary in `s` at or above `min`.
pub(super) fn ceil_boundary(s: &str, min: usize) -> usize {
    let mut k = min.min(s.len());
    while !s.is_char_boundary(k) {
        k += 1;
    }
    k
}
