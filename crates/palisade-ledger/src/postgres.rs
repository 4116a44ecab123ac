//! The PostgreSQL store, for fleets: every replica writes to one database.
//!
//! One connection (tokio-postgres, no TLS: meant for a loopback or private
//! network). A writer task drains the queue in batches and inserts each batch
//! with a single `INSERT … SELECT FROM UNNEST(…) ON CONFLICT (request_id) DO
//! NOTHING RETURNING request_id` (one round trip and one commit per batch,
//! whatever its size). Reads share the connection (tokio-postgres pipelines
//! them).
//!
//! # Losing the connection
//!
//! When the connection is lost (the server restarts, or resets or closes
//! it), the writer reconnects and retries the batch, waiting 50 ms, then twice as long each
//! time up to 1 s, until [`WriteOptions::reconnect_timeout`] has passed
//! since the batch's first attempt; then the batch's entries fail with
//! [`LedgerError::WriteFailed`] and the next batch starts over. An entry is
//! thus either committed or reported failed, never dropped. Only connection
//! failures are retried (a closed connection, an I/O error, SQLSTATE class
//! 08 or 57P: the server shutting down or starting up); a refused statement
//! fails at once. Reads reconnect when they find the connection closed, and
//! otherwise report the error. A peer that vanishes without closing the
//! connection is noticed only by TCP (keepalives, retransmission timeouts).
//!
//! A batch retried after its connection broke mid-commit may have been
//! committed by the first attempt: its rows then come back as
//! [`Recorded::Duplicate`] (the row is there either way).
//!
//! A batch's audit records are a second statement after its ledger rows
//! (each commits on its own; each kind is answered with its own outcome).
//! Audit rows have no natural key to make a retry idempotent, so the writer
//! first reserves their `seq`s from the table's sequence and inserts with
//! those, `ON CONFLICT (seq) DO NOTHING`: a retry after a lost commit
//! writes nothing twice. Unused reservations leave gaps in `seq`, as
//! sequences do anyway.
//!
//! # Durability
//!
//! With PostgreSQL's default `synchronous_commit = on`, a statement's
//! implicit commit returns only after the server has flushed its WAL to
//! disk, so an entry whose `record` returned survives a crash of the gateway
//! (it lives in another process) and of the database server or host.

mod writer;

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, GenericClient, NoTls};

use crate::audit::{self, AUDIT_PAGE};
use crate::entry::{format_day, unsigned, StoredRow, DAY_MS};
use crate::keys::{self, KeyWrite, KeysVersion, StoredKey};
use crate::owners::{self, ResponseOwner};
use crate::queue::Queue;
use crate::schema::{self, latest_version};
use crate::store::{BoxFuture, LedgerStore};
use crate::{
    AuditEntry, AuditFilter, GroupBy, LedgerEntry, LedgerError, Recorded, Spent, UsageQuery,
    UsageRow, WriteOptions, EXPORT_PAGE,
};
use writer::write_loop;

/// Serializes concurrent migrations from several replicas starting at once
/// (an arbitrary constant: "palisade ledger").
const MIGRATION_LOCK: i64 = 0x7061_6c69_6c65_6467;

/// How long one connection attempt may take when the configuration does not
/// say (`connect_timeout`): a server that drops packets must not hold a
/// write for the operating system's TCP timeout of minutes.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest attempt a nearly spent retry deadline still allows.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

const AUDIT_SELECT_PAGE: &str = "SELECT seq, record FROM audit
    WHERE seq > $1 AND ts_ms >= $2 AND ts_ms < $3 ORDER BY seq LIMIT $4";

const SELECT_PAGE: &str = "SELECT id, request_id, ts, tenant, key_name, model, backend,
    endpoint, status, outcome, prompt_tokens, completion_tokens, cached_tokens,
    reasoning_tokens, tool_loop_tokens, estimated_tokens, usage_source, cost_micros, latency_ms,
    attempts
    FROM ledger WHERE id > $1 ORDER BY id LIMIT $2";

/// The ledger in a PostgreSQL database.
#[derive(Debug)]
pub struct PostgresLedger {
    queue: Queue,
    link: Arc<Link>,
    writer: JoinHandle<()>,
}

impl PostgresLedger {
    /// Connects (`config` is a libpq-style string or a `postgresql://` URL),
    /// applies pending migrations and starts the writer task. Must be called
    /// inside a tokio runtime.
    pub async fn connect(config: &str, options: WriteOptions) -> Result<Self, LedgerError> {
        let mut config: Config = config.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        let (mut client, driver) = open(&config).await?;
        if let Err(e) = migrate(&mut client).await {
            driver.abort();
            return Err(e);
        }
        let link = Arc::new(Link::new(config, client, driver));
        let (queue, rx) = Queue::new(options.queue_capacity);
        let writer = tokio::spawn(write_loop(Arc::clone(&link), rx, options));
        Ok(Self {
            queue,
            link,
            writer,
        })
    }

    /// The current client for a read, reconnecting first if the connection
    /// was lost since the last use.
    async fn client(&self) -> Result<Arc<Client>, LedgerError> {
        Ok(self.link.usable().await?.client)
    }

    /// Commits what is queued, then stops the writer and the connection.
    pub async fn close(self) -> Result<(), LedgerError> {
        let flushed = self.queue.flush().await;
        drop(self.queue);
        let _ = self.writer.await;
        // The writer's handle on the link is gone with it: this is the last.
        if let Ok(link) = Arc::try_unwrap(self.link) {
            link.shut_down().await;
        }
        flushed
    }
}

/// Writes go through the shared queue to the writer task; reads use the
/// current connection, reconnecting first if it was lost.
impl LedgerStore for PostgresLedger {
    fn store_name(&self) -> &'static str {
        "postgres"
    }

    /// Committed means flushed to the server's WAL (see the module doc).
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

    fn usage<'a>(&'a self, q: &'a UsageQuery) -> BoxFuture<'a, Result<Vec<UsageRow>, LedgerError>> {
        Box::pin(async move {
            let key = match q.group_by {
                GroupBy::Tenant => "tenant".to_owned(),
                GroupBy::Model => "model".to_owned(),
                GroupBy::Day => format!("ts / {DAY_MS}"),
            };
            let tenant_filter = if q.tenant.is_some() {
                " AND tenant = $3"
            } else {
                ""
            };
            let sql = format!(
                "SELECT {key} AS k, COUNT(*), COALESCE(SUM(prompt_tokens), 0)::int8,
                        COALESCE(SUM(completion_tokens), 0)::int8, COALESCE(SUM(cost_micros), 0)::int8
                 FROM ledger WHERE ts >= $1 AND ts < $2{tenant_filter}
                 GROUP BY k ORDER BY k"
            );
            let client = self.client().await?;
            let rows = match &q.tenant {
                Some(t) => client.query(&sql, &[&q.since_ms, &q.until_ms, t]).await?,
                None => client.query(&sql, &[&q.since_ms, &q.until_ms]).await?,
            };
            rows.iter()
                .map(|r| {
                    let group = match q.group_by {
                        GroupBy::Day => format_day(r.try_get::<_, i64>(0)?),
                        _ => r.try_get::<_, String>(0)?,
                    };
                    crate::usage_row((
                        group,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                    ))
                })
                .collect()
        })
    }

    fn spent<'a>(
        &'a self,
        tenant: &'a str,
        since_ms: i64,
    ) -> BoxFuture<'a, Result<Spent, LedgerError>> {
        Box::pin(async move {
            let r = self
                .client()
                .await?
                .query_one(
                    "SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0)::int8,
                            COALESCE(SUM(cost_micros), 0)::int8
                     FROM ledger WHERE tenant = $1 AND ts >= $2",
                    &[&tenant, &since_ms],
                )
                .await?;
            Ok(Spent {
                requests: unsigned("count", r.try_get(0)?)?,
                tokens: unsigned("tokens", r.try_get(1)?)?,
                cost_micros: r.try_get(2)?,
            })
        })
    }

    fn key_spent<'a>(
        &'a self,
        tenant: &'a str,
        key_name: &'a str,
        since_ms: i64,
    ) -> BoxFuture<'a, Result<Spent, LedgerError>> {
        Box::pin(async move {
            let r = self
                .client()
                .await?
                .query_one(
                    "SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0)::int8,
                            COALESCE(SUM(cost_micros), 0)::int8
                     FROM ledger WHERE tenant = $1 AND key_name = $2 AND ts >= $3",
                    &[&tenant, &key_name, &since_ms],
                )
                .await?;
            Ok(Spent {
                requests: unsigned("count", r.try_get(0)?)?,
                tokens: unsigned("tokens", r.try_get(1)?)?,
                cost_micros: r.try_get(2)?,
            })
        })
    }

    fn export_jsonl<'a>(
        &'a self,
        out: &'a mut (dyn Write + Send),
    ) -> BoxFuture<'a, Result<u64, LedgerError>> {
        Box::pin(async move {
            let mut after = 0_i64;
            let mut count = 0_u64;
            loop {
                let rows = self
                    .client()
                    .await?
                    .query(SELECT_PAGE, &[&after, &EXPORT_PAGE])
                    .await?;
                if rows.is_empty() {
                    return Ok(count);
                }
                for r in &rows {
                    after = r.try_get(0)?;
                    let entry = StoredRow {
                        request_id: r.try_get(1)?,
                        ts: r.try_get(2)?,
                        tenant: r.try_get(3)?,
                        key_name: r.try_get(4)?,
                        model: r.try_get(5)?,
                        backend: r.try_get(6)?,
                        endpoint: r.try_get(7)?,
                        status: i64::from(r.try_get::<_, i32>(8)?),
                        outcome: r.try_get(9)?,
                        prompt_tokens: r.try_get(10)?,
                        completion_tokens: r.try_get(11)?,
                        cached_tokens: r.try_get(12)?,
                        reasoning_tokens: r.try_get(13)?,
                        tool_loop_tokens: r.try_get(14)?,
                        estimated_tokens: r.try_get(15)?,
                        usage_source: r.try_get(16)?,
                        cost_micros: r.try_get(17)?,
                        latency_ms: r.try_get(18)?,
                        attempts: r.try_get(19)?,
                    }
                    .into_entry()?;
                    serde_json::to_writer(&mut *out, &entry).map_err(LedgerError::Json)?;
                    out.write_all(b"\n").map_err(LedgerError::Io)?;
                    count += 1;
                }
            }
        })
    }

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
        Box::pin(async move {
            let (sql, values) = audit::tail_query(filter, n, |i| format!("${i}"));
            let params: Vec<&(dyn ToSql + Sync)> =
                values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            let rows = self.client().await?.query(&sql, &params).await?;
            let mut lines = rows
                .iter()
                .map(|r| r.try_get::<_, String>(0))
                .collect::<Result<Vec<_>, _>>()?;
            lines.reverse();
            Ok(lines)
        })
    }

    fn audit_export<'a>(
        &'a self,
        out: &'a mut (dyn Write + Send),
        since_ms: i64,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<u64, LedgerError>> {
        Box::pin(audit::export_pages(out, move |after| async move {
            let rows = self
                .client()
                .await?
                .query(
                    AUDIT_SELECT_PAGE,
                    &[&after, &since_ms, &until_ms, &AUDIT_PAGE],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        }))
    }

    fn keys_version(&self) -> BoxFuture<'_, Result<KeysVersion, LedgerError>> {
        Box::pin(async move { keys::pg_version(&*self.client().await?).await })
    }

    fn keys_load(&self) -> BoxFuture<'_, Result<Vec<StoredKey>, LedgerError>> {
        Box::pin(async move { keys::pg_load(&*self.client().await?).await })
    }

    fn key_insert<'a>(
        &'a self,
        key: &'a StoredKey,
        max_live: u64,
    ) -> BoxFuture<'a, Result<KeyWrite, LedgerError>> {
        Box::pin(async move { keys::pg_insert(&*self.client().await?, key, max_live).await })
    }

    fn key_update<'a>(
        &'a self,
        key: &'a StoredKey,
    ) -> BoxFuture<'a, Result<KeyWrite, LedgerError>> {
        Box::pin(async move { keys::pg_update(&*self.client().await?, key).await })
    }

    fn response_owner_put<'a>(
        &'a self,
        owner: &'a ResponseOwner,
        keep_after_ms: i64,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async move { owners::pg_put(&*self.client().await?, owner, keep_after_ms).await })
    }

    fn response_owner_get<'a>(
        &'a self,
        response_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResponseOwner>, LedgerError>> {
        Box::pin(async move { owners::pg_get(&*self.client().await?, response_id).await })
    }

    fn response_owner_delete<'a>(
        &'a self,
        response_id: &'a str,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async move { owners::pg_delete(&*self.client().await?, response_id).await })
    }

    fn schema_version(&self) -> BoxFuture<'_, Result<u32, LedgerError>> {
        Box::pin(async move { current_version(&*self.client().await?).await })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), LedgerError>> {
        Box::pin((*self).close())
    }
}

/// The connection to the server, replaced when it is lost.
#[derive(Debug)]
struct Link {
    config: Config,
    current: Mutex<Current>,
    /// Held while connecting, so callers that found the same connection
    /// broken open one replacement between them, not one each.
    reconnecting: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Current {
    live: Live,
    /// The task driving `live`'s connection.
    driver: JoinHandle<()>,
}

/// An established connection and its generation (counting reconnects), by
/// which the writer knows whether its prepared statement still applies.
#[derive(Debug, Clone)]
struct Live {
    client: Arc<Client>,
    generation: u64,
}

/// Connects once and spawns the task that drives the connection. The task
/// ends when every client handle is dropped or the server goes away; its
/// error then surfaces on the next query.
async fn open(config: &Config) -> Result<(Client, JoinHandle<()>), LedgerError> {
    let (client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, driver))
}

impl Link {
    fn new(config: Config, client: Client, driver: JoinHandle<()>) -> Self {
        let live = Live {
            client: Arc::new(client),
            generation: 0,
        };
        Self {
            config,
            current: Mutex::new(Current { live, driver }),
            reconnecting: tokio::sync::Mutex::new(()),
        }
    }

    fn live(&self) -> Live {
        // A panic while holding the lock cannot leave `Current` half
        // written (it is replaced whole), so a poisoned lock is still good.
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current.live.clone()
    }

    /// The current connection, or a new one if it is closed.
    async fn usable(&self) -> Result<Live, LedgerError> {
        let live = self.live();
        if live.client.is_closed() {
            self.reconnect(live.generation, None).await
        } else {
            Ok(live)
        }
    }

    /// Replaces connection `broken` (unless another caller already has) and
    /// returns the current one. `limit` caps the connection attempt below
    /// the configured timeout.
    async fn reconnect(&self, broken: u64, limit: Option<Duration>) -> Result<Live, LedgerError> {
        let _connecting = self.reconnecting.lock().await;
        let live = self.live();
        if live.generation != broken {
            return Ok(live);
        }
        let mut config = self.config.clone();
        if let Some(limit) = limit {
            // `connect` set a timeout when the configuration had none.
            let configured = config
                .get_connect_timeout()
                .copied()
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
            config.connect_timeout(configured.min(limit).max(MIN_CONNECT_TIMEOUT));
        }
        let (client, driver) = open(&config).await?;
        let live = Live {
            client: Arc::new(client),
            generation: broken + 1,
        };
        let old = std::mem::replace(
            &mut *self.current.lock().unwrap_or_else(PoisonError::into_inner),
            Current {
                live: live.clone(),
                driver,
            },
        );
        // The old connection is broken or suspected so: end it rather than
        // leave a half-working one behind.
        old.driver.abort();
        Ok(live)
    }

    /// Drops the client and waits for its connection to close cleanly.
    async fn shut_down(self) {
        let current = self
            .current
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        drop(current.live);
        let _ = current.driver.await;
    }
}

/// Whether `error` means the connection is gone or the server is restarting
/// (worth reconnecting and retrying), rather than a refused statement.
fn lost_connection(error: &LedgerError) -> bool {
    let LedgerError::Postgres(e) = error else {
        return false;
    };
    if e.is_closed() {
        return true;
    }
    if let Some(state) = e.code() {
        // 08: connection exception; 57P01-57P03: admin or crash shutdown,
        // or "the database system is starting up".
        let code = state.code();
        return code.starts_with("08") || code.starts_with("57P");
    }
    // Refused, reset, timed out: an I/O error, with no server message.
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

async fn current_version<C: GenericClient>(client: &C) -> Result<u32, LedgerError> {
    let v: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::int8 FROM schema_version",
            &[],
        )
        .await?
        .try_get(0)?;
    u32::try_from(v).map_err(|_| crate::entry::corrupt("schema_version", v))
}

/// Applies pending migrations in one transaction, holding a transaction
/// advisory lock so replicas starting together migrate one at a time.
async fn migrate(client: &mut Client) -> Result<(), LedgerError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at_ms BIGINT NOT NULL
        )",
    )
    .await?;
    let current = current_version(&tx).await?;
    if current > latest_version() {
        return Err(LedgerError::SchemaTooNew {
            found: current,
            supported: latest_version(),
        });
    }
    for m in schema::pending(current) {
        tx.batch_execute(m.postgres).await?;
        let version = i32::try_from(m.version).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at_ms) VALUES ($1, $2, $3)",
            &[&version, &m.name, &schema::applied_at_ms()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
