//! The write queue both stores share: callers enqueue, one writer drains
//! the queue in batches (group commit) and answers each caller once its
//! batch is committed.
//!
//! The writer takes whatever is queued when it wakes (up to `max_batch`),
//! optionally lingers for more, writes the batch in one transaction, and
//! only then answers. Under load, entries that arrive during a commit form
//! the next batch, so batching needs no added delay; at low load a lone
//! entry commits at once. Ledger entries and audit records share the queue,
//! so one `flush` covers both and one batch may hold both.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::audit::AuditRow;
use crate::entry::Row;
use crate::{AuditEntry, LedgerEntry, LedgerError, Recorded};

type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;

/// A message to the writer. Messages are handled in the order they were
/// queued, which is what makes `flush` cover every earlier `record_nowait`
/// and `audit_nowait`.
#[derive(Debug)]
pub(crate) enum Msg {
    Record {
        row: Row,
        reply: Option<Reply<Recorded>>,
    },
    /// An audit record; answered with its `seq`.
    Audit {
        row: AuditRow,
        reply: Option<Reply<u64>>,
    },
    Flush {
        reply: Reply<()>,
    },
}

/// The callers' side of the queue.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    tx: mpsc::Sender<Msg>,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> (Self, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, rx)
    }

    /// Queues the message `make` builds around a reply channel (waiting for
    /// room) and waits for the answer.
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Msg) -> Result<T, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| LedgerError::Closed)?;
        answer.await.map_err(|_| LedgerError::Closed)?
    }

    /// Queues without waiting: fails at once when the queue is full.
    fn try_send(&self, msg: Msg) -> Result<(), LedgerError> {
        self.tx.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LedgerError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => LedgerError::Closed,
        })
    }

    pub(crate) async fn record(&self, entry: &LedgerEntry) -> Result<Recorded, LedgerError> {
        let row = Row::from_entry(entry.clone())?;
        self.call(|reply| Msg::Record {
            row,
            reply: Some(reply),
        })
        .await
    }

    pub(crate) fn record_nowait(&self, entry: LedgerEntry) -> Result<(), LedgerError> {
        let row = Row::from_entry(entry)?;
        self.try_send(Msg::Record { row, reply: None })
    }

    pub(crate) async fn audit(&self, entry: AuditEntry) -> Result<u64, LedgerError> {
        let row = AuditRow::from_entry(entry)?;
        self.call(|reply| Msg::Audit {
            row,
            reply: Some(reply),
        })
        .await
    }

    pub(crate) fn audit_nowait(&self, entry: AuditEntry) -> Result<(), LedgerError> {
        let row = AuditRow::from_entry(entry)?;
        self.try_send(Msg::Audit { row, reply: None })
    }

    pub(crate) async fn flush(&self) -> Result<(), LedgerError> {
        self.call(|reply| Msg::Flush { reply }).await
    }
}

/// What to do with each message of a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot {
    /// Written as the n-th ledger row of the batch.
    Write(usize),
    /// The same request id appeared earlier in this batch.
    DuplicateInBatch,
    /// Written as the n-th audit row of the batch.
    Audit(usize),
    Flush,
}

/// The rows a batch writes, in queue order.
#[derive(Debug, Default)]
pub(crate) struct Rows<'a> {
    /// Ledger rows: the first occurrence of each request id.
    pub ledger: Vec<&'a Row>,
    /// Audit rows: every one (they have no idempotency key).
    pub audit: Vec<&'a AuditRow>,
}

impl Rows<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.ledger.is_empty() && self.audit.is_empty()
    }
}

/// The rows to write for a batch and each message's slot.
pub(crate) fn plan(batch: &[Msg]) -> (Rows<'_>, Vec<Slot>) {
    let mut seen = HashSet::with_capacity(batch.len());
    let mut rows = Rows::default();
    let slots = batch
        .iter()
        .map(|m| match m {
            Msg::Record { row, .. } => {
                if seen.insert(row.request_id.as_str()) {
                    rows.ledger.push(row);
                    Slot::Write(rows.ledger.len() - 1)
                } else {
                    Slot::DuplicateInBatch
                }
            }
            Msg::Audit { row, .. } => {
                rows.audit.push(row);
                Slot::Audit(rows.audit.len() - 1)
            }
            Msg::Flush { .. } => Slot::Flush,
        })
        .collect();
    (rows, slots)
}

/// What writing a batch did, per kind of row: a store may commit the two
/// kinds together (SQLite, one transaction) or apart (PostgreSQL, one
/// statement each), so each kind carries its own outcome.
#[derive(Debug)]
pub(crate) struct Written {
    /// Whether each ledger row was new.
    pub ledger: Result<Vec<bool>, Arc<LedgerError>>,
    /// Each audit row's `seq`.
    pub audit: Result<Vec<u64>, Arc<LedgerError>>,
}

impl Written {
    /// The outcome of a batch committed in one transaction: both kinds
    /// succeed or fail together.
    pub(crate) fn together(result: Result<(Vec<bool>, Vec<u64>), LedgerError>) -> Self {
        match result {
            Ok((ledger, audit)) => Self {
                ledger: Ok(ledger),
                audit: Ok(audit),
            },
            Err(e) => {
                let e = Arc::new(e);
                Self {
                    ledger: Err(Arc::clone(&e)),
                    audit: Err(e),
                }
            }
        }
    }

    /// Nothing written (a batch of flushes only).
    pub(crate) fn nothing() -> Self {
        Self::together(Ok((Vec::new(), Vec::new())))
    }
}

/// The writer's memory across batches: failures of `record_nowait` and
/// `audit_nowait` entries, reported by the next `flush`.
#[derive(Debug, Default)]
pub(crate) struct Settler {
    failed_nowait: u64,
}

impl Settler {
    /// Answers every message of a written (or failed) batch.
    pub(crate) fn settle(&mut self, batch: Vec<Msg>, slots: Vec<Slot>, written: Written) {
        let failed = |e: &Arc<LedgerError>| LedgerError::WriteFailed(Arc::clone(e));
        for (msg, slot) in batch.into_iter().zip(slots) {
            match msg {
                Msg::Record { reply, .. } => {
                    let result = match (&written.ledger, slot) {
                        (Err(e), _) => Err(failed(e)),
                        (Ok(inserted), Slot::Write(n)) if inserted.get(n) == Some(&true) => {
                            Ok(Recorded::Inserted)
                        }
                        (Ok(_), _) => Ok(Recorded::Duplicate),
                    };
                    self.answer(reply, result);
                }
                Msg::Audit { reply, .. } => {
                    let result = match (&written.audit, slot) {
                        (Err(e), _) => Err(failed(e)),
                        (Ok(seqs), Slot::Audit(n)) => seqs
                            .get(n)
                            .copied()
                            .ok_or_else(|| crate::entry::corrupt("seq", "missing")),
                        // `plan` gives every audit message an `Audit` slot.
                        (Ok(_), _) => Err(crate::entry::corrupt("seq", "missing")),
                    };
                    self.answer(reply, result);
                }
                Msg::Flush { reply } => {
                    let count = std::mem::take(&mut self.failed_nowait);
                    let result = if count == 0 {
                        Ok(())
                    } else {
                        Err(LedgerError::LostWrites { count })
                    };
                    drop(reply.send(result));
                }
            }
        }
    }

    /// Sends `result` to a waiting caller, or counts a failed queued write
    /// for the next `flush`.
    fn answer<T>(&mut self, reply: Option<Reply<T>>, result: Result<T, LedgerError>) {
        match reply {
            // The caller may have stopped waiting; the write stands either
            // way.
            Some(reply) => drop(reply.send(result)),
            None if result.is_err() => self.failed_nowait += 1,
            None => {}
        }
    }
}

/// Moves every message already queued into `batch`, up to `max`.
pub(crate) fn drain(rx: &mut mpsc::Receiver<Msg>, batch: &mut Vec<Msg>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(m) => batch.push(m),
            Err(_) => break,
        }
    }
}
