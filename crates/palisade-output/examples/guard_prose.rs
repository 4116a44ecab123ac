//! Streams the gateway's stream-bench prose (markdown with code spans, a list and a link)
//! through a [`StreamGuard`] with a canary, one word per delta, a fixed number of times:
//! for instruction counts of the guard alone (issue #17), which a busy machine does not
//! disturb.
//!
//! ```text
//! cargo build --release -p palisade-output --example guard_prose
//! valgrind --tool=callgrind target/release/examples/guard_prose 10   # and 30
//! # per delta = (Ir(30) - Ir(10)) / 20 streams / deltas per stream (printed)
//! ```

use palisade_output::{Canary, GuardOptions, SanitizeOptions, StreamGuard};

/// `palisade_gateway::stream_bench`'s prose.
const PROSE: &str = "Sure! Here is a short overview of how the borrow checker works in Rust. \
Every value has a single owner, and references borrow it either shared (`&T`) or exclusively \
(`&mut T`). The compiler rejects code where a mutable borrow overlaps any other borrow.\n\n\
- **Ownership** moves on assignment unless the type is `Copy`.\n\
- **Lifetimes** name how long a reference stays valid.\n\
- See [the book](https://doc.rust-lang.org/book/ch04-00-understanding-ownership.html) for more.\n\n\
In practice, most errors go away once you clone less and restructure loops a little. ";

fn main() -> Result<(), palisade_output::OutputError> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let pieces: Vec<&str> = PROSE.split_inclusive(' ').collect();
    let words = 300;
    let opts = GuardOptions {
        sanitize: SanitizeOptions {
            canaries: vec![Canary::short_from_random(&[7; 16], 8)],
            ..SanitizeOptions::default()
        },
        ..GuardOptions::default()
    };
    let mut out = 0usize;
    for _ in 0..n {
        let mut g = StreamGuard::new(opts.clone())?;
        for i in 0..words {
            out += g
                .push(std::hint::black_box(pieces[i % pieces.len()]))
                .text
                .len();
        }
        out += g.finish().text.len();
    }
    println!("{n} streams of {words} deltas, {out} bytes released");
    Ok(())
}
