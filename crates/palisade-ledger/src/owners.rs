//! Who owns each Responses API id the gateway relayed: the tenant and key
//! that created it, the backend that holds it, and what a request
//! continuing it inherits (the route and model it was made for, and whether
//! the conversation carried untrusted or flagged content).
//!
//! Why: the gateway reaches an upstream with one key shared by every tenant,
//! so the upstream answers `GET /v1/responses/{id}` (and continues a
//! conversation from `previous_response_id`) for whoever names the id. The
//! gateway records the owner of every id it relays and answers others as if
//! the id did not exist. The first writer owns an id (`ON CONFLICT DO
//! NOTHING`): a second tenant's answer naming the same id never takes it
//! over. Rows older than the caller's retention bound are deleted when a
//! new one is written, so the table stays bounded by traffic × retention.
//!
//! Must not: decide who may read an id (the gateway compares owners), read
//! the clock (`created_ms` and the bound come from the caller).

use rusqlite::{params, Connection, OptionalExtension};

use crate::LedgerError;

/// The owner of one response id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseOwner {
    /// The upstream's response id (`resp_…`).
    pub response_id: String,
    /// The tenant whose key created it.
    pub tenant: String,
    /// The key's name within the tenant.
    pub key_name: String,
    /// The backend that answered (the one to ask for it again).
    pub backend: String,
    /// When the gateway relayed it, Unix milliseconds.
    pub created_ms: i64,
    /// The route and model the request named ('' when unknown).
    pub route: String,
    /// See [`Self::route`].
    pub model: String,
    /// What the conversation carried up to this response:
    /// [`CONTEXT_UNTRUSTED`] and/or [`CONTEXT_FLAGGED`].
    pub context: i64,
}

/// [`ResponseOwner::context`]: the conversation carried untrusted content
/// (a tool result, a retrieved document).
pub const CONTEXT_UNTRUSTED: i64 = 1;
/// [`ResponseOwner::context`]: content the input gates flagged.
pub const CONTEXT_FLAGGED: i64 = 2;

/// Most expired rows one write deletes: retention never makes a write slow.
const SWEEP: i64 = 500;

pub(crate) fn sqlite_put(
    conn: &Connection,
    owner: &ResponseOwner,
    keep_after_ms: i64,
) -> Result<(), LedgerError> {
    conn.execute(
        "INSERT INTO response_owner
           (response_id, tenant, key_name, backend, created_ms, route, model, context)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (response_id) DO NOTHING",
        params![
            owner.response_id,
            owner.tenant,
            owner.key_name,
            owner.backend,
            owner.created_ms,
            owner.route,
            owner.model,
            owner.context
        ],
    )?;
    conn.execute(
        "DELETE FROM response_owner WHERE response_id IN
           (SELECT response_id FROM response_owner WHERE created_ms < ?1 LIMIT ?2)",
        params![keep_after_ms, SWEEP],
    )?;
    Ok(())
}

pub(crate) fn sqlite_get(
    conn: &Connection,
    response_id: &str,
) -> Result<Option<ResponseOwner>, LedgerError> {
    Ok(conn
        .query_row(
            "SELECT response_id, tenant, key_name, backend, created_ms, route, model, context
             FROM response_owner WHERE response_id = ?1",
            params![response_id],
            |r| {
                Ok(ResponseOwner {
                    response_id: r.get(0)?,
                    tenant: r.get(1)?,
                    key_name: r.get(2)?,
                    backend: r.get(3)?,
                    created_ms: r.get(4)?,
                    route: r.get(5)?,
                    model: r.get(6)?,
                    context: r.get(7)?,
                })
            },
        )
        .optional()?)
}

pub(crate) fn sqlite_delete(conn: &Connection, response_id: &str) -> Result<(), LedgerError> {
    conn.execute(
        "DELETE FROM response_owner WHERE response_id = ?1",
        params![response_id],
    )?;
    Ok(())
}

pub(crate) async fn pg_put(
    client: &tokio_postgres::Client,
    owner: &ResponseOwner,
    keep_after_ms: i64,
) -> Result<(), LedgerError> {
    client
        .execute(
            "INSERT INTO response_owner
               (response_id, tenant, key_name, backend, created_ms, route, model, context)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (response_id) DO NOTHING",
            &[
                &owner.response_id,
                &owner.tenant,
                &owner.key_name,
                &owner.backend,
                &owner.created_ms,
                &owner.route,
                &owner.model,
                &owner.context,
            ],
        )
        .await?;
    client
        .execute(
            "DELETE FROM response_owner WHERE response_id IN
               (SELECT response_id FROM response_owner WHERE created_ms < $1 LIMIT $2)",
            &[&keep_after_ms, &SWEEP],
        )
        .await?;
    Ok(())
}

pub(crate) async fn pg_get(
    client: &tokio_postgres::Client,
    response_id: &str,
) -> Result<Option<ResponseOwner>, LedgerError> {
    let row = client
        .query_opt(
            "SELECT response_id, tenant, key_name, backend, created_ms, route, model, context
             FROM response_owner WHERE response_id = $1",
            &[&response_id],
        )
        .await?;
    Ok(row.map(|r| ResponseOwner {
        response_id: r.get(0),
        tenant: r.get(1),
        key_name: r.get(2),
        backend: r.get(3),
        created_ms: r.get(4),
        route: r.get(5),
        model: r.get(6),
        context: r.get(7),
    }))
}

pub(crate) async fn pg_delete(
    client: &tokio_postgres::Client,
    response_id: &str,
) -> Result<(), LedgerError> {
    client
        .execute(
            "DELETE FROM response_owner WHERE response_id = $1",
            &[&response_id],
        )
        .await?;
    Ok(())
}
