//! `sanitize` over the six strings of the bench upstream's chat completion (`id`,
//! `object`, `model`, `role`, `content`, `finish_reason`), `N` times, with every class on
//! and a canary, as the gateway's output gate judges a non-streamed body. For instruction
//! counts per response under callgrind:
//!
//! ```sh
//! cargo build --release -p palisade-output --example body_strings
//! valgrind --tool=callgrind target/release/examples/body_strings 1000   # and 3000
//! ```
//!
//! per response = (Ir(3000) - Ir(1000)) / 2000.

use std::hint::black_box;

use palisade_output::{sanitize, Canary, SanitizeOptions};

const STRINGS: [&str; 6] = [
    "chatcmpl-bench",
    "chat.completion",
    "bench",
    "assistant",
    "The quick brown fox jumps over the lazy dog.",
    "stop",
];

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let opts = SanitizeOptions {
        canaries: vec![Canary::from_random(&[7; 16])],
        ..SanitizeOptions::default()
    };
    let mut changed = 0usize;
    for _ in 0..n {
        for s in STRINGS {
            let out = sanitize(black_box(s), &opts);
            changed += usize::from(!out.actions.is_empty());
        }
    }
    println!("{n} responses, {changed} strings changed");
}
