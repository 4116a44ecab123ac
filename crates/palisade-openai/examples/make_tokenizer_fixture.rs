//! Writes `tests/fixtures/tiny-bpe.tokenizer.json`, the Hugging Face
//! tokenizer the tests and the timing example count with:
//!
//! ```text
//! cargo run -p palisade-openai --example make_tokenizer_fixture
//! ```
//!
//! It has the shape of a Llama 3 / GPT-style `tokenizer.json` (byte-level
//! BPE with the GPT-2 pre-tokenizer regex, a BOS-adding template
//! post-processor, special tokens), trained on this crate's own sources so
//! that it is small and needs no download. It also carries truncation and
//! padding settings, as many published files do: counting must ignore them.

use std::error::Error;
use std::path::PathBuf;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

const VOCAB_SIZE: usize = 1500;
const BOS: &str = "<|begin_of_text|>";
const EOS: &str = "<|end_of_text|>";
const PAD: &str = "<|pad|>";

/// The training text: this crate's sources, compiled in so the output does
/// not depend on the working directory.
const CORPUS: [&str; 5] = [
    include_str!("../src/usage.rs"),
    include_str!("../src/request.rs"),
    include_str!("../src/error.rs"),
    include_str!("../src/sse.rs"),
    include_str!("../src/hf.rs"),
];

fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let out = std::env::args().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bpe.tokenizer.json"),
        PathBuf::from,
    );
    let mut trainer = TrainerWrapper::BpeTrainer(
        BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(VOCAB_SIZE)
            .min_frequency(2)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .special_tokens(
                [BOS, EOS, PAD]
                    .map(|t| AddedToken::from(t.to_owned(), true))
                    .to_vec(),
            )
            .build(),
    );
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer.train(&mut trainer, CORPUS.iter().flat_map(|s| s.lines()))?;
    let id = |t: &str| tokenizer.token_to_id(t).ok_or(format!("{t} not in vocab"));
    let (bos, pad) = (id(BOS)?, id(PAD)?);
    tokenizer.with_post_processor(Some(
        TemplateProcessing::builder()
            .try_single(format!("{BOS} $A"))?
            .try_pair(format!("{BOS} $A $B:1"))?
            .special_tokens(vec![(BOS, bos)])
            .build()?,
    ));
    tokenizer.with_truncation(Some(TruncationParams {
        max_length: 32,
        ..Default::default()
    }))?;
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::Fixed(64),
        pad_id: pad,
        pad_token: PAD.to_owned(),
        ..Default::default()
    }));
    tokenizer.save(&out, false)?;
    println!(
        "wrote {} ({} tokens, {} bytes)",
        out.display(),
        tokenizer.get_vocab_size(true),
        std::fs::metadata(&out)?.len()
    );
    Ok(())
}
