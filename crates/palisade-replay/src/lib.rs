//! Store an outcome, replay it: the one mechanism behind **idempotency keys**
//! and the **exact-match response cache**.
//!
//! A [`Table`] holds, per tenant, entries keyed by a 32-byte digest the caller
//! derives ([`scope_key`]): for an idempotency key, from the tenant, the API
//! key's name and the client's `Idempotency-Key`; for the cache, from the
//! tenant, the tier, the policy version and the request's canonical
//! [`Fingerprint`]. An entry is either *in flight* (a lease held by the first
//! request, [`Table::begin`]) or *done* (a [`Stored`] response). The cache uses
//! only [`Table::get`] and [`Table::put`]; idempotency uses
//! [`Table::begin`], [`Table::complete`] and [`Table::release`].
//!
//! What the design settles (the gateway's `replay/` wires it):
//! - **What is stored** is the response *as the client received it*: after the
//!   tool and output gates (a replay never bypasses them), streams as the exact
//!   bytes relayed (same SSE framing, `[DONE]` included).
//! - **Scope**: every entry lives in its tenant's shard; no lookup crosses a
//!   tenant, and the digest also binds the tenant, so even a shard mix-up
//!   cannot match.
//! - **Bounds**: per tenant, at most `max_entries` entries and `max_bytes`
//!   stored bytes; a tenant over its quota evicts *its own* oldest done
//!   entries, never another tenant's. One entry larger than `max_entry_bytes`
//!   is not stored. Memory is therefore bounded by tenants × quota, and the
//!   tenants are the configured ones.
//! - **Expiry**: done entries live `ttl_ms`; in-flight entries hold a lease
//!   that expires (a crashed or hung first request does not pin the key).
//!   A completion whose lease was taken over is ignored.
//! - **Conflicts**: the same idempotency key with another fingerprint is
//!   [`Begin::Mismatch`], whether in flight or done.
//!
//! Must not: do I/O, read a clock (`now_ms` is passed in) or decide policy
//! (which responses are worth storing is the caller's call).

#![forbid(unsafe_code)]

mod fingerprint;
mod table;

pub use fingerprint::{scope_key, Fingerprint};
pub use table::{Begin, Lease, Limits, Stored, Table};
