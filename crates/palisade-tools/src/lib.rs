//! The mechanics of agent tool calls, shared by the gateway and the CLI.
//!
//! - [`canonical`]: one byte form per JSON value (RFC 8785 / JCS, numbers kept exact,
//!   duplicate names refused), and the SHA-256 of a call's canonical arguments, so "the
//!   same arguments" means the same thing to the gateway that signs a call and the
//!   executor that runs it, in whatever language.
//! - [`capability`]: short-lived ed25519-signed capability tokens. A token names the
//!   tenant, the tool, the hash of the exact arguments, the request and an expiry; an
//!   executor verifies it offline with the public key, and it cannot be replayed for
//!   another tool, other arguments or after it expires.
//! - [`assemble`]: streamed `tool_calls` deltas put back together, bounded in size, so a
//!   call can be judged whole before any of it is released.
//!
//! **Invariant:** pure. No I/O, no async, no clock and no randomness: times and key seeds
//! come from the caller. It does not decide whether a call is allowed; that is the policy's
//! business (`palisade-policy`), and what a withheld call looks like on the wire is the
//! gateway's.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod assemble;
pub mod canonical;
pub mod capability;

pub use assemble::{AssembleError, CallAssembler, ToolCall, ENTRY_BYTES};
pub use canonical::{
    arguments_sha256, canonical_json, canonical_text, value_sha256, CanonicalError,
};
pub use capability::{
    CapabilityClaims, CapabilityError, CapabilitySigner, CapabilityVerifier, Expected, TokenSource,
};
