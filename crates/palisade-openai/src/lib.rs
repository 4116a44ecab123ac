//! The OpenAI HTTP wire format, as Palisade needs it.
//!
//! - [`channels`]: which parts of a chat request are instructions and which are
//!   untrusted data, and the gates' rewrites (spotlighting, system-prompt additions).
//! - [`error`]: the `{"error": {...}}` body and the stable error codes clients match on.
//! - [`request`]: cheap inspection of request bodies (model, stream flag) without
//!   committing to a full schema, so unknown fields always pass through untouched.
//! - [`usage`]: token usage as upstreams report it, and estimates for
//!   reserving budgets before they do (OpenAI vocabularies, Hugging Face
//!   `tokenizer.json` files the caller passes in as bytes, or an
//!   approximation).
//! - [`sse`]: an incremental framer that cuts an upstream byte stream into
//!   server-sent events without buffering the whole response.
//!
//! This crate does no I/O and knows nothing of HTTP servers or clients; it only
//! turns bytes into values and back. Status codes live here as plain `u16`.

#![forbid(unsafe_code)]

pub mod channels;
pub mod error;
mod hf;
pub mod request;
pub mod sse;
mod tally_view;
pub mod usage;

pub use error::{ApiError, ErrorCode, ErrorKind};
pub use request::{ensure_stream_usage, InspectError, RequestBody};
pub use sse::{SseEvent, SseFramer};
