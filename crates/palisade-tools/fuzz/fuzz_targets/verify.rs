//! Any bytes as a capability token: verification never panics and never accepts a token
//! this key did not sign (the fuzzer cannot forge ed25519).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_tools::{CapabilitySigner, Expected};

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let verifier = CapabilitySigner::from_seed([9; 32]).verifier();
    assert!(verifier.verify(&token, 0).is_err());
    let call = Expected {
        tool: "t",
        arguments: &token,
        tenant: None,
    };
    assert!(verifier.verify_call(&token, call, 0).is_err());
    let _ = palisade_tools::arguments_sha256(&token);
});
