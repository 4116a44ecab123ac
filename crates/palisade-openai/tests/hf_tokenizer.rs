//! Prompt estimates with a Hugging Face `tokenizer.json`, against the
//! `tokenizers` crate's own encoding of the same file. The fixture is a
//! byte-level BPE tokenizer written by `examples/make_tokenizer_fixture.rs`;
//! it adds a BOS token and carries truncation (32) and padding (64)
//! settings, all of which counting must ignore.

use palisade_openai::usage::{
    estimate_prompt_tokens, estimate_prompt_tokens_with, Tokenizer, TokenizerError,
    TOKENS_PER_MESSAGE,
};
use serde_json::json;

const FIXTURE: &[u8] = include_bytes!("fixtures/tiny-bpe.tokenizer.json");

fn loaded() -> Tokenizer {
    Tokenizer::from_json_bytes(FIXTURE).unwrap()
}

/// The fixture as the `tokenizers` crate loads it, with truncation and
/// padding switched off so lengths are the text's own.
fn reference() -> tokenizers::Tokenizer {
    let mut t = tokenizers::Tokenizer::from_bytes(FIXTURE).unwrap();
    t.with_truncation(None).unwrap();
    t.with_padding(None);
    t
}

fn reference_len(t: &tokenizers::Tokenizer, text: &str, special: bool) -> u64 {
    t.encode(text, special).unwrap().len() as u64
}

const SAMPLES: [&str; 8] = [
    "",
    "hello world",
    "Estimated prompt tokens of a chat, completion or embeddings request.",
    "fn count(&self, text: &str) -> u64 { text.len() as u64 }",
    "spaces   between\twords\n\n\nand   trailing   ",
    "日本語のテキストと emoji 🦀🦀 and café",
    "<|begin_of_text|> typed by a client",
    "1234567890 3.14159 0xDEADBEEF",
];

#[test]
fn counts_match_the_tokenizers_own_encoding() {
    let (ours, theirs) = (loaded(), reference());
    for text in SAMPLES {
        let n = ours.count(text);
        assert_eq!(n, reference_len(&theirs, text, false), "{text:?}");
        // The file's template adds BOS; counting leaves it to the
        // per-message overhead, so it is not in the count.
        assert_eq!(reference_len(&theirs, text, true), n + 1, "{text:?}");
    }
    // Loaded as-is, the file would truncate to 32 and pad to 64: a count
    // taken that way would be 64 whatever the text.
    let as_published = tokenizers::Tokenizer::from_bytes(FIXTURE).unwrap();
    let long = SAMPLES[2].repeat(10);
    assert_eq!(as_published.encode(long.as_str(), false).unwrap().len(), 64);
    assert_eq!(as_published.encode("hi", false).unwrap().len(), 64);
    assert_eq!(ours.count("hi"), reference_len(&theirs, "hi", false));
    assert!(ours.count(&long) > 64);
}

#[test]
fn long_prompts_count_like_one_encoding() {
    let (ours, theirs) = (loaded(), reference());
    // Many pieces' worth of text with words, runs of spaces and newlines:
    // cuts fall before word-starting spaces, so nothing changes.
    let prose: String = SAMPLES[1..].join("  \n ").repeat(200);
    assert!(prose.len() > 40_000);
    assert_eq!(ours.count(&prose), reference_len(&theirs, &prose, false));
    // Without any space the cuts fall inside words, each moving the count
    // by at most a couple of tokens.
    let dense = "abcdefghij0123456789".repeat(2_000);
    let (n, exact) = (ours.count(&dense), reference_len(&theirs, &dense, false));
    let cuts = (dense.len() / 4096) as u64;
    assert!(n.abs_diff(exact) <= 2 * cuts, "{n} vs {exact}");
}

#[test]
fn chat_estimates_use_the_tokenizer() {
    let (hf, theirs) = (loaded(), reference());
    let req = json!({"messages": [
        {"role": "system", "content": SAMPLES[2]},
        {"role": "user", "content": [{"type": "text", "text": SAMPLES[3]},
                                     {"type": "image_url", "image_url": {"url": "data:,"}}]},
        {"role": "assistant", "content": null,
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "f", "arguments": "{\"a\":1}"}}]}]});
    let fields = req.as_object().unwrap();
    let tool_calls = req["messages"][2]["tool_calls"].to_string();
    let expected = reference_len(&theirs, SAMPLES[2], false)
        + reference_len(&theirs, SAMPLES[3], false)
        + reference_len(&theirs, &tool_calls, false)
        + 3 * TOKENS_PER_MESSAGE;
    assert_eq!(estimate_prompt_tokens_with(fields, &hf), expected);
    // Not what the approximation gives, so the tokenizer was really used.
    assert_ne!(estimate_prompt_tokens(fields), expected);

    let emb = json!({"input": [SAMPLES[1], SAMPLES[4]]});
    assert_eq!(
        estimate_prompt_tokens_with(emb.as_object().unwrap(), &hf),
        reference_len(&theirs, SAMPLES[1], false) + reference_len(&theirs, SAMPLES[4], false)
    );
}

#[test]
fn bad_files_are_typed_errors() {
    for bad in [
        &b"{not json"[..],
        b"",
        br#"{"model": {"type": "NoSuchModel"}}"#,
        b"[1, 2, 3]",
    ] {
        match Tokenizer::from_json_bytes(bad) {
            Err(TokenizerError::Invalid(_)) => {}
            other => panic!(
                "{:?}: expected Invalid, got {other:?}",
                String::from_utf8_lossy(bad)
            ),
        }
    }
    // Parses, but its word-level vocabulary has no unknown token, so plain
    // text fails to encode: refused when loading, not at request time.
    let no_unk = json!({"version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [], "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"hello": 0}, "unk_token": "[UNK]"}});
    let err = Tokenizer::from_json_bytes(no_unk.to_string().as_bytes()).unwrap_err();
    assert!(matches!(err, TokenizerError::Unusable(_)), "{err:?}");
    assert!(err.to_string().contains("cannot encode"), "{err}");
}

#[test]
fn loaded_tokenizers_are_shared_and_print_briefly() {
    let a = loaded();
    let b = a.clone();
    assert_eq!(a, b);
    assert_ne!(a, loaded(), "a separate load is a separate tokenizer");
    assert_ne!(a, Tokenizer::Approximate);
    let Tokenizer::HuggingFace(hf) = &a else {
        panic!("not a Hugging Face tokenizer: {a:?}");
    };
    assert_eq!(hf.vocab_size(), 1500);
    let shown = format!("{a:?}");
    assert!(
        shown.contains("vocab_size: 1500") && shown.len() < 100,
        "{shown}"
    );
}
