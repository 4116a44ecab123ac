//! Where limit state lives: this process, or Redis shared by every replica.
//!
//! [`SharedBackend`] is the one Redis connection of a replica (`limits.backend
//! = "redis"`): the request-rate GCRA and every token budget run their Lua
//! scripts on it, and its health is what `/readyz` and the fallback decide on.
//! [`BudgetStore`] is one token budget (per-minute, monthly tokens, monthly
//! cost): in Redis when configured and reachable, else in this process. A
//! reservation is settled in the store that granted it ([`Held`]), so a Redis
//! blip between reserve and settle cannot leak or double-charge tokens.
//!
//! When Redis cannot answer, `on_backend_error` decides: `local` falls back to
//! this replica's in-memory budget (limits stay enforced, per replica), `deny`
//! refuses (503 `limits_unavailable`).
//!
//! The budget arithmetic is `palisade-limits`'; this module must not decide
//! anything itself. It owns the locks, the Redis round trips and the choice
//! of store, and reads time only through its [`GatewayClock`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use palisade_config::OnBackendError;
use palisade_limits::{
    BudgetConfig, BudgetUsage, Clock, LimitError, Nanos, Reservation, TokenBudget,
};
use palisade_openai::{ApiError, ErrorCode};
use palisade_redis::{RedisConnection, RedisLimitError, RedisTokenBudget};

use crate::clock::GatewayClock;

/// A replica's connection to the shared limits backend.
#[derive(Debug)]
pub(crate) struct SharedBackend {
    pub(crate) url: String,
    pub(crate) timeout: Duration,
    pub(crate) on_error: OnBackendError,
    /// Whether the last call succeeded (mirrored into readiness).
    healthy: AtomicBool,
    conn: OnceLock<RedisConnection>,
}

impl SharedBackend {
    pub(crate) fn new(url: String, timeout: Duration, on_error: OnBackendError) -> Self {
        Self {
            url,
            timeout,
            on_error,
            healthy: AtomicBool::new(false),
            conn: OnceLock::new(),
        }
        .reported_down()
    }

    /// Starts the health gauge at 0: down until the first call answers.
    fn reported_down(self) -> Self {
        self.set_healthy(false);
        self
    }

    /// The connection, once established.
    pub(crate) fn conn(&self) -> Option<&RedisConnection> {
        self.conn.get()
    }

    pub(crate) fn connected(&self, conn: RedisConnection) {
        let _ = self.conn.set(conn);
        self.set_healthy(true);
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub(crate) fn set_healthy(&self, ok: bool) {
        self.healthy.store(ok, Ordering::Release);
        metrics::gauge!(crate::metrics::LIMITS_BACKEND_UP).set(if ok { 1.0 } else { 0.0 });
    }

    /// Records a failed call; the error for the client when the policy is to
    /// refuse, `None` to fall back to local limits.
    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) -> Option<ApiError> {
        self.set_healthy(false);
        metrics::counter!(crate::metrics::LIMITS_BACKEND_ERRORS).increment(1);
        tracing::warn!(error = %error, "limits backend failed; using the fallback");
        (self.on_error == OnBackendError::Deny).then(|| {
            ApiError::new(
                ErrorCode::LimitsUnavailable,
                "limits cannot be checked right now",
            )
            .with_retry_after(Some(1))
        })
    }
}

/// Why a reservation could not be decided.
#[derive(Debug)]
pub(crate) enum ReserveError {
    /// The budget's own refusal of the request (e.g. larger than the limit).
    Limit(LimitError),
    /// The shared backend is down and the policy is to refuse.
    Unavailable(ApiError),
}

/// One token budget, local or shared.
#[derive(Debug, Clone)]
pub(crate) struct BudgetStore {
    local: Arc<Mutex<TokenBudget>>,
    shared: Option<(Arc<SharedBackend>, &'static str)>,
    clock: GatewayClock,
}

/// Where a reservation was granted, to settle it there.
#[derive(Debug)]
pub(crate) struct Held {
    store: BudgetStore,
    shared: Option<RedisTokenBudget>,
    id: String,
    key: String,
}

impl BudgetStore {
    /// A budget with `config`; shared under `prefix` when `shared` is set.
    pub(crate) fn new(
        config: BudgetConfig,
        shared: Option<(Arc<SharedBackend>, &'static str)>,
        clock: GatewayClock,
    ) -> Result<Self, LimitError> {
        Ok(Self {
            local: Arc::new(Mutex::new(TokenBudget::new(config)?)),
            shared,
            clock,
        })
    }

    fn now(&self) -> Nanos {
        self.clock.now()
    }

    fn config(&self) -> BudgetConfig {
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .config()
    }

    /// The Redis budget to use now, if shared and connected.
    fn redis(&self) -> Option<(RedisTokenBudget, &SharedBackend)> {
        let (backend, prefix) = self.shared.as_ref()?;
        let conn = backend.conn()?;
        Some((RedisTokenBudget::new(conn.clone(), prefix), backend))
    }

    fn reserve_local(
        &self,
        key: &str,
        id: &str,
        amount: u64,
        limit: Option<u64>,
    ) -> Result<(Reservation, Held), ReserveError> {
        let now = self.now();
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = limit.unwrap_or(local.config().limit);
        let reservation = local
            .reserve_with_limit(key, id, amount, limit, now)
            .map_err(ReserveError::Limit)?;
        drop(local);
        Ok((reservation, self.held(None, id, key)))
    }

    fn held(&self, shared: Option<RedisTokenBudget>, id: &str, key: &str) -> Held {
        Held {
            store: self.clone(),
            shared,
            id: id.to_owned(),
            key: key.to_owned(),
        }
    }

    /// Reserves `amount` on `key` for request `id`: in Redis when shared and
    /// reachable, else locally (or refused, per `on_backend_error`).
    pub(crate) async fn reserve(
        &self,
        key: &str,
        id: &str,
        amount: u64,
    ) -> Result<(Reservation, Held), ReserveError> {
        self.reserve_with_limit(key, id, amount, None).await
    }

    /// [`reserve`](Self::reserve) against `limit` (a per-key budget's size,
    /// read per request so an update applies to the next one) instead of
    /// the store's configured limit, which is then a ceiling.
    pub(crate) async fn reserve_with_limit(
        &self,
        key: &str,
        id: &str,
        amount: u64,
        limit: Option<u64>,
    ) -> Result<(Reservation, Held), ReserveError> {
        if let Some((backend, _)) = &self.shared {
            let config = self.config_limited(limit);
            let outcome = match self.redis() {
                Some((redis, _)) => redis
                    .reserve(&config, key, id, amount)
                    .await
                    .map(|r| (r, redis)),
                None => Err(RedisLimitError::Timeout(0)),
            };
            match outcome {
                Ok((reservation, redis)) => {
                    backend.set_healthy(true);
                    return Ok((reservation, self.held(Some(redis), id, key)));
                }
                Err(RedisLimitError::Limit(e)) => return Err(ReserveError::Limit(e)),
                Err(e) => {
                    if let Some(refusal) = backend.failed(&e) {
                        return Err(ReserveError::Unavailable(refusal));
                    }
                }
            }
        }
        self.reserve_local(key, id, amount, limit)
    }

    fn config_limited(&self, limit: Option<u64>) -> BudgetConfig {
        let config = self.config();
        BudgetConfig {
            limit: limit.map_or(config.limit, |l| l.min(config.limit)),
            ..config
        }
    }

    /// Raises `key`'s spend in this replica's budget to at least `spent`
    /// (a refresh from the ledger when budgets are per replica).
    pub(crate) fn raise_local(&self, key: &str, spent: u64) {
        let now = self.now();
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .raise_spent(key, spent, now);
    }

    /// Forgets `key` in this replica's budget (a finished period), unless a
    /// reservation on it is still open. Redis keeps its own state.
    pub(crate) fn forget_local(&self, key: &str) {
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(key);
    }

    /// `key`'s usage measured against `limit`, from Redis when shared.
    pub(crate) async fn usage_with_limit(&self, key: &str, limit: u64) -> BudgetUsage {
        if let Some((redis, backend)) = self.redis() {
            match redis.usage(&self.config_limited(Some(limit)), key).await {
                Ok(u) => return u,
                Err(e) => {
                    let _ = backend.failed(&e);
                }
            }
        }
        let now = self.now();
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .usage_with_limit(key, limit, now)
    }

    /// Sets `key`'s spend from history (the ledger). Shared: only if no
    /// replica has seeded or counted it yet.
    pub(crate) async fn seed(&self, key: &str, spent: u64) {
        if let Some((redis, backend)) = self.redis() {
            match redis.seed_spent_if_absent(&self.config(), key, spent).await {
                Ok(_) => return,
                Err(e) => {
                    let _ = backend.failed(&e);
                }
            }
        }
        let now = self.now();
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seed_spent(key, spent, now);
    }

    /// `key`'s usage now, from Redis when shared and reachable.
    pub(crate) async fn usage(&self, key: &str) -> BudgetUsage {
        if let Some((redis, backend)) = self.redis() {
            match redis.usage(&self.config(), key).await {
                Ok(u) => return u,
                Err(e) => {
                    let _ = backend.failed(&e);
                }
            }
        }
        self.usage_local(key)
    }

    fn usage_local(&self, key: &str) -> BudgetUsage {
        let now = self.now();
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .usage(key, now)
    }
}

impl Held {
    /// Reconciles (`Some(actual)`) or cancels (`None`) the reservation where
    /// it was granted, then calls `then` with the key's spend afterwards (for
    /// alerts). Local: now. Shared: on a task, since the caller may be a
    /// `Drop`; a replica that dies first leaves the reservation to expire
    /// (charged in full, the strict direction).
    pub(crate) fn settle(
        self,
        actual: Option<u64>,
        then: Option<Box<dyn FnOnce(u64) + Send + 'static>>,
    ) {
        let Some(redis) = self.shared.clone() else {
            let now = self.store.now();
            let spent = {
                let mut budget = self
                    .store
                    .local
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                log_settlement(match actual {
                    Some(a) => budget.reconcile(&self.id, a, now),
                    None => budget.cancel(&self.id, now),
                });
                budget.usage(&self.key, now).spent
            };
            if let Some(then) = then {
                then(spent);
            }
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(id = %self.id, "no runtime to settle a shared reservation; it will expire");
            return;
        };
        runtime.spawn(async move {
            let config = self.store.config();
            let outcome = match actual {
                Some(a) => redis.reconcile(&config, &self.id, a).await,
                None => redis.cancel(&config, &self.id).await,
            };
            match outcome {
                Ok(s) => log_settlement(Ok(s)),
                Err(RedisLimitError::Limit(e)) => log_settlement(Err(e)),
                Err(e) => {
                    if let Some((backend, _)) = &self.store.shared {
                        let _ = backend.failed(&e);
                    }
                    return;
                }
            }
            if let Some(then) = then {
                then(self.store.usage(&self.key).await.spent);
            }
        });
    }
}

fn log_settlement(outcome: Result<palisade_limits::Settlement, LimitError>) {
    match outcome {
        Ok(s) if s.overshoot > 0 => tracing::info!(
            reserved = s.reserved,
            charged = s.charged,
            "token usage exceeded the reservation"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "token settlement failed"),
    }
}
