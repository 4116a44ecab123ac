//! The tool gate: agent tool calls between the model and whatever executes
//! them.
//!
//! On the way in ([`inspect_request`]), tools the client offers that the
//! tier does not allow are removed (or the request refused), and a
//! conversation already past its loop caps is stopped. On the way out, every
//! `tool_calls` entry the model emits — whole in a response
//! ([`gate_body`]), or assembled from streamed deltas before any of it is
//! sent ([`ToolStreamGate`]) — is judged by the policy
//! ([`palisade_policy::Snapshot::decide_tool`]) and then:
//!
//! - **released**: left in the message, with a capability token (ed25519,
//!   scoped to tenant, tool, argument hash, request and expiry) in the
//!   response's `palisade.tool_calls` report;
//! - **withheld**: removed, with the reason codes in the report;
//! - **pending confirmation**: removed and parked under a confirmation id;
//!   `POST /v1/tools/confirm` (an approver key) releases it with a token.
//!
//! Executors check tokens offline with the public key
//! (`GET /v1/tools/public-key`) or with `POST /v1/tools/verify`, which also
//! hands an executor key (`executor = true`) the tenant's credential for the
//! tool: credentials never enter the model's context or the logs, and agent
//! keys never receive them. Tokens minted by the guard API carry
//! `src: "guard"`, so executors can tell them from proxied ones.
//!
//! Every call's decision is audited with the policy version and reason codes
//! (arguments only as their hash). Pending calls, single-use token records and
//! conversation counters live in this process's memory, bounded per tenant
//! ([`crate::gates::tools::held`]), and in Redis when the replica shares limits;
//! held calls are reached through [`HeldCalls`], whichever store holds them.
//! Decisions read time from the [`ToolService`]'s clock, never the OS's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use palisade_openai::{ApiError, ErrorCode};
use palisade_policy::{Action, Decision, Evidence, ReasonCode, ToolEvidence, UnlistedOffer};
use palisade_redis::{HoldLimits, Parked, RedisToolStore};
use palisade_tools::{
    arguments_sha256, CallAssembler, CapabilityClaims, CapabilitySigner, CapabilityVerifier,
    TokenSource, ToolCall,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::gates::tools::held::{Conversation, Conversations, Hold, Lapses, PendingStore};
use crate::gates::GatePlan;

pub(crate) mod bounds;
pub(crate) mod held;
mod held_calls;
mod judge;
mod request;
mod responses;
mod service;
mod stream;
mod stream_responses;
#[cfg(test)]
mod tests;

pub(crate) use held_calls::*;
pub(crate) use judge::*;
pub(crate) use request::*;
pub(crate) use responses::is_foreign;
pub(crate) use service::*;
pub(crate) use stream::*;

/// The header naming the conversation an agent request belongs to; the
/// loop caps count per conversation.
pub(crate) const CONVERSATION_HEADER: &str = "x-palisade-conversation";
