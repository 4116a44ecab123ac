//! The rate gate, first of the gates: request-rate (GCRA) and in-flight
//! limits per tenant and key, in memory, from `palisade-limits`.
//!
//! Request rates live in this process (`backend = "memory"`) or in Redis
//! (`backend = "redis"`, exact across replicas, decided on Redis' clock by
//! `palisade-redis`). When Redis cannot answer in time, the replica falls back
//! to its in-memory limiter or refuses, per `on_backend_error`, and says so
//! in metrics (`palisade_limits_backend_errors_total`) and as an advisory in
//! `/readyz` (or a gating condition in `deny` mode). In-flight limits are per
//! replica by nature. The arithmetic is `palisade-limits`' (pure, clock
//! injected); this module owns the locks, the clock and the mapping to HTTP
//! (429, `Retry-After`, `x-ratelimit-*`). It must not decide limits itself,
//! nor read time except through its [`GatewayClock`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use palisade_config::{LimitsBackend, LimitsConfig, OnBackendError, TenantLimits};
use palisade_limits::{
    Acquire, BudgetConfig, Clock, ConcurrencyLimiter, EscalationLadder, GcraConfig, LadderConfig,
    MemoryGcra, Nanos, Permit, RateLimitHeaders, Rung,
};
use palisade_openai::{ApiError, ErrorCode};

use crate::clock::GatewayClock;
use crate::http::auth::Principal;
use crate::limits::budgets::{BudgetStore, SharedBackend};
use crate::limits::key_budgets::KeyBudgets;
use crate::limits::spend::SpendControls;

pub use crate::limits::reservation::TokenReservation;

// Streams, token accounting and per-key budgets: the second half of the
// gate's methods, in a child module so it reads the gate's private state.
#[path = "admission_tokens.rs"]
mod tokens;

/// One request-rate limit: its rate (for messages), its config (for Redis)
/// and the in-memory limiter (primary, or the fallback when Redis is out).
#[derive(Debug)]
struct RateGate {
    rpm: u64,
    config: GcraConfig,
    local: Mutex<MemoryGcra>,
}

impl RateGate {
    fn new(rpm: u64, burst: u64) -> Result<Self, AdmissionError> {
        let config = GcraConfig::new(rpm, Nanos::from_secs(60)).with_burst(burst);
        Ok(Self {
            rpm,
            config,
            local: Mutex::new(MemoryGcra::new(config)?),
        })
    }
}

/// A tenant's compiled limits. Shared (`Arc`) so a reload can keep the
/// gates whose settings did not change, counters and all.
#[derive(Debug)]
struct TenantGate {
    /// The tenant's effective limits these were compiled from.
    limits: TenantLimits,
    rate: Option<Arc<RateGate>>,
    max_in_flight_per_key: Option<u32>,
    max_streams_per_key: Option<u32>,
    /// Tokens-per-minute budget with reservations.
    tokens: Option<BudgetStore>,
}

/// The limits a config reload may change: rates, bursts, in-flight and
/// stream caps, tokens per minute. Swapped whole; each request reads one.
#[derive(Debug)]
struct Rates {
    default: Arc<TenantGate>,
    tenants: HashMap<String, Arc<TenantGate>>,
    /// Rates per API key name and per public model name.
    key_rates: HashMap<String, Arc<RateGate>>,
    model_rates: HashMap<String, Arc<RateGate>>,
    /// Config keys' budgets (`[limits.keys]`), by key name.
    key_budgets: HashMap<String, palisade_limits::KeyBudget>,
}

impl Rates {
    fn tenant(&self, tenant: &str) -> &Arc<TenantGate> {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }
}

/// The rate gate.
#[derive(Debug)]
pub struct Admission {
    /// Where every limit here reads its time.
    clock: GatewayClock,
    /// The hot-reloadable limits ([`Admission::reload`]).
    rates: arc_swap::ArcSwap<Rates>,
    in_flight: Arc<Mutex<ConcurrencyLimiter>>,
    /// The shared GCRA, once the backend is connected (`backend = "redis"`).
    gcra: Arc<OnceLock<palisade_redis::RedisGcra>>,
    /// Repeat-offender ladder per API key, when configured.
    ladder: Option<Mutex<EscalationLadder>>,
    /// The shared limits backend (`backend = "redis"` only).
    shared: Option<Arc<SharedBackend>>,
    /// Monthly quotas and budgets, and the spend-rate breaker.
    spend: Option<Arc<SpendControls>>,
    /// Per-key budgets and rates (runtime keys' own, config keys' from
    /// `[limits.keys]`).
    key_budgets: Arc<KeyBudgets>,
}

/// Errors compiling limits (the config validation makes these unreachable
/// in practice; they are kept typed rather than unwrapped).
#[derive(Debug, thiserror::Error)]
#[error("limits: {0}")]
pub struct AdmissionError(#[from] palisade_limits::LimitError);

/// A rate gate for `rpm`/`burst`: `previous` itself when its settings are
/// the same (its counters untouched), else a new gate that starts from
/// `previous`' counters rescaled ([`MemoryGcra::reconfigured`]), so a reload
/// never hands a client a fresh burst.
fn carry_rate(
    previous: Option<&Arc<RateGate>>,
    rpm: u64,
    burst: u64,
    now: Nanos,
) -> Result<Arc<RateGate>, AdmissionError> {
    if let Some(old) = previous {
        if old.rpm == rpm && old.config.burst == burst {
            return Ok(old.clone());
        }
    }
    let fresh = RateGate::new(rpm, burst)?;
    if let Some(old) = previous {
        let mut local = fresh.local.lock().unwrap_or_else(PoisonError::into_inner);
        let next = *local.gcra();
        *local = old
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reconfigured(next, now);
    }
    Ok(Arc::new(fresh))
}

/// Compiles a tenant's limits; with `previous` (the gate that served the
/// tenant before a reload), keeps what did not change: the same gate when
/// nothing did, else its rate counters (rescaled) and its token budget.
fn gate(
    limits: TenantLimits,
    previous: Option<&Arc<TenantGate>>,
    shared: Option<&Arc<SharedBackend>>,
    clock: &GatewayClock,
) -> Result<Arc<TenantGate>, AdmissionError> {
    if let Some(old) = previous {
        if old.limits == limits {
            return Ok(old.clone());
        }
    }
    let now = clock.now();
    let rate = match (limits.requests_per_minute, limits.effective_burst()) {
        (Some(rpm), Some(burst)) => Some(carry_rate(
            previous.and_then(|p| p.rate.as_ref()),
            rpm,
            burst,
            now,
        )?),
        _ => None,
    };
    // A per-minute token budget is kept while its size is unchanged; a new
    // size starts a new window (at most one minute's worth more).
    let kept_tokens = previous
        .filter(|p| p.limits.tokens_per_minute == limits.tokens_per_minute)
        .and_then(|p| p.tokens.clone());
    let tokens = match (kept_tokens, limits.tokens_per_minute) {
        (Some(kept), Some(_)) => Some(kept),
        (_, Some(tpm)) => Some(BudgetStore::new(
            BudgetConfig::windowed(tpm, Nanos::from_secs(60)),
            shared.map(|b| (b.clone(), "palisade:tpm")),
            clock.clone(),
        )?),
        (_, None) => None,
    };
    Ok(Arc::new(TenantGate {
        limits,
        rate,
        max_in_flight_per_key: limits.max_in_flight_per_key,
        max_streams_per_key: limits.max_streams_per_key,
        tokens,
    }))
}

/// Compiles the hot part of `config`, keeping from `previous` every gate
/// whose settings are unchanged (see [`gate`] and [`carry_rate`]).
fn compile_rates(
    config: &LimitsConfig,
    previous: Option<&Rates>,
    shared: Option<&Arc<SharedBackend>>,
    clock: &GatewayClock,
) -> Result<Rates, AdmissionError> {
    let now = clock.now();
    let tenants = config
        .tenants
        .iter()
        .map(|(name, l)| {
            let before = previous.map(|p| p.tenant(name));
            Ok((
                name.clone(),
                gate(l.or(config.default), before, shared, clock)?,
            ))
        })
        .collect::<Result<_, AdmissionError>>()?;
    let rates = |table: &std::collections::BTreeMap<String, palisade_config::RateConfig>,
                 before: Option<&HashMap<String, Arc<RateGate>>>| {
        table
            .iter()
            .map(|(k, r)| {
                let old = before.and_then(|b| b.get(k));
                Ok((
                    k.clone(),
                    carry_rate(old, r.requests_per_minute, r.effective_burst(), now)?,
                ))
            })
            .collect::<Result<HashMap<_, _>, AdmissionError>>()
    };
    let key_rates = config
        .keys
        .iter()
        .filter_map(|(k, l)| Some((k.clone(), l.rate()?)))
        .collect();
    Ok(Rates {
        default: gate(config.default, previous.map(|p| &p.default), shared, clock)?,
        tenants,
        key_rates: rates(&key_rates, previous.map(|p| &p.key_rates))?,
        model_rates: rates(&config.models, previous.map(|p| &p.model_rates))?,
        key_budgets: config
            .keys
            .iter()
            .filter_map(|(k, l)| Some((k.clone(), l.budget()?)))
            .collect(),
    })
}

/// A request that passed the gate: the headers to send and, when an
/// in-flight limit applies, the slot it holds until dropped.
#[derive(Debug, Default)]
pub struct Admitted {
    /// `x-ratelimit-*` values for the response.
    pub headers: RateLimitHeaders,
    /// The key is on the ladder's warning rung (or higher).
    pub warned: bool,
    /// Held for the life of the request (the stream, for streams).
    pub slot: Option<InFlightSlot>,
}

/// A request the gate refused.
#[derive(Debug)]
pub struct Refusal {
    /// The error for the client (429/503 with `Retry-After`).
    pub error: ApiError,
    /// `x-ratelimit-*` values as of the refusal.
    pub headers: RateLimitHeaders,
    /// The key was already on the ladder's warning rung.
    pub warned: bool,
}

/// An in-flight slot; released when dropped, however the request ends.
#[derive(Debug)]
pub struct InFlightSlot {
    limiter: Arc<Mutex<ConcurrencyLimiter>>,
    permit: Option<Permit>,
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            let mut limiter = self.limiter.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = limiter.release(permit);
        }
    }
}

impl Admission {
    /// Compiles the configured limits, on the system clock.
    pub fn from_config(
        config: &LimitsConfig,
        prices: Arc<palisade_ledger::PriceTable>,
    ) -> Result<Self, AdmissionError> {
        Self::from_config_with_clock(config, prices, GatewayClock::system())
    }

    /// Compiles the configured limits, reading time from `clock`.
    pub fn from_config_with_clock(
        config: &LimitsConfig,
        prices: Arc<palisade_ledger::PriceTable>,
        clock: GatewayClock,
    ) -> Result<Self, AdmissionError> {
        let shared = (config.backend == LimitsBackend::Redis).then(|| {
            Arc::new(SharedBackend::new(
                config.redis_url.clone().unwrap_or_default(),
                Duration::from_millis(config.redis_timeout_ms),
                config.on_backend_error,
            ))
        });
        let rates = compile_rates(config, None, shared.as_ref(), &clock)?;
        // The limiter's own cap is a ceiling; per-key maxima are passed on
        // each acquire.
        let ceiling = u32::MAX;
        Ok(Self {
            rates: arc_swap::ArcSwap::from_pointee(rates),
            in_flight: Arc::new(Mutex::new(ConcurrencyLimiter::new(ceiling)?)),
            gcra: Arc::new(OnceLock::new()),
            ladder: match config.escalation {
                Some(e) => Some(Mutex::new(EscalationLadder::new(LadderConfig {
                    warn_at: e.warn_at,
                    slow_at: e.slow_at,
                    block_at: e.block_at,
                    half_life: Nanos::from_secs(e.half_life_secs),
                    slow_delay: Nanos::from_millis(e.slow_delay_ms),
                    block_for: Nanos::from_secs(e.block_secs),
                })?)),
                None => None,
            },
            key_budgets: Arc::new(KeyBudgets::new(shared.as_ref(), &clock, prices.clone())?),
            spend: SpendControls::from_config(config, prices, shared.as_ref(), &clock)?
                .map(Arc::new),
            shared,
            clock,
        })
    }

    /// Swaps in the hot limits of `config` (rates, bursts, in-flight and
    /// stream caps, tokens per minute), keeping every unchanged gate's
    /// counters and carrying changed rates' counters over rescaled: an edit
    /// elsewhere in the file resets nothing. Requests already admitted keep
    /// their slots; in-flight caps are read per acquire, so a lowered cap
    /// applies to the next request. The caller has checked that nothing
    /// restart-only changed (backend, monthly quotas, the ladder ...).
    pub(crate) fn reload(&self, config: &LimitsConfig) -> Result<(), AdmissionError> {
        let previous = self.rates.load_full();
        let next = compile_rates(config, Some(&previous), self.shared.as_ref(), &self.clock)?;
        self.rates.store(Arc::new(next));
        Ok(())
    }

    /// Whether limits are shared through Redis (`limits.backend = "redis"`).
    pub(crate) fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The replica's Redis connection, when `backend = "redis"` and it is
    /// connected (shared with other per-replica state, like held tool calls).
    pub(crate) fn redis(&self) -> Option<palisade_redis::RedisConnection> {
        self.shared.as_ref()?.conn().cloned()
    }

    /// Connects the shared backend in the background (retrying), and keeps a
    /// readiness entry for it: gating in `deny` mode (a replica that would
    /// refuse everything must not take traffic), advisory in `local` mode.
    pub fn spawn_backend(&self, readiness: &crate::readiness::Readiness) {
        let Some(backend) = self.shared.clone() else {
            return;
        };
        let condition = match backend.on_error {
            OnBackendError::Deny => readiness.register("limits_backend"),
            OnBackendError::Local => readiness.register_advisory("limits_backend"),
        };
        let gcra = self.gcra.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let connect_timeout = backend.timeout.max(Duration::from_secs(1));
                match palisade_redis::RedisConnection::connect(
                    &backend.url,
                    connect_timeout,
                    backend.timeout,
                )
                .await
                {
                    Ok(conn) => {
                        let _ = gcra.set(palisade_redis::RedisGcra::new(conn.clone(), "palisade"));
                        backend.connected(conn);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "limits backend unreachable; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            // Mirror the backend's health into readiness.
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let ok = backend.is_healthy();
                condition.set(ok);
                if !ok {
                    if let Some(conn) = backend.conn() {
                        if conn.ping().await.is_ok() {
                            backend.set_healthy(true);
                        }
                    }
                }
            }
        });
    }

    /// One rate check; the response headers describe the most constrained
    /// limit seen so far.
    async fn check_rate(
        &self,
        scope: &'static str,
        name: &str,
        rate: &RateGate,
        headers: &mut RateLimitHeaders,
    ) -> Result<(), (ApiError, RateLimitHeaders)> {
        // The key names a Redis key too: the name is escaped so a `:` in it
        // cannot make two scopes' keys meet.
        let key = format!("{scope}:{}", palisade_redis::key_part(name));
        let decision = self
            .rate_decision(&key, &rate.config, &rate.local)
            .await
            .map_err(|e| (e, *headers))?;
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
        headers.requests = Some(info);
        headers.retry_after = Some(decision.retry_after);
        let secs = decision.retry_after.as_secs_ceil().max(1);
        let err = ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "rate limit of {} requests per minute reached for this {scope}; retry in {secs} s",
                rate.rpm
            ),
        )
        .with_retry_after(Some(secs));
        Err((err, *headers))
    }

    /// The per-model rate, checked once the request's model is known.
    pub async fn admit_model(
        &self,
        principal: &Principal,
        model: &str,
        headers: &mut RateLimitHeaders,
    ) -> Result<(), ApiError> {
        let rates = self.rates.load_full();
        let Some(rate) = rates.model_rates.get(model) else {
            return Ok(());
        };
        let result = self.check_rate("model", model, rate, headers).await;
        result.map_err(|(err, _)| {
            self.offend(principal, 1);
            err
        })
    }

    /// The per-model rate for a stage the gateway chose (a cascade's cheap
    /// model): as [`Self::admit_model`], but a refusal is no offence of the
    /// key's (the client never named that model; its shared rate being
    /// spent by all tenants must not move an innocent key up the ladder).
    pub async fn try_model(&self, model: &str) -> bool {
        let rates = self.rates.load_full();
        let Some(rate) = rates.model_rates.get(model) else {
            return true;
        };
        let mut headers = RateLimitHeaders::default();
        self.check_rate("model", model, rate, &mut headers)
            .await
            .is_ok()
    }

    /// The request-rate decision for a key: shared backend first, local
    /// limiter as the fallback.
    async fn rate_decision(
        &self,
        key: &str,
        config: &GcraConfig,
        local: &Mutex<MemoryGcra>,
    ) -> Result<palisade_limits::GcraDecision, ApiError> {
        if let Some(backend) = &self.shared {
            let outcome = match self.gcra.get() {
                Some(gcra) => gcra.check(key, config, 1).await.map_err(|e| e.to_string()),
                None => Err("not connected".to_owned()),
            };
            match outcome {
                Ok(decision) => return Ok(decision),
                Err(e) => {
                    if let Some(refusal) = backend.failed(&e) {
                        return Err(refusal);
                    }
                }
            }
        }
        Ok(local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(key, self.now()))
    }

    fn now(&self) -> Nanos {
        self.clock.now()
    }

    fn offender_key(principal: &Principal) -> String {
        format!("{}/{}", principal.tenant, principal.key_name)
    }

    /// Records an offence (a refusal) against `principal`'s key.
    pub fn offend(&self, principal: &Principal, points: u32) {
        if let Some(ladder) = &self.ladder {
            let now = self.now();
            let standing = ladder
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .offend(&Self::offender_key(principal), points, now);
            if standing.rung == Rung::Block {
                metrics::counter!(crate::metrics::OFFENDERS_BLOCKED).increment(1);
            }
        }
    }

    /// Decides whether `principal` may start a request now: the escalation
    /// ladder first, then the limits; every refusal is an offence.
    pub async fn admit(&self, principal: &Principal) -> Result<Admitted, Refusal> {
        let mut warned = false;
        if let Some(ladder) = &self.ladder {
            let (standing, slow_delay) = {
                let ladder = ladder.lock().unwrap_or_else(PoisonError::into_inner);
                (
                    ladder.standing(&Self::offender_key(principal), self.now()),
                    ladder.config().slow_delay,
                )
            };
            match standing.rung {
                Rung::Block => {
                    let retry = match standing.decision {
                        palisade_limits::Decision::Deny(d) => d.retry_after_secs(),
                        _ => None,
                    };
                    let err = ApiError::new(
                        ErrorCode::BlockedOffender,
                        "this API key is blocked for repeatedly exceeding its limits",
                    )
                    .with_retry_after(retry);
                    return Err(Refusal {
                        error: err,
                        headers: RateLimitHeaders::default(),
                        warned: true,
                    });
                }
                Rung::Slow => {
                    warned = true;
                    tokio::time::sleep(Duration::from_nanos(slow_delay.get())).await;
                }
                Rung::Warn => warned = true,
                Rung::Clear => {}
            }
        }
        let result = self.admit_limits(principal).await;
        match result {
            Ok(mut admitted) => {
                admitted.warned = warned;
                Ok(admitted)
            }
            Err((error, headers)) => {
                self.offend(principal, 1);
                Err(Refusal {
                    error,
                    headers,
                    warned,
                })
            }
        }
    }

    async fn admit_limits(
        &self,
        principal: &Principal,
    ) -> Result<Admitted, (ApiError, RateLimitHeaders)> {
        let rates = self.rates.load_full();
        let gate = rates.tenant(&principal.tenant);
        let mut headers = RateLimitHeaders::default();
        if let Some(spend) = &self.spend {
            spend
                .check_breaker(&principal.tenant)
                .map_err(|e| (e, headers))?;
        }
        if let Some(rate) = &gate.rate {
            self.check_rate("tenant", &principal.tenant, rate, &mut headers)
                .await?;
        }
        // `[limits.keys.NAME]` is a config key's own rate: a runtime key of
        // the same name takes its rates from the key table, and two tenants'
        // keys of one name each have their own bucket (a shared one would
        // let one tenant spend the other's requests, and its refusals count
        // as the other's offences).
        let config_key_rate = principal
            .key_id
            .is_none()
            .then(|| rates.key_rates.get(&*principal.key_name))
            .flatten();
        if let Some(rate) = config_key_rate {
            let bucket = format!(
                "{}:{}",
                palisade_redis::key_part(&principal.tenant),
                palisade_redis::key_part(&principal.key_name)
            );
            self.check_rate("key", &bucket, rate, &mut headers).await?;
        }
        if let Some(rpm) = principal.budget.and_then(|b| b.requests_per_minute) {
            let checked = self
                .key_budgets
                .check_rate(principal, rpm, &mut headers)
                .await;
            checked.map_err(|e| (e, headers))?;
        }
        let mut slot = None;
        if let Some(max) = gate.max_in_flight_per_key {
            let key = format!("{}/{}", principal.tenant, principal.key_name);
            let mut limiter = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match limiter.try_acquire_up_to(&key, max) {
                Acquire::Acquired { permit, .. } => {
                    slot = Some(InFlightSlot {
                        limiter: self.in_flight.clone(),
                        permit: Some(permit),
                    });
                }
                Acquire::Full { in_flight, .. } => {
                    let err = ApiError::new(
                        ErrorCode::ConcurrencyLimited,
                        format!(
                            "{in_flight} requests already in flight for this API key (limit {max}); retry when one completes"
                        ),
                    )
                    .with_retry_after(Some(1));
                    return Err((err, headers));
                }
            }
        }
        Ok(Admitted {
            headers,
            warned: false,
            slot,
        })
    }
}

/// Writes rate-limit headers into a response's headers.
pub fn apply_headers(headers: &RateLimitHeaders, out: &mut HeaderMap) {
    for (name, value) in headers.to_pairs() {
        // Upstream rate-limit headers describe the upstream account, not the
        // caller's limits at this gateway: ours replace them.
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.insert(HeaderName::from_static(name), value);
        }
    }
}
