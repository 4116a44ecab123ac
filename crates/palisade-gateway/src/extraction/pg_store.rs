//! The extraction store in PostgreSQL, for fleets: every replica's worker
//! writes its requests and standings into the same three tables the SQLite
//! store has, so the cross-account hunt on any replica sees the whole
//! fleet's traffic, a key's standing decided on one replica reaches the
//! others ([`PgStore::standings_since`]), and a campaign's alert is claimed
//! by one replica only (a conditional `UPDATE`).
//!
//! A blocking client (`postgres`), because its callers are the worker and
//! hunt threads, `spawn_blocking` closures and the CLI: never an async
//! worker thread. Schema creation runs under an advisory lock so replicas
//! starting together do not race on `CREATE TABLE`.
//!
//! Must not: be called on the request path, or keep text (rows carry
//! hashes and counts only, as in SQLite).

use palisade_extraction::hunt::{HuntConfig, HuntRow, ProfileSet};
use palisade_extraction::{
    Campaign, HuntReport, Mark, Marks, PriorCampaign, RequestFeatures, Standing,
};
use postgres::{Client, NoTls};

use super::hunt_store::{parse_minhash, StoredCampaign, PRIOR_MS};
use super::StoreError;

/// The advisory lock key of schema creation ("palisade-extraction").
const SCHEMA_LOCK: i64 = 0x7061_6c69_7865_7874;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS extraction_requests (
    id BIGSERIAL PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    chars INTEGER NOT NULL,
    entropy DOUBLE PRECISION NOT NULL,
    simhash BIGINT NOT NULL,
    minhash TEXT NOT NULL,
    config_hash BIGINT NOT NULL,
    logprobs BOOLEAN NOT NULL,
    outcome TEXT NOT NULL,
    fingerprint BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS extraction_requests_ts ON extraction_requests (ts_ms);
CREATE INDEX IF NOT EXISTS extraction_requests_key ON extraction_requests (key, ts_ms);
CREATE TABLE IF NOT EXISTS extraction_standings (
    key TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    at_ms BIGINT NOT NULL,
    action TEXT NOT NULL,
    evidence TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS extraction_standings_at ON extraction_standings (at_ms);
CREATE TABLE IF NOT EXISTS extraction_campaigns (
    id TEXT PRIMARY KEY,
    keys TEXT NOT NULL,
    summary TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    mark TEXT,
    marked_at_ms BIGINT,
    alerted_at_ms BIGINT
);
";

/// One connection to the PostgreSQL extraction store.
pub(crate) struct PgStore {
    client: Client,
    retention_ms: i64,
    max_rows: u64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("retention_ms", &self.retention_ms)
            .field("max_rows", &self.max_rows)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `postgres://…` and creates the tables if missing.
    pub(crate) fn open(url: &str, retention_hours: u64, max_rows: u64) -> Result<Self, StoreError> {
        let err = |e: postgres::Error| StoreError {
            url: redact(url),
            message: e.to_string(),
        };
        let mut client = Client::connect(url, NoTls).map_err(err)?;
        let mut tx = client.transaction().map_err(err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(err)?;
        tx.batch_execute(SCHEMA).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Self {
            client,
            retention_ms: i64::try_from(retention_hours.saturating_mul(3_600_000))
                .unwrap_or(i64::MAX),
            max_rows,
        })
    }

    /// Writes a batch of requests in one transaction.
    pub(crate) fn insert(
        &mut self,
        rows: &[(String, String, RequestFeatures, u64)],
    ) -> Result<(), postgres::Error> {
        let mut tx = self.client.transaction()?;
        let stmt = tx.prepare(
            "INSERT INTO extraction_requests
             (ts_ms, tenant, key, chars, entropy, simhash, minhash, config_hash, logprobs, outcome, fingerprint)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )?;
        for (tenant, key, f, fingerprint) in rows {
            let minhash: String = f
                .sketch
                .minhash
                .iter()
                .map(|v| format!("{v:08x}"))
                .collect();
            tx.execute(
                &stmt,
                &[
                    &f.at_ms,
                    tenant,
                    key,
                    &i32::try_from(f.sketch.chars).unwrap_or(i32::MAX),
                    &f64::from(f.sketch.entropy_bits),
                    // BIGINT is signed: store the bits.
                    &(f.sketch.simhash as i64),
                    &minhash,
                    &(f.sampling.config_hash as i64),
                    &f.sampling.logprobs,
                    &f.outcome.as_str(),
                    &(*fingerprint as i64),
                ],
            )?;
        }
        tx.commit()
    }

    /// Upserts a key's standing and the evidence of its last evaluation.
    pub(crate) fn save_standing(
        &mut self,
        key: &str,
        tenant: &str,
        standing: Standing,
        action: &str,
        evidence: &str,
    ) -> Result<(), postgres::Error> {
        self.client.execute(
            "INSERT INTO extraction_standings (key, tenant, score, at_ms, action, evidence)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (key) DO UPDATE SET tenant = $2, score = $3, at_ms = $4, action = $5, evidence = $6",
            &[&key, &tenant, &standing.score, &standing.at_ms, &action, &evidence],
        )?;
        Ok(())
    }

    /// Standings written at or after `since_ms` (by any replica).
    pub(crate) fn standings_since(
        &mut self,
        since_ms: i64,
    ) -> Result<Vec<(String, String, Standing)>, postgres::Error> {
        let rows = self.client.query(
            "SELECT key, tenant, score, at_ms FROM extraction_standings WHERE at_ms >= $1",
            &[&since_ms],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    Standing {
                        score: r.get(2),
                        at_ms: r.get(3),
                    },
                )
            })
            .collect())
    }

    /// Deletes rows past retention and beyond the row cap; returns how many.
    pub(crate) fn sweep(&mut self, now_ms: i64) -> Result<usize, postgres::Error> {
        let cutoff = now_ms.saturating_sub(self.retention_ms);
        let mut deleted = self.client.execute(
            "DELETE FROM extraction_requests WHERE ts_ms < $1",
            &[&cutoff],
        )?;
        let max_rows = i64::try_from(self.max_rows).unwrap_or(i64::MAX);
        deleted += self.client.execute(
            "DELETE FROM extraction_requests
             WHERE id <= (SELECT COALESCE(MAX(id), 0) FROM extraction_requests) - $1",
            &[&max_rows],
        )?;
        self.client.execute(
            "DELETE FROM extraction_standings WHERE at_ms < $1",
            &[&cutoff],
        )?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    /// Reads the rows since `since_ms` into `set`, newest first, at most
    /// `max_rows`; returns how many were read.
    pub(crate) fn read_rows(
        &mut self,
        since_ms: i64,
        max_rows: u64,
        config: &HuntConfig,
        set: &mut ProfileSet,
    ) -> Result<u64, postgres::Error> {
        let limit = i64::try_from(max_rows).unwrap_or(i64::MAX);
        let rows = self.client.query(
            "SELECT ts_ms, tenant, key, chars, entropy, simhash, minhash, fingerprint
             FROM extraction_requests WHERE ts_ms >= $1 ORDER BY ts_ms DESC LIMIT $2",
            &[&since_ms, &limit],
        )?;
        let mut n = 0;
        for r in &rows {
            let Some(minhash) = parse_minhash(r.get::<_, &str>(6)) else {
                continue;
            };
            let row = HuntRow {
                at_ms: r.get(0),
                tenant: r.get(1),
                key: r.get(2),
                chars: u32::try_from(r.get::<_, i32>(3)).unwrap_or(0),
                entropy_bits: r.get::<_, f64>(4) as f32,
                simhash: r.get::<_, i64>(5) as u64,
                minhash,
                fingerprint: r.get::<_, i64>(7) as u64,
            };
            set.add(&row, config);
            n += 1;
        }
        Ok(n)
    }

    /// The campaigns earlier hunts found (marked ones always, others seen
    /// in the last week).
    pub(crate) fn marks(&mut self, now_ms: i64) -> Result<Marks, postgres::Error> {
        let rows = self.client.query(
            "SELECT id, keys, mark FROM extraction_campaigns
             WHERE mark IS NOT NULL OR last_seen_ms >= $1 ORDER BY id",
            &[&now_ms.saturating_sub(PRIOR_MS)],
        )?;
        let prior = rows
            .iter()
            .map(|r| PriorCampaign {
                id: r.get(0),
                keys: serde_json::from_str(r.get::<_, &str>(1)).unwrap_or_default(),
                mark: r.get::<_, Option<&str>>(2).and_then(Mark::parse),
            })
            .collect();
        Ok(Marks { prior })
    }

    /// Saves a hunt's campaigns and returns those whose alert this call
    /// claimed (not benign, never alerted: one replica wins each).
    pub(crate) fn save(
        &mut self,
        report: &HuntReport,
        max_listed_keys: usize,
        alert: bool,
    ) -> Result<Vec<Campaign>, postgres::Error> {
        let now = report.at_ms;
        let mut tx = self.client.transaction()?;
        let mut due = Vec::new();
        for c in &report.campaigns {
            let keys = serde_json::to_string(&c.keys).unwrap_or_else(|_| "[]".into());
            let listed = c.listed(max_listed_keys);
            let summary = serde_json::to_string(&listed).unwrap_or_else(|_| "{}".into());
            tx.execute(
                "INSERT INTO extraction_campaigns (id, keys, summary, first_seen_ms, last_seen_ms)
                 VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (id) DO UPDATE SET keys = $2, summary = $3, last_seen_ms = $4",
                &[&c.id, &keys, &summary, &now],
            )?;
            if alert {
                let claimed = tx.execute(
                    "UPDATE extraction_campaigns SET alerted_at_ms = $2
                     WHERE id = $1 AND alerted_at_ms IS NULL AND (mark IS NULL OR mark <> 'benign')",
                    &[&c.id, &now],
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
    pub(crate) fn mark(
        &mut self,
        id: &str,
        mark: Mark,
        now_ms: i64,
    ) -> Result<bool, postgres::Error> {
        let n = self.client.execute(
            "UPDATE extraction_campaigns SET mark = $2, marked_at_ms = $3 WHERE id = $1",
            &[&id, &mark.as_str(), &now_ms],
        )?;
        Ok(n > 0)
    }

    /// Every key of a confirmed campaign.
    pub(crate) fn confirmed_keys(&mut self) -> Result<Vec<String>, postgres::Error> {
        let rows = self.client.query(
            "SELECT keys FROM extraction_campaigns WHERE mark = 'confirmed'",
            &[],
        )?;
        Ok(rows
            .iter()
            .flat_map(|r| {
                serde_json::from_str::<Vec<String>>(r.get::<_, &str>(0)).unwrap_or_default()
            })
            .collect())
    }

    /// Stored campaigns, most recently seen first, at most `limit`.
    pub(crate) fn campaigns(
        &mut self,
        limit: usize,
    ) -> Result<Vec<StoredCampaign>, postgres::Error> {
        let rows = self.client.query(
            "SELECT summary, first_seen_ms, last_seen_ms, mark, marked_at_ms, alerted_at_ms
             FROM extraction_campaigns ORDER BY last_seen_ms DESC, id LIMIT $1",
            &[&i64::try_from(limit).unwrap_or(i64::MAX)],
        )?;
        let mut out = Vec::new();
        for r in &rows {
            let Ok(mut campaign) = serde_json::from_str::<Campaign>(r.get::<_, &str>(0)) else {
                continue;
            };
            campaign.mark = r.get::<_, Option<&str>>(3).and_then(Mark::parse);
            out.push(StoredCampaign {
                campaign,
                first_seen_ms: r.get(1),
                last_seen_ms: r.get(2),
                marked_at_ms: r.get(4),
                alerted_at_ms: r.get(5),
            });
        }
        Ok(out)
    }

    /// True when a campaign has this id.
    pub(crate) fn exists(&mut self, id: &str) -> Result<bool, postgres::Error> {
        Ok(self
            .client
            .query_opt("SELECT 1 FROM extraction_campaigns WHERE id = $1", &[&id])?
            .is_some())
    }
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &url[scheme + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
