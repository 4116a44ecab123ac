//! Any bytes as a request body: parsing must return, never panic, and a body
//! that parses must round-trip through `to_bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_openai::request::{Endpoint, RequestBody};

fuzz_target!(|data: &[u8]| {
    for endpoint in [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Embeddings, Endpoint::Responses] {
        if let Ok(body) = RequestBody::parse(endpoint, data) {
            let again = RequestBody::parse(endpoint, &body.to_bytes()).expect("re-encoded body parses");
            assert_eq!(again.model(), body.model());
            assert_eq!(again.is_stream(), body.is_stream());
        }
    }
});
