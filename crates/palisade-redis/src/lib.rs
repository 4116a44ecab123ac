//! Redis adapter for Palisade: shared limits, held tool calls and the fleet registry,
//! so that any number of gateway replicas share one exact limit and one view of the fleet.
//!
//! Every decision is made inside Redis by a Lua script that reads a key's
//! state, decides and writes it back atomically, on Redis' own clock
//! (`TIME`), so replicas with skewed clocks still agree. The arithmetic
//! mirrors `palisade_limits` in microseconds: Lua numbers are doubles, and
//! microseconds since the epoch stay exact where nanoseconds would not.
//!
//! - [`RedisGcra`]: request rate with burst. The arithmetic mirrors
//!   `palisade_limits::Gcra` (same emission interval rounded up, same
//!   tolerance `burst * T`, same remaining/reset/retry values). Keys expire
//!   when their bucket is full again, so idle tenants cost no memory.
//! - [`RedisTokenBudget`]: token budgets with reservations, mirroring
//!   `palisade_limits::TokenBudget` (see the [`budget`] module).
//! - [`RedisToolStore`]: tool calls held for confirmation, single-use
//!   capability tokens and tool-loop counters, shared by every replica.
//! - [`RedisFleet`]: the fleet registry (replica records with a time-to-live).
//! - [`RedisBundleStore`]: signed bundles distributed through Redis, announced on
//!   pub/sub ([`watch_published`]) so replicas fetch a new one at once.
//! - [`RedisConnection`]: the connection they share, every call bounded by a
//!   timeout.
//!
//! Names the gateway does not choose (tenants, key labels, conversation ids)
//! go into keys through [`key_part`], so `:` in a name cannot make two keys
//! collide.
//!
//! This crate does network I/O to Redis and nothing else; it holds no limit
//! (or fleet) policy (which key, which rate): the gateway decides that.

#![forbid(unsafe_code)]

pub mod budget;
pub mod bundles;
mod conn;
pub mod fleet;
mod keys;
mod tools;

pub use budget::RedisTokenBudget;
pub use bundles::{watch_published, BundleFetch, RedisBundleStore};
pub use conn::RedisConnection;
pub use fleet::RedisFleet;
pub use keys::key_part;
pub use tools::{HoldLimits, Parked, RedisToolStore};

use palisade_limits::{GcraConfig, GcraDecision, LimitError, Nanos};

/// GCRA in Lua. KEYS[1]: the key. ARGV: emission interval T (µs), tolerance
/// burst·T (µs), cost (units). Returns {allowed, remaining, reset_after_us,
/// retry_after_us}.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + cost * emission
local allow_at = new_tat - tolerance
local allowed = 0
local tat_after = tat
if now >= allow_at then
  allowed = 1
  tat_after = new_tat
  if cost > 0 then
    redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
  end
end
local ahead = tat_after - now
local remaining = math.floor(math.max(0, tolerance - ahead) / emission)
local retry = 0
if allowed == 0 then retry = allow_at - now end
return {allowed, remaining, ahead, retry}
";

/// Errors of the Redis-backed limiters.
///
/// A *denial* is not an error: it comes back as a value, as in `palisade_limits`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisLimitError {
    /// Connecting or a command failed (Redis down, network, timeout).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A script answered something other than the integers it returns (a
    /// different script under the same SHA, or a Redis that is not Redis).
    #[error("redis returned an unexpected reply to a limits script")]
    BadReply,
    /// The request took longer than the configured timeout.
    #[error("redis did not answer within {0} ms")]
    Timeout(u64),
    /// The same errors the in-memory limiters return (an invalid
    /// configuration, a cost above the limit, a conflicting or unknown
    /// reservation), so the gateway handles memory and Redis alike.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A value too large for the scripts' arithmetic: Lua numbers are doubles,
    /// exact only below 2^53 (durations below 2^52 microseconds, about 142
    /// years, so that `now + duration` stays exact).
    #[error("{what} {value} is too large for redis' exact arithmetic")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// The value given.
        value: u64,
    },
}

/// A GCRA limiter whose state lives in Redis.
#[derive(Clone)]
pub struct RedisGcra {
    conn: RedisConnection,
    script: redis::Script,
    prefix: String,
}

impl std::fmt::Debug for RedisGcra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisGcra")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A count from a script's reply; scripts never return negative counts, and a
/// negative one would only come from a foreign script, so it reads as zero.
fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A span of microseconds from a script's reply, as nanoseconds.
fn from_micros(v: i64) -> Nanos {
    Nanos(count(v).saturating_mul(1_000))
}

/// Emission interval and tolerance in whole microseconds, rounded up like
/// `palisade_limits::Gcra` so the limiter never admits more than configured.
fn micros(config: &GcraConfig) -> (u64, u64) {
    let period_us = config.period.get().div_ceil(1_000);
    let emission = period_us.div_ceil(config.limit.max(1)).max(1);
    (emission, emission.saturating_mul(config.burst))
}

impl RedisGcra {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379/0`) within
    /// `connect_timeout`. Keys are `PREFIX:gcra:KEY`. Every later call is
    /// bounded by `call_timeout` (reconnects included), because a limit check
    /// sits on every request's path.
    pub async fn connect(
        url: &str,
        prefix: &str,
        connect_timeout: std::time::Duration,
        call_timeout: std::time::Duration,
    ) -> Result<Self, RedisLimitError> {
        let conn = RedisConnection::connect(url, connect_timeout, call_timeout).await?;
        Ok(Self::new(conn, prefix))
    }

    /// A limiter on an existing (shared) connection. Keys are
    /// `PREFIX:gcra:KEY`.
    pub fn new(conn: RedisConnection, prefix: &str) -> Self {
        Self {
            conn,
            script: redis::Script::new(GCRA_LUA),
            prefix: prefix.to_owned(),
        }
    }

    /// Decides a request of `cost` units for `key` under `config`.
    pub async fn check(
        &self,
        key: &str,
        config: &GcraConfig,
        cost: u64,
    ) -> Result<GcraDecision, RedisLimitError> {
        let (emission, tolerance) = micros(config);
        let mut invocation = self.script.key(format!("{}:gcra:{key}", self.prefix));
        invocation.arg(emission).arg(tolerance).arg(cost);
        let reply: Vec<i64> = self.conn.invoke(&invocation).await?;
        let [allowed, remaining, ahead_us, retry_us] = reply[..] else {
            return Err(RedisLimitError::BadReply);
        };
        Ok(GcraDecision {
            allowed: allowed == 1,
            limit: config.burst,
            remaining: count(remaining),
            reset_after: from_micros(ahead_us),
            retry_after: from_micros(retry_us),
        })
    }

    /// The connection, to build other limiters (a [`RedisTokenBudget`]) on it.
    pub const fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    /// A round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), RedisLimitError> {
        self.conn.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsecond_interval_rounds_up() {
        // 600 per minute: 100 ms each; burst 10 → 1 s tolerance.
        let c = GcraConfig::new(600, Nanos::from_secs(60)).with_burst(10);
        assert_eq!(micros(&c), (100_000, 1_000_000));
        // 7 per second does not divide evenly: round up, never over-admit.
        let c = GcraConfig::new(7, Nanos::from_secs(1));
        assert_eq!(micros(&c).0, 142_858);
    }
}
