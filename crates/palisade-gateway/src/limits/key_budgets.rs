//! Per-key budgets: each API key's own spend cap (micro-dollars and/or
//! tokens per UTC month or day) and its own request and token rates, on top
//! of its tenant's limits.
//!
//! The machinery is the tenant budgets': a request reserves its worst case
//! (prompt estimate + `max_tokens`, priced with `[ledger.prices]`) before it
//! is sent and reconciles with what it used when it ends, in Redis when
//! `limits.backend = "redis"` (every replica counts against one budget) or
//! in this process otherwise. The size of a key's budget is read per request
//! from its settings ([`KeyBudget`], on the principal), not baked into a
//! store, so an update reaches every replica with the next key refresh and
//! applies to the next request without resetting what was spent.
//!
//! **Identity.** A key's counters are named by tenant and key *name* and the
//! period (`tenant:name@2026-12`): a rotation keeps the name, so it keeps the
//! spend; a key created under the name of a revoked one inherits that
//! period's spend (recreating a key is not a way to a fresh budget). The
//! ledger records requests by key name too, which is what seeds a counter:
//! a replica that sees a key-period first loads its spend from the ledger
//! (`key_spent`), so a restart or a new replica does not hand the budget
//! out again. Shared (Redis): seeded once, only if no replica counted it
//! yet. Per replica: re-read every [`REFRESH_MS`] and raised to what the
//! ledger says (never lowered), so other replicas' spend is taken in.
//!
//! Must not decide anything itself (`palisade-limits` does: budgets with a
//! per-call limit, GCRA, calendar periods) nor read time except through its
//! [`GatewayClock`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use palisade_ledger::{Ledger, PriceTable};
use palisade_limits::{
    BudgetConfig, BudgetPeriod, Clock, GcraConfig, KeyBudget, LimitError, MemoryGcra, Nanos,
    PeriodSpan, RateLimitHeaders,
};
use palisade_openai::{ApiError, ErrorCode};
use tokio::sync::OnceCell;

use crate::clock::GatewayClock;
use crate::http::auth::Principal;
use crate::limits::budgets::{BudgetStore, Held, ReserveError, SharedBackend};
use crate::limits::usage::ActualUsage;

/// The ceiling of every per-key store: each request brings its key's own
/// limit. Below 2^53 so Redis' Lua arithmetic stays exact.
const CEILING: u64 = 1 << 52;

/// How often a per-replica (memory backend) key counter is re-read from the
/// ledger. 10 s: other replicas' spend shows up here within about this long
/// plus the ledger's write batching, at one indexed query per active key
/// per interval.
pub(crate) const REFRESH_MS: i64 = 10_000;

/// Most keys whose rate state or seeding marker is held; beyond it the
/// oldest markers are dropped (a flood of fresh key names must not grow
/// memory without bound; a dropped marker only means one more seed).
const MAX_TRACKED: usize = 100_000;

/// What a key's period counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Tokens,
    CostMicros,
}

/// A request's hold on one of its key's budgets, settled with it.
#[derive(Debug)]
pub(crate) struct KeyHold {
    held: Held,
    unit: Unit,
}

/// A key's standing in its current period (for `/admin/keys`).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct KeySpend {
    /// `monthly` or `daily`.
    pub(crate) period: &'static str,
    /// `YYYY-MM` or `YYYY-MM-DD`.
    pub(crate) period_label: String,
    /// When the period's counters stop counting, Unix ms.
    pub(crate) period_ends_at_ms: i64,
    /// Spent this period, micro-dollars (when a dollar cap is set).
    pub(crate) spent_micros: Option<u64>,
    /// Held by requests in flight, micro-dollars.
    pub(crate) reserved_micros: Option<u64>,
    /// Spent this period, tokens (when a token cap is set).
    pub(crate) spent_tokens: Option<u64>,
    /// Held by requests in flight, tokens.
    pub(crate) reserved_tokens: Option<u64>,
}

/// Every key's budgets and rates.
#[derive(Debug)]
pub(crate) struct KeyBudgets {
    clock: GatewayClock,
    prices: Arc<PriceTable>,
    shared: Option<Arc<SharedBackend>>,
    tokens: BudgetStore,
    cost: BudgetStore,
    per_minute: BudgetStore,
    /// Per-replica request-rate state per key, with the rate it was built for.
    rates: Mutex<HashMap<String, (u64, MemoryGcra)>>,
    /// The shared request-rate limiter, built once the backend connects
    /// (its script is hashed once, not per request).
    gcra: OnceLock<palisade_redis::RedisGcra>,
    /// Seeding from the ledger, once per key-period (and per refresh
    /// generation when per replica).
    seeded: Mutex<HashMap<String, Seeding>>,
    /// Each key identity's current period counter, so the previous period's
    /// in-memory counters are dropped when a new one starts (a quota's
    /// state is never evicted on its own).
    current: Mutex<HashMap<String, String>>,
}

/// One key-period's seeding: the refresh generation it belongs to and the
/// cell its first request loads the ledger through.
type Seeding = (i64, Arc<OnceCell<()>>);

/// The key's identity in counter names: tenant and name, each escaped so
/// neither holds a `:` (the separator) and the pair is injective.
fn identity(principal: &Principal) -> String {
    format!(
        "{}:{}",
        palisade_redis::key_part(&principal.tenant),
        palisade_redis::key_part(&principal.key_name)
    )
}

impl KeyBudgets {
    pub(crate) fn new(
        shared: Option<&Arc<SharedBackend>>,
        clock: &GatewayClock,
        prices: Arc<PriceTable>,
    ) -> Result<Self, LimitError> {
        let store = |config, prefix| {
            BudgetStore::new(config, shared.map(|b| (b.clone(), prefix)), clock.clone())
        };
        Ok(Self {
            clock: clock.clone(),
            prices,
            shared: shared.cloned(),
            tokens: store(BudgetConfig::quota(CEILING), "palisade:key-tokens")?,
            cost: store(BudgetConfig::quota(CEILING), "palisade:key-cost")?,
            per_minute: store(
                BudgetConfig::windowed(CEILING, Nanos::from_secs(60)),
                "palisade:key-tpm",
            )?,
            rates: Mutex::new(HashMap::new()),
            gcra: OnceLock::new(),
            current: Mutex::new(HashMap::new()),
            seeded: Mutex::new(HashMap::new()),
        })
    }

    fn span(&self, period: BudgetPeriod) -> PeriodSpan {
        period.span(self.clock.unix_ms())
    }

    /// Loads the key's spend this period from the ledger, once per
    /// key-period (shared) or once per [`REFRESH_MS`] (per replica).
    /// Concurrent first requests wait for the one load.
    pub(crate) async fn prepare(
        &self,
        principal: &Principal,
        budget: &KeyBudget,
        ledger: Option<&Arc<Ledger>>,
    ) {
        let (Some(ledger), true) = (ledger, budget.has_cap()) else {
            return;
        };
        let span = self.span(budget.period);
        let ident = identity(principal);
        let key = span.key(&ident);
        self.roll_period(ident, &key);
        let generation = if self.shared.is_some() {
            0
        } else {
            self.clock.unix_ms().div_euclid(REFRESH_MS)
        };
        let cell = {
            let mut seeded = self.seeded.lock().unwrap_or_else(PoisonError::into_inner);
            if seeded.len() >= MAX_TRACKED && !seeded.contains_key(&key) {
                seeded.retain(|_, (g, _)| *g == generation);
                if seeded.len() >= MAX_TRACKED {
                    seeded.clear();
                }
            }
            let entry = seeded
                .entry(key.clone())
                .or_insert_with(|| (generation, Arc::new(OnceCell::new())));
            if entry.0 != generation {
                *entry = (generation, Arc::new(OnceCell::new()));
            }
            entry.1.clone()
        };
        cell.get_or_init(|| self.seed(principal, &span, &key, ledger))
            .await;
    }

    /// Records `key` as `ident`'s current period counter; a different one
    /// before it (last month's, yesterday's) is forgotten in memory.
    fn roll_period(&self, ident: String, key: &str) {
        let previous = {
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            if current.len() >= MAX_TRACKED && !current.contains_key(&ident) {
                current.clear();
            }
            match current.get(&ident) {
                Some(k) if k == key => return,
                _ => current.insert(ident, key.to_owned()),
            }
        };
        if let Some(old) = previous {
            self.tokens.forget_local(&old);
            self.cost.forget_local(&old);
            // Seeded again from the ledger if it is ever used again (a
            // period switched back): never counted from zero.
            self.seeded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&old);
        }
    }

    async fn seed(&self, principal: &Principal, span: &PeriodSpan, key: &str, ledger: &Ledger) {
        match ledger
            .key_spent(&principal.tenant, &principal.key_name, span.start_ms)
            .await
        {
            Ok(spent) => {
                let cost = u64::try_from(spent.cost_micros).unwrap_or(0);
                if self.shared.is_some() {
                    // Only if no replica has seeded or counted it yet.
                    self.tokens.seed(key, spent.tokens).await;
                    self.cost.seed(key, cost).await;
                } else {
                    // Never lowered: the ledger may lag this replica's count.
                    self.tokens.raise_local(key, spent.tokens);
                    self.cost.raise_local(key, cost);
                }
            }
            Err(e) => tracing::warn!(
                error = %e,
                tenant = %principal.tenant,
                key = %principal.key_name,
                "cannot seed a key's budget from the ledger"
            ),
        }
    }

    /// The key's own request rate: 429 `rate_limited` when spent. Shared
    /// through Redis when the limits are.
    pub(crate) async fn check_rate(
        &self,
        principal: &Principal,
        rpm: u64,
        headers: &mut RateLimitHeaders,
    ) -> Result<(), ApiError> {
        let config = GcraConfig::new(rpm, Nanos::from_secs(60))
            .with_burst(palisade_config::default_burst(rpm));
        let key = format!("keyrate:{}", identity(principal));
        let mut decision = None;
        if let Some(backend) = &self.shared {
            if let Some(conn) = backend.conn() {
                let gcra = self
                    .gcra
                    .get_or_init(|| palisade_redis::RedisGcra::new(conn.clone(), "palisade"));
                match gcra.check(&key, &config, 1).await {
                    Ok(d) => {
                        backend.set_healthy(true);
                        decision = Some(d);
                    }
                    Err(e) => {
                        if let Some(refusal) = backend.failed(&e) {
                            return Err(refusal);
                        }
                    }
                }
            } else if let Some(refusal) = backend.failed(&"not connected") {
                return Err(refusal);
            }
        }
        let decision = match decision {
            Some(d) => d,
            None => self.check_rate_local(&key, rpm, config)?,
        };
        let info = decision.info();
        if headers
            .requests
            .is_none_or(|h| info.remaining < h.remaining)
        {
            headers.requests = Some(info);
        }
        if decision.allowed {
            return Ok(());
        }
        headers.retry_after = Some(decision.retry_after);
        let secs = decision.retry_after.as_secs_ceil().max(1);
        Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "rate limit of {rpm} requests per minute reached for this API key; retry in {secs} s"
            ),
        )
        .with_retry_after(Some(secs)))
    }

    fn check_rate_local(
        &self,
        key: &str,
        rpm: u64,
        config: GcraConfig,
    ) -> Result<palisade_limits::GcraDecision, ApiError> {
        let now = self.clock.now();
        let internal = |e: LimitError| ApiError::new(ErrorCode::InternalError, e.to_string());
        let mut rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        if rates.len() >= MAX_TRACKED && !rates.contains_key(key) {
            rates.retain(|_, (_, g)| {
                g.sweep_all(now);
                !g.is_empty()
            });
        }
        let fresh = MemoryGcra::new(config).map_err(internal)?;
        let entry = rates.entry(key.to_owned()).or_insert((rpm, fresh));
        if entry.0 != rpm {
            // A changed rate carries the key's used share of its burst (as a
            // config reload does): an update is no way to a fresh burst.
            let next = *MemoryGcra::new(config).map_err(internal)?.gcra();
            entry.1 = entry.1.reconfigured(next, now);
            entry.0 = rpm;
        }
        Ok(entry.1.check(key, now))
    }

    fn cost(&self, model: &str, prompt: u64, completion: u64, cached: Option<u64>) -> u64 {
        u64::try_from(self.prices.cost_micros(model, prompt, completion, cached)).unwrap_or(0)
    }

    /// Reserves the request's worst case on each of the key's budgets (its
    /// period's dollars and tokens, its tokens per minute): all or nothing.
    /// Refusals are 429 `key_budget_exceeded` with `Retry-After` to the
    /// period's end, or `tokens_exhausted` for the per-minute budget.
    pub(crate) async fn reserve(
        &self,
        principal: &Principal,
        budget: &KeyBudget,
        id: &str,
        model: &str,
        prompt_estimate: u64,
        max_completion: u64,
    ) -> Result<Vec<KeyHold>, ApiError> {
        let span = self.span(budget.period);
        let ident = identity(principal);
        let period_key = span.key(&ident);
        let tokens = prompt_estimate.saturating_add(max_completion);
        let mut wanted: Vec<(&BudgetStore, Unit, u64, u64, String)> = Vec::with_capacity(3);
        if let Some(limit) = budget.max_cost_micros {
            let amount = self.cost(model, prompt_estimate, max_completion, None);
            wanted.push((
                &self.cost,
                Unit::CostMicros,
                amount,
                limit,
                period_key.clone(),
            ));
        }
        if let Some(limit) = budget.max_tokens {
            wanted.push((
                &self.tokens,
                Unit::Tokens,
                tokens,
                limit,
                period_key.clone(),
            ));
        }
        if let Some(limit) = budget.tokens_per_minute {
            wanted.push((&self.per_minute, Unit::Tokens, tokens, limit, ident.clone()));
        }
        let mut holds = Vec::with_capacity(wanted.len());
        for (store, unit, amount, limit, key) in wanted {
            let per_minute = std::ptr::eq(store, &self.per_minute);
            let refusal = match store
                .reserve_with_limit(&key, id, amount, Some(limit))
                .await
            {
                Ok((r, held)) if r.granted => {
                    holds.push(KeyHold { held, unit });
                    None
                }
                Ok((r, held)) => {
                    held.settle(None, None);
                    let used = r.usage.spent.saturating_add(r.usage.reserved);
                    Some(if per_minute {
                        tpm_refusal(r.usage.limit, used, amount, r.usage.reset_after)
                    } else {
                        period_refusal(unit, used, limit, &span, self.clock.unix_ms())
                    })
                }
                Err(ReserveError::Limit(LimitError::CostExceedsCapacity { capacity, .. })) => {
                    Some(if per_minute {
                        ApiError::new(
                            ErrorCode::TokensExhausted,
                            format!(
                                "this request needs up to {amount} tokens but this API key's budget is {capacity} per minute; lower max_tokens"
                            ),
                        )
                        .with_param("max_tokens")
                    } else {
                        period_refusal(unit, amount, capacity, &span, self.clock.unix_ms())
                    })
                }
                Err(ReserveError::Limit(e)) => {
                    Some(ApiError::new(ErrorCode::InternalError, e.to_string()))
                }
                Err(ReserveError::Unavailable(refusal)) => Some(refusal),
            };
            if let Some(err) = refusal {
                for hold in holds {
                    hold.held.settle(None, None);
                }
                return Err(err);
            }
        }
        Ok(holds)
    }

    /// Settles a request's key holds with what it used (`None`: nothing).
    pub(crate) fn settle(&self, model: &str, holds: Vec<KeyHold>, actual: Option<ActualUsage>) {
        for hold in holds {
            let amount = actual.map(|a| match hold.unit {
                Unit::Tokens => a.total(),
                Unit::CostMicros => self.cost(model, a.prompt, a.completion, a.cached),
            });
            hold.held.settle(amount, None);
        }
    }

    /// The key's standing in its current period, for `/admin/keys`.
    pub(crate) async fn report(&self, principal: &Principal, budget: &KeyBudget) -> KeySpend {
        let span = self.span(budget.period);
        let key = span.key(&identity(principal));
        let mut out = KeySpend {
            period: budget.period.as_str(),
            period_label: span.label.clone(),
            period_ends_at_ms: span.end_ms,
            spent_micros: None,
            reserved_micros: None,
            spent_tokens: None,
            reserved_tokens: None,
        };
        if let Some(limit) = budget.max_cost_micros {
            let u = self.cost.usage_with_limit(&key, limit).await;
            out.spent_micros = Some(u.spent);
            out.reserved_micros = Some(u.reserved);
        }
        if let Some(limit) = budget.max_tokens {
            let u = self.tokens.usage_with_limit(&key, limit).await;
            out.spent_tokens = Some(u.spent);
            out.reserved_tokens = Some(u.reserved);
        }
        out
    }
}

fn period_refusal(unit: Unit, used: u64, limit: u64, span: &PeriodSpan, now_ms: i64) -> ApiError {
    let what = match unit {
        Unit::Tokens => format!("{used} of {limit} tokens"),
        Unit::CostMicros => format!(
            "${:.4} of ${:.4}",
            used as f64 / 1_000_000.0,
            limit as f64 / 1_000_000.0
        ),
    };
    ApiError::new(
        ErrorCode::KeyBudgetExceeded,
        format!(
            "this API key's budget for {} is spent: {what} used or held by requests in flight",
            span.label
        ),
    )
    .with_retry_after(Some(span.retry_after_secs(now_ms)))
}

fn tpm_refusal(limit: u64, used: u64, amount: u64, reset: Option<Nanos>) -> ApiError {
    ApiError::new(
        ErrorCode::TokensExhausted,
        format!(
            "this API key's token budget is spent: {used} of {limit} tokens per minute are spent or reserved; this request needs {amount}"
        ),
    )
    .with_retry_after(Some(reset.map_or(1, |r| r.as_secs_ceil().max(1))))
}
