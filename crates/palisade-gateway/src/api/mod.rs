//! The gateway's own endpoints, beside the proxied ones: the guard APIs,
//! the tool-confirmation APIs, `/v1/models`, the admin endpoints and the
//! probes.
//!
//! Each handler starts with the same front as the proxy
//! ([`crate::pipeline::front`]: authenticate, rate gate, read) and calls the
//! gates; none of them forwards to an upstream except `/v1/models`.

pub(crate) mod admin;
pub(crate) mod admin_read;
pub(crate) mod admin_views;
pub(crate) mod guard;
pub(crate) mod key_budgets;
pub(crate) mod keys;
pub(crate) mod models;
pub(crate) mod probes;
pub(crate) mod responses;
pub(crate) mod tools;
pub(crate) mod watermark;
