//! The token ledger: one accounting row per request, idempotent on the
//! request id, in SQLite (the embedded default) or PostgreSQL (for fleets),
//! with usage reports, the spend that seeds quotas at start, and a JSONL
//! export; and beside it the [audit log](audit) of gate decisions
//! ([`Ledger::audit`]), append-only, in the same database and written by the
//! same writer.
//!
//! Both stores implement one trait, [`LedgerStore`] ([`SqliteLedger`],
//! [`PostgresLedger`]; [`Ledger`] holds whichever one a location names, chosen
//! at run time), and share the same schema and the same ordered
//! [migrations](schema). Writes go through a queue to one writer that
//! commits in batches (group commit), so the request path only enqueues:
//!
//! - [`Ledger::record`] returns once the entry is committed: after `kill -9`
//!   of the gateway the row is there (see each store's durability notes).
//!   Await it before finishing a response to guarantee that every completed
//!   response has its row.
//! - [`Ledger::record_nowait`] only queues (and fails at once when the queue
//!   is full); such entries are durable once a later [`Ledger::flush`]
//!   returns `Ok`, and `flush` reports any that failed.
//! - [`Ledger::audit`] and [`Ledger::audit_nowait`] are the same two ways
//!   to append an audit record; one `flush` covers both kinds.
//!
//! Idempotency: a second entry with a request id already recorded is
//! ignored (`ON CONFLICT (request_id) DO NOTHING`) and reported as
//! [`Recorded::Duplicate`]: the first write wins. The gateway writes one
//! final row per request, so a repeat is a retry of the same write, and
//! "first wins" is the rule both stores can apply identically and cheaply.
//! The request id must be minted by the gateway: if a client could choose
//! it, reusing one id would make every later request free.
//!
//! This crate must not: decide quotas, budgets or limits (it reports what
//! was spent; `palisade-limits` decides), know HTTP, read configuration, or
//! touch any database but the one it was opened on. Time comes from the
//! caller (`ts`, `since_ms`); the only clock read is the informational
//! `applied_at_ms` of a migration.

#![forbid(unsafe_code)]

pub mod audit;
mod entry;
pub mod keys;
pub mod owners;
mod postgres;
mod price;
mod queue;
pub mod schema;
mod sqlite;
mod store;

use std::sync::Arc;
use std::time::Duration;

pub use audit::{AuditEntry, AuditFilter};
pub use entry::{GroupBy, LedgerEntry, Month, Outcome, Spent, UsageQuery, UsageRow, UsageSource};
pub use keys::{KeyWrite, KeysVersion, StoredBudget, StoredKey};
pub use owners::{ResponseOwner, CONTEXT_FLAGGED, CONTEXT_UNTRUSTED};
pub use postgres::PostgresLedger;
pub use price::{Price, PriceTable};
pub use sqlite::SqliteLedger;
pub use store::{BoxFuture, LedgerStore};

/// Rows read per query by `export_jsonl`.
const EXPORT_PAGE: i64 = 1000;

/// Errors of the ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// SQLite failed: the file is unreadable or unwritable, the disk is
    /// full, or another process held the write lock past the busy timeout.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed: cannot connect, the connection dropped, a
    /// permission is missing, or the server rejected a statement.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Writing the export failed (the output was closed or is full), or the
    /// writer thread could not be started.
    #[error("i/o: {0}")]
    Io(#[source] std::io::Error),
    /// Serializing an entry for the export failed (should not happen).
    #[error("json: {0}")]
    Json(#[source] serde_json::Error),
    /// The batch holding this entry failed to commit (the cause is inside);
    /// the entry is not recorded and may be retried with the same id.
    #[error("ledger batch write failed: {0}")]
    WriteFailed(Arc<LedgerError>),
    /// `flush` found that this many `record_nowait` entries failed to commit
    /// since the previous flush (their batch failed).
    #[error("{count} queued ledger entries failed to commit")]
    LostWrites {
        /// How many entries were lost.
        count: u64,
    },
    /// The database was migrated by newer code than this: refuse rather
    /// than write rows an older schema does not describe. Upgrade Palisade.
    #[error("ledger schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// The database's version.
        found: u32,
        /// The newest version this code knows.
        supported: u32,
    },
    /// An entry cannot be stored as given (a counter above `i64::MAX`, a
    /// negative timestamp, an empty request id): a bug in the caller.
    #[error("invalid ledger entry: {field} is {reason}")]
    InvalidEntry {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A stored value cannot be read back (an unknown outcome, a negative
    /// counter): the database was edited by hand or by newer code.
    #[error("ledger column {column} holds an unexpected value {value:?}")]
    Corrupt {
        /// The column.
        column: &'static str,
        /// The value found.
        value: String,
    },
    /// `record_nowait` found the queue full: the database is slower than
    /// the request rate. The entry was not queued.
    #[error("ledger queue is full")]
    QueueFull,
    /// The writer has stopped (the ledger is closing, or its thread or task
    /// panicked); nothing more can be recorded.
    #[error("ledger writer has stopped")]
    Closed,
    /// SQLite could not switch the file to WAL (e.g. `:memory:` or a
    /// read-only medium); the durability and concurrency design needs WAL.
    #[error("sqlite journal mode is {mode:?}, not wal")]
    NotWal {
        /// The journal mode SQLite reported.
        mode: String,
    },
    /// The ledger location is neither a `sqlite:` path nor a `postgres://`
    /// or `postgresql://` URL.
    #[error("ledger location must start with sqlite: or postgres(ql)://, got {0:?}")]
    BadLocation(String),
}

/// What `record` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Recorded {
    /// A new row.
    Inserted,
    /// The request id was already recorded; the earlier row stands.
    Duplicate,
}

/// SQLite's `synchronous` setting (PostgreSQL ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// No fsync per commit: survives process crashes (`kill -9`), may lose
    /// the last commits on an OS crash or power loss. The default, because
    /// the requirement is surviving the gateway's death.
    #[default]
    Normal,
    /// fsync the WAL at every commit (one per batch): also survives power
    /// loss, at the cost of a disk flush per batch.
    Full,
}

/// How the writer batches.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Most entries per transaction. 512 keeps a transaction short (well
    /// under a millisecond of SQLite work) while amortizing the commit.
    pub max_batch: usize,
    /// How long the writer waits for more entries after the first one before
    /// committing. Zero by default: entries arriving during a commit already
    /// form the next batch, and every millisecond here is added to the
    /// latency of a response that awaits `record`.
    pub linger: Duration,
    /// Entries that may wait in the queue. Beyond it `record` waits and
    /// `record_nowait` fails; 16384 rows is a few MB and seconds of load.
    pub queue_capacity: usize,
    /// SQLite's `synchronous` (see [`Synchronous`]).
    pub synchronous: Synchronous,
    /// How long SQLite waits for another process's lock (e.g. a report
    /// running a checkpoint) before failing a write.
    pub busy_timeout: Duration,
    /// How long PostgreSQL's writer keeps reconnecting and retrying a batch
    /// after losing the connection (a server restart takes seconds) before
    /// failing its entries with [`LedgerError::WriteFailed`]. SQLite
    /// ignores it.
    pub reconnect_timeout: Duration,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            max_batch: 512,
            linger: Duration::ZERO,
            queue_capacity: 16_384,
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            reconnect_timeout: Duration::from_secs(10),
        }
    }
}

/// A ledger in either store, chosen at run time: a thin handle on one
/// [`LedgerStore`], with the store's operations as inherent methods so
/// callers need not import the trait.
#[derive(Debug)]
pub struct Ledger {
    store: Box<dyn LedgerStore>,
}

impl Ledger {
    /// Opens a ledger from its location: `sqlite:PATH` (also
    /// `sqlite://PATH`) or a `postgres://` / `postgresql://` URL.
    pub async fn open(location: &str, options: WriteOptions) -> Result<Self, LedgerError> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            return Ok(Self::new(PostgresLedger::connect(location, options).await?));
        }
        match location.strip_prefix("sqlite:") {
            Some(path) => {
                let path = path.strip_prefix("//").unwrap_or(path);
                if path.is_empty() {
                    return Err(LedgerError::BadLocation(location.to_owned()));
                }
                Ok(Self::new(SqliteLedger::open(path, options).await?))
            }
            None => Err(LedgerError::BadLocation(location.to_owned())),
        }
    }

    /// A ledger over a store already opened.
    pub fn new(store: impl LedgerStore + 'static) -> Self {
        Self {
            store: Box::new(store),
        }
    }

    /// Which store this is: `sqlite` or `postgres`.
    pub fn store_name(&self) -> &'static str {
        self.store.store_name()
    }

    /// Records an entry; returns once it is committed. See the crate doc.
    pub async fn record(&self, entry: &LedgerEntry) -> Result<Recorded, LedgerError> {
        self.store.record(entry).await
    }

    /// Queues an entry; durable once a later [`flush`](Self::flush) returns
    /// `Ok`. See the crate doc.
    pub fn record_nowait(&self, entry: LedgerEntry) -> Result<(), LedgerError> {
        self.store.record_nowait(entry)
    }

    /// Waits until every entry queued before the call is committed.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        self.store.flush().await
    }

    /// A usage report, rows sorted by group.
    pub async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, LedgerError> {
        self.store.usage(query).await
    }

    /// What `tenant` has used since `since_ms` (inclusive), to seed quotas.
    pub async fn spent(&self, tenant: &str, since_ms: i64) -> Result<Spent, LedgerError> {
        self.store.spent(tenant, since_ms).await
    }

    /// What `tenant`'s key `key_name` has used since `since_ms` (inclusive),
    /// to seed per-key budgets.
    pub async fn key_spent(
        &self,
        tenant: &str,
        key_name: &str,
        since_ms: i64,
    ) -> Result<Spent, LedgerError> {
        self.store.key_spent(tenant, key_name, since_ms).await
    }

    /// Writes every entry as JSON lines, in insertion order; returns how many.
    pub async fn export_jsonl<W: std::io::Write + Send>(
        &self,
        out: &mut W,
    ) -> Result<u64, LedgerError> {
        self.store.export_jsonl(out).await
    }

    /// Appends an audit record; returns its `seq` once it is committed.
    /// See the [`audit`] module doc.
    pub async fn audit(&self, entry: AuditEntry) -> Result<u64, LedgerError> {
        self.store.audit(entry).await
    }

    /// Queues an audit record; durable once a later [`flush`](Self::flush)
    /// returns `Ok`.
    pub fn audit_nowait(&self, entry: AuditEntry) -> Result<(), LedgerError> {
        self.store.audit_nowait(entry)
    }

    /// The newest `n` audit records matching `filter` as JSON lines (no
    /// trailing newline), oldest first: the newest is last.
    pub async fn audit_tail(
        &self,
        n: usize,
        filter: &AuditFilter,
    ) -> Result<Vec<String>, LedgerError> {
        self.store.audit_tail(n, filter).await
    }

    /// Writes the audit records with `since_ms <= ts_ms < until_ms` as JSON
    /// lines, in `seq` order, exactly as they were stored; returns how many.
    pub async fn audit_export<W: std::io::Write + Send>(
        &self,
        out: &mut W,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<u64, LedgerError> {
        self.store.audit_export(out, since_ms, until_ms).await
    }

    /// The runtime key table's change marker.
    pub async fn keys_version(&self) -> Result<KeysVersion, LedgerError> {
        self.store.keys_version().await
    }

    /// Every runtime key row (hashes only), revoked ones included.
    pub async fn keys_load(&self) -> Result<Vec<StoredKey>, LedgerError> {
        self.store.keys_load().await
    }

    /// Inserts a runtime key unless its tenant has `max_live` live keys.
    pub async fn key_insert(
        &self,
        key: &StoredKey,
        max_live: u64,
    ) -> Result<KeyWrite, LedgerError> {
        self.store.key_insert(key, max_live).await
    }

    /// Replaces the mutable columns of the runtime key with `key.id`.
    pub async fn key_update(&self, key: &StoredKey) -> Result<KeyWrite, LedgerError> {
        self.store.key_update(key).await
    }

    /// Records the owner of a response id (the first writer owns it) and
    /// deletes owners created before `keep_after_ms` (see [`owners`]).
    pub async fn response_owner_put(
        &self,
        owner: &ResponseOwner,
        keep_after_ms: i64,
    ) -> Result<(), LedgerError> {
        self.store.response_owner_put(owner, keep_after_ms).await
    }

    /// The owner of `response_id`, if recorded.
    pub async fn response_owner_get(
        &self,
        response_id: &str,
    ) -> Result<Option<ResponseOwner>, LedgerError> {
        self.store.response_owner_get(response_id).await
    }

    /// Forgets the owner of `response_id`.
    pub async fn response_owner_delete(&self, response_id: &str) -> Result<(), LedgerError> {
        self.store.response_owner_delete(response_id).await
    }

    /// The database's schema version.
    pub async fn schema_version(&self) -> Result<u32, LedgerError> {
        self.store.schema_version().await
    }

    /// Commits what is queued and stops the writer.
    pub async fn close(self) -> Result<(), LedgerError> {
        self.store.close().await
    }
}

/// Builds a report row from a group's raw sums.
fn usage_row(
    (group, requests, prompt, completion, cost): (String, i64, i64, i64, i64),
) -> Result<UsageRow, LedgerError> {
    let prompt_tokens = entry::unsigned("prompt_tokens", prompt)?;
    let completion_tokens = entry::unsigned("completion_tokens", completion)?;
    Ok(UsageRow {
        group,
        requests: entry::unsigned("count", requests)?,
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens.saturating_add(completion_tokens),
        cost_micros: cost,
    })
}
