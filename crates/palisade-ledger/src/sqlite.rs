//! The SQLite store: one file, WAL mode, one dedicated writer thread doing
//! group commit, and one read connection used from `spawn_blocking`.
//!
//! # Durability
//!
//! A commit in WAL mode appends the transaction's pages to the `-wal` file
//! with `write(2)` before `COMMIT` returns. With `synchronous=NORMAL` the WAL
//! is fsynced only at checkpoints, so after `COMMIT` the data sits in the
//! operating system's page cache: a process crash (`kill -9`, panic, OOM
//! kill) cannot lose it, because the kernel still owns those pages and
//! writes them out. Only an OS crash or power loss can lose the last
//! transactions (never corrupt the file). That meets the requirement that
//! every completed response survive `kill -9` of the gateway, at the cost
//! of no fsync per commit; [`Synchronous::Full`] fsyncs the WAL at every
//! commit (one fsync per *batch*, thanks to group commit) for deployments
//! that must also survive power loss.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::audit::{self, AuditRow, AUDIT_PAGE};
use crate::entry::{format_day, unsigned, StoredRow, DAY_MS};
use crate::keys::{self, KeyWrite, KeysVersion, StoredKey};
use crate::owners::{self, ResponseOwner};
use crate::queue::{self, Msg, Queue, Rows, Settler, Written};
use crate::schema::{self, latest_version};
use crate::store::{BoxFuture, LedgerStore};
use crate::{
    AuditEntry, AuditFilter, GroupBy, LedgerEntry, LedgerError, Recorded, Spent, Synchronous,
    UsageQuery, UsageRow, WriteOptions, EXPORT_PAGE,
};

const INSERT: &str = "INSERT INTO ledger (request_id, ts, tenant, key_name, model, backend,
    endpoint, status, outcome, prompt_tokens, completion_tokens, cached_tokens,
    reasoning_tokens, tool_loop_tokens, estimated_tokens, usage_source, cost_micros, latency_ms,
    attempts)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
    ON CONFLICT (request_id) DO NOTHING";

const AUDIT_INSERT: &str = "INSERT INTO audit (ts_ms, request_id, tenant, route, model, gate,
    action, policy_version, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

const AUDIT_SELECT_PAGE: &str = "SELECT seq, record FROM audit
    WHERE seq > ?1 AND ts_ms >= ?2 AND ts_ms < ?3 ORDER BY seq LIMIT ?4";

/// The ledger in a SQLite file.
#[derive(Debug)]
pub struct SqliteLedger {
    queue: Queue,
    reader: Arc<Mutex<Connection>>,
    writer: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger file, switches it to WAL,
    /// applies pending migrations and starts the writer thread.
    pub async fn open(path: impl AsRef<Path>, options: WriteOptions) -> Result<Self, LedgerError> {
        let path = path.as_ref().to_path_buf();
        let (queue, rx) = Queue::new(options.queue_capacity);
        let (ready_tx, ready_rx) = oneshot::channel();
        let writer_path = path.clone();
        let busy = options.busy_timeout;
        let writer = std::thread::Builder::new()
            .name("palisade-ledger-sqlite".into())
            .spawn(move || match open_writer(&writer_path, &options) {
                Ok(conn) => {
                    let _ = ready_tx.send(Ok(()));
                    write_loop(conn, rx, &options);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(LedgerError::Io)?;
        ready_rx.await.map_err(|_| LedgerError::Closed)??;
        let reader_path = path.clone();
        let reader = tokio::task::spawn_blocking(move || open_reader(&reader_path, busy))
            .await
            .map_err(|_| LedgerError::Closed)??;
        Ok(Self {
            queue,
            reader: Arc::new(Mutex::new(reader)),
            writer: Some(writer),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits what is queued, stops the writer thread and waits for it.
    /// Dropping the ledger without `close` also commits what is queued, in
    /// the background.
    pub async fn close(mut self) -> Result<(), LedgerError> {
        let flushed = self.queue.flush().await;
        let writer = self.writer.take();
        drop(self);
        if let Some(writer) = writer {
            tokio::task::spawn_blocking(move || writer.join())
                .await
                .map_err(|_| LedgerError::Closed)?
                .map_err(|_| LedgerError::Closed)?;
        }
        flushed
    }

    async fn read<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, LedgerError> + Send + 'static,
    {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves no half-done state: each
            // read is its own transaction.
            let conn = reader.lock().unwrap_or_else(PoisonError::into_inner);
            f(&conn)
        })
        .await
        .map_err(|_| LedgerError::Closed)?
    }
}

/// Writes go through the shared queue to the writer thread; reads run on
/// the blocking pool with the one read connection.
impl LedgerStore for SqliteLedger {
    fn store_name(&self) -> &'static str {
        "sqlite"
    }

    /// Committed means in the WAL, which a process crash cannot lose (see
    /// the module doc).
    fn record<'a>(
        &'a self,
        entry: &'a LedgerEntry,
    ) -> BoxFuture<'a, Result<Recorded, LedgerError>> {
        Box::pin(self.queue.record(entry))
    }

    fn record_nowait(&self, entry: LedgerEntry) -> Result<(), LedgerError> {
        self.queue.record_nowait(entry)
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(self.queue.flush())
    }

    fn usage<'a>(
        &'a self,
        query: &'a UsageQuery,
    ) -> BoxFuture<'a, Result<Vec<UsageRow>, LedgerError>> {
        let query = query.clone();
        Box::pin(self.read(move |conn| usage(conn, &query)))
    }

    fn spent<'a>(
        &'a self,
        tenant: &'a str,
        since_ms: i64,
    ) -> BoxFuture<'a, Result<Spent, LedgerError>> {
        let tenant = tenant.to_owned();
        Box::pin(self.read(move |conn| spent(conn, &tenant, since_ms)))
    }

    fn key_spent<'a>(
        &'a self,
        tenant: &'a str,
        key_name: &'a str,
        since_ms: i64,
    ) -> BoxFuture<'a, Result<Spent, LedgerError>> {
        let (tenant, key_name) = (tenant.to_owned(), key_name.to_owned());
        Box::pin(self.read(move |conn| key_spent(conn, &tenant, &key_name, since_ms)))
    }

    fn export_jsonl<'a>(
        &'a self,
        out: &'a mut (dyn Write + Send),
    ) -> BoxFuture<'a, Result<u64, LedgerError>> {
        Box::pin(async move {
            let mut after = 0_i64;
            let mut count = 0_u64;
            loop {
                let page = self.read(move |conn| page(conn, after)).await?;
                let Some(&(last, _)) = page.last() else {
                    return Ok(count);
                };
                for (_, entry) in page {
                    serde_json::to_writer(&mut *out, &entry).map_err(LedgerError::Json)?;
                    out.write_all(b"\n").map_err(LedgerError::Io)?;
                    count += 1;
                }
                after = last;
            }
        })
    }

    /// In the same transaction as any ledger rows of its batch.
    fn audit(&self, entry: AuditEntry) -> BoxFuture<'_, Result<u64, LedgerError>> {
        Box::pin(self.queue.audit(entry))
    }

    fn audit_nowait(&self, entry: AuditEntry) -> Result<(), LedgerError> {
        self.queue.audit_nowait(entry)
    }

    fn audit_tail<'a>(
        &'a self,
        n: usize,
        filter: &'a AuditFilter,
    ) -> BoxFuture<'a, Result<Vec<String>, LedgerError>> {
        let filter = filter.clone();
        Box::pin(self.read(move |conn| audit_tail(conn, n, &filter)))
    }

    fn audit_export<'a>(
        &'a self,
        out: &'a mut (dyn Write + Send),
        since_ms: i64,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<u64, LedgerError>> {
        Box::pin(audit::export_pages(out, move |after| {
            self.read(move |conn| audit_page(conn, after, since_ms, until_ms))
        }))
    }

    fn keys_version(&self) -> BoxFuture<'_, Result<KeysVersion, LedgerError>> {
        Box::pin(self.read(keys::sqlite_version))
    }

    fn keys_load(&self) -> BoxFuture<'_, Result<Vec<StoredKey>, LedgerError>> {
        Box::pin(self.read(keys::sqlite_load))
    }

    fn key_insert<'a>(
        &'a self,
        key: &'a StoredKey,
        max_live: u64,
    ) -> BoxFuture<'a, Result<KeyWrite, LedgerError>> {
        let (path, key) = (self.path.clone(), key.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                keys::sqlite_insert(&keys::sqlite_writer(&path)?, &key, max_live)
            })
            .await
            .map_err(|_| LedgerError::Closed)?
        })
    }

    fn key_update<'a>(
        &'a self,
        key: &'a StoredKey,
    ) -> BoxFuture<'a, Result<KeyWrite, LedgerError>> {
        let (path, key) = (self.path.clone(), key.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                keys::sqlite_update(&keys::sqlite_writer(&path)?, &key)
            })
            .await
            .map_err(|_| LedgerError::Closed)?
        })
    }

    fn response_owner_put<'a>(
        &'a self,
        owner: &'a ResponseOwner,
        keep_after_ms: i64,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        let (path, owner) = (self.path.clone(), owner.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                owners::sqlite_put(&keys::sqlite_writer(&path)?, &owner, keep_after_ms)
            })
            .await
            .map_err(|_| LedgerError::Closed)?
        })
    }

    fn response_owner_get<'a>(
        &'a self,
        response_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResponseOwner>, LedgerError>> {
        let id = response_id.to_owned();
        Box::pin(self.read(move |conn| owners::sqlite_get(conn, &id)))
    }

    fn response_owner_delete<'a>(
        &'a self,
        response_id: &'a str,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        let (path, id) = (self.path.clone(), response_id.to_owned());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                owners::sqlite_delete(&keys::sqlite_writer(&path)?, &id)
            })
            .await
            .map_err(|_| LedgerError::Closed)?
        })
    }

    fn schema_version(&self) -> BoxFuture<'_, Result<u32, LedgerError>> {
        Box::pin(self.read(current_version))
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), LedgerError>> {
        Box::pin((*self).close())
    }
}

fn open_writer(path: &Path, options: &WriteOptions) -> Result<Connection, LedgerError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(options.busy_timeout)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LedgerError::NotWal { mode });
    }
    let sync = match options.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn open_reader(path: &Path, busy: Duration) -> Result<Connection, LedgerError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

fn current_version(conn: &Connection) -> Result<u32, LedgerError> {
    let v: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .optional()?
        .flatten();
    let v = v.unwrap_or(0);
    u32::try_from(v).map_err(|_| crate::entry::corrupt("schema_version", v))
}

/// Applies pending migrations in one `BEGIN IMMEDIATE` transaction, which
/// takes the write lock first so two processes opening the same file at
/// once cannot both migrate.
fn migrate(conn: &mut Connection) -> Result<(), LedgerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at_ms INTEGER NOT NULL
        ) STRICT",
    )?;
    let current = current_version(&tx)?;
    if current > latest_version() {
        return Err(LedgerError::SchemaTooNew {
            found: current,
            supported: latest_version(),
        });
    }
    for m in schema::pending(current) {
        tx.execute_batch(m.sqlite)?;
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, schema::applied_at_ms()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn write_loop(mut conn: Connection, mut rx: mpsc::Receiver<Msg>, options: &WriteOptions) {
    let max = options.max_batch.max(1);
    let mut settler = Settler::default();
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        queue::drain(&mut rx, &mut batch, max);
        if !options.linger.is_zero() && batch.len() < max {
            std::thread::sleep(options.linger);
            queue::drain(&mut rx, &mut batch, max);
        }
        let (rows, slots) = queue::plan(&batch);
        let written = if rows.is_empty() {
            Written::nothing()
        } else {
            Written::together(write_batch(&mut conn, &rows))
        };
        settler.settle(batch, slots, written);
    }
}

/// Writes a batch's ledger and audit rows in one transaction; returns
/// whether each ledger row was new and each audit row's `seq`.
fn write_batch(
    conn: &mut Connection,
    rows: &Rows<'_>,
) -> Result<(Vec<bool>, Vec<u64>), LedgerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut inserted = Vec::with_capacity(rows.ledger.len());
    if !rows.ledger.is_empty() {
        let mut stmt = tx.prepare_cached(INSERT)?;
        for r in &rows.ledger {
            let n = stmt.execute(params![
                r.request_id,
                r.ts,
                r.tenant,
                r.key_name,
                r.model,
                r.backend,
                r.endpoint,
                r.status,
                r.outcome,
                r.prompt_tokens,
                r.completion_tokens,
                r.cached_tokens,
                r.reasoning_tokens,
                r.tool_loop_tokens,
                r.estimated_tokens,
                r.usage_source,
                r.cost_micros,
                r.latency_ms,
                r.attempts,
            ])?;
            inserted.push(n == 1);
        }
    }
    let seqs = write_audit(&tx, &rows.audit)?;
    tx.commit()?;
    Ok((inserted, seqs))
}

fn write_audit(
    tx: &rusqlite::Transaction<'_>,
    rows: &[&AuditRow],
) -> Result<Vec<u64>, LedgerError> {
    let mut seqs = Vec::with_capacity(rows.len());
    if rows.is_empty() {
        return Ok(seqs);
    }
    let mut stmt = tx.prepare_cached(AUDIT_INSERT)?;
    for r in rows {
        let e = &r.entry;
        stmt.execute(params![
            r.ts_ms,
            e.request_id,
            e.tenant,
            e.route,
            e.model,
            e.gate,
            e.action,
            e.policy_version,
            e.json,
        ])?;
        seqs.push(unsigned("seq", tx.last_insert_rowid())?);
    }
    Ok(seqs)
}

fn audit_tail(
    conn: &Connection,
    n: usize,
    filter: &AuditFilter,
) -> Result<Vec<String>, LedgerError> {
    let (sql, values) = audit::tail_query(filter, n, |i| format!("?{i}"));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut lines = stmt
        .query_map(rusqlite::params_from_iter(values), |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    lines.reverse();
    Ok(lines)
}

fn audit_page(
    conn: &Connection,
    after: i64,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<(i64, String)>, LedgerError> {
    let mut stmt = conn.prepare_cached(AUDIT_SELECT_PAGE)?;
    let rows = stmt
        .query_map(params![after, since_ms, until_ms, AUDIT_PAGE], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn usage(conn: &Connection, q: &UsageQuery) -> Result<Vec<UsageRow>, LedgerError> {
    let key = match q.group_by {
        GroupBy::Tenant => "tenant".to_owned(),
        GroupBy::Model => "model".to_owned(),
        GroupBy::Day => format!("ts / {DAY_MS}"),
    };
    let tenant_filter = if q.tenant.is_some() {
        " AND tenant = ?3"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {key} AS k, COUNT(*), COALESCE(SUM(prompt_tokens), 0),
                COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost_micros), 0)
         FROM ledger WHERE ts >= ?1 AND ts < ?2{tenant_filter}
         GROUP BY k ORDER BY k"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let map = |r: &rusqlite::Row<'_>| {
        let group = match q.group_by {
            GroupBy::Day => format_day(r.get::<_, i64>(0)?),
            _ => r.get::<_, String>(0)?,
        };
        Ok((group, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    };
    let raw: Vec<(String, i64, i64, i64, i64)> = match &q.tenant {
        Some(t) => stmt
            .query_map(params![q.since_ms, q.until_ms, t], map)?
            .collect::<Result<_, _>>()?,
        None => stmt
            .query_map(params![q.since_ms, q.until_ms], map)?
            .collect::<Result<_, _>>()?,
    };
    raw.into_iter().map(crate::usage_row).collect()
}

fn spent(conn: &Connection, tenant: &str, since_ms: i64) -> Result<Spent, LedgerError> {
    let (requests, tokens, cost): (i64, i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0),
                COALESCE(SUM(cost_micros), 0)
         FROM ledger WHERE tenant = ?1 AND ts >= ?2",
        params![tenant, since_ms],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(Spent {
        requests: unsigned("count", requests)?,
        tokens: unsigned("tokens", tokens)?,
        cost_micros: cost,
    })
}

fn key_spent(
    conn: &Connection,
    tenant: &str,
    key_name: &str,
    since_ms: i64,
) -> Result<Spent, LedgerError> {
    let (requests, tokens, cost): (i64, i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0),
                COALESCE(SUM(cost_micros), 0)
         FROM ledger WHERE tenant = ?1 AND key_name = ?2 AND ts >= ?3",
        params![tenant, key_name, since_ms],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(Spent {
        requests: unsigned("count", requests)?,
        tokens: unsigned("tokens", tokens)?,
        cost_micros: cost,
    })
}

fn page(conn: &Connection, after: i64) -> Result<Vec<(i64, LedgerEntry)>, LedgerError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, request_id, ts, tenant, key_name, model, backend, endpoint, status, outcome,
                prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
                tool_loop_tokens, estimated_tokens, usage_source, cost_micros, latency_ms,
                attempts
         FROM ledger WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, EXPORT_PAGE], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            StoredRow {
                request_id: r.get(1)?,
                ts: r.get(2)?,
                tenant: r.get(3)?,
                key_name: r.get(4)?,
                model: r.get(5)?,
                backend: r.get(6)?,
                endpoint: r.get(7)?,
                status: r.get(8)?,
                outcome: r.get(9)?,
                prompt_tokens: r.get(10)?,
                completion_tokens: r.get(11)?,
                cached_tokens: r.get(12)?,
                reasoning_tokens: r.get(13)?,
                tool_loop_tokens: r.get(14)?,
                estimated_tokens: r.get(15)?,
                usage_source: r.get(16)?,
                cost_micros: r.get(17)?,
                latency_ms: r.get(18)?,
                attempts: r.get(19)?,
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, stored) = row?;
        out.push((id, stored.into_entry()?));
    }
    Ok(out)
}
