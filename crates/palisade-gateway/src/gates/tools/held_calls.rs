//! [`HeldCalls`]: where calls pending confirmation wait, behind one trait, so the judge and
//! the `/v1/tools/*` handlers park, take and list them without asking which store the
//! replica has.
//!
//! Two stores: [`MemoryHeldCalls`] (this process, bounded per tenant and in total by
//! [`PendingStore`]) and [`RedisHeldCalls`] (every replica's, through
//! [`RedisToolStore`], with this process's memory as its fallback when Redis fails or is
//! full). A call lives in exactly one of the two, so it is released at most once whichever
//! replica is asked. [`ToolService::held_calls`] picks the store per request, because the
//! shared backend may connect after the gateway starts.
//!
//! The trait is object safe; its reads return boxed `Send` futures (as
//! `palisade_ledger::LedgerStore` does) because the handlers await them on worker threads.
//! It must not read the clock (callers pass `now`), speak HTTP, or judge calls.

use std::future::Future;
use std::pin::Pin;

use palisade_redis::RedisLimitError;

use super::*;

/// A boxed, `Send` future: what [`HeldCalls`]' reads return.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whose held calls a caller may see and decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope<'a> {
    /// One tenant's (an approver key's own tenant).
    Tenant(&'a str),
    /// Every tenant's (an admin key).
    Every,
}

impl<'a> Scope<'a> {
    /// The scope of `principal`: every tenant's for admin keys.
    pub(crate) fn of(principal: &'a crate::http::auth::Principal) -> Self {
        if principal.admin {
            Scope::Every
        } else {
            Scope::Tenant(&principal.tenant)
        }
    }

    /// Whether a call of `tenant` is in scope.
    pub(crate) fn admits(self, tenant: &str) -> bool {
        match self {
            Scope::Tenant(own) => own == tenant,
            Scope::Every => true,
        }
    }

    /// The one tenant in scope (`None`: every tenant).
    fn tenant(self) -> Option<&'a str> {
        match self {
            Scope::Tenant(own) => Some(own),
            Scope::Every => None,
        }
    }
}

/// Why held calls could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeldCallsError {
    /// The shared store did not answer (callers answer 503 `limits_unavailable`).
    #[error(transparent)]
    Unavailable(#[from] RedisLimitError),
}

/// Calls held until an approver confirms or denies them.
pub(crate) trait HeldCalls: Send + Sync {
    /// Holds `call` until its `expires_at`; returns at once (the judge is synchronous and
    /// must not wait on a network store). False when it cannot be held: the caller
    /// withholds the call.
    fn park(&self, call: PendingCall, now: u64) -> bool;

    /// Takes the call held under `id` if it is in `scope`; a call out of scope is left
    /// untouched (another tenant's approver must not even deny it). `None` when unknown,
    /// out of scope or lapsed (a lapsed call is dropped).
    fn take<'a>(
        &'a self,
        id: &'a str,
        scope: Scope<'a>,
        now: u64,
    ) -> BoxFuture<'a, Result<Option<PendingCall>, HeldCallsError>>;

    /// The calls in `scope` that have not lapsed, soonest to lapse first, at most `max`.
    fn list<'a>(
        &'a self,
        scope: Scope<'a>,
        now: u64,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<PendingCall>, HeldCallsError>>;
}

/// What this process's memory says of a call asked for by id.
enum LocalTake {
    /// Not held here: it may be in the shared store.
    NotHeld,
    /// Held here; this is the answer (`None`: out of scope, or lapsed).
    Answered(Option<PendingCall>),
}

/// Held calls in this process's memory, bounded per tenant and in total.
#[derive(Debug)]
pub(crate) struct MemoryHeldCalls {
    store: Mutex<PendingStore<PendingCall>>,
}

impl MemoryHeldCalls {
    pub(crate) fn new(per_tenant: usize, max_total: usize) -> Self {
        Self {
            store: Mutex::new(PendingStore::new(per_tenant, max_total)),
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, PendingStore<PendingCall>> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_local(&self, id: &str, scope: Scope<'_>, now: u64) -> LocalTake {
        let mut store = self.locked();
        let Some(held) = store.get(id) else {
            return LocalTake::NotHeld;
        };
        if !scope.admits(&held.tenant) {
            return LocalTake::Answered(None);
        }
        LocalTake::Answered(store.remove(id).filter(|p| p.expires_at > now))
    }

    fn list_local(&self, scope: Scope<'_>, now: u64, max: usize) -> Vec<PendingCall> {
        let mut calls: Vec<PendingCall> = self
            .locked()
            .values()
            .filter(|p| p.expires_at > now && scope.admits(&p.tenant))
            .cloned()
            .collect();
        soonest_first(&mut calls, max);
        calls
    }
}

/// Sorts by expiry (stable: ties keep their order) and keeps the first `max`.
fn soonest_first(calls: &mut Vec<PendingCall>, max: usize) {
    calls.sort_by_key(|p| p.expires_at);
    calls.truncate(max);
}

impl HeldCalls for MemoryHeldCalls {
    fn park(&self, call: PendingCall, now: u64) -> bool {
        let id = call.confirmation_id.clone();
        let tenant = call.tenant.clone();
        let hold = self.locked().park(&tenant, id, call, now);
        match hold {
            Hold::Held { evicted } => {
                for old in evicted {
                    tracing::warn!(confirmation_id = %old, %tenant,
                        "pending tool call evicted: the tenant has too many waiting");
                }
                true
            }
            Hold::Full => {
                tracing::warn!(%tenant, "tool call not held: tools.max_pending calls are waiting");
                false
            }
        }
    }

    fn take<'a>(
        &'a self,
        id: &'a str,
        scope: Scope<'a>,
        now: u64,
    ) -> BoxFuture<'a, Result<Option<PendingCall>, HeldCallsError>> {
        let taken = match self.take_local(id, scope, now) {
            LocalTake::NotHeld => None,
            LocalTake::Answered(call) => call,
        };
        Box::pin(std::future::ready(Ok(taken)))
    }

    fn list<'a>(
        &'a self,
        scope: Scope<'a>,
        now: u64,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<PendingCall>, HeldCallsError>> {
        Box::pin(std::future::ready(Ok(self.list_local(scope, now, max))))
    }
}

/// Held calls in Redis, where any replica can release them. Calls this replica parked
/// locally (Redis failed or was full, or was not yet connected) are still found here.
pub(crate) struct RedisHeldCalls {
    shared: RedisToolStore,
    local: Arc<MemoryHeldCalls>,
    limits: HoldLimits,
}

impl RedisHeldCalls {
    pub(crate) fn new(
        shared: RedisToolStore,
        local: Arc<MemoryHeldCalls>,
        limits: HoldLimits,
    ) -> Self {
        Self {
            shared,
            local,
            limits,
        }
    }
}

impl HeldCalls for RedisHeldCalls {
    /// Written in the background; this process keeps the call if Redis fails or is full,
    /// so it is always held somewhere.
    fn park(&self, call: PendingCall, now: u64) -> bool {
        let (shared, local, limits) = (self.shared.clone(), self.local.clone(), self.limits);
        tokio::spawn(async move {
            let stored = match serde_json::to_string(&call) {
                Ok(json) => shared
                    .park(
                        &call.tenant,
                        &call.confirmation_id,
                        &json,
                        call.expires_at,
                        now,
                        limits,
                    )
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match stored {
                Ok(Parked::Held { evicted }) => {
                    if evicted > 0 {
                        tracing::warn!(tenant = %call.tenant, evicted,
                            "pending tool calls evicted: the tenant has too many waiting");
                    }
                }
                Ok(Parked::Full) => {
                    tracing::warn!("the shared tool store is full; this replica keeps the call");
                    local.park(call, now);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot hold the tool call in Redis; this replica keeps it");
                    local.park(call, now);
                }
            }
        });
        true
    }

    fn take<'a>(
        &'a self,
        id: &'a str,
        scope: Scope<'a>,
        now: u64,
    ) -> BoxFuture<'a, Result<Option<PendingCall>, HeldCallsError>> {
        Box::pin(async move {
            if let LocalTake::Answered(call) = self.local.take_local(id, scope, now) {
                return Ok(call);
            }
            let Some(json) = self.shared.get(id).await? else {
                return Ok(None);
            };
            let Ok(peeked) = serde_json::from_str::<PendingCall>(&json) else {
                tracing::warn!(confirmation_id = id, "unreadable held tool call in Redis");
                return Ok(None);
            };
            if !scope.admits(&peeked.tenant) {
                return Ok(None);
            }
            let taken = self.shared.take(&peeked.tenant, id).await?;
            Ok(taken
                .and_then(|json| serde_json::from_str::<PendingCall>(&json).ok())
                .filter(|p| p.expires_at > now))
        })
    }

    fn list<'a>(
        &'a self,
        scope: Scope<'a>,
        now: u64,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<PendingCall>, HeldCallsError>> {
        Box::pin(async move {
            let mut calls = self.local.list_local(scope, now, max);
            let shared = self.shared.list(scope.tenant(), now, max).await?;
            calls.extend(
                shared
                    .iter()
                    .filter_map(|json| serde_json::from_str::<PendingCall>(json).ok())
                    .filter(|p| p.expires_at > now && scope.admits(&p.tenant)),
            );
            soonest_first(&mut calls, max);
            Ok(calls)
        })
    }
}

#[cfg(test)]
mod tests;
