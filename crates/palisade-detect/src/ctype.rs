//! Table-driven Unicode character classes for the hot loops.
//!
//! `char::is_alphabetic` and friends answer ASCII at once but binary-search Unicode tables
//! for everything else: on Bengali, Thai or Cyrillic text canonicalization spent almost half
//! of a scan there (each pass asks several times per character). This module asks the
//! standard library once per Basic Multilingual Plane code point, on first use, and keeps
//! the answers in a 64 KiB table; code points above the BMP (rare in text) fall through to
//! the standard library. Every answer is therefore exactly the standard library's.

use std::sync::LazyLock;

const ALPHA: u8 = 1;
const NUMERIC: u8 = 2;
const LOWER: u8 = 4;
const UPPER: u8 = 8;
const WHITE: u8 = 16;

static TABLE: LazyLock<Box<[u8]>> = LazyLock::new(|| {
    (0u32..0x1_0000)
        .map(|u| {
            char::from_u32(u).map_or(0, |c| {
                let bit = |yes: bool, flag: u8| if yes { flag } else { 0 };
                bit(c.is_alphabetic(), ALPHA)
                    | bit(c.is_numeric(), NUMERIC)
                    | bit(c.is_lowercase(), LOWER)
                    | bit(c.is_uppercase(), UPPER)
                    | bit(c.is_whitespace(), WHITE)
            })
        })
        .collect()
});

#[inline]
fn class(c: char) -> Option<u8> {
    TABLE.get(c as usize).copied()
}

/// Builds the table now (called by [`crate::warm_up`]).
pub(crate) fn warm_up() {
    let _ = class('a');
}

/// Same as [`char::is_alphabetic`].
#[inline]
pub fn is_alphabetic(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    class(c).map_or_else(|| c.is_alphabetic(), |k| k & ALPHA != 0)
}

/// Same as [`char::is_alphanumeric`].
#[inline]
pub fn is_alphanumeric(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    class(c).map_or_else(|| c.is_alphanumeric(), |k| k & (ALPHA | NUMERIC) != 0)
}

/// Same as [`char::is_lowercase`].
#[inline]
pub fn is_lowercase(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_lowercase();
    }
    class(c).map_or_else(|| c.is_lowercase(), |k| k & LOWER != 0)
}

/// Same as [`char::is_uppercase`].
#[inline]
pub fn is_uppercase(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_uppercase();
    }
    class(c).map_or_else(|| c.is_uppercase(), |k| k & UPPER != 0)
}

/// Same as [`char::is_whitespace`].
#[inline]
pub fn is_whitespace(c: char) -> bool {
    if c.is_ascii() {
        return c.is_whitespace();
    }
    class(c).map_or_else(|| c.is_whitespace(), |k| k & WHITE != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_std_everywhere() {
        for u in 0u32..0x11_0000 {
            let Some(c) = char::from_u32(u) else { continue };
            assert_eq!(is_alphabetic(c), c.is_alphabetic(), "{u:x}");
            assert_eq!(is_alphanumeric(c), c.is_alphanumeric(), "{u:x}");
            assert_eq!(is_lowercase(c), c.is_lowercase(), "{u:x}");
            assert_eq!(is_uppercase(c), c.is_uppercase(), "{u:x}");
            assert_eq!(is_whitespace(c), c.is_whitespace(), "{u:x}");
        }
    }
}
