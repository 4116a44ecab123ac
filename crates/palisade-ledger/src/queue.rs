//! The write queue both stores share: callers enqueue, one writer drains
//! the queue in batches (group commit) and answers each caller once its
//! batch is committed.
//!
//! The writer takes whatever is queued when it wakes (up to `max_batch`),
//! optionally lingers for more, writes the batch in one transaction, and
//! only then answers. Under load, entries that arrive during a commit form
//! the next batch, so batching needs no added delay; at low load a lone
//! entry commits at once.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::entry::Row;
use crate::{LedgerEntry, LedgerError, Recorded};

type RecordReply = oneshot::Sender<Result<Recorded, LedgerError>>;

/// A message to the writer. Messages are handled in the order they were
/// queued, which is what makes `flush` cover every earlier `record_nowait`.
#[derive(Debug)]
pub(crate) enum Msg {
    Record {
        row: Row,
        reply: Option<RecordReply>,
    },
    Flush {
        reply: oneshot::Sender<Result<(), LedgerError>>,
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

    pub(crate) async fn record(&self, entry: &LedgerEntry) -> Result<Recorded, LedgerError> {
        let row = Row::from_entry(entry.clone())?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Record {
                row,
                reply: Some(reply),
            })
            .await
            .map_err(|_| LedgerError::Closed)?;
        answer.await.map_err(|_| LedgerError::Closed)?
    }

    pub(crate) fn record_nowait(&self, entry: LedgerEntry) -> Result<(), LedgerError> {
        let row = Row::from_entry(entry)?;
        self.tx
            .try_send(Msg::Record { row, reply: None })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LedgerError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => LedgerError::Closed,
            })
    }

    pub(crate) async fn flush(&self) -> Result<(), LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Flush { reply })
            .await
            .map_err(|_| LedgerError::Closed)?;
        answer.await.map_err(|_| LedgerError::Closed)?
    }
}

/// What to do with each message of a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot {
    /// Written as the n-th row of the batch.
    Write(usize),
    /// The same request id appeared earlier in this batch.
    DuplicateInBatch,
    Flush,
}

/// The rows to write for a batch (first occurrence of each request id, in
/// queue order) and each message's slot.
pub(crate) fn plan(batch: &[Msg]) -> (Vec<&Row>, Vec<Slot>) {
    let mut seen = HashSet::with_capacity(batch.len());
    let mut rows = Vec::with_capacity(batch.len());
    let slots = batch
        .iter()
        .map(|m| match m {
            Msg::Record { row, .. } => {
                if seen.insert(row.request_id.as_str()) {
                    rows.push(row);
                    Slot::Write(rows.len() - 1)
                } else {
                    Slot::DuplicateInBatch
                }
            }
            Msg::Flush { .. } => Slot::Flush,
        })
        .collect();
    (rows, slots)
}

/// The writer's memory across batches: failures of `record_nowait` entries,
/// reported by the next `flush`.
#[derive(Debug, Default)]
pub(crate) struct Settler {
    failed_nowait: u64,
}

impl Settler {
    /// Answers every message of a written (or failed) batch. `inserted[n]`
    /// says whether row n was new.
    pub(crate) fn settle(
        &mut self,
        batch: Vec<Msg>,
        slots: Vec<Slot>,
        written: Result<Vec<bool>, LedgerError>,
    ) {
        let written = written.map_err(Arc::new);
        for (msg, slot) in batch.into_iter().zip(slots) {
            match msg {
                Msg::Record { reply, .. } => {
                    let result = match (&written, slot) {
                        (Err(e), _) => Err(LedgerError::WriteFailed(Arc::clone(e))),
                        (Ok(inserted), Slot::Write(n)) if inserted.get(n) == Some(&true) => {
                            Ok(Recorded::Inserted)
                        }
                        (Ok(_), _) => Ok(Recorded::Duplicate),
                    };
                    match reply {
                        // The caller may have stopped waiting; the write
                        // stands either way.
                        Some(reply) => drop(reply.send(result)),
                        None if result.is_err() => self.failed_nowait += 1,
                        None => {}
                    }
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
