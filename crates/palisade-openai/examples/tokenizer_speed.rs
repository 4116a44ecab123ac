//! Times prompt counting per tokenizer: a 1,000-character English prompt
//! with each [`Tokenizer`], then Hugging Face counting on growing inputs
//! built to be hard for regex pre-tokenizers (long runs of whitespace, text
//! without spaces) to show it stays linear. Printed, not asserted:
//!
//! ```text
//! cargo run --release -p palisade-openai --example tokenizer_speed
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use palisade_openai::usage::Tokenizer;

const FIXTURE: &[u8] = include_bytes!("../tests/fixtures/tiny-bpe.tokenizer.json");

const PARAGRAPH: &str = "The gateway reserves a token budget before it forwards a request, \
    from an estimate of the prompt, and reconciles it afterwards with what the upstream \
    reports. A good estimate keeps tenants from overrunning their quotas between the two. ";

/// Mean time per call of `f` over at least `min` of wall time.
fn time(min: Duration, mut f: impl FnMut() -> u64) -> (Duration, u64) {
    let mut tokens = f(); // warm caches and lazily loaded vocabularies
    let (start, mut calls) = (Instant::now(), 0u32);
    while start.elapsed() < min {
        tokens = black_box(f());
        calls += 1;
    }
    (start.elapsed() / calls.max(1), tokens)
}

fn main() {
    let prompt: String = PARAGRAPH.chars().cycle().take(1_000).collect();
    let hf = Tokenizer::from_json_bytes(FIXTURE).expect("the fixture loads");
    println!("1,000-character prompt:");
    for (name, t) in [
        ("approximate", Tokenizer::Approximate),
        ("cl100k", Tokenizer::Cl100k),
        ("o200k", Tokenizer::O200k),
        ("hugging face (fixture)", hf.clone()),
    ] {
        let (per_call, tokens) = time(Duration::from_millis(500), || t.count(&prompt));
        println!("  {name:<24} {per_call:>10.2?}/count  {tokens} tokens");
    }
    println!("hugging face, adversarial inputs (time should grow ~linearly):");
    // The same file encoded whole by the tokenizers crate, for comparison
    // (only up to 100k characters: it is the superlinear one).
    let mut whole = tokenizers::Tokenizer::from_bytes(FIXTURE).expect("the fixture loads");
    whole.with_truncation(None).expect("no truncation is valid");
    whole.with_padding(None);
    for (name, unit) in [("spaces then a word", " "), ("no spaces", "ab1語")] {
        for chars in [25_000usize, 100_000, 400_000] {
            let mut text: String = unit.chars().cycle().take(chars).collect();
            text.push('x');
            let (per_call, tokens) = time(Duration::from_millis(300), || hf.count(&text));
            print!("  {name:<20} {chars:>7} chars  {per_call:>10.2?}  {tokens} tokens");
            if chars <= 100_000 {
                let start = Instant::now();
                let tokens = whole
                    .encode_fast(text.as_str(), false)
                    .map_or(0, |e| e.len());
                print!(
                    "   (whole, once: {:>10.2?}  {tokens} tokens)",
                    start.elapsed()
                );
            }
            println!();
        }
    }
}
