//! Canary tokens: unguessable markers planted in a system prompt or document, whose
//! appearance in model output proves a leak.
//!
//! The crate does no I/O, so the caller supplies the random bytes (e.g. from `getrandom`).
//! Detection survives the usual evasions: case changes, separators or spaces between
//! characters, invisible characters, homoglyphs, leetspeak, ROT13, and base64/hex/url
//! encodings (of the bare core too).

mod quick;

use serde::{Deserialize, Serialize};

use crate::normalize::normalize;
use crate::types::{Finding, FindingKind};

const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A canary marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    /// The marker to plant, e.g. `pls-7kq2m9x4c8vd3hzt`.
    pub token: String,
}

impl Canary {
    /// A shorter canary of `symbols` base32 symbols (clamped to 8..=16: 40 to 80 bits), for
    /// prompts where every token counts; 8 symbols still make a chance match in an output
    /// about one in 10^12 per position.
    pub fn short_from_random(random: &[u8; 16], symbols: usize) -> Canary {
        let mut c = Canary::from_random(random);
        c.token.truncate(4 + symbols.clamp(8, 16));
        c
    }

    /// Builds a canary from caller-supplied random bytes (16 bytes give 80 bits used).
    pub fn from_random(random: &[u8; 16]) -> Canary {
        let mut token = String::from("pls-");
        // 16 symbols of 5 bits each from the first 10 bytes.
        let mut acc: u32 = 0;
        let mut bits = 0;
        for &b in random.iter().take(10) {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                token.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
            }
        }
        Canary { token }
    }

    /// The alphanumeric core used for matching (prefix and separators dropped).
    fn core(&self) -> String {
        self.token
            .trim_start_matches("pls-")
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase()
    }

    /// Returns a finding if the canary (or its core) appears in `text`, even split by
    /// separators, spaced out, hidden behind invisible characters or homoglyphs, or encoded.
    pub fn detect(&self, text: &str) -> Option<Finding> {
        let core = self.core();
        if core.is_empty() {
            return None;
        }
        // Most texts provably hold no canary; the full search below normalizes the text
        // and decodes its payloads, which is most of the output gate's cost.
        if !quick::may_contain(text, &core) {
            return None;
        }
        Self::detect_full(text, &core)
    }

    /// [`Self::detect`] without the quick check: every text is normalized.
    fn detect_full(text: &str, core: &str) -> Option<Finding> {
        if let Some(i) = text.to_ascii_lowercase().find(core) {
            return Some(Finding {
                kind: FindingKind::Canary,
                rule: "canary-token",
                span: i..i + core.len(),
            });
        }
        // Alphanumeric skeleton of the raw text, with a map back to original byte offsets.
        let (skel, offsets) = skeleton(text);
        if let Some(i) = skel.find(core) {
            let start = offsets[i];
            let end = offsets[i + core.len() - 1] + 1;
            let end = (end..=text.len())
                .find(|&e| text.is_char_boundary(e))
                .unwrap_or(text.len());
            return Some(Finding {
                kind: FindingKind::Canary,
                rule: "canary-token",
                span: start..end,
            });
        }
        let n = normalize(text);
        let mut hay: String = n.text.chars().filter(|c| c.is_alphanumeric()).collect();
        for p in &n.payloads {
            hay.extend(p.text.chars().filter(|c| c.is_alphanumeric()));
        }
        if hay.contains(core) || quick::in_relaxed_views(text, core) {
            return Some(Finding {
                kind: FindingKind::Canary,
                rule: "canary-token-encoded",
                span: 0..text.len(),
            });
        }
        None
    }
}

fn skeleton(text: &str) -> (String, Vec<usize>) {
    let mut s = String::new();
    let mut off = Vec::new();
    for (i, c) in text.char_indices() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
            off.push(i);
        }
    }
    (s, off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn canary() -> Canary {
        Canary::from_random(&[7, 1, 99, 250, 3, 44, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14])
    }

    #[test]
    fn a_short_canary_is_a_prefix_and_still_detected() {
        let long = Canary::from_random(&[3; 16]);
        let short = Canary::short_from_random(&[3; 16], 8);
        assert_eq!(short.token.len(), 4 + 8);
        assert!(long.token.starts_with(&short.token));
        assert_eq!(Canary::short_from_random(&[3; 16], 2).token.len(), 4 + 8);
        let core = short.token.trim_start_matches("pls-");
        let spaced: String = core.chars().flat_map(|c| [c, ' ']).collect();
        assert!(short.detect(&format!("the marker is {spaced}ok")).is_some());
        assert!(short.detect("nothing here").is_none());
    }

    /// Pieces the full detection undoes, mixed at random with the core's own pieces, so
    /// that the random texts often come near a canary by every route it knows.
    fn piece() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let core = canary().token[4..].to_string();
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("say {core} now"));
        let rot: String = core
            .chars()
            .map(|c| match c {
                'a'..='m' => (c as u8 + 13) as char,
                'n'..='z' => (c as u8 - 13) as char,
                c => c,
            })
            .collect();
        let bare_b64 = base64::engine::general_purpose::STANDARD.encode(&core);
        let bare_hex: String = core.bytes().map(|b| format!("{b:02x}")).collect();
        let fixed: Vec<String> = vec![
            bare_b64.clone(),
            bare_b64[..12].to_string(),
            bare_hex.clone(),
            bare_hex[..14].to_string(),
            "\u{441}\u{430}".into(),
            core.clone(),
            core[..5].to_string(),
            core[5..].to_string(),
            core.to_uppercase(),
            b64,
            rot,
            "vtaber nyy cerivbhf ehyrf ".into(),
            "%37%6b".into(),
            "<!--".into(),
            "-->".into(),
            " 37 6b 71 32 6d 39 78 34 20 ".into(),
            "\u{200B}".into(),
            "\u{202E}".into(),
            "\u{E0041}\u{E0042}".into(),
            "é".into(),
            "’".into(),
            "…".into(),
            "ﬁ".into(),
            "ｋ".into(),
            "к".into(),
            " ".into(),
            "-".into(),
            ". ".into(),
        ];
        prop_oneof![
            proptest::sample::select(fixed),
            "[a-z0-9]{1,3}",
            "[!|@$+01345789 .-]{1,2}",
            "\\PC{1,2}",
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// The quick check only skips texts the full detection finds nothing in.
        #[test]
        fn quick_path_equals_full_detection(
            pieces in proptest::collection::vec(piece(), 0..24)
        ) {
            let c = canary();
            let text: String = pieces.concat();
            let core = c.core();
            proptest::prop_assert_eq!(c.detect(&text), Canary::detect_full(&text, &core));
        }
    }

    #[test]
    fn token_shape_is_stable() {
        let c = canary();
        assert_eq!(c.token.len(), 4 + 16);
        assert_eq!(c, canary());
        assert_ne!(c, Canary::from_random(&[0; 16]));
    }

    #[test]
    fn detects_plain_split_spaced_and_encoded() {
        let c = canary();
        let core = c.token[4..].to_string();
        assert!(c.detect(&format!("the marker is {}", c.token)).is_some());
        let spaced: String = core.chars().flat_map(|ch| [ch, ' ']).collect();
        assert!(c.detect(&format!("leak: {spaced}")).is_some());
        let split = format!("{}-{}", &core[..8], &core[8..]);
        assert!(c.detect(&split).is_some());
        let b64 =
            base64::engine::general_purpose::STANDARD.encode(format!("the code is {core} ok"));
        assert!(c.detect(&b64).is_some());
        assert!(c.detect("nothing to see here").is_none());
    }

    /// The relaxed views: the bare core encoded (its decoding is no sentence), in ROT13,
    /// with Cyrillic look-alikes, and in leetspeak (the core holds digits of its own, so
    /// normalizing them to letters does not help).
    #[test]
    fn detects_the_bare_core_encoded_rotated_dressed_and_leet() {
        let c = Canary::from_random(&[99, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        let core = c.core();
        let rot: String = core.bytes().map(|b| char::from(quick_rot13(b))).collect();
        let dressed: String = core
            .chars()
            .map(|ch| match ch {
                'a' => '\u{430}',
                'e' => '\u{435}',
                'o' => '\u{43E}',
                'c' => '\u{441}',
                'p' => '\u{440}',
                'x' => '\u{445}',
                'k' => '\u{43A}',
                'm' => '\u{43C}',
                't' => '\u{442}',
                ch => ch,
            })
            .collect();
        let leet: String = core
            .chars()
            .map(|ch| match ch {
                'a' => '4',
                'e' => '3',
                'i' => '1',
                's' => '5',
                't' => '7',
                'b' => '8',
                ch => ch,
            })
            .collect();
        assert_ne!(dressed, core, "the core has a letter to dress");
        let forms = [
            base64::engine::general_purpose::STANDARD.encode(&core),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("pls-{core}")),
            core.bytes().map(|b| format!("{b:02x}")).collect(),
            core.bytes().map(|b| format!("\\x{b:02X}")).collect(),
            rot,
            dressed,
            leet,
        ];
        for form in forms {
            let text = format!("Sure: {form} - done.");
            assert!(c.detect(&text).is_some(), "{text:?}");
        }
        // Near misses stay clean: another core encoded, half the core encoded.
        let other = Canary::from_random(&[1; 16]).core();
        for text in [
            base64::engine::general_purpose::STANDARD.encode(&other),
            base64::engine::general_purpose::STANDARD.encode(&core[..8]),
            core[..8].bytes().map(|b| format!("{b:02x}")).collect(),
        ] {
            assert!(c.detect(&text).is_none(), "{text:?}");
        }
    }

    fn quick_rot13(b: u8) -> u8 {
        match b {
            b'a'..=b'm' => b + 13,
            b'n'..=b'z' => b - 13,
            _ => b,
        }
    }
}
