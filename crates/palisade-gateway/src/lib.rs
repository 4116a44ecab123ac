//! Palisade's HTTP edge: an OpenAI-compatible proxy in front of one or more
//! OpenAI-compatible upstreams.
//!
//! The request path, in phases (each a function in [`proxy`], run in order):
//!
//! 1. **identify** ([`request_id`]): accept or mint `x-request-id`, open the
//!    request span every log line of the request is written under.
//! 2. **authenticate** ([`auth`]): bearer key → tenant, by SHA-256; then the
//!    **rate gate** ([`admission`]): request rate and in-flight limits.
//! 3. **read and inspect** the body ([`palisade_openai::request`]): size limit,
//!    JSON, required fields.
//! 4. **route** ([`routing`]): model or alias → backend and upstream name.
//! 5. **forward** ([`upstream`]): one pooled client per backend, with connect,
//!    first-byte, idle and end-to-end deadlines.
//! 6. **relay** ([`stream`] for SSE, buffered otherwise): event by event,
//!    pulled by the client's socket so backpressure reaches the upstream, and
//!    dropped (cancelling the upstream) when the client goes away.
//!
//! Errors from every phase become OpenAI-shaped bodies in one place,
//! [`error::error_response`]. The safety gates slot in between phases 4 and
//! 5 (input, context and the request side of the [`tools`] gate) and around
//! 6 (output, and each tool call the model emits).
//!
//! This crate owns HTTP; it must not contain detection, policy or limit logic,
//! which live in pure crates and are called from here.

#![forbid(unsafe_code)]

pub mod accounting;
pub mod admin;
pub mod admission;
pub(crate) mod audit;
pub mod auth;
pub(crate) mod body_deadline;
pub mod breaker;
pub(crate) mod budgets;
pub mod clock;
pub(crate) mod cpu;
pub mod error;
pub(crate) mod gates;
pub mod guard;
pub(crate) mod held_calls;
pub(crate) mod listener;
pub mod metrics;
pub mod models;
pub(crate) mod output_gate;
pub mod policy;
pub mod proxy;
pub mod readiness;
pub mod request_id;
pub(crate) mod reservation;
pub mod routing;
pub mod scheduler;
pub mod server;
pub mod spend;
pub mod stream;
pub(crate) mod tool_bounds;
pub mod tools;
pub mod upstream;
pub(crate) mod usage;

pub use server::{Gateway, GatewayError, RunningGateway};
