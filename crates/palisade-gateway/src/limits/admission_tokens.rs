//! The rate gate's token side: stream slots, whether a request is accounted
//! in tokens, and the reservation of its tokens on the tenant's per-minute
//! budget, its monthly counters and its API key's budgets (all or nothing).
//!
//! A child of `admission` (it reads the gate's state); like it, it must not
//! decide limits itself nor read time except through the gate's clock.

use std::sync::{Arc, PoisonError};

use palisade_limits::{Acquire, RateLimitInfo};
use palisade_openai::{ApiError, ErrorCode};

use super::{Admission, InFlightSlot, TokenReservation};
use crate::http::auth::Principal;
use crate::limits::budgets::ReserveError;
use crate::limits::key_budgets::KeyBudgets;
use crate::limits::spend::SpendControls;

impl Admission {
    /// Takes a stream slot for `principal`'s key, when streams are limited.
    pub fn admit_stream(&self, principal: &Principal) -> Result<Option<InFlightSlot>, ApiError> {
        let Some(max) = self
            .rates
            .load()
            .tenant(&principal.tenant)
            .max_streams_per_key
        else {
            return Ok(None);
        };
        let key = format!("streams:{}/{}", principal.tenant, principal.key_name);
        let mut limiter = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match limiter.try_acquire_up_to(&key, max) {
            Acquire::Acquired { permit, .. } => Ok(Some(InFlightSlot {
                limiter: self.in_flight.clone(),
                permit: Some(permit),
            })),
            Acquire::Full { .. } => {
                drop(limiter);
                self.offend(principal, 1);
                Err(ApiError::new(
                    ErrorCode::ConcurrencyLimited,
                    format!("{max} streams already open for this API key; retry when one ends"),
                )
                .with_retry_after(Some(1)))
            }
        }
    }

    /// Whether requests of `tenant` are accounted in tokens at admission (a
    /// per-minute budget, a monthly quota or budget, the spend breaker), so
    /// the request path needs to estimate and count tokens at all.
    pub fn has_token_budget(&self, tenant: &str) -> bool {
        self.spend.is_some() || self.rates.load().tenant(tenant).tokens.is_some()
    }

    /// The budget of `principal`'s key, when it has one that counts tokens
    /// (a period cap or tokens per minute): a runtime key's own, else its
    /// name's `[limits.keys]` entry (config keys).
    pub(crate) fn key_budget(&self, principal: &Principal) -> Option<palisade_limits::KeyBudget> {
        let budget = match principal.budget {
            Some(b) => b,
            None if principal.key_id.is_none() => {
                *self.rates.load().key_budgets.get(&*principal.key_name)?
            }
            None => return None,
        };
        (budget.has_cap() || budget.tokens_per_minute.is_some()).then_some(budget)
    }

    /// Per-key budgets, for seeding and reports.
    pub(crate) fn key_budgets(&self) -> &KeyBudgets {
        &self.key_budgets
    }

    /// Loads `tenant`'s spend this month from the ledger, once per month.
    pub(crate) async fn prepare_spend(
        &self,
        tenant: &str,
        ledger: Option<&Arc<palisade_ledger::Ledger>>,
    ) {
        if let Some(spend) = &self.spend {
            spend.prepare(tenant, ledger).await;
        }
    }

    /// Monthly quotas, budgets and the spend breaker, when configured.
    pub(crate) fn spend(&self) -> Option<&SpendControls> {
        self.spend.as_deref()
    }

    /// Starts delivering alerts (log, webhook).
    pub(crate) fn spawn_alerts(&self) {
        if let Some(spend) = &self.spend {
            spend.spawn_alerts();
        }
    }

    /// Reserves `prompt_estimate + max_completion` tokens for request `id`
    /// on the tenant's per-minute budget and monthly counters (all or
    /// nothing).
    pub async fn reserve_tokens(
        &self,
        principal: &Principal,
        id: &str,
        model: &str,
        prompt_estimate: u64,
        max_completion: u64,
    ) -> Result<(Option<TokenReservation>, Option<RateLimitInfo>), ApiError> {
        let tenant: &str = &principal.tenant;
        let rates = self.rates.load_full();
        let gate = rates.tenant(tenant);
        let key_budget = self.key_budget(principal);
        if gate.tokens.is_none() && self.spend.is_none() && key_budget.is_none() {
            return Ok((None, None));
        }
        let amount = prompt_estimate.saturating_add(max_completion);
        let mut reservation =
            TokenReservation::new(self.spend.clone(), tenant, model, prompt_estimate);
        let mut info = None;
        if let Some(budget) = &gate.tokens {
            let key = palisade_redis::key_part(tenant);
            let (granted, held) = budget.reserve(&key, id, amount).await.map_err(|e| match e {
                ReserveError::Limit(palisade_limits::LimitError::CostExceedsCapacity {
                    capacity,
                    ..
                }) => ApiError::new(
                    ErrorCode::TokensExhausted,
                    format!(
                        "this request needs up to {amount} tokens (prompt ~{prompt_estimate} + max_tokens {max_completion}) but the budget is {capacity} per minute; lower max_tokens"
                    ),
                )
                .with_param("max_tokens"),
                ReserveError::Limit(other) => {
                    ApiError::new(ErrorCode::InternalError, other.to_string())
                }
                ReserveError::Unavailable(refusal) => refusal,
            })?;
            info = granted.usage.info();
            if let Some(denial) = granted.denial {
                let secs = denial.retry_after_secs().map(|s| s.max(1));
                return Err(ApiError::new(
                    ErrorCode::TokensExhausted,
                    format!(
                        "token budget exhausted: {} of {} tokens per minute are spent or reserved; this request needs {amount}",
                        granted.usage.spent + granted.usage.reserved,
                        granted.usage.limit
                    ),
                )
                .with_retry_after(secs));
            }
            reservation.hold_minute(held);
        }
        if let Some(spend) = &self.spend {
            match spend
                .reserve(tenant, id, model, prompt_estimate, max_completion)
                .await
            {
                Ok(holds) => reservation.hold_monthly(holds),
                Err(e) => {
                    reservation.cancel();
                    return Err(e);
                }
            }
        }
        if let Some(budget) = key_budget {
            let reserved = self
                .key_budgets
                .reserve(
                    principal,
                    &budget,
                    id,
                    model,
                    prompt_estimate,
                    max_completion,
                )
                .await;
            match reserved {
                Ok(holds) => reservation.hold_key(self.key_budgets.clone(), holds),
                Err(e) => {
                    reservation.cancel();
                    return Err(e);
                }
            }
        }
        Ok((Some(reservation), info))
    }
}
