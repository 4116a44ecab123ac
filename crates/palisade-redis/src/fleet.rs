//! The fleet registry in Redis: each replica's record under its own key with a
//! time-to-live (a replica that dies stops refreshing it, and Redis forgets it), a sorted
//! set of member ids to list them, and a short-lived mark for replicas that withdrew
//! cleanly (so a departure says whether it was a shutdown or a crash).
//!
//! Records are data from other processes: a record that does not parse is skipped (and
//! counted), never trusted and never a reason to fail the listing. Listings are bounded.
//! This module stores and lists; what the records mean is `palisade_fleet`'s.

use std::time::Duration;

use palisade_fleet::Replica;

use crate::{key_part, RedisConnection, RedisLimitError};

/// At most this many members are read per listing (a fleet is far smaller; a flood of
/// bogus ids cannot make a listing unbounded).
pub const MAX_MEMBERS: isize = 1024;

/// How long a clean withdrawal is remembered (long enough for every replica's next view).
const WITHDRAWN_TTL_MS: u64 = 60_000;

/// What one listing found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Records that parsed.
    pub replicas: Vec<Replica>,
    /// Ids that withdrew cleanly in the last minute.
    pub withdrawn: Vec<String>,
    /// Records that did not parse (skipped).
    pub malformed: usize,
}

/// The registry of one fleet (one key prefix).
#[derive(Clone, Debug)]
pub struct RedisFleet {
    conn: RedisConnection,
    prefix: String,
}

impl RedisFleet {
    /// A registry under `prefix` (e.g. `palisade:fleet`).
    pub fn new(conn: RedisConnection, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
        }
    }

    fn record_key(&self, id: &str) -> String {
        format!("{}:replica:{}", self.prefix, key_part(id))
    }

    fn members_key(&self) -> String {
        format!("{}:members", self.prefix)
    }

    fn withdrawn_key(&self) -> String {
        format!("{}:withdrawn", self.prefix)
    }

    /// Writes `replica`'s record, alive for `ttl`, and lists it as a member.
    ///
    /// # Errors
    /// Redis unreachable or too slow.
    pub async fn announce(&self, replica: &Replica, ttl: Duration) -> Result<(), RedisLimitError> {
        let json = serde_json::to_string(replica).map_err(|_| RedisLimitError::BadReply)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.record_key(&replica.id))
            .arg(json)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("ZADD")
            .arg(self.members_key())
            .arg(replica.heartbeat_unix_ms)
            .arg(&replica.id)
            .ignore()
            .cmd("ZREM")
            .arg(self.withdrawn_key())
            .arg(&replica.id)
            .ignore();
        self.conn.pipeline::<()>(&pipe).await
    }

    /// Removes `id`'s record and marks it as withdrawn (a clean shutdown).
    ///
    /// # Errors
    /// Redis unreachable or too slow.
    pub async fn withdraw(&self, id: &str, now_unix_ms: u64) -> Result<(), RedisLimitError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(self.record_key(id))
            .ignore()
            .cmd("ZREM")
            .arg(self.members_key())
            .arg(id)
            .ignore()
            .cmd("ZADD")
            .arg(self.withdrawn_key())
            .arg(now_unix_ms)
            .arg(id)
            .ignore();
        self.conn.pipeline::<()>(&pipe).await
    }

    /// Every member's record. Members whose record expired are dropped from the set
    /// (their replica stopped heartbeating); withdrawal marks older than a minute too.
    ///
    /// # Errors
    /// Redis unreachable or too slow.
    pub async fn list(&self, now_unix_ms: u64) -> Result<Listing, RedisLimitError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE")
            .arg(self.members_key())
            .arg(0)
            .arg(MAX_MEMBERS - 1)
            .cmd("ZRANGEBYSCORE")
            .arg(self.withdrawn_key())
            .arg(now_unix_ms.saturating_sub(WITHDRAWN_TTL_MS))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(MAX_MEMBERS);
        let (ids, withdrawn): (Vec<String>, Vec<String>) = self.conn.pipeline(&pipe).await?;
        let mut listing = Listing {
            withdrawn,
            ..Listing::default()
        };
        if ids.is_empty() {
            return Ok(listing);
        }
        let keys: Vec<String> = ids.iter().map(|id| self.record_key(id)).collect();
        let mut get = redis::pipe();
        get.cmd("MGET").arg(&keys);
        let (records,): (Vec<Option<String>>,) = self.conn.pipeline(&get).await?;
        let mut gone = Vec::new();
        for (id, record) in ids.iter().zip(records) {
            match record.map(|r| serde_json::from_str::<Replica>(&r)) {
                // A record is only believed for the id it is stored under.
                Some(Ok(r)) if &r.id == id => listing.replicas.push(r),
                Some(_) => listing.malformed += 1,
                None => gone.push(id.clone()),
            }
        }
        let mut tidy = redis::pipe();
        if !gone.is_empty() {
            tidy.cmd("ZREM").arg(self.members_key()).arg(&gone).ignore();
        }
        tidy.cmd("ZREMRANGEBYSCORE")
            .arg(self.withdrawn_key())
            .arg("-inf")
            .arg(format!("({}", now_unix_ms.saturating_sub(WITHDRAWN_TTL_MS)))
            .ignore();
        self.conn.pipeline::<()>(&tidy).await?;
        Ok(listing)
    }

    /// Claims `name` for `owner` for `ttl`, fleet-wide: true while `owner`
    /// holds it (first claimant), false while another does. This is how one
    /// event seen by several replicas (an alert each raises on its own
    /// evidence) is delivered once: each replica claims it, only the winner
    /// delivers.
    ///
    /// Idempotent per owner: the claim is read back in the same round trip,
    /// so an owner that retries after a timed-out attempt (whose `SET` may
    /// have landed) learns it already holds the claim, instead of seeing
    /// "taken" and leaving the event undelivered by everyone.
    ///
    /// # Errors
    /// Redis unreachable or too slow.
    pub async fn claim(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, RedisLimitError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let key = format!("{}:claim:{}", self.prefix, key_part(name));
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .ignore();
        pipe.cmd("GET").arg(&key);
        let (holder,): (Option<String>,) = self.conn.pipeline(&pipe).await?;
        Ok(holder.as_deref() == Some(owner))
    }

    /// Publishes a fleet event (JSON) on `<prefix>:events`, for anyone subscribed.
    ///
    /// # Errors
    /// Redis unreachable or too slow.
    pub async fn publish(&self, json: &str) -> Result<(), RedisLimitError> {
        let mut pipe = redis::pipe();
        pipe.cmd("PUBLISH")
            .arg(format!("{}:events", self.prefix))
            .arg(json)
            .ignore();
        self.conn.pipeline::<()>(&pipe).await
    }
}
