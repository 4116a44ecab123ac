//! Fuzz normalization: no panics, bounded output, idempotent canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_detect::normalize::{canonical, MAX_PAYLOADS};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let n = palisade_detect::normalize(s);
    assert!(n.payloads.len() <= MAX_PAYLOADS);
    let c = canonical(s);
    assert_eq!(canonical(&c), c);
});
