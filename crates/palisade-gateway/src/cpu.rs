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
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::gates::output::ResponseShape;
use crate::gates::{GatePlan, GateSubject};
use crate::state::GatewayState;

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

/// The client's `response_format` schema, if the request declares one.
fn response_format_schema(fields: &Map<String, Value>) -> Option<&Value> {
    let format = fields.get("response_format")?;
    (format.get("type").and_then(Value::as_str) == Some("json_schema"))
        .then(|| format.pointer("/json_schema/schema"))
        .flatten()
}

/// Whether the request declares schemas the gateway will check responses
/// against (a `response_format` schema, tool parameters).
pub(crate) fn declares_schemas(fields: &Map<String, Value>) -> bool {
    response_format_schema(fields).is_some()
        || fields
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| {
                t.iter()
                    .any(|t| t.pointer("/function/parameters").is_some())
            })
}

/// Refuses (400) a client schema the gateway would check responses against
/// but cannot in linear time: the `response_format` schema always (the
/// output gate checks it), tool parameters when the tier has a tool gate.
pub(crate) fn check_client_schemas(
    fields: &Map<String, Value>,
    tool_gate: bool,
) -> Result<(), ApiError> {
    let refuse = |param: String, e: palisade_policy::ClientSchemaError| {
        ApiError::new(ErrorCode::InvalidRequest, e.to_string()).with_param(param)
    };
    if let Some(schema) = response_format_schema(fields) {
        palisade_policy::check_client_schema(schema)
            .map_err(|e| refuse("response_format".to_owned(), e))?;
    }
    if !tool_gate {
        return Ok(());
    }
    if let Some(Value::Array(tools)) = fields.get("tools") {
        for (i, tool) in tools.iter().enumerate() {
            if let Some(schema) = tool.pointer("/function/parameters") {
                palisade_policy::check_client_schema(schema)
                    .map_err(|e| refuse(format!("tools[{i}].function.parameters"), e))?;
            }
        }
    }
    Ok(())
}

/// What [`gate_request`] decided: the gates' verdict (an `Err` is the
/// client's offence, e.g. an injection) once the request could be judged.
pub(crate) type GateVerdict = Result<(GatePlan, bool), ApiError>;

/// Checks the client's schemas, then runs the input and context gates
/// ([`crate::gates::inspect_request`]) on the pool unless the request is
/// small and declares no schema. The outer error is a refusal that is not
/// an offence (an unsupported schema, a full pool); the inner one is the
/// gates' verdict.
pub(crate) async fn gate_request(
    state: &Arc<GatewayState>,
    subject: GateSubject,
    shape: ResponseShape,
    fields: &mut Map<String, Value>,
    retrieved: Vec<usize>,
    body_bytes: usize,
) -> Result<GateVerdict, ApiError> {
    let inline = body_bytes <= INLINE_BYTES && !declares_schemas(fields);
    let job_state = state.clone();
    let mut owned = std::mem::take(fields);
    let (verdict, owned) = state
        .cpu
        .run_or_inline(inline, move || {
            let tool_gate = {
                let snapshot = job_state.policy.active();
                let policy_subject = palisade_policy::Subject {
                    tenant: &subject.tenant,
                    route: &subject.route,
                    model: &subject.model,
                };
                snapshot.tier_for(&policy_subject).tool_gate().is_some()
            };
            if let Err(e) = check_client_schemas(&owned, tool_gate) {
                return (Err(e), owned);
            }
            let verdict =
                crate::gates::inspect_request(&job_state, subject, shape, &mut owned, &retrieved);
            (Ok(verdict), owned)
        })
        .await?;
    *fields = owned;
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn schemas_are_found_and_refused_by_param() {
        let fields = json!({
            "response_format": {"type": "json_schema", "json_schema": {"schema": {"pattern": "(?=a)"}}},
            "tools": [{"function": {"name": "t", "parameters": {"pattern": "(a)\\1"}}}]
        });
        let fields = fields.as_object().unwrap();
        assert!(declares_schemas(fields));
        let err = check_client_schemas(fields, true).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("response_format"));
        let mut tools_only = fields.clone();
        tools_only.remove("response_format");
        let err = check_client_schemas(&tools_only, true).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("tools[0].function.parameters"));
        // Without a tool gate the gateway never checks tool arguments.
        assert!(check_client_schemas(&tools_only, false).is_ok());
        assert!(!declares_schemas(&Map::new()));
    }
}
