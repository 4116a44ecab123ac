//! The OpenAI HTTP wire format, as Palisade needs it.
//!
//! - [`error`]: the `{"error": {...}}` body and the stable error codes clients match on.
//! - [`request`]: cheap inspection of request bodies (model, stream flag) without
//!   committing to a full schema, so unknown fields always pass through untouched.
//! - [`usage`]: token usage as upstreams report it, and estimates for
//!   reserving budgets before they do.
//! - [`sse`]: an incremental framer that cuts an upstream byte stream into
//!   server-sent events without buffering the whole response.
//!
//! This crate does no I/O and knows nothing of HTTP servers or clients; it only
//! turns bytes into values and back. Status codes live here as plain `u16`.

#![forbid(unsafe_code)]

pub mod error;
pub mod request;
pub mod sse;
pub mod usage;

pub use error::{ApiError, ErrorCode, ErrorKind};
pub use request::{InspectError, RequestBody};
pub use sse::{SseEvent, SseFramer};
