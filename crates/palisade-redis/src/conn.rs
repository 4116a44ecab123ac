//! The one connection every Redis-backed limiter shares, and the timeout every call obeys.
//!
//! A limit check sits on every request's path, so no call may wait on Redis for longer than
//! the configured timeout (reconnects included): the caller decides what an unanswered
//! check means (deny, or fall back to local limits). Keeping the connect and timeout logic
//! here means the GCRA and the token budget cannot drift apart on it.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{FromRedisValue, ScriptInvocation};

use crate::RedisLimitError;

/// A multiplexed, self-reconnecting connection to Redis with a per-call timeout.
///
/// Cloning is cheap and shares the connection, so one replica can build its GCRA and its
/// token budgets (one prefix each) on a single connection.
#[derive(Clone)]
pub struct RedisConnection {
    conn: ConnectionManager,
    timeout: Duration,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379/0`) within `connect_timeout`. Every
    /// later call is bounded by `call_timeout`, reconnects included.
    ///
    /// # Errors
    /// [`RedisLimitError::Redis`] for a bad URL or a refused connection,
    /// [`RedisLimitError::Timeout`] when Redis does not answer within `connect_timeout`.
    pub async fn connect(
        url: &str,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> Result<Self, RedisLimitError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(connect_timeout.min(call_timeout))
            .set_response_timeout(call_timeout)
            .set_number_of_retries(1);
        let conn = bounded(
            connect_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await?;
        Ok(Self {
            conn,
            timeout: call_timeout,
        })
    }

    /// The timeout every call is bounded by.
    pub const fn call_timeout(&self) -> Duration {
        self.timeout
    }

    /// A round trip, for readiness checks.
    ///
    /// # Errors
    /// As [`RedisConnection::connect`], with the call timeout.
    pub async fn ping(&self) -> Result<(), RedisLimitError> {
        let mut conn = self.conn.clone();
        bounded(
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await?;
        Ok(())
    }

    /// Runs a pipeline (atomic when built with `.atomic()`), within the call timeout.
    pub(crate) async fn pipeline<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, RedisLimitError> {
        let mut conn = self.conn.clone();
        bounded(self.timeout, pipe.query_async(&mut conn)).await
    }

    /// Runs a script (loading it on first use), within the call timeout.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisLimitError> {
        let mut conn = self.conn.clone();
        bounded(self.timeout, invocation.invoke_async(&mut conn)).await
    }
}

/// `call`, or [`RedisLimitError::Timeout`] once `limit` has passed.
async fn bounded<T>(
    limit: Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisLimitError> {
    let millis = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    Ok(tokio::time::timeout(limit, call)
        .await
        .map_err(|_| RedisLimitError::Timeout(millis))??)
}
