//! OpenAI's `cl100k_base` and `o200k_base` BPE vocabularies, packed, loaded once per process
//! into tiktoken-rs's `CoreBPE`.
//!
//! tiktoken-rs embeds each vocabulary as base64 text with one rank per line (cl100k 1.7 MB,
//! o200k 3.6 MB): a fifth of the gateway binary's read-only data. The ranks are exactly the
//! line numbers, so the packed form keeps only the bytes: for rank 0, 1, 2, … one length byte
//! and the token's bytes (`assets/*.bin`, 2.3 MB together; `examples/pack.rs` writes them from
//! tiktoken-rs's own loaders, and `tests/identical.rs` checks every rank against them).
//!
//! Pure: no I/O (the assets are compiled in), no threads. Callers must take the vocabularies
//! from here, never from `tiktoken_rs::{cl100k_base, o200k_base, *_singleton}`: calling those
//! would link the base64 copies back into the binary (`xtask` tidy checks it).

use std::sync::OnceLock;

pub use tiktoken_rs::{CoreBPE, Rank};

const CL100K: &[u8] = include_bytes!("../assets/cl100k_base.bin");
const O200K: &[u8] = include_bytes!("../assets/o200k_base.bin");

/// The regular expression that splits text into pieces before merging (`cl100k_base`).
const CL100K_PATTERN: &str = "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s";

/// Why a vocabulary could not be built (a corrupted asset or a pattern the regex engine
/// refuses: both are build defects, reported instead of panicking on a request).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BpeError {
    /// The packed asset ends inside a token or holds a duplicate token.
    #[error("packed vocabulary `{name}` is malformed at byte {offset}")]
    Malformed {
        /// Which vocabulary.
        name: &'static str,
        /// Where reading stopped.
        offset: usize,
    },
    /// tiktoken-rs refused the vocabulary.
    #[error("vocabulary `{name}`: {reason}")]
    Build {
        /// Which vocabulary.
        name: &'static str,
        /// tiktoken-rs's error.
        reason: String,
    },
}

/// The vocabulary of GPT-4 and GPT-3.5 (and OpenAI's `text-embedding-3-*`), built on first use.
pub fn cl100k() -> Result<&'static CoreBPE, BpeError> {
    static BPE: OnceLock<Result<CoreBPE, BpeError>> = OnceLock::new();
    BPE.get_or_init(|| {
        build(
            "cl100k_base",
            CL100K,
            &[
                ("<|endoftext|>", 100_257),
                ("<|fim_prefix|>", 100_258),
                ("<|fim_middle|>", 100_259),
                ("<|fim_suffix|>", 100_260),
                ("<|endofprompt|>", 100_276),
            ],
            CL100K_PATTERN,
        )
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The vocabulary of GPT-4o, GPT-4.1, GPT-5 and the `o` series, built on first use.
pub fn o200k() -> Result<&'static CoreBPE, BpeError> {
    static BPE: OnceLock<Result<CoreBPE, BpeError>> = OnceLock::new();
    BPE.get_or_init(|| {
        build(
            "o200k_base",
            O200K,
            &[("<|endoftext|>", 199_999), ("<|endofprompt|>", 200_018)],
            tiktoken_rs::O200K_BASE_PAT_STR,
        )
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Token bytes in rank order from a packed asset.
pub fn unpack<'a>(name: &'static str, packed: &'a [u8]) -> Result<Vec<&'a [u8]>, BpeError> {
    let mut tokens = Vec::with_capacity(packed.len() / 7);
    let mut at = 0usize;
    while at < packed.len() {
        let len = usize::from(packed[at]);
        let token = packed
            .get(at + 1..at + 1 + len)
            .filter(|t| !t.is_empty())
            .ok_or(BpeError::Malformed { name, offset: at })?;
        tokens.push(token);
        at += 1 + len;
    }
    Ok(tokens)
}

fn build(
    name: &'static str,
    packed: &[u8],
    special: &[(&str, Rank)],
    pattern: &str,
) -> Result<CoreBPE, BpeError> {
    let tokens = unpack(name, packed)?;
    let mut encoder = rustc_hash::FxHashMap::default();
    encoder.reserve(tokens.len());
    for (rank, token) in tokens.into_iter().enumerate() {
        let rank = Rank::try_from(rank).map_err(|_| BpeError::Malformed {
            name,
            offset: packed.len(),
        })?;
        if encoder.insert(token.to_vec(), rank).is_some() {
            return Err(BpeError::Malformed {
                name,
                offset: packed.len(),
            });
        }
    }
    let special = special.iter().map(|&(s, r)| (s.to_string(), r)).collect();
    CoreBPE::new(encoder, special, pattern).map_err(|e| BpeError::Build {
        name,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_or_empty_token_is_an_error_not_a_panic() {
        assert!(unpack("t", &[3, b'a', b'b']).is_err());
        assert!(unpack("t", &[0]).is_err());
        assert_eq!(
            unpack("t", &[1, b'a', 2, b'b', b'c']).unwrap(),
            [&b"a"[..], b"bc"]
        );
    }

    #[test]
    fn both_vocabularies_build_and_round_trip() {
        let text = "Palisade keeps a model's prompt small. Ünïcödé 🙂";
        for bpe in [cl100k().unwrap(), o200k().unwrap()] {
            let ids = bpe.encode_ordinary(text);
            assert!(ids.len() < text.len() / 2, "{ids:?}");
            assert_eq!(bpe.decode_bytes(&ids).unwrap(), text.as_bytes());
        }
    }
}
