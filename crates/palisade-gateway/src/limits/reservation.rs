//! The tokens held for one request between admission and its end: on the tenant's
//! per-minute budget, on its monthly counters and on its API key's budgets.
//!
//! Admission creates a [`TokenReservation`]; accounting settles it with what the request
//! used. It lives apart from both so neither imports the other. It must not decide limits:
//! the budgets it settles into do.

use std::sync::Arc;

use crate::limits::budgets::Held;
use crate::limits::key_budgets::{KeyBudgets, KeyHold};
use crate::limits::spend::{MonthlyHold, SpendControls};
use crate::limits::usage::ActualUsage;

/// Tokens reserved for one request: on the tenant's per-minute budget and
/// its monthly counters. Settle it with the real usage; if it is dropped
/// unsettled (the request future was cancelled), the prompt estimate is
/// charged: the upstream may well have processed the prompt.
#[derive(Debug)]
pub struct TokenReservation {
    /// The per-minute budget's hold, when the tenant has one.
    minute: Option<Held>,
    monthly: Vec<MonthlyHold>,
    spend: Option<Arc<SpendControls>>,
    /// The key's own budgets' holds.
    key: Vec<KeyHold>,
    key_budgets: Option<Arc<KeyBudgets>>,
    tenant: String,
    model: String,
    /// The prompt part of the reservation.
    pub prompt_estimate: u64,
    settled: bool,
}

impl TokenReservation {
    /// A reservation (of which `prompt_estimate` tokens are the prompt) holding nothing
    /// yet; holds are added as each budget grants them.
    pub(crate) fn new(
        spend: Option<Arc<SpendControls>>,
        tenant: &str,
        model: &str,
        prompt_estimate: u64,
    ) -> Self {
        Self {
            minute: None,
            monthly: Vec::new(),
            spend,
            key: Vec::new(),
            key_budgets: None,
            tenant: tenant.to_owned(),
            model: model.to_owned(),
            prompt_estimate,
            settled: false,
        }
    }

    /// Adds the per-minute budget's hold.
    pub(crate) fn hold_minute(&mut self, held: Held) {
        self.minute = Some(held);
    }

    /// Adds the monthly counters' holds.
    pub(crate) fn hold_monthly(&mut self, holds: Vec<MonthlyHold>) {
        self.monthly = holds;
    }

    /// Adds the key budgets' holds.
    pub(crate) fn hold_key(&mut self, budgets: Arc<KeyBudgets>, holds: Vec<KeyHold>) {
        self.key = holds;
        self.key_budgets = Some(budgets);
    }

    /// Charges what the request used and releases the rest.
    pub(crate) fn reconcile(&mut self, actual: ActualUsage) {
        self.settle(Some(actual));
    }

    /// Releases the whole reservation: the request used no tokens.
    pub fn cancel(&mut self) {
        self.settle(None);
    }

    fn settle(&mut self, actual: Option<ActualUsage>) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        if let Some(held) = self.minute.take() {
            held.settle(actual.map(|a| a.total()), None);
        }
        let monthly = std::mem::take(&mut self.monthly);
        if let Some(spend) = &self.spend {
            spend.settle(&self.tenant, &self.model, monthly, actual);
        }
        let key = std::mem::take(&mut self.key);
        if let Some(budgets) = &self.key_budgets {
            budgets.settle(&self.model, key, actual);
        }
    }
}

impl Drop for TokenReservation {
    fn drop(&mut self) {
        self.reconcile(ActualUsage::prompt_only(self.prompt_estimate));
    }
}
