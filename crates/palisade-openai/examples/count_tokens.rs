//! Counts tokens of each argument with the tokenizer a model name maps to (cl100k/o200k):
//! `cargo run -p palisade-openai --example count_tokens -- MODEL TEXT...`. Used to measure
//! what the gates add to a prompt (docs/benchmarks.md).

fn main() {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| "gpt-4o".into());
    let tokenizer = palisade_openai::usage::Tokenizer::for_model(&model);
    for text in args {
        println!("{}\t{text}", tokenizer.count(&text));
    }
}
