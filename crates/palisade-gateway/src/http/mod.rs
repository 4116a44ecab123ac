//! The HTTP edge below the handlers: connection limits, a bound on writes
//! to a client that stopped reading, request ids, the body deadline, bearer-key authentication and the OpenAI error shape.
//!
//! Nothing here reads the gateway's state or makes a policy decision; it is
//! the plumbing every route shares.

pub(crate) mod auth;
pub(crate) mod body_deadline;
pub(crate) mod error;
pub(crate) mod h2_idle;
pub(crate) mod listener;
pub(crate) mod request_id;
pub(crate) mod runtime_keys;
pub(crate) mod write_stall;
