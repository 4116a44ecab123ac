//! Any byte stream, cut at arbitrary points: the framer never panics, never
//! holds more than its bound, and loses no byte (events + tail = input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_openai::SseFramer;

fuzz_target!(|data: &[u8]| {
    let Some((&cut_seed, stream)) = data.split_first() else { return };
    let step = usize::from(cut_seed % 17) + 1;
    let mut framer = SseFramer::new(4096);
    let mut out = Vec::with_capacity(stream.len());
    for chunk in stream.chunks(step) {
        framer.push(chunk);
        loop {
            match framer.next_event() {
                Ok(Some(e)) => out.extend_from_slice(e.raw()),
                Ok(None) => break,
                Err(_) => return, // oversized event: refused, which is the contract
            }
        }
    }
    if let Some(tail) = framer.finish() {
        out.extend_from_slice(&tail);
    }
    assert_eq!(out, stream);
});
