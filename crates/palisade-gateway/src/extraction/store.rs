//! Where extraction telemetry persists: SQLite (WAL), two tables.
//!
//! - `extraction_requests`: one row per request — time, tenant, key, length,
//!   entropy, SimHash, MinHash, sampling-configuration hash, log-probability
//!   flag, gate outcome, client fingerprint (a hash of the user agent, the
//!   header names in order and the client's IP prefix). Hashes and counts
//!   only, never text: the hunt ([`super::hunt`]) clusters keys on these
//!   (shared templates by MinHash, lockstep timing by `ts_ms`, similar
//!   distributions by SimHash and length, shared clients by fingerprint).
//! - `extraction_standings`: each key's ladder score with the evidence of
//!   its last evaluation, so a restart does not clear a block.
//!
//! Retention: rows older than `retention_hours` and beyond `max_rows` are
//! deleted by [`Store::sweep`]. Must not: be called on the request path
//! (the worker thread owns it).

use std::path::Path;

use palisade_extraction::{RequestFeatures, Standing};
use rusqlite::{params, Connection};

/// The store could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("extraction store {url}: {message}")]
pub struct StoreError {
    pub(crate) url: String,
    pub(crate) message: String,
}

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS extraction_requests (
    ts_ms INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    chars INTEGER NOT NULL,
    entropy REAL NOT NULL,
    simhash INTEGER NOT NULL,
    minhash TEXT NOT NULL,
    config_hash INTEGER NOT NULL,
    logprobs INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    fingerprint INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS extraction_requests_ts ON extraction_requests (ts_ms);
CREATE INDEX IF NOT EXISTS extraction_requests_key ON extraction_requests (key, ts_ms);
CREATE TABLE IF NOT EXISTS extraction_standings (
    key TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    score REAL NOT NULL,
    at_ms INTEGER NOT NULL,
    action TEXT NOT NULL,
    evidence TEXT NOT NULL
);
";

/// The SQLite store.
#[derive(Debug)]
pub(crate) struct Store {
    conn: Connection,
    retention_ms: i64,
    max_rows: u64,
}

impl Store {
    /// Opens (creating) `sqlite:PATH`.
    pub(crate) fn open(url: &str, retention_hours: u64, max_rows: u64) -> Result<Self, StoreError> {
        let err = |e: rusqlite::Error| StoreError {
            url: url.to_owned(),
            message: e.to_string(),
        };
        let path = url.strip_prefix("sqlite:").unwrap_or(url);
        let conn = Connection::open(Path::new(path)).map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        migrate(&conn).map_err(err)?;
        Ok(Self {
            conn,
            retention_ms: i64::try_from(retention_hours.saturating_mul(3_600_000))
                .unwrap_or(i64::MAX),
            max_rows,
        })
    }

    /// Writes a batch of requests in one transaction.
    pub(crate) fn insert(
        &mut self,
        rows: &[(String, String, RequestFeatures, u64)],
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO extraction_requests
                 (ts_ms, tenant, key, chars, entropy, simhash, minhash, config_hash, logprobs, outcome, fingerprint)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for (tenant, key, f, fingerprint) in rows {
                let minhash: String = f
                    .sketch
                    .minhash
                    .iter()
                    .map(|v| format!("{v:08x}"))
                    .collect();
                stmt.execute(params![
                    f.at_ms,
                    tenant,
                    key,
                    f.sketch.chars,
                    f64::from(f.sketch.entropy_bits),
                    // SQLite integers are signed: store the bits.
                    f.sketch.simhash as i64,
                    minhash,
                    f.sampling.config_hash as i64,
                    f.sampling.logprobs,
                    f.outcome.as_str(),
                    *fingerprint as i64,
                ])?;
            }
        }
        tx.commit()
    }

    /// Upserts a key's standing and the evidence of its last evaluation.
    pub(crate) fn save_standing(
        &self,
        key: &str,
        tenant: &str,
        standing: Standing,
        action: &str,
        evidence: &str,
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO extraction_standings (key, tenant, score, at_ms, action, evidence)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(key) DO UPDATE SET tenant = ?2, score = ?3, at_ms = ?4, action = ?5, evidence = ?6",
            params![key, tenant, standing.score, standing.at_ms, action, evidence],
        )?;
        Ok(())
    }

    /// Every stored standing.
    pub(crate) fn standings(&self) -> rusqlite::Result<Vec<(String, String, Standing)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, tenant, score, at_ms FROM extraction_standings")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                Standing {
                    score: r.get(2)?,
                    at_ms: r.get(3)?,
                },
            ))
        })?;
        rows.collect()
    }

    /// Deletes rows past retention and beyond the row cap; returns how many.
    pub(crate) fn sweep(&self, now_ms: i64) -> rusqlite::Result<usize> {
        let cutoff = now_ms.saturating_sub(self.retention_ms);
        let mut deleted = self
            .conn
            .execute("DELETE FROM extraction_requests WHERE ts_ms < ?1", [cutoff])?;
        let max_rows = i64::try_from(self.max_rows).unwrap_or(i64::MAX);
        deleted += self.conn.execute(
            "DELETE FROM extraction_requests WHERE rowid <= (SELECT MAX(rowid) FROM extraction_requests) - ?1",
            [max_rows],
        )?;
        self.conn.execute(
            "DELETE FROM extraction_standings WHERE at_ms < ?1",
            [cutoff],
        )?;
        Ok(deleted)
    }
}

/// Adds the `fingerprint` column to a store written before it existed
/// (rows from then read as "no fingerprint").
pub(crate) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    if conn
        .prepare("SELECT fingerprint FROM extraction_requests LIMIT 0")
        .is_err()
    {
        conn.execute_batch(
            "ALTER TABLE extraction_requests ADD COLUMN fingerprint INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    Ok(())
}
