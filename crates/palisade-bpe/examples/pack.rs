//! Writes `assets/{cl100k_base,o200k_base}.bin` from tiktoken-rs's own loaders:
//! `cargo run -p palisade-bpe --example pack -- crates/palisade-bpe/assets`.
//! Every rank is decoded by tiktoken-rs and written as one length byte and its bytes;
//! `tests/identical.rs` checks the result rank by rank.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "crates/palisade-bpe/assets".into());
    for (name, bpe, size) in [
        ("cl100k_base", tiktoken_rs::cl100k_base()?, 100_256u32),
        ("o200k_base", tiktoken_rs::o200k_base()?, 199_998u32),
    ] {
        let mut out = Vec::new();
        for rank in 0..size {
            let token = bpe.decode_bytes(&[rank])?;
            out.push(u8::try_from(token.len())?);
            out.extend_from_slice(&token);
        }
        let path = format!("{dir}/{name}.bin");
        std::fs::write(&path, &out)?;
        eprintln!("{path}: {size} tokens, {} bytes", out.len());
    }
    Ok(())
}
