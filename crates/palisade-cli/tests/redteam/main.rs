//! The red-team suite: every way around the gates that was found (and every
//! variant we thought of), each as a test that failed before its fix. One
//! module per class of attack, so the list of attacks reads in one place:
//!
//! - `input_gates`: hostile request shapes against the input and context
//!   gates (the `prompt` bypass, unread text fields, client channel marks).
//! - `side_fields`: secrets and canaries leaving through response fields
//!   other than `content`, and upstream bodies the gate cannot parse.
//! - `starvation`: CPU, memory and connection exhaustion.
//! - `tokens_keys`: capability tokens, canonical arguments, signatures, keys.
//! - `output_gate`: the output gate's second round (links, streams,
//!   encodings, holding back without holding up).
//! - `markers`: the keyed canary and data boundaries (no cross-tenant
//!   canary, no closing a block with a boundary seen before).
//! - `routing`: a hostile upstream steering retries and fallbacks (parking
//!   requests, pushing data out of its residency region).
//!
//! Everything runs on loopback against real processes or an in-process
//! gateway with the built-in policy, and a scripted or hostile upstream.

mod harness;
mod input_gates;
mod markers;
mod output_gate;
mod routing;
mod side_fields;
mod starvation;
mod tokens_keys;
