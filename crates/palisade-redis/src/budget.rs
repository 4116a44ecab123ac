//! Token budgets with reservations, shared by every replica through Redis.
//!
//! The in-memory [`palisade_limits::TokenBudget`] is exact for one replica; with several,
//! each would admit up to the whole limit. [`RedisTokenBudget`] keeps the same state in
//! Redis and decides every operation (reserve, reconcile, cancel, usage, seed) in one Lua
//! script on Redis' clock, so N replicas share one exact tokens-per-minute budget or hard
//! quota. The semantics are those of `TokenBudget`, and so are the returned types
//! ([`Reservation`], [`Settlement`], [`BudgetUsage`], [`LimitError`] inside
//! [`RedisLimitError::Limit`]), so the gateway treats memory and Redis alike:
//!
//! - `reserve` grants iff `spent + reserved + amount <= limit`; a refusal says when the
//!   window turns (a hard quota: no retry). `amount > limit` is
//!   [`LimitError::CostExceedsCapacity`].
//! - `reconcile` releases the reservation and charges the actual usage (any excess is
//!   overshoot); `cancel` releases without charging. Both are idempotent per id.
//! - A reservation open past `reservation_ttl` is charged in full (a lost replica); a late
//!   reconcile corrects that once.
//! - Windows are aligned to the Unix epoch on Redis `TIME`, in microseconds (a window that
//!   is not a whole number of microseconds is rounded up). When a window turns, `spent` and
//!   `overshoot` restart at zero and open reservations carry over.
//!
//! ## Redis layout (`P` is the prefix)
//!
//! - `P:budget:KEY`, a hash: `window_start` (µs), `spent`, `reserved`, `overshoot`.
//! - `P:open:KEY`, a sorted set of the key's open reservations scored by expiry (µs); the
//!   member is `AMOUNT:ID`, so an expired reservation can be charged even after its own
//!   hash has expired. Every call on a key charges up to [`SWEEP_LIMIT`] expired ones.
//! - `P:res:ID`, a hash: `key`, `amount`, `phase` (`open` or `settled`), `expires_at`, and
//!   once settled `kind`, `charged`, `overshoot`, `window_start` (the window charged). It
//!   lives `reservation_ttl + settled_ttl` from the reservation, then `settled_ttl` from
//!   its settlement, which is how long a repeated settlement is recognised.
//!
//! ## Expiry
//!
//! A windowed key's hash and set expire at the end of the current window, or of the window
//! in which its last open reservation expires if that is later: past that point the state
//! is equivalent to absent (spent restarts, every reservation is due). A reservation whose
//! key state expired that way before anyone charged it counts as charged to a window that
//! has turned: a late reconcile charges only its excess over the reservation, as
//! `TokenBudget` does for an expiry charged to an earlier window.
//!
//! A hard quota's key state never expires: forgetting it would refill the quota. Put the
//! period in the key (`tenant:2025-06`) and delete old periods, or let them sit: one small
//! hash per tenant and period.
//!
//! ## Limitations
//!
//! Reconcile and cancel know only the reservation id, so the scripts derive the budget's
//! key names from the reservation hash: this needs a standalone Redis (or one shard), not
//! Redis Cluster. Use one prefix per budget (tokens per minute, monthly quota): ids are
//! unique per prefix, as they are per `TokenBudget`, and a request reserves the same id on
//! each of its budgets.

use std::sync::LazyLock;

use palisade_limits::{
    BudgetConfig, BudgetUsage, Denial, LimitError, LimitKind, Reservation, SettleKind, Settlement,
    TokenBudget,
};
use redis::Script;

use crate::{count, from_micros, RedisConnection, RedisLimitError};

/// Expired reservations charged per call on a key. Expiries are rare (lost replicas), so a
/// few per call catch up at once while keeping every call's cost bounded.
pub const SWEEP_LIMIT: usize = 8;

/// The largest token count the scripts handle exactly: Lua numbers are doubles.
const MAX_EXACT: u64 = (1 << 53) - 1;

/// The longest window or ttl, in microseconds (about 142 years), so that `now + duration`
/// stays below 2^53 until the year 2112.
const MAX_DURATION_US: u64 = 1 << 52;

/// Reply status codes, the first integer of every reply that can fail (the scripts write
/// them as the literals 0, 1 and 2).
const OK: i64 = 0;
const CONFLICT: i64 = 1;
const UNKNOWN: i64 = 2;

/// Shared by every script. ARGV[1..6]: prefix, limit, window (µs, 0 for a hard quota),
/// reservation ttl (µs), settled ttl (µs), sweep limit; each script's own arguments follow.
/// Key names are built here from the prefix, because reconcile learns the budget key from
/// the reservation hash.
macro_rules! prelude {
    () => {
        r"
local MAX = 9007199254740991
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local prefix = ARGV[1]
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local res_ttl = tonumber(ARGV[4])
local settled_ttl = tonumber(ARGV[5])
local SWEEP = tonumber(ARGV[6])
local KIND = {reconciled = 1, cancelled = 2, expired = 3}

-- Numbers must be written with %d: tostring and '..' use %.14g, which rounds above 10^14.
local function int(x) return string.format('%d', x) end
local function add(a, b) return math.min(a + b, MAX) end
local function sub(a, b) if b >= a then return 0 end return a - b end
local function ms(us) return int(math.max(1, math.ceil(us / 1000))) end
local function budget_key(key) return prefix .. ':budget:' .. key end
local function open_key(key) return prefix .. ':open:' .. key end
local function res_key(id) return prefix .. ':res:' .. id end
local function member(amount, id) return int(amount) .. ':' .. id end

local function current_ws()
  if window == 0 then return 0 end
  return now - math.fmod(now, window)
end

-- The key's state as of now: a newer window restarts spent and overshoot, open reservations
-- carry over; a window in the past (Redis' clock stepped back) keeps the state (strict).
local function load(key)
  local v = redis.call('HMGET', budget_key(key), 'window_start', 'spent', 'reserved', 'overshoot')
  local ws = current_ws()
  if not v[1] then
    return {ws = ws, spent = 0, reserved = 0, overshoot = 0}
  end
  local s = {ws = tonumber(v[1]), spent = tonumber(v[2]) or 0,
             reserved = tonumber(v[3]) or 0, overshoot = tonumber(v[4]) or 0}
  if ws > s.ws then
    return {ws = ws, spent = 0, reserved = s.reserved, overshoot = 0}
  end
  return s
end

-- Writes the state, and for a windowed budget lets it expire once it equals absent: the
-- window has turned and every open reservation is past its expiry's window.
local function save(key, s)
  local b = budget_key(key)
  redis.call('HSET', b, 'window_start', int(s.ws), 'spent', int(s.spent),
             'reserved', int(s.reserved), 'overshoot', int(s.overshoot))
  if window == 0 then return end
  local at = s.ws + window
  local last = redis.call('ZRANGE', open_key(key), -1, -1, 'WITHSCORES')
  if last[2] then
    local e = tonumber(last[2])
    at = math.max(at, e - math.fmod(e, window) + window)
  end
  redis.call('PEXPIRE', b, ms(at - now))
  redis.call('PEXPIRE', open_key(key), ms(at - now))
end

-- Charges up to SWEEP of the key's reservations that are past their ttl, in full.
-- Returns whether it changed the state.
local function sweep(key, s)
  local z = open_key(key)
  local due = redis.call('ZRANGEBYSCORE', z, '-inf', int(now), 'LIMIT', 0, SWEEP)
  for _, m in ipairs(due) do
    redis.call('ZREM', z, m)
    local sep = string.find(m, ':', 1, true)
    if sep then
      local amount = tonumber(string.sub(m, 1, sep - 1)) or 0
      s.reserved = sub(s.reserved, amount)
      s.spent = add(s.spent, amount)
      local r = res_key(string.sub(m, sep + 1))
      if redis.call('HGET', r, 'phase') == 'open' then
        redis.call('HSET', r, 'phase', 'settled', 'kind', 'expired', 'charged', int(amount),
                   'overshoot', 0, 'window_start', int(s.ws))
        redis.call('PEXPIRE', r, ms(settled_ttl))
      end
    end
  end
  return #due > 0
end

local function reset_after(s)
  if window == 0 then return -1 end
  return s.ws + window - now
end

local function usage(s)
  return {s.spent, s.reserved, s.overshoot, reset_after(s)}
end
"
    };
}

/// ARGV[7..9]: key, id, amount. Returns {OK, granted, duplicate, usage...} or {CONFLICT}.
const RESERVE_LUA: &str = concat!(
    prelude!(),
    r"
local key, id, amount = ARGV[7], ARGV[8], tonumber(ARGV[9])
local s = load(key)
local changed = sweep(key, s)
local function reply(status, granted, duplicate)
  if changed then save(key, s) end
  if status ~= 0 then return {status} end
  local u = usage(s)
  return {0, granted, duplicate, u[1], u[2], u[3], u[4]}
end
local r = redis.call('HMGET', res_key(id), 'phase', 'key', 'amount')
if r[1] then
  if r[1] == 'open' and r[2] == key and tonumber(r[3]) == amount then
    return reply(0, 1, 1)
  end
  return reply(1, 0, 0)
end
if s.spent + s.reserved + amount > limit then
  return reply(0, 0, 0)
end
local expires = now + res_ttl
-- NX: a member left by an id reused after its hash expired must not be merged into.
if redis.call('ZADD', open_key(key), 'NX', int(expires), member(amount, id)) == 0 then
  return reply(1, 0, 0)
end
s.reserved = s.reserved + amount
changed = true
redis.call('HSET', res_key(id), 'key', key, 'amount', int(amount), 'phase', 'open',
           'expires_at', int(expires))
redis.call('PEXPIRE', res_key(id), ms(res_ttl + settled_ttl))
return reply(0, 1, 0)
"
);

/// ARGV[7..9]: id, kind (`reconciled` or `cancelled`), actual. Returns {OK, kind, reserved,
/// charged, overshoot, duplicate}, {CONFLICT} or {UNKNOWN}.
const SETTLE_LUA: &str = concat!(
    prelude!(),
    r"
local id, kind, actual = ARGV[7], ARGV[8], tonumber(ARGV[9])
local r = res_key(id)
local key = redis.call('HGET', r, 'key')
if not key then return {2} end
local s = load(key)
local swept = sweep(key, s)
local h = redis.call('HMGET', r, 'amount', 'phase', 'kind', 'charged', 'overshoot', 'window_start')
local amount = tonumber(h[1]) or 0
if h[2] ~= 'open' then
  local charged = tonumber(h[4]) or 0
  if h[3] == kind and charged == actual then
    if swept then save(key, s) end
    return {0, KIND[kind], amount, charged, tonumber(h[5]) or 0, 1}
  end
  if h[3] ~= 'expired' then
    if swept then save(key, s) end
    return {1}
  end
end
local over = sub(actual, amount)
if h[2] == 'open' and redis.call('ZREM', open_key(key), member(amount, id)) == 1 then
  s.reserved = sub(s.reserved, amount)
  s.spent = add(s.spent, actual)
elseif h[2] ~= 'open' and tonumber(h[6]) == s.ws then
  -- Correct the full charge made on expiry in this same window.
  s.spent = sub(add(s.spent, actual), tonumber(h[4]) or 0)
else
  -- Charged on expiry to a window that has since turned (or its state expired with it):
  -- a refund would lower this window's spend for tokens it never saw; charge the excess.
  s.spent = add(s.spent, over)
end
s.overshoot = add(s.overshoot, over)
save(key, s)
redis.call('HSET', r, 'phase', 'settled', 'kind', kind, 'charged', int(actual),
           'overshoot', int(over), 'window_start', int(s.ws))
redis.call('PEXPIRE', r, ms(settled_ttl))
return {0, KIND[kind], amount, actual, over, 0}
"
);

/// ARGV[7]: key. Changes nothing. Returns usage.
const USAGE_LUA: &str = concat!(
    prelude!(),
    r"
return usage(load(ARGV[7]))
"
);

/// ARGV[7..8]: key, spent. Returns {1} when it seeded, {0} when the current window had state.
const SEED_LUA: &str = concat!(
    prelude!(),
    r"
local key, spent = ARGV[7], tonumber(ARGV[8])
local ws = redis.call('HGET', budget_key(key), 'window_start')
if ws and tonumber(ws) >= current_ws() then return {0} end
local s = load(key)
s.spent = spent
save(key, s)
return {1}
"
);

/// The scripts, hashed once per process.
struct Scripts {
    reserve: Script,
    settle: Script,
    usage: Script,
    seed: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    reserve: Script::new(RESERVE_LUA),
    settle: Script::new(SETTLE_LUA),
    usage: Script::new(USAGE_LUA),
    seed: Script::new(SEED_LUA),
});

/// A [`BudgetConfig`] as the scripts' arguments: checked, in whole microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Params {
    limit: u64,
    window_us: u64,
    reservation_ttl_us: u64,
    settled_ttl_us: u64,
}

impl Params {
    fn of(config: &BudgetConfig) -> Result<Self, RedisLimitError> {
        // The same validation as the in-memory budget, by construction; an empty
        // `TokenBudget` allocates nothing.
        TokenBudget::new(*config)?;
        let micros = |what, n: palisade_limits::Nanos| {
            let us = n.get().div_ceil(1_000);
            in_range(what, us, MAX_DURATION_US)
        };
        Ok(Self {
            limit: in_range("budget limit", config.limit, MAX_EXACT)?,
            window_us: config.window.map_or(Ok(0), |w| micros("window (µs)", w))?,
            reservation_ttl_us: micros("reservation ttl (µs)", config.reservation_ttl)?,
            settled_ttl_us: micros("settled ttl (µs)", config.settled_ttl)?,
        })
    }

    /// The usage the scripts report as `[spent, reserved, overshoot, reset_after_us]`.
    fn usage(&self, v: &[i64]) -> Result<BudgetUsage, RedisLimitError> {
        let [spent, reserved, overshoot, reset_us] = *v else {
            return Err(RedisLimitError::BadReply);
        };
        let (spent, reserved) = (count(spent), count(reserved));
        Ok(BudgetUsage {
            limit: self.limit,
            spent,
            reserved,
            overshoot: count(overshoot),
            remaining: self.limit.saturating_sub(spent.saturating_add(reserved)),
            // A hard quota answers -1: it has no reset.
            reset_after: (self.window_us > 0).then(|| from_micros(reset_us)),
        })
    }
}

/// `value`, or [`RedisLimitError::OutOfRange`] above `max`.
fn in_range(what: &'static str, value: u64, max: u64) -> Result<u64, RedisLimitError> {
    if value > max {
        Err(RedisLimitError::OutOfRange { what, value })
    } else {
        Ok(value)
    }
}

/// Token budgets whose state lives in Redis, shared by every replica using the same prefix.
///
/// Cheap to clone (the connection is shared). The configuration is passed to every call
/// rather than held, so one instance can serve budgets whose limits differ per tenant; a
/// key must keep one window length, since its state is interpreted with the window given.
#[derive(Clone)]
pub struct RedisTokenBudget {
    conn: RedisConnection,
    prefix: String,
}

impl std::fmt::Debug for RedisTokenBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTokenBudget")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisTokenBudget {
    /// Connects to `url` within `connect_timeout`; every later call is bounded by
    /// `call_timeout`. Keys are `PREFIX:budget:*`, `PREFIX:open:*` and `PREFIX:res:*`.
    ///
    /// # Errors
    /// As [`RedisConnection::connect`].
    pub async fn connect(
        url: &str,
        prefix: &str,
        connect_timeout: std::time::Duration,
        call_timeout: std::time::Duration,
    ) -> Result<Self, RedisLimitError> {
        let conn = RedisConnection::connect(url, connect_timeout, call_timeout).await?;
        Ok(Self::new(conn, prefix))
    }

    /// Budgets on an existing (shared) connection, one prefix per budget.
    pub fn new(conn: RedisConnection, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
        }
    }

    /// Runs `script` with the common arguments for `params`, then `args`.
    async fn run(
        &self,
        script: &Script,
        params: &Params,
        args: impl redis::ToRedisArgs,
    ) -> Result<Vec<i64>, RedisLimitError> {
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(&self.prefix)
            .arg(params.limit)
            .arg(params.window_us)
            .arg(params.reservation_ttl_us)
            .arg(params.settled_ttl_us)
            .arg(SWEEP_LIMIT)
            .arg(args);
        self.conn.invoke(&invocation).await
    }

    /// Reserves `amount` tokens for request `id` on `key`, as
    /// [`TokenBudget::reserve`]: granted iff `spent + reserved + amount <= limit`.
    ///
    /// # Errors
    /// [`RedisLimitError::Limit`] with [`LimitError::CostExceedsCapacity`] when `amount >
    /// limit`, [`LimitError::ReservationConflict`] when `id` is held with another key or
    /// amount or was already settled, [`LimitError::InvalidConfig`] for a config
    /// `TokenBudget::new` refuses; [`RedisLimitError::OutOfRange`] for values beyond the
    /// scripts' exact arithmetic; Redis and timeout errors.
    pub async fn reserve(
        &self,
        config: &BudgetConfig,
        key: &str,
        id: &str,
        amount: u64,
    ) -> Result<Reservation, RedisLimitError> {
        let params = Params::of(config)?;
        if amount > params.limit {
            return Err(LimitError::CostExceedsCapacity {
                cost: amount,
                capacity: params.limit,
            }
            .into());
        }
        let reply = self
            .run(&SCRIPTS.reserve, &params, (key, id, amount))
            .await?;
        match reply.as_slice() {
            [OK, granted, duplicate, usage @ ..] => {
                let usage = params.usage(usage)?;
                let granted = *granted == 1;
                let denial = (!granted).then_some(match usage.reset_after {
                    Some(reset) => Denial {
                        kind: LimitKind::TokensExhausted,
                        retry_after: Some(reset),
                    },
                    None => Denial {
                        kind: LimitKind::QuotaExceeded,
                        retry_after: None,
                    },
                });
                Ok(Reservation {
                    granted,
                    duplicate: *duplicate == 1,
                    usage,
                    denial,
                })
            }
            [CONFLICT] => Err(LimitError::ReservationConflict(id.to_owned()).into()),
            _ => Err(RedisLimitError::BadReply),
        }
    }

    /// Settles reservation `id` with the tokens actually used, as
    /// [`TokenBudget::reconcile`]: releases the rest, or charges the excess as overshoot. A
    /// reservation already charged in full on expiry is corrected once.
    ///
    /// # Errors
    /// [`LimitError::UnknownReservation`] for an id never reserved or long forgotten,
    /// [`LimitError::ReservationConflict`] when it was settled differently before (both in
    /// [`RedisLimitError::Limit`]); [`RedisLimitError::OutOfRange`] for `actual >= 2^53`;
    /// config, Redis and timeout errors as [`RedisTokenBudget::reserve`].
    pub async fn reconcile(
        &self,
        config: &BudgetConfig,
        id: &str,
        actual: u64,
    ) -> Result<Settlement, RedisLimitError> {
        let actual = in_range("actual usage", actual, MAX_EXACT)?;
        self.settle(config, id, "reconciled", actual).await
    }

    /// Settles reservation `id` without charging anything, as [`TokenBudget::cancel`].
    ///
    /// # Errors
    /// As [`RedisTokenBudget::reconcile`].
    pub async fn cancel(
        &self,
        config: &BudgetConfig,
        id: &str,
    ) -> Result<Settlement, RedisLimitError> {
        self.settle(config, id, "cancelled", 0).await
    }

    async fn settle(
        &self,
        config: &BudgetConfig,
        id: &str,
        kind: &'static str,
        actual: u64,
    ) -> Result<Settlement, RedisLimitError> {
        let params = Params::of(config)?;
        let reply = self
            .run(&SCRIPTS.settle, &params, (id, kind, actual))
            .await?;
        match *reply.as_slice() {
            [OK, kind, reserved, charged, overshoot, duplicate] => Ok(Settlement {
                kind: match kind {
                    1 => SettleKind::Reconciled,
                    2 => SettleKind::Cancelled,
                    3 => SettleKind::Expired,
                    _ => return Err(RedisLimitError::BadReply),
                },
                reserved: count(reserved),
                charged: count(charged),
                overshoot: count(overshoot),
                duplicate: duplicate == 1,
            }),
            [CONFLICT] => Err(LimitError::ReservationConflict(id.to_owned()).into()),
            [UNKNOWN] => Err(LimitError::UnknownReservation(id.to_owned()).into()),
            _ => Err(RedisLimitError::BadReply),
        }
    }

    /// The usage of `key` now, changing nothing (expired reservations are charged by the
    /// next reserve, reconcile or cancel on the key, as in memory).
    ///
    /// # Errors
    /// Config, Redis and timeout errors as [`RedisTokenBudget::reserve`].
    pub async fn usage(
        &self,
        config: &BudgetConfig,
        key: &str,
    ) -> Result<BudgetUsage, RedisLimitError> {
        let params = Params::of(config)?;
        let reply = self.run(&SCRIPTS.usage, &params, key).await?;
        params.usage(&reply)
    }

    /// Sets what `key` has spent in the current window (a monthly quota's spend read from
    /// the ledger at start), but only when Redis holds no state for the key's current
    /// window: the first replica to start seeds the quota, later ones must not overwrite
    /// the live count. Open reservations carried from an earlier window are kept. Returns
    /// whether it seeded.
    ///
    /// # Errors
    /// [`RedisLimitError::OutOfRange`] for `spent >= 2^53`; config, Redis and timeout
    /// errors as [`RedisTokenBudget::reserve`].
    pub async fn seed_spent_if_absent(
        &self,
        config: &BudgetConfig,
        key: &str,
        spent: u64,
    ) -> Result<bool, RedisLimitError> {
        let params = Params::of(config)?;
        let spent = in_range("seeded spend", spent, MAX_EXACT)?;
        let reply = self.run(&SCRIPTS.seed, &params, (key, spent)).await?;
        match *reply.as_slice() {
            [seeded] => Ok(seeded == 1),
            _ => Err(RedisLimitError::BadReply),
        }
    }
}

#[cfg(test)]
mod tests {
    use palisade_limits::Nanos;

    use super::*;

    #[test]
    fn durations_round_up_to_whole_microseconds() {
        let config = BudgetConfig {
            reservation_ttl: Nanos(1_001),
            settled_ttl: Nanos(999),
            ..BudgetConfig::windowed(1_000, Nanos::from_secs(60))
        };
        assert_eq!(
            Params::of(&config).unwrap(),
            Params {
                limit: 1_000,
                window_us: 60_000_000,
                reservation_ttl_us: 2,
                settled_ttl_us: 1,
            }
        );
        assert_eq!(
            Params::of(&BudgetConfig::quota(5)).unwrap().window_us,
            0,
            "a hard quota has no window"
        );
    }

    #[test]
    fn configs_are_checked_like_the_in_memory_budget_and_for_exactness() {
        assert!(matches!(
            Params::of(&BudgetConfig::quota(0)),
            Err(RedisLimitError::Limit(LimitError::InvalidConfig(_)))
        ));
        assert!(matches!(
            Params::of(&BudgetConfig::quota(1 << 53)),
            Err(RedisLimitError::OutOfRange { value, .. }) if value == 1 << 53
        ));
        assert!(Params::of(&BudgetConfig::quota(MAX_EXACT)).is_ok());
        let too_long = BudgetConfig::windowed(10, Nanos((MAX_DURATION_US + 1) * 1_000));
        assert!(matches!(
            Params::of(&too_long),
            Err(RedisLimitError::OutOfRange { .. })
        ));
    }

    #[test]
    fn usage_replies_map_to_the_shared_type() {
        let p = Params::of(&BudgetConfig::windowed(100, Nanos::from_secs(1))).unwrap();
        let u = p.usage(&[30, 50, 0, 250_000]).unwrap();
        assert_eq!(
            (u.remaining, u.reset_after),
            (20, Some(Nanos::from_millis(250)))
        );
        // Overshoot can push spent + reserved past the limit: remaining floors at zero.
        assert_eq!(p.usage(&[90, 50, 40, 1]).unwrap().remaining, 0);
        assert!(matches!(p.usage(&[1, 2]), Err(RedisLimitError::BadReply)));
        let q = Params::of(&BudgetConfig::quota(100)).unwrap();
        assert_eq!(q.usage(&[0, 0, 0, -1]).unwrap().reset_after, None);
    }
}
