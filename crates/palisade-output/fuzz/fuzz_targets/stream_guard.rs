//! Any text, cut into deltas at fuzzer-chosen points (each arriving one hold time after the
//! last, so time-forced releases happen): the guard never panics, never holds more than its
//! bound, and, with a bound the input cannot reach, releases exactly what `sanitize` makes
//! of the whole text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_output::{sanitize, GuardOptions, LinkAllow, SanitizeOptions, StreamGuard};

fuzz_target!(|data: &[u8]| {
    let Some((&step_seed, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let sanitize_opts = SanitizeOptions {
        allow: LinkAllow::hosts(["docs.rs", "*.example.com"]).expect("valid patterns"),
        ..SanitizeOptions::default()
    };
    let step = usize::from(step_seed % 13) + 1;
    for max_hold_bytes in [256, 1 << 20] {
        let mut g = StreamGuard::new(GuardOptions {
            max_hold_bytes,
            sanitize: sanitize_opts.clone(),
            ..GuardOptions::default()
        })
        .expect("valid bound");
        let mut out = String::new();
        let mut at = 0;
        while at < text.len() {
            let mut end = (at + step).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            let now = std::time::Duration::from_millis(250 * at as u64);
            out.push_str(&g.push_at(&text[at..end], now).text);
            assert!(g.held_bytes() < g.max_hold_bytes());
            at = end;
        }
        out.push_str(&g.finish().text);
        if g.forced_releases() == 0 {
            assert_eq!(out, sanitize(&text, &sanitize_opts).text);
        }
    }
});
