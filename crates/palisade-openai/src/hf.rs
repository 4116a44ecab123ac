//! Counting with a Hugging Face `tokenizer.json` (open-weight models: Llama,
//! Qwen, Mistral, …), via the `tokenizers` crate with its pure-Rust regex
//! engine. The caller reads the file; this module only parses bytes.
//!
//! Two things differ from encoding for a model:
//!
//! - Special tokens are not added: the post-processor's BOS/EOS would be
//!   counted once per content piece, while the chat template's markers are
//!   already covered by [`TOKENS_PER_MESSAGE`](crate::usage::TOKENS_PER_MESSAGE).
//!   Truncation and padding from the file are switched off too: either
//!   would make the count say something about the file's settings instead
//!   of the prompt.
//! - Long text is encoded in pieces of at most [`CHUNK_BYTES`], cut just
//!   before a whitespace that starts a word. A file's pre-tokenizer regex
//!   (with lookaround, run by a backtracking engine) and BPE merging inside
//!   one unsplit "word" (O(n log n)) can cost more than linear time in the
//!   length of what they are given; bounding that length makes counting
//!   linear in the prompt whatever the file holds. Byte-level (GPT-2, Llama 3) and SentencePiece-style (Metaspace)
//!   pre-tokenizers attach a word's leading space to the word, so no token
//!   spans such a cut and the count is unchanged; only a cut forced inside a
//!   run of [`CHUNK_BYTES`] without such a space may shift it by a token.

use std::fmt;

/// Longest piece of text handed to the tokenizer at once, in bytes.
pub(crate) const CHUNK_BYTES: usize = 4096;
/// How far back from a piece's end a word-starting whitespace is looked for.
const CUT_WINDOW_BYTES: usize = 512;
/// Encoded once when loading, so a file that cannot encode ordinary text
/// fails at start-up instead of silently falling back on every request.
const PROBE: &str = "Hello, world! 123 café";

/// Why a `tokenizer.json` cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// The bytes are not a `tokenizer.json` the `tokenizers` crate accepts
    /// (malformed JSON, an unknown model or component type, a bad regex).
    #[error("invalid tokenizer.json: {0}")]
    Invalid(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The file parsed but fails to encode plain text (e.g. a word-level
    /// vocabulary without an unknown token).
    #[error("tokenizer.json cannot encode plain text: {0}")]
    Unusable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A Hugging Face tokenizer, loaded and ready to count. Build it with
/// [`Tokenizer::from_json_bytes`](crate::usage::Tokenizer::from_json_bytes).
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
}

impl fmt::Debug for HfTokenizer {
    // The derived form would print the whole vocabulary into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish_non_exhaustive()
    }
}

impl HfTokenizer {
    /// Parses a `tokenizer.json`, switches off its truncation and padding,
    /// and checks that it encodes plain text.
    pub(crate) fn from_json_bytes(json: &[u8]) -> Result<Self, TokenizerError> {
        let mut inner = tokenizers::Tokenizer::from_bytes(json).map_err(TokenizerError::Invalid)?;
        // Switching truncation off cannot fail (only bad parameters do).
        inner
            .with_truncation(None)
            .map_err(TokenizerError::Invalid)?;
        inner.with_padding(None);
        inner
            .encode_fast(PROBE, false)
            .map_err(TokenizerError::Unusable)?;
        Ok(Self { inner })
    }

    /// Entries in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokens in `text`, without special tokens. A piece the tokenizer
    /// fails to encode (which the load-time probe makes unlikely) is
    /// counted with `fallback` rather than as zero, so a budget is never
    /// under-reserved because of it.
    pub(crate) fn count(&self, text: &str, fallback: impl Fn(&str) -> u64) -> u64 {
        Pieces(text)
            .map(|piece| match self.inner.encode_fast(piece, false) {
                Ok(encoding) => encoding.len() as u64,
                Err(_) => fallback(piece),
            })
            .sum()
    }
}

impl HfTokenizer {
    /// The token ids of `text`, without special tokens, in the same pieces
    /// as [`HfTokenizer::count`] (so linear in the text). A piece the
    /// tokenizer fails to encode contributes no ids: watermark detection
    /// scores what it could read, and says how many tokens that was.
    pub(crate) fn encode_ids(&self, text: &str) -> Vec<u32> {
        Pieces(text)
            .flat_map(|piece| {
                self.inner
                    .encode_fast(piece, false)
                    .map(|e| e.get_ids().to_vec())
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// Splits text into pieces of at most [`CHUNK_BYTES`] (see the module doc).
/// The bundled tiktoken vocabularies are fed the same pieces: their
/// pre-tokenizer regex runs on a backtracking engine too, and it fails (a
/// panic inside tiktoken-rs) on a run of ~1 MB of whitespace.
pub(crate) struct Pieces<'a>(pub(crate) &'a str);

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.0.is_empty() {
            return None;
        }
        let cut = cut_point(self.0);
        let (piece, rest) = self.0.split_at(cut);
        self.0 = rest;
        Some(piece)
    }
}

/// Where to end the first piece of `s`: all of it when short enough, else
/// just before the last whitespace followed by a non-whitespace character
/// in the window before [`CHUNK_BYTES`], else at a character boundary.
/// Always greater than zero for a non-empty `s`, so splitting progresses.
fn cut_point(s: &str) -> usize {
    if s.len() <= CHUNK_BYTES {
        return s.len();
    }
    let end = floor_char_boundary(s, CHUNK_BYTES);
    let start = floor_char_boundary(s, end - CUT_WINDOW_BYTES);
    let mut after = s[end..].chars().next();
    for (i, c) in s[start..end].char_indices().rev() {
        if c.is_whitespace() && after.is_some_and(|a| !a.is_whitespace()) && start + i > 0 {
            return start + i;
        }
        after = Some(c);
    }
    end
}

/// The largest character boundary of `s` at or below `i` (`i < s.len()`).
/// (`str::floor_char_boundary` is newer than the workspace's Rust.)
fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(s: &str) -> Vec<&str> {
        Pieces(s).collect()
    }

    #[test]
    fn short_text_is_one_piece() {
        assert_eq!(pieces(""), Vec::<&str>::new());
        assert_eq!(pieces("hello world"), vec!["hello world"]);
        let exact = "a".repeat(CHUNK_BYTES);
        assert_eq!(pieces(&exact), vec![exact.as_str()]);
    }

    #[test]
    fn long_text_is_cut_before_a_word_starting_space() {
        // The cut must land on a space followed by a letter, which stays
        // with the next piece.
        let text = "abcdefgh ".repeat(2000);
        let parts = pieces(&text);
        assert!(parts.len() > 1);
        assert_eq!(parts.concat(), text);
        for p in &parts {
            assert!(p.len() <= CHUNK_BYTES, "{}", p.len());
        }
        for p in &parts[1..] {
            assert!(p.starts_with(" a"), "{:?}", &p[..8]);
        }
    }

    #[test]
    fn runs_of_spaces_are_cut_before_their_last_space() {
        // The run ends inside the window: the byte-level regex makes
        // "199 spaces" and " x" two pre-tokens whether cut there or not.
        let text = format!(
            "{}{}x{}",
            "y".repeat(CHUNK_BYTES - 300),
            " ".repeat(200),
            "y".repeat(500)
        );
        let parts = pieces(&text);
        assert_eq!(parts.concat(), text);
        assert_eq!(parts[0].len(), CHUNK_BYTES - 101);
        assert!(parts[1].starts_with(" xy"), "{:?}", &parts[1][..4]);
    }

    #[test]
    fn text_without_spaces_is_cut_on_char_boundaries() {
        // 3-byte characters: CHUNK_BYTES is not a multiple of 3.
        let text = "語".repeat(5000);
        let parts = pieces(&text);
        assert_eq!(parts.concat(), text);
        assert!(parts
            .iter()
            .all(|p| p.len() <= CHUNK_BYTES && !p.is_empty()));
        let piece_bytes = CHUNK_BYTES - CHUNK_BYTES % 3;
        assert_eq!(parts.len(), text.len().div_ceil(piece_bytes));
    }
}
