//! Runtime API keys (`api_keys`, migration 5): the rows `/admin/keys`
//! writes and every replica reads back into its key table.
//!
//! Rows hold SHA-256 hashes of keys, never a key: the database (and its
//! backups) must not become a credential store. A change is detected with
//! [`KeysVersion`] (row count and the sum of `updated_seq`, which grows on
//! every write), one cheap aggregate per poll, so replicas reload the table
//! only when something changed.
//!
//! This module must not decide whether a key authenticates (expiry, overlap
//! and revocation are judged by the gateway with its clock) and must not
//! see a plaintext key.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use crate::LedgerError;

/// One runtime key as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// Opaque identifier used by the admin API (`key_…`); not a secret.
    pub id: String,
    /// The tenant the key acts for.
    pub tenant: String,
    /// A label for logs and metrics (unique per tenant among live keys).
    pub name: String,
    /// Lower-case hex SHA-256 of the current secret.
    pub sha256: String,
    /// The previous secret's hash, accepted until `old_until_ms` (a
    /// rotation's overlap window).
    pub old_sha256: Option<String>,
    /// End of the overlap window, Unix ms.
    pub old_until_ms: Option<i64>,
    /// May call `/admin/*`.
    pub admin: bool,
    /// May confirm held tool calls.
    pub approver: bool,
    /// Receives tool credentials.
    pub executor: bool,
    /// The models this key may call; `None` means every routed model.
    pub models: Option<Vec<String>>,
    /// Refused with `key_expired` from this Unix ms on.
    pub expires_ms: Option<i64>,
    /// When it was created, Unix ms.
    pub created_ms: i64,
    /// When its secret was last rotated, Unix ms.
    pub rotated_ms: Option<i64>,
    /// When it was revoked, Unix ms; a revoked key never authenticates.
    pub revoked_ms: Option<i64>,
    /// Its own budget and rates (migration 6); all unset for older rows.
    #[serde(default)]
    pub budget: StoredBudget,
}

/// A runtime key's budget columns as stored: unset is `None`. The gateway
/// validates them (`palisade-limits`' `KeyBudget`) when it reads them back.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoredBudget {
    /// Hard spend cap per period, micro-dollars.
    pub max_budget_micros: Option<i64>,
    /// Hard cap per period on prompt plus completion tokens.
    pub max_tokens: Option<i64>,
    /// `monthly` or `daily` (UTC calendar); `None` is monthly.
    pub budget_period: Option<String>,
    /// Requests per minute for this key.
    pub requests_per_minute: Option<i64>,
    /// Tokens per minute for this key.
    pub tokens_per_minute: Option<i64>,
}

/// What changed-detection compares: equal versions mean an unchanged table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeysVersion {
    /// Rows in `api_keys`.
    pub rows: i64,
    /// Sum of `updated_seq` over the rows.
    pub seq_sum: i64,
}

/// How a write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWrite {
    /// The row was written.
    Written,
    /// An insert found the tenant at its cap of live keys.
    TenantFull,
    /// An update found no row with that id.
    NotFound,
}

const COLUMNS: &str = "id, tenant, name, sha256, old_sha256, old_until_ms, admin, approver,
    executor, models, expires_ms, created_ms, rotated_ms, revoked_ms, max_budget_micros,
    max_tokens, budget_period, requests_per_minute, tokens_per_minute";

fn models_text(models: &Option<Vec<String>>) -> Result<Option<String>, LedgerError> {
    models
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(LedgerError::Json)
}

fn models_parse(text: Option<String>) -> Result<Option<Vec<String>>, LedgerError> {
    text.map(|t| serde_json::from_str(&t).map_err(|_| crate::entry::corrupt("models", t)))
        .transpose()
}

// ---- SQLite -------------------------------------------------------------

/// Opens a short-lived write connection: key writes are rare admin actions,
/// so they do not go through the ledger's batching writer; WAL mode and the
/// busy timeout serialize them with it.
pub(crate) fn sqlite_writer(path: &std::path::Path) -> Result<Connection, LedgerError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

pub(crate) fn sqlite_version(conn: &Connection) -> Result<KeysVersion, LedgerError> {
    Ok(conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(updated_seq), 0) FROM api_keys",
        [],
        |r| {
            Ok(KeysVersion {
                rows: r.get(0)?,
                seq_sum: r.get(1)?,
            })
        },
    )?)
}

pub(crate) fn sqlite_load(conn: &Connection) -> Result<Vec<StoredKey>, LedgerError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY id"))?;
    let rows = stmt.query_map([], |r| {
        Ok((
            StoredKey {
                id: r.get(0)?,
                tenant: r.get(1)?,
                name: r.get(2)?,
                sha256: r.get(3)?,
                old_sha256: r.get(4)?,
                old_until_ms: r.get(5)?,
                admin: r.get::<_, i64>(6)? != 0,
                approver: r.get::<_, i64>(7)? != 0,
                executor: r.get::<_, i64>(8)? != 0,
                models: None,
                expires_ms: r.get(10)?,
                created_ms: r.get(11)?,
                rotated_ms: r.get(12)?,
                revoked_ms: r.get(13)?,
                budget: StoredBudget {
                    max_budget_micros: r.get(14)?,
                    max_tokens: r.get(15)?,
                    budget_period: r.get(16)?,
                    requests_per_minute: r.get(17)?,
                    tokens_per_minute: r.get(18)?,
                },
            },
            r.get::<_, Option<String>>(9)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (mut key, models) = row?;
        key.models = models_parse(models)?;
        out.push(key);
    }
    Ok(out)
}

/// Inserts `key` unless its tenant already has `max_live` live (unrevoked)
/// keys; the count and the insert are one statement under SQLite's write
/// lock, so concurrent creations cannot overshoot.
pub(crate) fn sqlite_insert(
    conn: &Connection,
    key: &StoredKey,
    max_live: u64,
) -> Result<KeyWrite, LedgerError> {
    let max_live = i64::try_from(max_live).unwrap_or(i64::MAX);
    let n = conn.execute(
        &format!(
            "INSERT INTO api_keys ({COLUMNS}, updated_seq)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?16, ?17, ?18,
                    ?19, ?20, (SELECT COALESCE(MAX(updated_seq), 0) + 1 FROM api_keys)
             WHERE (SELECT COUNT(*) FROM api_keys WHERE tenant = ?2 AND revoked_ms IS NULL) < ?15"
        ),
        params![
            key.id,
            key.tenant,
            key.name,
            key.sha256,
            key.old_sha256,
            key.old_until_ms,
            key.admin as i64,
            key.approver as i64,
            key.executor as i64,
            models_text(&key.models)?,
            key.expires_ms,
            key.created_ms,
            key.rotated_ms,
            key.revoked_ms,
            max_live,
            key.budget.max_budget_micros,
            key.budget.max_tokens,
            key.budget.budget_period,
            key.budget.requests_per_minute,
            key.budget.tokens_per_minute,
        ],
    )?;
    Ok(if n == 1 {
        KeyWrite::Written
    } else {
        KeyWrite::TenantFull
    })
}

/// Replaces the mutable columns of the row with `key.id`.
pub(crate) fn sqlite_update(conn: &Connection, key: &StoredKey) -> Result<KeyWrite, LedgerError> {
    let n = conn.execute(
        "UPDATE api_keys SET sha256 = ?2, old_sha256 = ?3, old_until_ms = ?4, admin = ?5,
            approver = ?6, executor = ?7, models = ?8, expires_ms = ?9, rotated_ms = ?10,
            revoked_ms = ?11, max_budget_micros = ?12, max_tokens = ?13, budget_period = ?14,
            requests_per_minute = ?15, tokens_per_minute = ?16,
            updated_seq = (SELECT COALESCE(MAX(updated_seq), 0) + 1 FROM api_keys)
         WHERE id = ?1",
        params![
            key.id,
            key.sha256,
            key.old_sha256,
            key.old_until_ms,
            key.admin as i64,
            key.approver as i64,
            key.executor as i64,
            models_text(&key.models)?,
            key.expires_ms,
            key.rotated_ms,
            key.revoked_ms,
            key.budget.max_budget_micros,
            key.budget.max_tokens,
            key.budget.budget_period,
            key.budget.requests_per_minute,
            key.budget.tokens_per_minute,
        ],
    )?;
    Ok(if n == 1 {
        KeyWrite::Written
    } else {
        KeyWrite::NotFound
    })
}

// ---- PostgreSQL ---------------------------------------------------------

pub(crate) async fn pg_version(
    client: &tokio_postgres::Client,
) -> Result<KeysVersion, LedgerError> {
    let r = client
        .query_one(
            "SELECT COUNT(*), COALESCE(SUM(updated_seq), 0)::int8 FROM api_keys",
            &[],
        )
        .await?;
    Ok(KeysVersion {
        rows: r.try_get(0)?,
        seq_sum: r.try_get(1)?,
    })
}

pub(crate) async fn pg_load(
    client: &tokio_postgres::Client,
) -> Result<Vec<StoredKey>, LedgerError> {
    let rows = client
        .query(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY id"), &[])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(StoredKey {
                id: r.try_get(0)?,
                tenant: r.try_get(1)?,
                name: r.try_get(2)?,
                sha256: r.try_get(3)?,
                old_sha256: r.try_get(4)?,
                old_until_ms: r.try_get(5)?,
                admin: r.try_get(6)?,
                approver: r.try_get(7)?,
                executor: r.try_get(8)?,
                models: models_parse(r.try_get(9)?)?,
                expires_ms: r.try_get(10)?,
                created_ms: r.try_get(11)?,
                rotated_ms: r.try_get(12)?,
                revoked_ms: r.try_get(13)?,
                budget: StoredBudget {
                    max_budget_micros: r.try_get(14)?,
                    max_tokens: r.try_get(15)?,
                    budget_period: r.try_get(16)?,
                    requests_per_minute: r.try_get(17)?,
                    tokens_per_minute: r.try_get(18)?,
                },
            })
        })
        .collect()
}

/// The insert with its tenant cap in one statement. Under PostgreSQL's
/// default isolation two creations racing for the last slot of one tenant
/// can both pass the count: the cap may be exceeded by the number of
/// concurrent admin writers, which is what it is for (a flood from one
/// client is serialized by its connection).
pub(crate) async fn pg_insert(
    client: &tokio_postgres::Client,
    key: &StoredKey,
    max_live: u64,
) -> Result<KeyWrite, LedgerError> {
    let max_live = i64::try_from(max_live).unwrap_or(i64::MAX);
    let models = models_text(&key.models)?;
    let n = client
        .execute(
            &format!(
                "INSERT INTO api_keys ({COLUMNS}, updated_seq)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $16, $17,
                        $18, $19, $20, nextval('api_keys_seq')
                 WHERE (SELECT COUNT(*) FROM api_keys WHERE tenant = $2 AND revoked_ms IS NULL) < $15"
            ),
            &[
                &key.id,
                &key.tenant,
                &key.name,
                &key.sha256,
                &key.old_sha256,
                &key.old_until_ms,
                &key.admin,
                &key.approver,
                &key.executor,
                &models,
                &key.expires_ms,
                &key.created_ms,
                &key.rotated_ms,
                &key.revoked_ms,
                &max_live,
                &key.budget.max_budget_micros,
                &key.budget.max_tokens,
                &key.budget.budget_period,
                &key.budget.requests_per_minute,
                &key.budget.tokens_per_minute,
            ],
        )
        .await?;
    Ok(if n == 1 {
        KeyWrite::Written
    } else {
        KeyWrite::TenantFull
    })
}

pub(crate) async fn pg_update(
    client: &tokio_postgres::Client,
    key: &StoredKey,
) -> Result<KeyWrite, LedgerError> {
    let models = models_text(&key.models)?;
    let n = client
        .execute(
            "UPDATE api_keys SET sha256 = $2, old_sha256 = $3, old_until_ms = $4, admin = $5,
                approver = $6, executor = $7, models = $8, expires_ms = $9, rotated_ms = $10,
                revoked_ms = $11, max_budget_micros = $12, max_tokens = $13,
                budget_period = $14, requests_per_minute = $15, tokens_per_minute = $16,
                updated_seq = nextval('api_keys_seq')
             WHERE id = $1",
            &[
                &key.id,
                &key.sha256,
                &key.old_sha256,
                &key.old_until_ms,
                &key.admin,
                &key.approver,
                &key.executor,
                &models,
                &key.expires_ms,
                &key.rotated_ms,
                &key.revoked_ms,
                &key.budget.max_budget_micros,
                &key.budget.max_tokens,
                &key.budget.budget_period,
                &key.budget.requests_per_minute,
                &key.budget.tokens_per_minute,
            ],
        )
        .await?;
    Ok(if n == 1 {
        KeyWrite::Written
    } else {
        KeyWrite::NotFound
    })
}
