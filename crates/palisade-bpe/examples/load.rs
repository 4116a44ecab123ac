//! Time to build each vocabulary once, packed (this crate) vs tiktoken-rs's base64 loader:
//! `cargo run --release -p palisade-bpe --example load`. Measuring only.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    palisade_bpe::cl100k()?;
    let cl = t.elapsed();
    let t = Instant::now();
    palisade_bpe::o200k()?;
    let o2 = t.elapsed();
    let t = Instant::now();
    tiktoken_rs::cl100k_base()?;
    let cl_b64 = t.elapsed();
    let t = Instant::now();
    tiktoken_rs::o200k_base()?;
    let o2_b64 = t.elapsed();
    println!("| vocabulary | packed (palisade-bpe) | base64 (tiktoken-rs) |");
    println!("|---|---:|---:|");
    println!(
        "| cl100k_base | {:.1} ms | {:.1} ms |",
        cl.as_secs_f64() * 1e3,
        cl_b64.as_secs_f64() * 1e3
    );
    println!(
        "| o200k_base | {:.1} ms | {:.1} ms |",
        o2.as_secs_f64() * 1e3,
        o2_b64.as_secs_f64() * 1e3
    );
    Ok(())
}
