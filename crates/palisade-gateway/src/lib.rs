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

pub(crate) mod anomaly;
pub(crate) mod api;
pub(crate) mod balancer;
pub mod bundle;
pub(crate) mod canary;
pub(crate) mod clock;
pub(crate) mod console;
pub(crate) mod context;
pub(crate) mod cpu;
pub(crate) mod extraction;
pub(crate) mod fleet;
pub(crate) mod gates;
pub(crate) mod http;
pub(crate) mod limits;
pub(crate) mod metrics;
pub(crate) mod outbound;
pub(crate) mod pipeline;
pub(crate) mod readiness;
pub mod reload;
pub(crate) mod replay;
pub(crate) mod router;
pub(crate) mod routing;
pub(crate) mod second_stage;
pub(crate) mod server;
pub(crate) mod snapshot;
pub(crate) mod state;
pub(crate) mod telemetry;
pub(crate) mod upstream;
pub(crate) mod watermark;

pub use bundle::mark_process_start;
pub use reload::{ConfigLoader, Outcome as ReloadOutcome};
pub use server::{Gateway, GatewayError, RunningGateway};

/// The stream relay's per-event work, for the criterion benches only.
#[doc(hidden)]
pub use pipeline::filters::bench as stream_bench;

/// The extraction telemetry's request-path cost, for the criterion benches only.
#[doc(hidden)]
pub use extraction::bench as extraction_bench;
/// The cross-account hunt over the extraction store, for `palisade hunt`.
pub use extraction::hunt;
/// The routing snapshot's reload and load costs, for the criterion benches only.
#[doc(hidden)]
pub use snapshot::bench as routing_bench;
