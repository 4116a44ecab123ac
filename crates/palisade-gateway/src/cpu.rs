//! The bounded pool for CPU-heavy request work: detector scans of large
//! inputs, client JSON Schemas, prompt tokenization and the response gates.
//!
//! The async workers (one per core) also accept connections, relay streams
//! and answer `/healthz`; work that holds one for milliseconds to seconds
//! stalls all of that. So heavy work runs on tokio's blocking threads, at
//! most `server.cpu_workers` at once (a semaphore): the blocking pool alone
//! would grow to 512 threads and let a burst of large requests take every
//! core. A request that cannot get a slot within `server.cpu_queue_timeout_ms`
//! gets `503 overloaded` with `Retry-After` — the check is delayed or
//! refused, never skipped.
//!
//! Small inputs without client schemas stay inline: a scan of 16 KiB costs
//! less than handing it to another thread and back.

use std::sync::Arc;
use std::time::Duration;

use palisade_openai::{ApiError, ErrorCode};
use tokio::sync::Semaphore;

/// Inputs at most this large (bytes) are checked on the async worker.
pub(crate) const INLINE_BYTES: usize = 16 * 1024;

/// Requests refused because the pool stayed full.
const OVERLOADED_TOTAL: &str = "palisade_cpu_pool_overloaded_total";

/// Seconds a refused client is told to wait: the pool turns over quickly.
const RETRY_AFTER_SECS: u64 = 1;

/// A bounded set of blocking threads (see the module docs).
#[derive(Debug)]
pub(crate) struct CpuPool {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
}

/// The error for a pool that stayed full.
pub(crate) fn overloaded() -> ApiError {
    ApiError::new(
        ErrorCode::Overloaded,
        "the gateway is busy checking other requests; retry shortly",
    )
    .with_retry_after(Some(RETRY_AFTER_SECS))
}

impl CpuPool {
    /// A pool of `workers` threads (0: one per core).
    pub(crate) fn new(workers: usize, queue_timeout: Duration) -> Self {
        let workers = match workers {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        Self {
            permits: Arc::new(Semaphore::new(workers)),
            queue_timeout,
        }
    }

    /// Runs `job` on the pool, waiting at most the queue timeout for a slot.
    /// A job whose request is dropped still runs to completion (bounded by
    /// the input caps) and holds its slot until then: the slot counts CPU in
    /// use, not requests waiting.
    pub(crate) async fn run<F, R>(&self, job: F) -> Result<R, ApiError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let permit =
            match tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                // Timed out, or the semaphore closed (it never is).
                _ => {
                    metrics::counter!(OVERLOADED_TOTAL).increment(1);
                    return Err(overloaded());
                }
            };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| {
            // A panic in a check: the details are in the log, not the body.
            tracing::error!(error = %e, "a check on the CPU pool failed");
            ApiError::new(ErrorCode::InternalError, "internal error")
        })
    }

    /// Runs `job` inline when `inline`, else on the pool.
    pub(crate) async fn run_or_inline<F, R>(&self, inline: bool, job: F) -> Result<R, ApiError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        if inline {
            Ok(job())
        } else {
            self.run(job).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_pool_refuses_after_the_queue_timeout() {
        let pool = Arc::new(CpuPool::new(1, Duration::from_millis(20)));
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
        let err = pool.run(|| ()).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Overloaded);
        assert_eq!(err.retry_after, Some(RETRY_AFTER_SECS));
        release_tx.send(()).unwrap();
        busy.await.unwrap().unwrap();
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
