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

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, GenericClient, NoTls, Statement};

use crate::audit::{self, AuditRow, AUDIT_PAGE};
use crate::entry::{format_day, unsigned, Row, StoredRow, DAY_MS};
use crate::queue::{self, Msg, Queue, Settler, Written};
use crate::schema::{self, latest_version};
use crate::store::{BoxFuture, LedgerStore};
use crate::{
    AuditEntry, AuditFilter, GroupBy, LedgerEntry, LedgerError, Recorded, Spent, UsageQuery,
    UsageRow, WriteOptions, EXPORT_PAGE,
};

/// Serializes concurrent migrations from several replicas starting at once
/// (an arbitrary constant: "palisade ledger").
const MIGRATION_LOCK: i64 = 0x7061_6c69_6c65_6467;

/// The first wait before retrying a batch after losing the connection;
/// doubled on each retry up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long one connection attempt may take when the configuration does not
/// say (`connect_timeout`): a server that drops packets must not hold a
/// write for the operating system's TCP timeout of minutes.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest attempt a nearly spent retry deadline still allows.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

const INSERT: &str = "INSERT INTO ledger (request_id, ts, tenant, key_name, model, backend,
    endpoint, status, outcome, prompt_tokens, completion_tokens, cached_tokens,
    reasoning_tokens, tool_loop_tokens, estimated_tokens, usage_source, cost_micros, latency_ms)
    SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::int4[], $9::text[], $10::int8[], $11::int8[], $12::int8[], $13::int8[],
        $14::int8[], $15::int8[], $16::text[], $17::int8[], $18::int8[])
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id";

/// Reserves `$1` audit `seq` numbers. An audit batch takes its numbers
/// before inserting, so that a retry after a connection lost mid-commit
/// inserts the same `seq`s again and `ON CONFLICT (seq) DO NOTHING` keeps
/// the rows from being stored twice (audit rows have no other unique key).
const AUDIT_RESERVE: &str = "SELECT nextval(pg_get_serial_sequence('audit', 'seq'))
    FROM generate_series(1, $1::int8)";

const AUDIT_INSERT: &str = "INSERT INTO audit (seq, ts_ms, request_id, tenant, route, model,
    gate, action, policy_version, record)
    OVERRIDING SYSTEM VALUE
    SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
    ON CONFLICT (seq) DO NOTHING";

const AUDIT_SELECT_PAGE: &str = "SELECT seq, record FROM audit
    WHERE seq > $1 AND ts_ms >= $2 AND ts_ms < $3 ORDER BY seq LIMIT $4";

const SELECT_PAGE: &str = "SELECT id, request_id, ts, tenant, key_name, model, backend,
    endpoint, status, outcome, prompt_tokens, completion_tokens, cached_tokens,
    reasoning_tokens, tool_loop_tokens, estimated_tokens, usage_source, cost_micros, latency_ms
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

async fn write_loop(link: Arc<Link>, mut rx: mpsc::Receiver<Msg>, options: WriteOptions) {
    let max = options.max_batch.max(1);
    let mut settler = Settler::default();
    let mut prepared = Prepared::default();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        queue::drain(&mut rx, &mut batch, max);
        if !options.linger.is_zero() && batch.len() < max {
            tokio::time::sleep(options.linger).await;
            queue::drain(&mut rx, &mut batch, max);
        }
        let (rows, slots) = queue::plan(&batch);
        // One retry window for the whole batch, however many statements it
        // takes, so a batch fails within `reconnect_timeout`.
        let deadline = Instant::now() + options.reconnect_timeout;
        let mut written = Written::nothing();
        if !rows.ledger.is_empty() {
            let mut attempt = LedgerWrite { rows: &rows.ledger };
            written.ledger = write_retrying(&link, &mut prepared, &mut attempt, deadline)
                .await
                .map_err(Arc::new);
        }
        if !rows.audit.is_empty() {
            let mut attempt = AuditWrite {
                rows: &rows.audit,
                seqs: None,
            };
            written.audit = write_retrying(&link, &mut prepared, &mut attempt, deadline)
                .await
                .map_err(Arc::new);
        }
        settler.settle(batch, slots, written);
    }
}

/// Statements prepared on the current connection (a statement belongs to
/// one connection: a new one needs its own).
#[derive(Debug, Default)]
struct Prepared {
    generation: u64,
    statements: HashMap<&'static str, Statement>,
}

impl Prepared {
    async fn get(&mut self, live: &Live, sql: &'static str) -> Result<Statement, LedgerError> {
        if self.generation != live.generation {
            self.statements.clear();
            self.generation = live.generation;
        }
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = live.client.prepare(sql).await?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

/// One write the writer retries across reconnects. Each attempt must be
/// safe to repeat after an earlier one that may have committed.
trait Attempt {
    type Output;
    async fn run(
        &mut self,
        live: &Live,
        prepared: &mut Prepared,
    ) -> Result<Self::Output, LedgerError>;
}

/// Runs `attempt`, reconnecting and retrying with backoff while the
/// connection is lost, until `deadline` has passed (see the module doc).
async fn write_retrying<A: Attempt>(
    link: &Link,
    prepared: &mut Prepared,
    attempt: &mut A,
    deadline: Instant,
) -> Result<A::Output, LedgerError> {
    let mut backoff = FIRST_BACKOFF;
    // The generation the previous attempt found broken, if any.
    let mut broken = None;
    loop {
        let current = link.live();
        let stale = broken.or_else(|| current.client.is_closed().then_some(current.generation));
        let connected = match stale {
            Some(generation) => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                link.reconnect(generation, Some(remaining)).await
            }
            None => Ok(current),
        };
        let error = match connected {
            Ok(live) => match attempt.run(&live, prepared).await {
                Ok(output) => return Ok(output),
                Err(e) => {
                    // A server message may arrive just before the connection
                    // closes: the client's state counts too.
                    let lost = lost_connection(&e) || live.client.is_closed();
                    broken = lost.then_some(live.generation);
                    e
                }
            },
            // The server is still unreachable: the same connection stays
            // the one to replace.
            Err(e) => {
                broken = stale.filter(|_| lost_connection(&e));
                e
            }
        };
        if broken.is_none() || Instant::now() + backoff > deadline {
            return Err(error);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A batch's ledger rows: one `INSERT … ON CONFLICT (request_id) DO
/// NOTHING`, idempotent by the request id.
struct LedgerWrite<'a> {
    rows: &'a [&'a Row],
}

impl Attempt for LedgerWrite<'_> {
    /// Whether each row was new.
    type Output = Vec<bool>;

    async fn run(
        &mut self,
        live: &Live,
        prepared: &mut Prepared,
    ) -> Result<Vec<bool>, LedgerError> {
        let stmt = prepared.get(live, INSERT).await?;
        let rows = self.rows;
        let col = |f: fn(&Row) -> &str| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        let int = |f: fn(&Row) -> i64| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        let opt = |f: fn(&Row) -> Option<i64>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        let request_id = col(|r| &r.request_id);
        let ts = int(|r| r.ts);
        let tenant = col(|r| &r.tenant);
        let key_name = col(|r| &r.key_name);
        let model = col(|r| &r.model);
        let backend = col(|r| &r.backend);
        let endpoint = col(|r| &r.endpoint);
        let status: Vec<i32> = rows.iter().map(|r| r.status).collect();
        let outcome = col(|r| r.outcome);
        let prompt = int(|r| r.prompt_tokens);
        let completion = int(|r| r.completion_tokens);
        let cached = opt(|r| r.cached_tokens);
        let reasoning = opt(|r| r.reasoning_tokens);
        let tool_loop = opt(|r| r.tool_loop_tokens);
        let estimated = int(|r| r.estimated_tokens);
        let source = col(|r| r.usage_source);
        let cost = int(|r| r.cost_micros);
        let latency = int(|r| r.latency_ms);
        let params: [&(dyn ToSql + Sync); 18] = [
            &request_id,
            &ts,
            &tenant,
            &key_name,
            &model,
            &backend,
            &endpoint,
            &status,
            &outcome,
            &prompt,
            &completion,
            &cached,
            &reasoning,
            &tool_loop,
            &estimated,
            &source,
            &cost,
            &latency,
        ];
        let returned = live.client.query(&stmt, &params).await?;
        let inserted: HashSet<String> = returned
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<_, _>>()?;
        Ok(rows
            .iter()
            .map(|r| inserted.contains(&r.request_id))
            .collect())
    }
}

/// A batch's audit rows: `seq`s reserved on the first attempt, then one
/// `INSERT … ON CONFLICT (seq) DO NOTHING` that every retry repeats with the
/// same `seq`s, so a commit whose answer was lost is not stored twice.
struct AuditWrite<'a> {
    rows: &'a [&'a AuditRow],
    /// One per row, ascending; reserved once, kept across retries.
    seqs: Option<Vec<i64>>,
}

impl Attempt for AuditWrite<'_> {
    /// Each row's `seq`.
    type Output = Vec<u64>;

    async fn run(&mut self, live: &Live, prepared: &mut Prepared) -> Result<Vec<u64>, LedgerError> {
        let seqs = match &self.seqs {
            Some(seqs) => seqs.clone(),
            None => {
                let reserve = prepared.get(live, AUDIT_RESERVE).await?;
                let n = i64::try_from(self.rows.len()).unwrap_or(i64::MAX);
                let mut seqs = live
                    .client
                    .query(&reserve, &[&n])
                    .await?
                    .iter()
                    .map(|r| r.try_get::<_, i64>(0))
                    .collect::<Result<Vec<_>, _>>()?;
                // Numbers in ascending order, given out in queue order.
                seqs.sort_unstable();
                if seqs.len() != self.rows.len() {
                    return Err(crate::entry::corrupt("seq", "reservation came back short"));
                }
                self.seqs = Some(seqs.clone());
                seqs
            }
        };
        let stmt = prepared.get(live, AUDIT_INSERT).await?;
        let rows = self.rows;
        let text =
            |f: fn(&AuditEntry) -> &str| rows.iter().map(|r| f(&r.entry)).collect::<Vec<_>>();
        let ts_ms: Vec<i64> = rows.iter().map(|r| r.ts_ms).collect();
        let request_id = text(|e| &e.request_id);
        let tenant = text(|e| &e.tenant);
        let route = text(|e| &e.route);
        let model = text(|e| &e.model);
        let gate = text(|e| &e.gate);
        let action = text(|e| &e.action);
        let policy_version = text(|e| &e.policy_version);
        let record = text(|e| &e.json);
        let params: [&(dyn ToSql + Sync); 10] = [
            &seqs,
            &ts_ms,
            &request_id,
            &tenant,
            &route,
            &model,
            &gate,
            &action,
            &policy_version,
            &record,
        ];
        live.client.execute(&stmt, &params).await?;
        seqs.into_iter().map(|s| unsigned("seq", s)).collect()
    }
}
