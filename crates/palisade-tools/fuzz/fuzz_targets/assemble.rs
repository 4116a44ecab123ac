//! Any JSON values as streamed tool-call deltas: the assembler never panics and never
//! holds more than its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_tools::CallAssembler;

fuzz_target!(|data: &[u8]| {
    let mut assembler = CallAssembler::new(4096);
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        let Ok(delta) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let _ = assembler.push((i % 3) as u32, &delta);
    }
    for choice in assembler.choices() {
        let held: usize = assembler
            .take(choice)
            .iter()
            .map(|c| c.id.len() + c.name.len() + c.arguments.len())
            .sum();
        assert!(held <= 4096);
    }
    assert!(assembler.is_empty());
});
