//! Fuzz a full scan on every channel, with the input doubling as system prompt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_detect::{Channel, Detector, ScanInput};
use std::sync::OnceLock;

static DETECTOR: OnceLock<Detector> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let d = DETECTOR.get_or_init(|| Detector::embedded().expect("embedded model"));
    let s = String::from_utf8_lossy(data);
    let channel = match data.first().map(|b| b % 4) {
        Some(0) => Channel::User,
        Some(1) => Channel::Retrieved,
        Some(2) => Channel::ToolOutput,
        _ => Channel::System,
    };
    let scan = d.scan(&ScanInput { text: &s, channel, system_prompt: Some(&s) });
    assert!((0.0..=1.0).contains(&scan.score));
    for f in &scan.findings {
        assert!(s.is_char_boundary(f.span.start) && s.is_char_boundary(f.span.end));
    }
});
