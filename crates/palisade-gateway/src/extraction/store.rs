//! Where extraction telemetry persists: SQLite (WAL; one replica, or
//! replicas sharing a file) or PostgreSQL (fleets: [`super::pg_store`]),
//! the same two tables in either.
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
//!
//! With PostgreSQL every replica writes the same tables: the hunt sees the
//! fleet, and [`Store::standings_since`] hands each worker the standings
//! the others decided.

use std::path::Path;

use palisade_extraction::{RequestFeatures, Standing};
use rusqlite::{params, Connection};

use super::pg_store::PgStore;

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

/// A read or write of the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no (or the connection broke).
    #[error("postgres: {0}")]
    Postgres(#[from] postgres::Error),
}

/// The worker's store: SQLite or PostgreSQL.
#[derive(Debug)]
pub(crate) enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens (creating) `sqlite:PATH` or `postgres://…`.
    pub(crate) fn open(url: &str, retention_hours: u64, max_rows: u64) -> Result<Self, StoreError> {
        if is_postgres(url) {
            PgStore::open(url, retention_hours, max_rows).map(Store::Postgres)
        } else {
            SqliteStore::open(url, retention_hours, max_rows).map(Store::Sqlite)
        }
    }

    /// Writes a batch of requests in one transaction.
    pub(crate) fn insert(
        &mut self,
        rows: &[(String, String, RequestFeatures, u64)],
    ) -> Result<(), DbError> {
        match self {
            Store::Sqlite(s) => Ok(s.insert(rows)?),
            Store::Postgres(s) => Ok(s.insert(rows)?),
        }
    }

    /// Upserts a key's standing and the evidence of its last evaluation.
    pub(crate) fn save_standing(
        &mut self,
        key: &str,
        tenant: &str,
        standing: Standing,
        action: &str,
        evidence: &str,
    ) -> Result<(), DbError> {
        match self {
            Store::Sqlite(s) => Ok(s.save_standing(key, tenant, standing, action, evidence)?),
            Store::Postgres(s) => Ok(s.save_standing(key, tenant, standing, action, evidence)?),
        }
    }

    /// Every stored standing.
    pub(crate) fn standings(&mut self) -> Result<Vec<(String, String, Standing)>, DbError> {
        self.standings_since(i64::MIN)
    }

    /// Standings written at or after `since_ms`; in PostgreSQL, by any
    /// replica (a shared SQLite file too).
    pub(crate) fn standings_since(
        &mut self,
        since_ms: i64,
    ) -> Result<Vec<(String, String, Standing)>, DbError> {
        match self {
            Store::Sqlite(s) => Ok(s.standings_since(since_ms)?),
            Store::Postgres(s) => Ok(s.standings_since(since_ms)?),
        }
    }

    /// Whether other replicas may write this store (so standings are worth
    /// pulling).
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Deletes rows past retention and beyond the row cap; returns how many.
    pub(crate) fn sweep(&mut self, now_ms: i64) -> Result<usize, DbError> {
        match self {
            Store::Sqlite(s) => Ok(s.sweep(now_ms)?),
            Store::Postgres(s) => Ok(s.sweep(now_ms)?),
        }
    }
}

/// Runs `f` on a short-lived thread of its own and waits for it: the
/// blocking PostgreSQL client runs a runtime of its own, which must not be
/// started from a thread driving the gateway's (start-up code is).
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|scope| scope.spawn(f).join().ok())
}

/// Whether a store URL names PostgreSQL.
pub(crate) fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The SQLite store.
#[derive(Debug)]
pub(crate) struct SqliteStore {
    conn: Connection,
    retention_ms: i64,
    max_rows: u64,
}

impl SqliteStore {
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

    /// Standings written at or after `since_ms`.
    pub(crate) fn standings_since(
        &self,
        since_ms: i64,
    ) -> rusqlite::Result<Vec<(String, String, Standing)>> {
        let mut stmt = self.conn.prepare(
            "SELECT key, tenant, score, at_ms FROM extraction_standings WHERE at_ms >= ?1",
        )?;
        let rows = stmt.query_map([since_ms], |r| {
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
