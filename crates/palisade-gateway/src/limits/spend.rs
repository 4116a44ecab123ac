//! Spend over longer horizons than a minute: monthly quotas (hard), monthly
//! budgets (soft, with alerts) and the circuit breaker on a tenant's spend
//! rate.
//!
//! - **Quotas** are token budgets without a window (`palisade-limits`'
//!   `TokenBudget::quota`), one key per tenant and UTC calendar month, in
//!   tokens and in micro-dollars. Requests reserve their worst case like the
//!   per-minute budget and reconcile afterwards, so a quota is never
//!   overshot by more than what upstreams used beyond their reservations.
//!   Each (tenant, month) is seeded from the ledger the first time it is
//!   seen, so a restart does not hand out the month again.
//! - **Budgets** refuse nothing: crossing each configured percentage raises
//!   one alert (log line, `palisade_alerts_total`, optional webhook). The
//!   thresholds already crossed when a month is seeded from the ledger are
//!   not raised again after a restart.
//! - **The spend-rate breaker** pauses a tenant whose tokens per minute jump
//!   far above its learned baseline (seeded from the ledger's last day).
//!
//! State here is per replica; with `limits.backend = "redis"` the hard
//! quotas and per-minute budgets are shared (see `admission`), while the
//! breaker and alert bookkeeping stay per replica (each replica judges the
//! spend it sees, and an alert may be raised once per replica).
//!
//! The decisions are `palisade-limits`': budgets, the spend-rate breaker,
//! calendar months (`calendar`) and alert thresholds (`alerts`). This module
//! must not decide anything itself: it owns the locks, the ledger seeding and
//! alert delivery, and reads time only through its [`GatewayClock`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use palisade_config::{LimitsConfig, TenantLimits};
use palisade_ledger::{Ledger, PriceTable};
use palisade_limits::calendar::{self, Month};
use palisade_limits::{
    BudgetConfig, Clock, LimitError, Nanos, SpendRateBreaker, SpendRateConfig, ThresholdAlerts,
};
use palisade_openai::{ApiError, ErrorCode};
use serde::Serialize;
use tokio::sync::{mpsc, OnceCell};

use crate::clock::GatewayClock;
use crate::limits::budgets::{BudgetStore, Held, ReserveError, SharedBackend};
use crate::limits::usage::ActualUsage;

/// Effectively unlimited (4.5e15 tokens or $4.5bn): the limit of a month
/// that only has a soft budget (spend is tracked for alerts, nothing is
/// refused). Below 2^53 so Redis' Lua arithmetic stays exact.
const UNLIMITED: u64 = 1 << 52;

/// What a monthly budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Unit {
    /// Prompt plus completion tokens.
    Tokens,
    /// Cost in micro-dollars, from `[ledger.prices]`.
    CostMicros,
}

/// One tenant-month counter: its budget (shared by the tenants without
/// their own settings) and its hard and soft limits.
#[derive(Debug)]
struct MonthCounter {
    unit: Unit,
    budget: BudgetStore,
    /// Refuse beyond this (the budget's limit) when set.
    quota: Option<u64>,
    /// Alert at percentages of this (or of the quota when no budget is set).
    soft: Option<u64>,
}

impl MonthCounter {
    fn new(
        unit: Unit,
        quota: Option<u64>,
        soft: Option<u64>,
        shared: Shared<'_>,
    ) -> Result<Option<Self>, LimitError> {
        if quota.is_none() && soft.is_none() {
            return Ok(None);
        }
        let prefix = match unit {
            Unit::Tokens => "palisade:month-tokens",
            Unit::CostMicros => "palisade:month-cost",
        };
        let budget = BudgetStore::new(
            BudgetConfig::quota(quota.unwrap_or(UNLIMITED)),
            shared.0.map(|b| (b.clone(), prefix)),
            shared.1.clone(),
        )?;
        Ok(Some(Self {
            unit,
            budget,
            quota,
            soft,
        }))
    }

    /// What alerts are measured against.
    fn alert_base(&self) -> Option<u64> {
        self.soft.or(self.quota)
    }
}

fn usd_to_micros(usd: f64) -> u64 {
    (usd * 1_000_000.0).round() as u64
}

/// The shared backend (when limits live in Redis) and the clock.
type Shared<'a> = (Option<&'a Arc<SharedBackend>>, &'a GatewayClock);

#[derive(Debug, Default)]
struct TenantMonthly {
    counters: Vec<MonthCounter>,
}

impl TenantMonthly {
    fn from_limits(l: &TenantLimits, shared: Shared<'_>) -> Result<Self, LimitError> {
        let counters = [
            MonthCounter::new(
                Unit::Tokens,
                l.monthly_token_quota,
                l.monthly_token_budget,
                shared,
            )?,
            MonthCounter::new(
                Unit::CostMicros,
                l.monthly_cost_quota_usd.map(usd_to_micros),
                l.monthly_cost_budget_usd.map(usd_to_micros),
                shared,
            )?,
        ];
        Ok(Self {
            counters: counters.into_iter().flatten().collect(),
        })
    }
}

/// An alert for operators: the log, the metrics and the webhook get it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alert {
    /// A monthly budget crossed one of the alert percentages.
    BudgetThreshold {
        /// The tenant.
        tenant: String,
        /// `YYYY-MM`.
        month: String,
        /// `tokens` or `usd_micros`.
        unit: &'static str,
        /// The percentage crossed.
        percent: u32,
        /// Spent so far this month, in `unit`.
        spent: u64,
        /// The budget (or quota), in `unit`.
        budget: u64,
    },
    /// A tenant's spend rate tripped the breaker.
    SpendRateTripped {
        /// The tenant.
        tenant: String,
        /// Tokens spent in the current minute.
        tokens_this_minute: u64,
        /// The spend that trips (the larger of the floor and factor × baseline).
        threshold: u64,
        /// How long new requests are refused.
        cooldown_secs: u64,
    },
}

/// A request's hold on one monthly counter, settled with it.
#[derive(Debug)]
pub(crate) struct MonthlyHold {
    held: Held,
    /// The counter's index in the tenant's counters.
    counter: usize,
    key: String,
}

/// Monthly quotas, budgets and the spend-rate breaker.
#[derive(Debug)]
pub struct SpendControls {
    clock: GatewayClock,
    default: TenantMonthly,
    tenants: HashMap<String, TenantMonthly>,
    breaker: Option<Mutex<SpendRateBreaker>>,
    cooldown_secs: u64,
    prices: Arc<PriceTable>,
    /// The alert percentages and those already crossed, per
    /// `tenant@month/unit` counter.
    alerted: Mutex<ThresholdAlerts>,
    /// Seeding from the ledger, once per `tenant@month`.
    seeded: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
    alerts: mpsc::UnboundedSender<Alert>,
    alerts_rx: Mutex<Option<mpsc::UnboundedReceiver<Alert>>>,
    webhook: Option<String>,
}

impl SpendControls {
    /// The controls `config` asks for; `None` when it asks for none.
    ///
    /// # Errors
    /// A limit `palisade-limits` refuses (config validation rules them out).
    pub(crate) fn from_config(
        config: &LimitsConfig,
        prices: Arc<PriceTable>,
        shared: Option<&Arc<SharedBackend>>,
        clock: &GatewayClock,
    ) -> Result<Option<Self>, LimitError> {
        let shared = (shared, clock);
        let default = TenantMonthly::from_limits(&config.default, shared)?;
        let tenants = config
            .tenants
            .iter()
            .map(|(t, l)| {
                Ok((
                    t.clone(),
                    TenantMonthly::from_limits(&l.or(config.default), shared)?,
                ))
            })
            .collect::<Result<HashMap<_, _>, LimitError>>()?;
        let monthly =
            !default.counters.is_empty() || tenants.values().any(|t| !t.counters.is_empty());
        if !monthly && config.spend_rate.is_none() {
            return Ok(None);
        }
        let breaker = match config.spend_rate {
            Some(s) => Some(Mutex::new(SpendRateBreaker::new(SpendRateConfig {
                factor: s.factor,
                floor: s.floor_tokens_per_minute,
                bucket: Nanos::from_secs(60),
                weight: s.baseline_minutes,
                cooldown: Nanos::from_secs(s.cooldown_secs),
            })?)),
            None => None,
        };
        let (alerts, alerts_rx) = mpsc::unbounded_channel();
        Ok(Some(Self {
            clock: clock.clone(),
            default,
            tenants,
            breaker,
            cooldown_secs: config.spend_rate.map_or(0, |s| s.cooldown_secs),
            prices,
            alerted: Mutex::new(ThresholdAlerts::new(config.budget_alert_percents.clone())),
            seeded: Mutex::new(HashMap::new()),
            alerts,
            alerts_rx: Mutex::new(Some(alerts_rx)),
            webhook: config.alert_webhook_url.clone(),
        }))
    }

    fn now(&self) -> Nanos {
        self.clock.now()
    }

    fn monthly(&self, tenant: &str) -> &TenantMonthly {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }

    /// The counter's key, in memory and in Redis: the tenant escaped as every
    /// Redis key part is (unchanged for ordinary names, so counters survive
    /// the upgrade).
    fn month_key(tenant: &str, month: Month) -> String {
        calendar::month_key(&palisade_redis::key_part(tenant), month)
    }

    fn this_month(&self) -> Month {
        Month::of_unix_ms(self.clock.unix_ms())
    }

    /// Loads what `tenant` has already spent this month (and its recent
    /// spend rate) from the ledger, the first time the tenant-month is seen.
    /// Concurrent first requests wait for the one load.
    pub(crate) async fn prepare(&self, tenant: &str, ledger: Option<&Arc<Ledger>>) {
        let Some(ledger) = ledger else {
            return;
        };
        let month = self.this_month();
        let key = Self::month_key(tenant, month);
        let cell = self
            .seeded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        cell.get_or_init(|| self.seed(tenant, month, key, ledger))
            .await;
    }

    async fn seed(&self, tenant: &str, month: Month, key: String, ledger: &Ledger) {
        let monthly = self.monthly(tenant);
        if !monthly.counters.is_empty() {
            match ledger.spent(tenant, month.start_ms()).await {
                Ok(spent) => {
                    for counter in &monthly.counters {
                        let value = match counter.unit {
                            Unit::Tokens => spent.tokens,
                            Unit::CostMicros => u64::try_from(spent.cost_micros).unwrap_or(0),
                        };
                        counter.budget.seed(&key, value).await;
                        // Thresholds crossed before this process started were
                        // raised by whoever saw them cross.
                        let now_spent = counter.budget.usage(&key).await.spent;
                        self.crossed(tenant, &key, counter, now_spent, false);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, tenant, "cannot seed monthly spend from the ledger")
                }
            }
        }
        if let Some(breaker) = &self.breaker {
            let day_ago = calendar::baseline_since_ms(self.clock.unix_ms());
            match ledger.spent(tenant, day_ago).await {
                Ok(spent) => {
                    let now = self.now();
                    let mut breaker = breaker.lock().unwrap_or_else(PoisonError::into_inner);
                    if breaker.state(tenant, now).is_none() {
                        breaker.seed_baseline(
                            tenant,
                            calendar::baseline_per_minute(spent.tokens),
                            now,
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, tenant, "cannot seed the spend baseline"),
            }
        }
    }

    /// This month's standing of every tenant seen this month: spend,
    /// reservations, quota and budget per counter, and whether the breaker
    /// holds the tenant (for `GET /admin/quotas`).
    pub(crate) async fn report(&self) -> Vec<serde_json::Value> {
        let month = self.this_month();
        let mut tenants: Vec<String> = self
            .seeded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .filter_map(|k| calendar::tenant_of_month_key(k, month).map(str::to_owned))
            .collect();
        tenants.sort();
        let now = self.now();
        let mut out = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            let key = Self::month_key(&tenant, month);
            let mut counters = Vec::new();
            for c in &self.monthly(&tenant).counters {
                let usage = c.budget.usage(&key).await;
                counters.push(serde_json::json!({
                    "unit": unit_name(c.unit),
                    "spent": usage.spent,
                    "reserved": usage.reserved,
                    "quota": c.quota,
                    "budget": c.soft,
                }));
            }
            let paused_for = self.breaker.as_ref().and_then(|b| {
                b.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .check(&tenant, now)
                    .map(|wait| wait.as_secs_ceil())
            });
            out.push(serde_json::json!({
                "tenant": tenant,
                "month": month.label(),
                "counters": counters,
                "spend_rate_paused_secs": paused_for,
            }));
        }
        out
    }

    /// Refuses a tenant the breaker has tripped for.
    pub(crate) fn check_breaker(&self, tenant: &str) -> Result<(), ApiError> {
        let Some(breaker) = &self.breaker else {
            return Ok(());
        };
        let wait = breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(tenant, self.now());
        match wait {
            None => Ok(()),
            Some(wait) => Err(ApiError::new(
                ErrorCode::SpendRateExceeded,
                "this tenant's token spend rate is far above its usual rate; requests are paused for a cooldown",
            )
            .with_retry_after(Some(wait.as_secs_ceil().max(1)))),
        }
    }

    /// Reserves `tokens` (and their worst-case cost) on `tenant`'s monthly
    /// counters for request `id`. All or nothing.
    pub(crate) async fn reserve(
        &self,
        tenant: &str,
        id: &str,
        model: &str,
        prompt_estimate: u64,
        max_completion: u64,
    ) -> Result<Vec<MonthlyHold>, ApiError> {
        let monthly = self.monthly(tenant);
        let key = Self::month_key(tenant, self.this_month());
        let mut holds: Vec<MonthlyHold> = Vec::with_capacity(monthly.counters.len());
        for (index, counter) in monthly.counters.iter().enumerate() {
            let amount = match counter.unit {
                Unit::Tokens => prompt_estimate.saturating_add(max_completion),
                Unit::CostMicros => self.cost(model, prompt_estimate, max_completion, None),
            };
            let refusal = match counter.budget.reserve(&key, id, amount).await {
                Ok((r, held)) if r.granted => {
                    holds.push(MonthlyHold {
                        held,
                        counter: index,
                        key: key.clone(),
                    });
                    None
                }
                Ok((r, held)) => {
                    held.settle(None, None);
                    Some(quota_refusal(counter.unit, r.usage.spent, r.usage.limit))
                }
                Err(ReserveError::Limit(LimitError::CostExceedsCapacity { capacity, .. })) => {
                    Some(quota_refusal(counter.unit, amount, capacity))
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

    fn cost(&self, model: &str, prompt: u64, completion: u64, cached: Option<u64>) -> u64 {
        u64::try_from(self.prices.cost_micros(model, prompt, completion, cached)).unwrap_or(0)
    }

    /// Settles a request's holds with what it used (`None`: nothing, it was
    /// refused), then feeds the breaker and raises any budget alerts.
    pub(crate) fn settle(
        self: &Arc<Self>,
        tenant: &str,
        model: &str,
        holds: Vec<MonthlyHold>,
        actual: Option<ActualUsage>,
    ) {
        for hold in holds {
            let Some(counter) = self.monthly(tenant).counters.get(hold.counter) else {
                continue;
            };
            let amount = actual.map(|a| match counter.unit {
                Unit::Tokens => a.total(),
                Unit::CostMicros => self.cost(model, a.prompt, a.completion, a.cached),
            });
            let this = self.clone();
            let (tenant, key, index) = (tenant.to_owned(), hold.key, hold.counter);
            let then = move |spent: u64| {
                if let Some(counter) = this.monthly(&tenant).counters.get(index) {
                    this.crossed(&tenant, &key, counter, spent, true);
                }
            };
            hold.held
                .settle(amount, actual.is_some().then(|| Box::new(then) as _));
        }
        if let Some(actual) = actual {
            self.record_rate(tenant, actual.total(), self.now());
        }
    }

    fn record_rate(&self, tenant: &str, tokens: u64, now: Nanos) {
        let Some(breaker) = &self.breaker else {
            return;
        };
        let verdict = breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(tenant, tokens, now);
        if verdict.tripped_now {
            self.raise(Alert::SpendRateTripped {
                tenant: tenant.to_owned(),
                tokens_this_minute: verdict.current,
                threshold: verdict.threshold,
                cooldown_secs: self.cooldown_secs,
            });
        }
    }

    /// Marks the thresholds `spent` has crossed; raises the new ones when
    /// `raise` (not when seeding from history).
    fn crossed(&self, tenant: &str, key: &str, counter: &MonthCounter, spent: u64, raise: bool) {
        let Some(base) = counter.alert_base() else {
            return;
        };
        let unit = unit_name(counter.unit);
        let new = self
            .alerted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cross(&format!("{key}/{unit}"), base, spent);
        if !raise {
            return;
        }
        for percent in new {
            self.raise(Alert::BudgetThreshold {
                tenant: tenant.to_owned(),
                month: calendar::month_label_of_key(key).to_owned(),
                unit,
                percent,
                spent,
                budget: base,
            });
        }
    }

    fn raise(&self, alert: Alert) {
        let kind = match &alert {
            Alert::BudgetThreshold { .. } => "budget_threshold",
            Alert::SpendRateTripped { .. } => "spend_rate_tripped",
        };
        metrics::counter!(crate::metrics::ALERTS, "kind" => kind).increment(1);
        // The receiver lives as long as the process once `spawn_alerts` ran;
        // before that, alerts queue.
        let _ = self.alerts.send(alert);
    }

    /// Starts the task that logs alerts and POSTs them to the webhook.
    pub(crate) fn spawn_alerts(&self) {
        let Some(mut rx) = self
            .alerts_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let webhook = self.webhook.clone();
        tokio::spawn(async move {
            let client = crate::outbound::client_builder()
                .timeout(Duration::from_secs(5))
                .build()
                .ok();
            while let Some(alert) = rx.recv().await {
                let json = serde_json::to_string(&alert).unwrap_or_default();
                tracing::warn!(target: "palisade::alert", alert = %json, "alert");
                if let (Some(url), Some(client)) = (&webhook, &client) {
                    deliver(client, url, &json).await;
                }
            }
        });
    }
}

/// POSTs one alert, retrying a few times with backoff; a webhook that stays
/// down loses the alert from the webhook only (it is in the log and metrics).
pub(crate) async fn deliver(client: &reqwest::Client, url: &str, json: &str) {
    let mut backoff = Duration::from_millis(200);
    for attempt in 1..=3 {
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .body(json.to_owned())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::warn!(
                status = r.status().as_u16(),
                attempt,
                "alert webhook refused"
            ),
            Err(e) => tracing::warn!(error = %e, attempt, "alert webhook unreachable"),
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    metrics::counter!(crate::metrics::ALERT_DELIVERY_FAILURES).increment(1);
}

fn unit_name(unit: Unit) -> &'static str {
    match unit {
        Unit::Tokens => "tokens",
        Unit::CostMicros => "usd_micros",
    }
}

fn quota_refusal(unit: Unit, used: u64, limit: u64) -> ApiError {
    let what = match unit {
        Unit::Tokens => format!("{used} of {limit} tokens"),
        Unit::CostMicros => format!(
            "${:.2} of ${:.2}",
            used as f64 / 1_000_000.0,
            limit as f64 / 1_000_000.0
        ),
    };
    ApiError::new(
        ErrorCode::QuotaExceeded,
        format!(
            "monthly quota reached: {what} used or reserved this month; it renews on the 1st (UTC)"
        ),
    )
}
