//! [`LedgerStore`]: the operations every ledger store provides, once, so that
//! [`Ledger`](crate::Ledger) forwards to whichever store it opened instead of
//! matching on each one in every method.
//!
//! The trait is object safe (the gateway picks the store at run time from a
//! URL), so its asynchronous methods return boxed futures rather than being
//! `async fn`: that needs no extra dependency and keeps every future `Send`,
//! as the gateway awaits them on its worker threads. It states what a store
//! must do and nothing of how: it must not grow methods only one store can
//! honour.

use std::fmt::Debug;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;

use crate::keys::{KeyWrite, KeysVersion, StoredKey};
use crate::owners::ResponseOwner;
use crate::UsageRow;
use crate::{AuditEntry, AuditFilter, LedgerEntry, LedgerError, Recorded, Spent, UsageQuery};

/// A boxed, `Send` future: what [`LedgerStore`]'s asynchronous methods
/// return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One ledger store (SQLite, PostgreSQL): the accounting rows and the audit
/// log, with the write semantics described in the [crate] doc.
pub trait LedgerStore: Debug + Send + Sync {
    /// A short name for logs and tests: `sqlite` or `postgres`.
    fn store_name(&self) -> &'static str;

    /// Records an entry; resolves once it is committed. Idempotent on
    /// `request_id`: the first row recorded wins. Cancelling the future
    /// does not cancel the write.
    fn record<'a>(&'a self, entry: &'a LedgerEntry)
        -> BoxFuture<'a, Result<Recorded, LedgerError>>;

    /// Queues an entry without waiting; it is durable once a later
    /// [`flush`](Self::flush) returns `Ok`. Fails at once when the queue is
    /// full or the writer is gone.
    fn record_nowait(&self, entry: LedgerEntry) -> Result<(), LedgerError>;

    /// Resolves once every entry queued before the call is committed;
    /// reports queued entries that failed since the previous flush.
    fn flush(&self) -> BoxFuture<'_, Result<(), LedgerError>>;

    /// A usage report, rows sorted by group.
    fn usage<'a>(
        &'a self,
        query: &'a UsageQuery,
    ) -> BoxFuture<'a, Result<Vec<UsageRow>, LedgerError>>;

    /// What `tenant` has used since `since_ms` (inclusive).
    fn spent<'a>(
        &'a self,
        tenant: &'a str,
        since_ms: i64,
    ) -> BoxFuture<'a, Result<Spent, LedgerError>>;

    /// What `tenant`'s key named `key_name` has used since `since_ms`
    /// (inclusive): a per-key budget's spend. By name, so every key that
    /// carried the name in the period counts (a rotated key keeps its name;
    /// a key recreated under a revoked key's name inherits its spend).
    fn key_spent<'a>(
        &'a self,
        tenant: &'a str,
        key_name: &'a str,
        since_ms: i64,
    ) -> BoxFuture<'a, Result<Spent, LedgerError>>;

    /// Writes every entry as one JSON object per line, in insertion order;
    /// returns how many. Reads in pages, so memory stays bounded; the
    /// writes to `out` are blocking.
    fn export_jsonl<'a>(
        &'a self,
        out: &'a mut (dyn Write + Send),
    ) -> BoxFuture<'a, Result<u64, LedgerError>>;

    /// Appends an audit record; resolves to its `seq` once it is committed.
    /// Cancelling the future does not cancel the write.
    fn audit(&self, entry: AuditEntry) -> BoxFuture<'_, Result<u64, LedgerError>>;

    /// Queues an audit record without waiting; durable once a later
    /// [`flush`](Self::flush) returns `Ok`.
    fn audit_nowait(&self, entry: AuditEntry) -> Result<(), LedgerError>;

    /// The newest `n` audit records matching `filter` as JSON lines, oldest
    /// first (the newest is last).
    fn audit_tail<'a>(
        &'a self,
        n: usize,
        filter: &'a AuditFilter,
    ) -> BoxFuture<'a, Result<Vec<String>, LedgerError>>;

    /// Writes the audit records with `since_ms <= ts_ms < until_ms` as JSON
    /// lines, in `seq` order, exactly as stored; returns how many. Reads in
    /// pages; the writes to `out` are blocking.
    fn audit_export<'a>(
        &'a self,
        out: &'a mut (dyn Write + Send),
        since_ms: i64,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<u64, LedgerError>>;

    /// The runtime key table's change marker: equal values mean nothing
    /// changed since the last [`keys_load`](Self::keys_load).
    fn keys_version(&self) -> BoxFuture<'_, Result<KeysVersion, LedgerError>>;

    /// Every runtime key row (hashes only), revoked ones included.
    fn keys_load(&self) -> BoxFuture<'_, Result<Vec<StoredKey>, LedgerError>>;

    /// Inserts a runtime key unless its tenant already has `max_live`
    /// unrevoked keys. Committed when it resolves.
    fn key_insert<'a>(
        &'a self,
        key: &'a StoredKey,
        max_live: u64,
    ) -> BoxFuture<'a, Result<KeyWrite, LedgerError>>;

    /// Replaces the mutable columns of the runtime key with `key.id`.
    /// Committed when it resolves.
    fn key_update<'a>(&'a self, key: &'a StoredKey)
        -> BoxFuture<'a, Result<KeyWrite, LedgerError>>;

    /// Records the owner of a response id (the first writer owns it) and
    /// deletes owners created before `keep_after_ms`. Committed when it
    /// resolves.
    fn response_owner_put<'a>(
        &'a self,
        owner: &'a ResponseOwner,
        keep_after_ms: i64,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;

    /// The owner of `response_id`, if recorded.
    fn response_owner_get<'a>(
        &'a self,
        response_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResponseOwner>, LedgerError>>;

    /// Forgets the owner of `response_id` (the response was deleted).
    fn response_owner_delete<'a>(
        &'a self,
        response_id: &'a str,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;

    /// The database's schema version.
    fn schema_version(&self) -> BoxFuture<'_, Result<u32, LedgerError>>;

    /// Commits what is queued and stops the writer. Boxed so that a
    /// [`Ledger`](crate::Ledger) can give up its store.
    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), LedgerError>>;
}
