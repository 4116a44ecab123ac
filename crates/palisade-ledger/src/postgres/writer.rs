//! The PostgreSQL writer task: drains the shared queue in batches and writes
//! each batch with one statement per kind of row, retrying across reconnects
//! until `reconnect_timeout` (see the parent module doc for why a retry is
//! safe). Reads must not go through here: they use the link directly.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use super::{lost_connection, Link, Live};
use crate::audit::AuditRow;
use crate::entry::{unsigned, Row};
use crate::queue::{self, Msg, Settler, Written};
use crate::{AuditEntry, LedgerError, WriteOptions};

/// The first wait before retrying a batch after losing the connection;
/// doubled on each retry up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const INSERT: &str = "INSERT INTO ledger (request_id, ts, tenant, key_name, model, backend,
    endpoint, status, outcome, prompt_tokens, completion_tokens, cached_tokens,
    reasoning_tokens, tool_loop_tokens, estimated_tokens, usage_source, cost_micros, latency_ms,
    attempts)
    SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::int4[], $9::text[], $10::int8[], $11::int8[], $12::int8[], $13::int8[],
        $14::int8[], $15::int8[], $16::text[], $17::int8[], $18::int8[], $19::int8[])
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

pub(super) async fn write_loop(
    link: Arc<Link>,
    mut rx: mpsc::Receiver<Msg>,
    options: WriteOptions,
) {
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
        let attempts = int(|r| r.attempts);
        let params: [&(dyn ToSql + Sync); 19] = [
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
            &attempts,
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
