//! Any text: `sanitize` never panics, every reported span lies on char boundaries of the
//! input, and text with no action comes back borrowed and unchanged.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use palisade_output::{sanitize, LinkAllow, SanitizeOptions};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let opts = SanitizeOptions {
        allow: LinkAllow::hosts(["docs.rs", "*.example.com"]).expect("valid patterns"),
        ..SanitizeOptions::default()
    };
    let s = sanitize(&text, &opts);
    for a in &s.actions {
        let r = &a.span_in_original;
        assert!(r.start <= r.end && r.end <= text.len());
        assert!(text.is_char_boundary(r.start) && text.is_char_boundary(r.end));
    }
    if s.actions.is_empty() {
        assert!(matches!(s.text, Cow::Borrowed(_)));
        assert_eq!(s.text, text);
    }
});
