//! The hunt's side of the extraction store (SQLite, the same file the
//! worker writes, read over its own connection in WAL mode; or the
//! PostgreSQL database of the fleet, [`super::pg_store`]): the feature
//! rows of a time window, and the `extraction_campaigns` table where every
//! campaign found is kept with its keys, its last summary, the operators'
//! mark and when it was alerted (so an alert goes out once per campaign,
//! across restarts and replicas sharing the file).
//!
//! Must not: be used on the request path, or decide anything (the
//! clustering is `palisade_extraction::hunt`).

use std::path::Path;

use palisade_extraction::hunt::{HuntConfig, HuntRow, ProfileSet};
use palisade_extraction::sketch::MINHASH_SLOTS;
use palisade_extraction::{Campaign, HuntReport, Mark, Marks, PriorCampaign};
use rusqlite::{params, Connection, OptionalExtension};

use super::pg_store::PgStore;
use super::store::{is_postgres, migrate, DbError, SCHEMA};
use super::StoreError;

const CAMPAIGNS: &str = "
CREATE TABLE IF NOT EXISTS extraction_campaigns (
    id TEXT PRIMARY KEY,
    keys TEXT NOT NULL,
    summary TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    mark TEXT,
    marked_at_ms INTEGER,
    alerted_at_ms INTEGER
);
";

/// Unmarked campaigns not seen for this long are no longer matched by id
/// (a marked one always is: the mark is the operators' memory).
pub(super) const PRIOR_MS: i64 = 7 * 24 * 3_600_000;

/// A campaign as stored: its last summary (keys listed up to the hunt's
/// `max_listed_keys`) and the operators' mark.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredCampaign {
    /// The campaign as last found.
    pub campaign: Campaign,
    /// When it was first found.
    pub first_seen_ms: i64,
    /// When it was last found.
    pub last_seen_ms: i64,
    /// When it was marked.
    pub marked_at_ms: Option<i64>,
    /// When its alert went out.
    pub alerted_at_ms: Option<i64>,
}

/// The hunt's connection to the store: SQLite or PostgreSQL.
#[derive(Debug)]
pub struct HuntStore(Backend);

#[derive(Debug)]
enum Backend {
    Sqlite(SqliteHunt),
    Postgres(Box<PgStore>),
}

/// One call on whichever backend, with its error made a [`DbError`].
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &mut $self.0 {
            Backend::Sqlite(s) => s.$method($($arg),*).map_err(DbError::from),
            Backend::Postgres(s) => s.$method($($arg),*).map_err(DbError::from),
        }
    };
}

impl HuntStore {
    /// Opens (creating) `sqlite:PATH` or `postgres://…`.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Ok(Self(if is_postgres(url) {
            // Retention is the worker's business; the hunt never sweeps.
            Backend::Postgres(Box::new(PgStore::open(
                url,
                u64::MAX / 3_600_000,
                u64::MAX,
            )?))
        } else {
            Backend::Sqlite(SqliteHunt::open(url)?)
        }))
    }

    /// Reads the rows since `since_ms` into `set`, newest first, at most
    /// `max_rows`; returns how many were read.
    pub fn read_rows(
        &mut self,
        since_ms: i64,
        max_rows: u64,
        config: &HuntConfig,
        set: &mut ProfileSet,
    ) -> Result<u64, DbError> {
        dispatch!(self.read_rows(since_ms, max_rows, config, set))
    }

    /// The campaigns earlier hunts found (marked ones always, others seen
    /// in the last week), for ids and marks to carry over.
    pub fn marks(&mut self, now_ms: i64) -> Result<Marks, DbError> {
        dispatch!(self.marks(now_ms))
    }

    /// Saves a hunt's campaigns (all keys, the listed summary) and returns
    /// those whose alert this call claimed: not benign, never alerted, so
    /// each goes out once even when replicas sharing the store hunt at once.
    pub fn save(
        &mut self,
        report: &HuntReport,
        max_listed_keys: usize,
        alert: bool,
    ) -> Result<Vec<Campaign>, DbError> {
        dispatch!(self.save(report, max_listed_keys, alert))
    }

    /// Marks a campaign; `false` when no campaign has that id.
    pub fn mark(&mut self, id: &str, mark: Mark, now_ms: i64) -> Result<bool, DbError> {
        dispatch!(self.mark(id, mark, now_ms))
    }

    /// Every key of a confirmed campaign.
    pub fn confirmed_keys(&mut self) -> Result<Vec<String>, DbError> {
        dispatch!(self.confirmed_keys())
    }

    /// Stored campaigns, most recently seen first, at most `limit`.
    pub fn campaigns(&mut self, limit: usize) -> Result<Vec<StoredCampaign>, DbError> {
        dispatch!(self.campaigns(limit))
    }

    /// True when a campaign has this id.
    pub fn exists(&mut self, id: &str) -> Result<bool, DbError> {
        dispatch!(self.exists(id))
    }
}

/// The hunt's SQLite connection.
#[derive(Debug)]
struct SqliteHunt {
    conn: Connection,
}

impl SqliteHunt {
    /// Opens (creating) `sqlite:PATH`.
    fn open(url: &str) -> Result<Self, StoreError> {
        let err = |e: rusqlite::Error| StoreError {
            url: url.to_owned(),
            message: e.to_string(),
        };
        let path = url.strip_prefix("sqlite:").unwrap_or(url);
        let conn = Connection::open(Path::new(path)).map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        migrate(&conn).map_err(err)?;
        conn.execute_batch(CAMPAIGNS).map_err(err)?;
        Ok(Self { conn })
    }

    /// Reads the rows since `since_ms` into `set`, newest first, at most
    /// `max_rows`; returns how many were read.
    fn read_rows(
        &self,
        since_ms: i64,
        max_rows: u64,
        config: &HuntConfig,
        set: &mut ProfileSet,
    ) -> rusqlite::Result<u64> {
        let mut stmt = self.conn.prepare(
            "SELECT ts_ms, tenant, key, chars, entropy, simhash, minhash, fingerprint
             FROM extraction_requests WHERE ts_ms >= ?1 ORDER BY ts_ms DESC LIMIT ?2",
        )?;
        let limit = i64::try_from(max_rows).unwrap_or(i64::MAX);
        let mut rows = stmt.query(params![since_ms, limit])?;
        let mut n = 0;
        while let Some(r) = rows.next()? {
            let minhash: String = r.get(6)?;
            // A malformed row is skipped: read as zeros it would share
            // every band with every other malformed row.
            let Some(minhash) = parse_minhash(&minhash) else {
                continue;
            };
            let row = HuntRow {
                at_ms: r.get(0)?,
                tenant: r.get(1)?,
                key: r.get(2)?,
                chars: r.get(3)?,
                entropy_bits: r.get::<_, f64>(4)? as f32,
                simhash: r.get::<_, i64>(5)? as u64,
                minhash,
                fingerprint: r.get::<_, i64>(7)? as u64,
            };
            set.add(&row, config);
            n += 1;
        }
        Ok(n)
    }

    /// The campaigns earlier hunts found (marked ones always, others seen
    /// in the last week), for ids and marks to carry over.
    fn marks(&self, now_ms: i64) -> rusqlite::Result<Marks> {
        let mut stmt = self.conn.prepare(
            "SELECT id, keys, mark FROM extraction_campaigns
             WHERE mark IS NOT NULL OR last_seen_ms >= ?1 ORDER BY id",
        )?;
        let prior = stmt
            .query_map([now_ms.saturating_sub(PRIOR_MS)], |r| {
                let keys: String = r.get(1)?;
                let mark: Option<String> = r.get(2)?;
                Ok(PriorCampaign {
                    id: r.get(0)?,
                    keys: serde_json::from_str(&keys).unwrap_or_default(),
                    mark: mark.as_deref().and_then(Mark::parse),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Marks { prior })
    }

    /// Saves a hunt's campaigns (all keys, the listed summary) and returns
    /// those whose alert is due: not benign, never alerted. They are marked
    /// alerted in the same transaction, so each goes out once.
    fn save(
        &mut self,
        report: &HuntReport,
        max_listed_keys: usize,
        alert: bool,
    ) -> rusqlite::Result<Vec<Campaign>> {
        let now = report.at_ms;
        let tx = self.conn.transaction()?;
        let mut due = Vec::new();
        for c in &report.campaigns {
            let keys = serde_json::to_string(&c.keys).unwrap_or_else(|_| "[]".into());
            let listed = c.listed(max_listed_keys);
            let summary = serde_json::to_string(&listed).unwrap_or_else(|_| "{}".into());
            tx.execute(
                "INSERT INTO extraction_campaigns (id, keys, summary, first_seen_ms, last_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT(id) DO UPDATE SET keys = ?2, summary = ?3, last_seen_ms = ?4",
                params![c.id, keys, summary, now],
            )?;
            if alert {
                let claimed = tx.execute(
                    "UPDATE extraction_campaigns SET alerted_at_ms = ?2
                     WHERE id = ?1 AND alerted_at_ms IS NULL AND (mark IS NULL OR mark <> 'benign')",
                    params![c.id, now],
                )?;
                if claimed > 0 {
                    due.push(listed);
                }
            }
        }
        tx.commit()?;
        Ok(due)
    }

    /// Marks a campaign; `false` when no campaign has that id.
    fn mark(&self, id: &str, mark: Mark, now_ms: i64) -> rusqlite::Result<bool> {
        let n = self.conn.execute(
            "UPDATE extraction_campaigns SET mark = ?2, marked_at_ms = ?3 WHERE id = ?1",
            params![id, mark.as_str(), now_ms],
        )?;
        Ok(n > 0)
    }

    /// Every key of a confirmed campaign.
    fn confirmed_keys(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT keys FROM extraction_campaigns WHERE mark = 'confirmed'")?;
        let lists = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(lists
            .iter()
            .flat_map(|k| serde_json::from_str::<Vec<String>>(k).unwrap_or_default())
            .collect())
    }

    /// Stored campaigns, most recently seen first, at most `limit`.
    fn campaigns(&self, limit: usize) -> rusqlite::Result<Vec<StoredCampaign>> {
        let mut stmt = self.conn.prepare(
            "SELECT summary, first_seen_ms, last_seen_ms, mark, marked_at_ms, alerted_at_ms
             FROM extraction_campaigns ORDER BY last_seen_ms DESC, id LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            let summary: String = r.get(0)?;
            let mark: Option<String> = r.get(3)?;
            Ok((summary, r.get(1)?, r.get(2)?, mark, r.get(4)?, r.get(5)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (summary, first, last, mark, marked, alerted) = row?;
            let Ok(mut campaign) = serde_json::from_str::<Campaign>(&summary) else {
                continue;
            };
            campaign.mark = mark.as_deref().and_then(Mark::parse);
            out.push(StoredCampaign {
                campaign,
                first_seen_ms: first,
                last_seen_ms: last,
                marked_at_ms: marked,
                alerted_at_ms: alerted,
            });
        }
        Ok(out)
    }

    /// True when a campaign has this id.
    fn exists(&self, id: &str) -> rusqlite::Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM extraction_campaigns WHERE id = ?1",
                [id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

/// The store's MinHash text (16 hex u32s, as the worker writes it).
pub(super) fn parse_minhash(text: &str) -> Option<[u32; MINHASH_SLOTS]> {
    if text.len() != MINHASH_SLOTS * 8 {
        return None;
    }
    let mut out = [0u32; MINHASH_SLOTS];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u32::from_str_radix(text.get(i * 8..i * 8 + 8)?, 16).ok()?;
    }
    Some(out)
}
