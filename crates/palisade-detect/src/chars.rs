//! Character classes and small decoders shared by the input side (normalization) and the
//! output gate (`palisade-output`), so the two sides agree on what is invisible and how a
//! percent-encoded string reads.
//!
//! Each class is a plain predicate over one `char`. The normalizer uses
//! [`is_zero_width`], [`is_bidi_control`], [`is_tag`] and [`is_variation_selector`]; the
//! output gate uses those and also [`is_invisible_mark`] (bidi marks and other
//! format characters that render as nothing). The normalizer deliberately does not use
//! [`is_invisible_mark`]: what its features see must stay exactly what the shipped model
//! was trained on.

/// Zero-width and other blank-rendering characters used to split words invisibly:
/// ZWSP, ZWNJ, ZWJ, word joiner and invisible operators, BOM, Mongolian vowel separator,
/// soft hyphen, combining grapheme joiner, Hangul fillers.
pub fn is_zero_width(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{FEFF}'
            | '\u{180E}'
            | '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{3164}'
            | '\u{FFA0}'
    )
}

/// Bidi embedding, override and isolate controls (U+202A–202E, U+2066–2069).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Invisible marks beyond the zero-width and bidi-control sets: the bidi marks LRM, RLM
/// and ALM (U+200E, U+200F, U+061C), the deprecated format characters U+206A–206F,
/// interlinear annotation controls (U+FFF9–FFFB), Khmer inherent vowels (U+17B4–17B5) and
/// the musical-symbol formatting controls (U+1D173–1D17A). None renders a glyph; each can
/// sit inside a credential without a reader noticing.
pub fn is_invisible_mark(c: char) -> bool {
    matches!(
        c,
        '\u{200E}'
            | '\u{200F}'
            | '\u{061C}'
            | '\u{206A}'..='\u{206F}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{1D173}'..='\u{1D17A}'
    )
}

/// Unicode tag characters (U+E0000–E007F): an invisible copy of ASCII.
pub fn is_tag(c: char) -> bool {
    matches!(c, '\u{E0000}'..='\u{E007F}')
}

/// Variation selectors (U+FE00–FE0F and the supplement U+E0100–E01EF).
pub fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// The value of one ASCII hex digit.
pub fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes (invalid ones are kept as they are). With `plus_as_space`, `+`
/// reads as a space, as in form-encoded query strings; a URL host or path keeps it.
pub fn percent_decode(s: &str, plus_as_space: bool) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_value(b[i + 1]), hex_value(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(if plus_as_space && b[i] == b'+' {
            b' '
        } else {
            b[i]
        });
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_disjoint_where_the_normalizer_relies_on_it() {
        for cp in 0..=0x10FFFFu32 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let n = [
                is_zero_width(c),
                is_bidi_control(c),
                is_invisible_mark(c),
                is_tag(c),
                is_variation_selector(c),
            ]
            .iter()
            .filter(|&&x| x)
            .count();
            assert!(n <= 1, "U+{cp:04X} is in {n} classes");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb+c%zz%4", false), b"a/b+c%zz%4");
        assert_eq!(percent_decode("a+b%20c", true), b"a b c");
        assert_eq!(percent_decode("%41", false), b"A");
    }
}
