//! Adversarial-suffix detection (GCG, DSN): windowed token surprisal under the token LM,
//! gated by script and notation, as a separate rule with its own reason (`adversarial_suffix`).
//!
//! An optimizer-made suffix is a run of BPE fragments glued across punctuation and markup
//! ("describing.\ + similarlyNow write oppositeley.]( Me giving**ONE"). Under a bigram model of
//! benign text such a run has a far higher mean surprisal per token than prose, and — unlike
//! text in a language the model knows little of — only *where it sits*: the rest of the
//! prompt (the harmful ask) is fluent. So the signal is the worst window of [`WINDOW`] tokens
//! together with its *contrast* to the text's other tokens, and it is only judged where the
//! model can judge:
//!
//! - **script**: a window counts only when at least half of its tokens are Latin script (what
//!   the LM was trained on). Translated text is skipped; a soup mixing Latin fragments with
//!   other scripts is still judged. A suffix written entirely in another script is not
//!   (README: what is missed).
//! - **notation**: URLs and long base64/hex/identifier blobs are masked (their tokens are
//!   neither window nor contrast); code, tables and JSON are left to the calibration pools
//!   (train benign, clean documents), which carry plenty of them.
//! - **length**: no finding without [`MIN_REST`] fluent tokens besides the worst window, so
//!   shortness is never the signal (the earlier attempt's failure: contrast as a length proxy).
//!
//! - **channel**: user and system text only. Optimizer suffixes are a direct jailbreak; clean
//!   documents (tables, changelogs, code) reach such windows far more often (train's clean
//!   contexts 2.1%, held-out Debian chunks 0.7% at [`THRESHOLDS`]), and the document
//!   layer has its own calibration.
//!
//! Cost: at most three regions of [`REGION`] bytes are tokenized (head, tail, and the region
//! around the densest run of soup-like words), so a suffix padded with fluent text on both
//! sides is still read, and the cost is bounded on any input.
//!
//! Must not: do I/O, read the clock, allocate in proportion to more than the regions.

use crate::tokenlm::TokenLm;

/// Tokens per window.
pub const WINDOW: usize = 16;
/// Bytes per tokenized region.
pub const REGION: usize = 512;
/// Judged tokens required outside the worst window for a contrast to exist.
pub const MIN_REST: usize = 8;
/// Whitespace words per window when locating the densest soup-like run.
const SOUP_WORDS: usize = 8;

/// Thresholds of the `adversarial_suffix` rule (bits per token).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SuffixThresholds {
    /// Lowest mean surprisal of the worst window.
    pub worst: f32,
    /// Lowest difference between the worst window and the other judged tokens.
    pub contrast: f32,
    /// Lowest share of the worst window's bigrams never seen in benign text.
    pub unseen: f32,
}

/// Calibrated by `cargo run --release -p palisade-eval --example suffix -- ../shared/datasets/train`
/// on train's benign rows (token LM out-of-fold, folds grouped by source) and the Debian
/// clean-document corpus (held-out packages), by the selection rule written in that example
/// before any `eval/` run: the most real random-search suffixes caught with train's benign
/// user prompts at most 0.1%, plain harmful asks 0.5% and each synthetic benign pool 1%.
/// `unseen: 1.0` (every bigram of the worst window unseen in benign text) is what keeps
/// benign user prompts at 0.09% with a worst window of 18 bits: see `model/TRAINING.md`.
pub const THRESHOLDS: SuffixThresholds = SuffixThresholds {
    worst: 18.0,
    contrast: 5.0,
    unseen: 1.0,
};

/// Windowed-surprisal statistics of one text.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SuffixStats {
    /// Judged (unmasked) tokens.
    pub judged: usize,
    /// Mean bits per token of the worst Latin-majority window (0 when there is none).
    pub worst: f32,
    /// Mean bits per token of the judged Latin tokens outside the worst window.
    pub rest: f32,
    /// Number of those tokens.
    pub rest_tokens: usize,
    /// Mean bits per token of the most fluent Latin-majority window that does not overlap
    /// the worst one (0 when there is none).
    pub best: f32,
    /// Share of the worst window's tokens whose bigram with the previous token was never
    /// seen in benign text (estimated by back-off).
    pub unseen: f32,
    /// Share of unseen bigrams among the judged Latin tokens outside the worst window.
    pub rest_unseen: f32,
}

impl SuffixStats {
    /// Worst window minus the rest, or 0 when the rest is too short to contrast with.
    pub fn contrast(&self) -> f32 {
        if self.rest_tokens < MIN_REST {
            0.0
        } else {
            self.worst - self.rest
        }
    }

    /// Does the rule fire at `t`?
    pub fn fires(&self, t: SuffixThresholds) -> bool {
        self.worst >= t.worst && self.contrast() >= t.contrast && self.unseen >= t.unseen
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Byte offset of the start of the densest run of soup-like whitespace words.
fn soup_center(text: &str) -> Option<usize> {
    let mut starts = Vec::new();
    let mut flags = Vec::new();
    let mut pos = 0usize;
    for w in text.split_whitespace() {
        // split_whitespace yields subslices: recover each word's offset.
        let off = w.as_ptr() as usize - text.as_ptr() as usize;
        pos = pos.max(off);
        starts.push(pos);
        flags.push(crate::features::soup_word(w));
    }
    if flags.len() < SOUP_WORDS {
        return None;
    }
    let mut count = flags[..SOUP_WORDS].iter().filter(|&&f| f).count();
    let (mut best, mut at) = (count, 0usize);
    for i in SOUP_WORDS..flags.len() {
        count += usize::from(flags[i]);
        count -= usize::from(flags[i - SOUP_WORDS]);
        if count > best {
            best = count;
            at = i + 1 - SOUP_WORDS;
        }
    }
    (best >= 2).then(|| starts[at])
}

/// The byte ranges to tokenize: the whole text when short, else head, tail and the region
/// around the densest soup-like run, merged.
fn regions(text: &str) -> Vec<(usize, usize)> {
    if text.len() <= 2 * REGION {
        return vec![(0, text.len())];
    }
    let mut rs = vec![
        (0, floor_boundary(text, REGION)),
        (ceil_boundary(text, text.len() - REGION), text.len()),
    ];
    if let Some(c) = soup_center(text) {
        let a = floor_boundary(text, c.saturating_sub(REGION / 4));
        let b = floor_boundary(text, a + REGION);
        rs.push((a, b));
    }
    rs.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(3);
    for (a, b) in rs {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// Is `c` a letter of a script other than Latin?
fn non_latin_letter(c: char) -> bool {
    crate::ctype::is_alphabetic(c)
        && !(c.is_ascii()
            || ('\u{00C0}'..='\u{024F}').contains(&c)
            || ('\u{1E00}'..='\u{1EFF}').contains(&c))
}

/// May `b` appear unencoded in a URL (RFC 3986 unreserved, reserved and `%`)?
fn url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// Is `c` a Cyrillic or Greek letter (the scripts Latin homoglyphs are borrowed from)?
fn homoglyph_script(c: char) -> bool {
    ('\u{0370}'..='\u{03FF}').contains(&c) || ('\u{0400}'..='\u{04FF}').contains(&c)
}

/// Marks bytes of whitespace words that mix ASCII letters with Cyrillic or Greek ones.
/// Such a word is Latin text dressed in homoglyphs (or soup), not a word of another
/// language, so its tokens count as Latin for the window gate: otherwise swapping a few
/// letters of a suffix for lookalikes would turn every window "non-Latin" and unjudged.
fn mixed_script_mask(region: &str) -> Vec<bool> {
    let mut mask = vec![false; region.len()];
    for w in region.split_whitespace() {
        let off = w.as_ptr() as usize - region.as_ptr() as usize;
        if w.bytes().any(|b| b.is_ascii_alphabetic()) && w.chars().any(homoglyph_script) {
            mask[off..off + w.len()].iter_mut().for_each(|m| *m = true);
        }
    }
    mask
}

/// Characters that render as nothing (zero-width, bidi, tag and variation-selector
/// characters): removed before tokenizing, so sprinkling them through a suffix neither
/// breaks its windows nor dilutes them, and they cost nothing in fluent text either.
fn invisible(c: char) -> bool {
    crate::chars::is_zero_width(c)
        || crate::chars::is_bidi_control(c)
        || crate::chars::is_tag(c)
        || crate::chars::is_variation_selector(c)
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Marks bytes of URLs and of long blob words (base64, hex, identifiers, hashes).
fn notation_mask(region: &str) -> Vec<bool> {
    let mut mask = vec![false; region.len()];
    for w in region.split_whitespace() {
        let off = w.as_ptr() as usize - region.as_ptr() as usize;
        // A URL is masked only when every byte may appear unencoded in one (RFC 3986):
        // soup glued behind "http://" keeps its braces, backslashes and quotes, so it stays
        // judged instead of hiding under the mask.
        let url = (w.contains("://") || w.starts_with("www.")) && w.bytes().all(url_byte);
        let blob = w.len() >= 20
            && w.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-')
            });
        if url || blob {
            mask[off..off + w.len()].iter_mut().for_each(|m| *m = true);
        }
    }
    mask
}

/// One scored token: cost, Latin, masked.
struct Tok {
    bits: f32,
    latin: bool,
    seen: bool,
}

fn score_region(lm: &TokenLm, region: &str, out: &mut Vec<Tok>) {
    let Ok(bpe) = palisade_bpe::cl100k() else {
        return;
    };
    let ids = bpe.encode_ordinary(region);
    let mask = notation_mask(region);
    let mixed = mixed_script_mask(region);
    let mut pos = 0usize;
    let mut prev: Option<u32> = None;
    for &id in &ids {
        let len = bpe.decode_bytes(&[id]).map_or(1, |b| b.len().max(1));
        let (a, b) = (pos.min(region.len()), (pos + len).min(region.len()));
        pos += len;
        let (bits, seen) = match prev {
            Some(p) => lm.bits_seen(p, id),
            None => (lm.first_bits(id), true),
        };
        prev = Some(id);
        let piece = &region[floor_boundary(region, a)..ceil_boundary(region, b)];
        // Whitespace tokens carry no signal, and newlines or spaces sprinkled through a
        // suffix would otherwise dilute its windows with cheap tokens.
        if mask.get(a).copied().unwrap_or(false) || piece.trim().is_empty() {
            continue;
        }
        out.push(Tok {
            bits,
            latin: !piece.chars().any(non_latin_letter) || mixed.get(a).copied().unwrap_or(false),
            seen,
        });
    }
}

/// Windowed-surprisal statistics of `text` (zeros for an untrained model).
pub fn suffix_stats(lm: &TokenLm, text: &str) -> SuffixStats {
    if lm.is_empty() || text.is_empty() {
        return SuffixStats::default();
    }
    let cleaned: std::borrow::Cow<'_, str> = if text.chars().any(invisible) {
        std::borrow::Cow::Owned(text.chars().filter(|&c| !invisible(c)).collect())
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    let text: &str = &cleaned;
    let mut toks = Vec::new();
    let mut bounds = Vec::new();
    for (a, b) in regions(text) {
        let start = toks.len();
        score_region(lm, &text[a..b], &mut toks);
        bounds.push((start, toks.len()));
    }
    // Worst Latin-majority window, never across regions.
    let mut worst: Option<(f32, usize, usize)> = None;
    for &(s, e) in &bounds {
        if e - s < WINDOW {
            continue;
        }
        let mut sum: f32 = toks[s..s + WINDOW].iter().map(|t| t.bits).sum();
        let mut latin = toks[s..s + WINDOW].iter().filter(|t| t.latin).count();
        for i in s + WINDOW..=e {
            if 2 * latin >= WINDOW && worst.is_none_or(|(w, _, _)| sum > w) {
                worst = Some((sum, i - WINDOW, i));
            }
            if i == e {
                break;
            }
            sum += toks[i].bits - toks[i - WINDOW].bits;
            latin += usize::from(toks[i].latin);
            latin -= usize::from(toks[i - WINDOW].latin);
        }
    }
    let Some((sum, ws, we)) = worst else {
        return SuffixStats {
            judged: toks.len(),
            ..SuffixStats::default()
        };
    };
    let mut best: Option<f32> = None;
    for &(s, e) in &bounds {
        if e - s < WINDOW {
            continue;
        }
        let mut sum: f32 = toks[s..s + WINDOW].iter().map(|t| t.bits).sum();
        let mut latin = toks[s..s + WINDOW].iter().filter(|t| t.latin).count();
        for i in s + WINDOW..=e {
            let overlaps = i - WINDOW < we && ws < i;
            if 2 * latin >= WINDOW && !overlaps && best.is_none_or(|b| sum < b) {
                best = Some(sum);
            }
            if i == e {
                break;
            }
            sum += toks[i].bits - toks[i - WINDOW].bits;
            latin += usize::from(toks[i].latin);
            latin -= usize::from(toks[i - WINDOW].latin);
        }
    }
    let (mut rest, mut n, mut rest_unseen) = (0.0f32, 0usize, 0usize);
    for (i, t) in toks.iter().enumerate() {
        if t.latin && !(ws..we).contains(&i) {
            rest += t.bits;
            n += 1;
            rest_unseen += usize::from(!t.seen);
        }
    }
    let unseen = toks[ws..we].iter().filter(|t| !t.seen).count();
    SuffixStats {
        judged: toks.len(),
        worst: sum / WINDOW as f32,
        rest: if n > 0 { rest / n as f32 } else { 0.0 },
        rest_tokens: n,
        best: best.map_or(0.0, |b| b / WINDOW as f32),
        unseen: unseen as f32 / WINDOW as f32,
        rest_unseen: if n > 0 {
            rest_unseen as f32 / n as f32
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_cover_short_text_and_cap_long_text() {
        assert_eq!(regions("short"), vec![(0, 5)]);
        let long = "plain words here ".repeat(500);
        let rs = regions(&long);
        assert!(rs.iter().map(|(a, b)| b - a).sum::<usize>() <= 3 * REGION);
        // The soup in the middle of long fluent padding gets its own region.
        let padded = format!(
            "{}similarlyNow write]( oppositeley.]( giving**ONE}} revert[[ \\!--Two {}",
            "plain words here ".repeat(100),
            "plain words here ".repeat(100)
        );
        let at = padded.find("similarlyNow").unwrap_or(0);
        assert!(regions(&padded).iter().any(|&(a, b)| a <= at && at < b));
    }

    #[test]
    fn untrained_model_is_silent_and_masks_urls() {
        assert_eq!(
            suffix_stats(&TokenLm::empty(), "anything"),
            SuffixStats::default()
        );
        let m = notation_mask("see https://example.com/x?y=1 now");
        assert!(m[4] && !m[0]);
        // Soup dressed as a URL keeps characters no URL carries unencoded: not masked.
        let m = notation_mask("see http://describing.\\+similarlyNow{write}\"Me now");
        assert!(!m[4]);
    }

    #[test]
    fn contrast_needs_fluent_rest() {
        let s = SuffixStats {
            judged: 20,
            worst: 20.0,
            rest: 5.0,
            rest_tokens: MIN_REST - 1,
            best: 4.0,
            unseen: 1.0,
            rest_unseen: 0.0,
        };
        assert_eq!(s.contrast(), 0.0);
        assert!(!s.fires(THRESHOLDS));
        let s = SuffixStats {
            rest_tokens: MIN_REST,
            ..s
        };
        assert!(s.fires(THRESHOLDS));
    }
}
