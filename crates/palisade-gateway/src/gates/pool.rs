//! The detection pool: the bounded set of threads the input gates' scans of
//! long texts (and every scan when the second stage is on) run on, and what
//! happens when it is saturated.
//!
//! Short texts without a second stage are scanned inline on the async
//! worker: the first stage takes microseconds, less than a hop to another
//! thread and back (see `benches/detection_pool.rs`). Everything else takes a
//! slot (tokio's blocking threads behind a semaphore of `pool_workers`). A
//! request that finds every slot busy may wait, if fewer than `pool_queue`
//! requests already wait, for at most `pool_wait_ms`; otherwise the pool is
//! saturated and the request's tier decides (`on_detector_saturated`):
//! `closed` refuses it (`503 detector_saturated`, `Retry-After`), `degrade`
//! judges it on the first stage alone, inline, and marks each of its audit
//! records `degraded`. Never a silent skip.
//!
//! Must not: decide the fail mode itself (the policy does) or hold a slot
//! across anything but the job.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_openai::{ApiError, ErrorCode};
use tokio::sync::Semaphore;

/// Requests waiting for a slot (gauge).
pub(crate) const QUEUE_DEPTH: &str = "palisade_detection_pool_queue_depth";
/// Slots in use (gauge).
pub(crate) const IN_FLIGHT: &str = "palisade_detection_pool_in_flight";
/// Saturations, by `outcome` (`closed`, `degraded`) and `reason`
/// (`queue_full`, `deadline`).
pub(crate) const SATURATED_TOTAL: &str = "palisade_detection_saturated_total";

/// Seconds a refused client is told to wait: the pool turns over quickly.
const RETRY_AFTER_SECS: u64 = 1;

/// The audit records' `degraded` reason when the pool was saturated.
pub(crate) const DEGRADED_SATURATED: &str = "detector_saturated";

/// Why a job did not get a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Saturated {
    /// `pool_queue` requests were already waiting.
    QueueFull,
    /// No slot came free within `pool_wait_ms`.
    Deadline,
}

impl Saturated {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Saturated::QueueFull => "queue_full",
            Saturated::Deadline => "deadline",
        }
    }
}

/// The refusal of a tier that fails closed.
pub(crate) fn saturated_error() -> ApiError {
    ApiError::new(
        ErrorCode::DetectorSaturated,
        "the gateway's detectors are saturated and this request's policy does not allow a reduced check; retry shortly",
    )
    .with_retry_after(Some(RETRY_AFTER_SECS))
}

/// Counts one saturation and what the tier made of it.
pub(crate) fn count_saturation(reason: Saturated, outcome: &'static str) {
    metrics::counter!(SATURATED_TOTAL, "outcome" => outcome, "reason" => reason.as_str())
        .increment(1);
}

/// The bounded detection pool (see the module docs).
#[derive(Debug)]
pub(crate) struct DetectionPool {
    permits: Arc<Semaphore>,
    workers: usize,
    queue: usize,
    wait: Duration,
    waiting: AtomicUsize,
}

/// A pool slot held for one job.
#[derive(Debug)]
pub(crate) struct Slot {
    permit: tokio::sync::OwnedSemaphorePermit,
    permits: Arc<Semaphore>,
    workers: usize,
}

impl Slot {
    /// Runs `job` on a blocking thread, holding the slot until it returns. A
    /// job whose request is dropped still runs to completion (bounded by the
    /// input caps): the slot counts CPU in use, not requests waiting.
    pub(crate) async fn run<F, R>(self, job: F) -> Result<R, ApiError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let Slot {
            permit,
            permits,
            workers,
        } = self;
        tokio::task::spawn_blocking(move || {
            let result = job();
            drop(permit);
            metrics::gauge!(IN_FLIGHT)
                .set(workers.saturating_sub(permits.available_permits()) as f64);
            result
        })
        .await
        .map_err(|e| {
            // A panic in a check: the details are in the log, not the body.
            tracing::error!(error = %e, "a scan on the detection pool failed");
            ApiError::new(ErrorCode::InternalError, "internal error")
        })
    }
}

/// Takes a place in the queue for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let depth = self.0.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        metrics::gauge!(QUEUE_DEPTH).set(depth as f64);
    }
}

impl DetectionPool {
    /// A pool of `workers` slots (0: one per core), at most `queue` waiting,
    /// each for at most `wait`.
    pub(crate) fn new(workers: usize, queue: usize, wait: Duration) -> Self {
        let workers = match workers {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        // Exported from the start, so a dashboard shows 0, not "no data".
        metrics::gauge!(QUEUE_DEPTH).set(0.0);
        Self {
            permits: Arc::new(Semaphore::new(workers)),
            workers,
            queue,
            wait,
            waiting: AtomicUsize::new(0),
        }
    }

    /// Requests waiting for a slot now.
    pub(crate) fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// A slot, or why there is none. Taken before the job is built, so a
    /// saturated caller still owns the request it would have moved into it.
    pub(crate) async fn acquire(&self) -> Result<Slot, Saturated> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let depth = self.waiting.fetch_add(1, Ordering::AcqRel);
                let place = Waiting(&self.waiting);
                if depth >= self.queue {
                    return Err(Saturated::QueueFull);
                }
                metrics::gauge!(QUEUE_DEPTH).set((depth + 1) as f64);
                let acquired =
                    tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await;
                drop(place);
                match acquired {
                    Ok(Ok(permit)) => permit,
                    // Timed out, or the semaphore closed (it never is).
                    _ => return Err(Saturated::Deadline),
                }
            }
        };
        let in_use = self
            .workers
            .saturating_sub(self.permits.available_permits());
        metrics::gauge!(IN_FLIGHT).set(in_use as f64);
        Ok(Slot {
            permit,
            permits: self.permits.clone(),
            workers: self.workers,
        })
    }

    /// Runs `job` on a slot, or says why there was none. The outer error is
    /// saturation (the caller applies the tier's fail mode); the inner one a
    /// job that panicked.
    pub(crate) async fn run<F, R>(&self, job: F) -> Result<Result<R, ApiError>, Saturated>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        Ok(self.acquire().await?.run(job).await)
    }

    /// Runs `job` inline when `inline`, else on the pool; saturation refuses
    /// (`503 detector_saturated`): for callers with no tier to degrade by
    /// (the guard scan API).
    pub(crate) async fn run_or_refuse<F, R>(&self, inline: bool, job: F) -> Result<R, ApiError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        if inline {
            return Ok(job());
        }
        match self.run(job).await {
            Ok(result) => result,
            Err(reason) => {
                count_saturation(reason, "closed");
                Err(saturated_error())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool with one slot held by a job that waits for `release`.
    async fn busy_pool(
        queue: usize,
        wait_ms: u64,
    ) -> (
        Arc<DetectionPool>,
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<Result<(), ApiError>, Saturated>>,
    ) {
        let pool = Arc::new(DetectionPool::new(1, queue, Duration::from_millis(wait_ms)));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move || {
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        (pool, release_tx, busy)
    }

    #[tokio::test]
    async fn no_queue_saturates_at_once_and_a_deadline_after_waiting() {
        let (pool, release, busy) = busy_pool(0, 10_000).await;
        assert_eq!(pool.run(|| ()).await.unwrap_err(), Saturated::QueueFull);
        release.send(()).unwrap();
        busy.await.unwrap().unwrap().unwrap();
        assert_eq!(pool.run(|| 7).await.unwrap().unwrap(), 7);

        let (pool, release, busy) = busy_pool(4, 20).await;
        assert_eq!(pool.run(|| ()).await.unwrap_err(), Saturated::Deadline);
        assert_eq!(pool.queue_depth(), 0, "the waiter left the queue");
        release.send(()).unwrap();
        busy.await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_waiter_gets_the_slot_when_it_frees() {
        let (pool, release, busy) = busy_pool(1, 10_000).await;
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| 5).await })
        };
        // The queue holds one: a second waiter is saturation.
        while pool.queue_depth() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.run(|| ()).await.unwrap_err(), Saturated::QueueFull);
        release.send(()).unwrap();
        busy.await.unwrap().unwrap().unwrap();
        assert_eq!(waiter.await.unwrap().unwrap().unwrap(), 5);
    }

    #[tokio::test]
    async fn run_or_refuse_answers_detector_saturated() {
        let (pool, release, busy) = busy_pool(0, 10).await;
        let err = pool.run_or_refuse(false, || ()).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::DetectorSaturated);
        assert_eq!(err.status(), 503);
        assert_eq!(err.retry_after, Some(RETRY_AFTER_SECS));
        // Inline work never touches the pool.
        assert_eq!(pool.run_or_refuse(true, || 3).await.unwrap(), 3);
        release.send(()).unwrap();
        busy.await.unwrap().unwrap().unwrap();
    }
}
