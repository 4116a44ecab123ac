//! Tool-call state every replica must see: calls held for confirmation (an approver may
//! reach any replica), single-use capability tokens, and conversations' tool-loop
//! counters. Records are opaque strings (the gateway's JSON); each operation is one Lua
//! script, so a take is atomic (a call is released once, whichever replica confirms).
//!
//! Held calls are capped per tenant and in total ([`HoldLimits`]), inside the park script:
//! a tenant at its cap makes room by dropping its own oldest call, and a full store refuses
//! the new call rather than drop another tenant's. Names in keys go through
//! [`key_part`](crate::key_part).

use std::time::Duration;

use redis::Script;

use crate::{key_part, RedisConnection, RedisLimitError};

/// KEYS: record, tenant index, global index. ARGV: record, expires_at, ttl (s), member,
/// now, per-tenant cap, total cap, record key prefix. Lapsed entries leave both indexes
/// first; a tenant at its cap loses its own soonest-lapsing calls; a full store refuses.
/// Returns {held (0/1), evicted count}.
const PARK_LUA: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[5])
local per = tonumber(ARGV[6])
local total = tonumber(ARGV[7])
local held = redis.call('ZCARD', KEYS[2])
local evicted = 0
if held >= per then
  local old = redis.call('ZRANGE', KEYS[2], 0, held - per)
  for _, id in ipairs(old) do
    redis.call('DEL', ARGV[8] .. id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    evicted = evicted + 1
  end
elseif redis.call('ZCARD', KEYS[3]) >= total then
  return {0, 0}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return {1, evicted}
";

const GET_LUA: &str = r"return redis.call('GET', KEYS[1])";

const TAKE_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v then redis.call('DEL', KEYS[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return v
";

const LIST_LUA: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('GET', ARGV[2] .. id)
  if v then table.insert(out, v) end
end
return out
";

const ONCE_LUA: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 1 end
return 0
";

const ROUND_LUA: &str = r"
local r = redis.call('HINCRBY', KEYS[1], 'rounds', ARGV[1])
local t = redis.call('HINCRBY', KEYS[1], 'tokens', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {r, t}
";

const CONV_LUA: &str = r"
local v = redis.call('HMGET', KEYS[1], 'rounds', 'tokens')
return {tonumber(v[1] or 0), tonumber(v[2] or 0)}
";

/// How many held calls the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLimits {
    /// Most calls one tenant may have held; its oldest makes room past it.
    pub per_tenant: usize,
    /// Most calls held for all tenants together; past it a new call is refused.
    pub total: usize,
}

/// What became of a call offered to [`RedisToolStore::park`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parked {
    /// Held; `evicted` of the same tenant's oldest calls lapsed to make room.
    Held {
        /// How many of the tenant's calls were dropped.
        evicted: u64,
    },
    /// Not held: the store is full with other tenants' calls.
    Full,
}

/// The shared tool-call state, on the replica's Redis connection.
#[derive(Debug, Clone)]
pub struct RedisToolStore {
    conn: RedisConnection,
    prefix: String,
}

impl RedisToolStore {
    /// A store under `prefix` (e.g. `palisade`); keys are `{prefix}:tools:...`.
    pub fn new(conn: RedisConnection, prefix: &str) -> Self {
        Self {
            conn,
            prefix: format!("{prefix}:tools"),
        }
    }

    /// The record of a held call; index members are the escaped ids, so that
    /// `pending:` + member is the record's key.
    fn record_key(&self, id: &str) -> String {
        format!("{}{}", self.record_prefix(), key_part(id))
    }

    fn record_prefix(&self) -> String {
        format!("{}:pending:", self.prefix)
    }

    fn index_key(&self, tenant: Option<&str>) -> String {
        match tenant {
            Some(t) => format!("{}:index:tenant:{}", self.prefix, key_part(t)),
            None => format!("{}:index:all", self.prefix),
        }
    }

    /// Holds `record` under `id` for `tenant` until `expires_at` (Unix seconds; `now` is
    /// the gateway's clock, on which lapsed calls are dropped), within `limits`.
    ///
    /// # Errors
    /// [`RedisLimitError`] when Redis fails or does not answer within the call timeout.
    pub async fn park(
        &self,
        tenant: &str,
        id: &str,
        record: &str,
        expires_at: u64,
        now: u64,
        limits: HoldLimits,
    ) -> Result<Parked, RedisLimitError> {
        let script = Script::new(PARK_LUA);
        let mut inv = script.prepare_invoke();
        inv.key(self.record_key(id))
            .key(self.index_key(Some(tenant)))
            .key(self.index_key(None))
            .arg(record)
            .arg(expires_at)
            .arg(expires_at.saturating_sub(now).max(1))
            .arg(key_part(id).as_ref())
            .arg(now)
            .arg(limits.per_tenant.max(1))
            .arg(limits.total.max(1))
            .arg(self.record_prefix());
        let (held, evicted): (i64, i64) = self.conn.invoke(&inv).await?;
        Ok(if held == 1 {
            Parked::Held {
                evicted: u64::try_from(evicted).unwrap_or(0),
            }
        } else {
            Parked::Full
        })
    }

    /// The record held under `id`, without taking it.
    ///
    /// # Errors
    /// As [`RedisToolStore::park`].
    pub async fn get(&self, id: &str) -> Result<Option<String>, RedisLimitError> {
        let script = Script::new(GET_LUA);
        let mut inv = script.prepare_invoke();
        inv.key(self.record_key(id));
        self.conn.invoke(&inv).await
    }

    /// Removes and returns the record under `id` (at most one caller gets it).
    ///
    /// # Errors
    /// As [`RedisToolStore::park`].
    pub async fn take(&self, tenant: &str, id: &str) -> Result<Option<String>, RedisLimitError> {
        let script = Script::new(TAKE_LUA);
        let mut inv = script.prepare_invoke();
        inv.key(self.record_key(id))
            .key(self.index_key(Some(tenant)))
            .key(self.index_key(None))
            .arg(key_part(id).as_ref());
        self.conn.invoke(&inv).await
    }

    /// Records held for `tenant` (every tenant's with `None`) that expire after `now`,
    /// soonest first, at most `max`.
    ///
    /// # Errors
    /// As [`RedisToolStore::park`].
    pub async fn list(
        &self,
        tenant: Option<&str>,
        now: u64,
        max: usize,
    ) -> Result<Vec<String>, RedisLimitError> {
        let script = Script::new(LIST_LUA);
        let mut inv = script.prepare_invoke();
        inv.key(self.index_key(tenant))
            .arg(now)
            .arg(self.record_prefix())
            .arg(max);
        self.conn.invoke(&inv).await
    }

    /// True the first time `token_id` is seen within `ttl`; false after.
    ///
    /// # Errors
    /// As [`RedisToolStore::park`].
    pub async fn consume_once(
        &self,
        token_id: &str,
        ttl: Duration,
    ) -> Result<bool, RedisLimitError> {
        let script = Script::new(ONCE_LUA);
        let mut inv = script.prepare_invoke();
        inv.key(format!("{}:used:{}", self.prefix, key_part(token_id)))
            .arg(ttl.as_secs().max(1));
        Ok(self.conn.invoke::<i64>(&inv).await? == 1)
    }

    /// Adds to a conversation's counters and returns them `(rounds, tokens)`.
    ///
    /// # Errors
    /// As [`RedisToolStore::park`].
    pub async fn add_round(
        &self,
        tenant: &str,
        conversation: &str,
        rounds: u32,
        tokens: u64,
        ttl: Duration,
    ) -> Result<(u64, u64), RedisLimitError> {
        let script = Script::new(ROUND_LUA);
        let mut inv = script.prepare_invoke();
        inv.key(self.conversation_key(tenant, conversation))
            .arg(rounds)
            .arg(tokens)
            .arg(ttl.as_secs().max(1));
        let (r, t): (i64, i64) = self.conn.invoke(&inv).await?;
        Ok((r.max(0) as u64, t.max(0) as u64))
    }

    /// A conversation's counters `(rounds, tokens)`; zeros when unknown.
    ///
    /// # Errors
    /// As [`RedisToolStore::park`].
    pub async fn conversation(
        &self,
        tenant: &str,
        conversation: &str,
    ) -> Result<(u64, u64), RedisLimitError> {
        let script = Script::new(CONV_LUA);
        let mut inv = script.prepare_invoke();
        inv.key(self.conversation_key(tenant, conversation));
        let (r, t): (i64, i64) = self.conn.invoke(&inv).await?;
        Ok((r.max(0) as u64, t.max(0) as u64))
    }

    fn conversation_key(&self, tenant: &str, conversation: &str) -> String {
        format!(
            "{}:conv:{}:{}",
            self.prefix,
            key_part(tenant),
            key_part(conversation)
        )
    }
}
