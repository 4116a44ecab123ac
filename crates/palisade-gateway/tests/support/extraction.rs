//! Traffic shapes and a ladder shared by the extraction tests
//! (`extraction.rs`, `extraction_fleet.rs`): what an extractor sends and a
//! ladder small enough to climb in a test. No gateway or HTTP here.

/// Detectors and ladder small enough for a test: windows of 16, evaluated
/// every 8 requests; a block after two windows of two detectors firing.
pub const FAST_LADDER: &str = "[extraction.detectors]\nwindow = 16\nmin_queries = 16\nevaluate_every = 8\ncoverage_block_words = 120\nprobe_min = 4\n\
[extraction.ladder]\nflag_at = 1.0\nslow_at = 2.0\nreverify_at = 3.0\nblock_at = 4.0\nslow_delay_ms = 10\n";

/// Random "words": what a random-query extractor sends. Deterministic in
/// `i` (xorshift), so a failure replays; 30 words of 6 letters.
pub fn random_query(i: u64) -> String {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut words = Vec::new();
    for _ in 0..30 {
        let mut w = String::new();
        for _ in 0..6 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.push(char::from(b'a' + (x % 26) as u8));
        }
        words.push(w);
    }
    words.join(" ")
}
