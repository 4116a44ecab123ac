//! Relays the stream bench's sample stream (`benches/stream.rs`) a fixed number
//! of times, for instruction counts that a busy machine does not disturb:
//!
//! ```text
//! cargo build --release -p palisade-gateway --example stream_relay
//! valgrind --tool=callgrind target/release/examples/stream_relay builtin 20
//! valgrind --tool=callgrind target/release/examples/stream_relay off 20
//! ```
//!
//! `builtin`: under the built-in policy with a canary; `off`: gates off. The
//! difference of two runs with different counts, divided by the events
//! relayed, is the cost per event (start-up cancels out).

use palisade_gateway::stream_bench::{relay, sample_stream, Plan};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "builtin".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20);
    let plan = Plan::builtin();
    let reads = sample_stream(300);
    let mut sent = 0;
    for _ in 0..n {
        sent += relay(
            (mode == "builtin").then_some(&plan),
            std::hint::black_box(&reads),
        );
    }
    println!(
        "{mode}: {n} streams of {} events, {sent} bytes",
        reads.len()
    );
}
