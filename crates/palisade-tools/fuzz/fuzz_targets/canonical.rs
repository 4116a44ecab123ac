//! Any bytes as tool arguments: canonicalization never panics, and its output is JSON that
//! canonicalizes to itself (one hash per value, whatever the spelling).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(canonical) = palisade_tools::canonical_text(text) {
        assert_eq!(
            palisade_tools::canonical_text(&canonical).as_deref(),
            Ok(canonical.as_str())
        );
        assert!(serde_json::from_str::<serde_json::Value>(&canonical).is_ok());
    }
});
