//! The retry budget of one backend: retries may add at most `ratio` of the
//! backend's request rate, plus a small reserve for quiet periods (the
//! Finagle / gRPC retry-throttling design as a token bucket).
//!
//! Every first attempt deposits `ratio` tokens; every retry withdraws one;
//! the reserve refills at `reserve_per_sec`; the balance is capped at
//! `cap`. So over any run, retries ≤ ratio × requests + reserve × seconds +
//! cap, whatever fails.
//!
//! Must not: read the clock; `now` is passed in.

use crate::Nanos;

/// Budget settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetConfig {
    /// Retries allowed per first attempt (0.1: at most 10 % extra load).
    pub ratio: f64,
    /// Tokens added per second regardless of traffic, so a quiet backend
    /// can still be retried.
    pub reserve_per_sec: f64,
    /// Largest balance: bounds a burst of retries after a quiet period.
    pub cap: f64,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.1,
            reserve_per_sec: 1.0,
            cap: 10.0,
        }
    }
}

/// One backend's budget.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    config: RetryBudgetConfig,
    balance: f64,
    refilled_at: Nanos,
}

impl RetryBudget {
    /// A budget holding one reserve second's worth at `now`.
    pub fn new(config: RetryBudgetConfig, now: Nanos) -> Self {
        Self {
            config,
            balance: config.reserve_per_sec.min(config.cap),
            refilled_at: now,
        }
    }

    fn refill(&mut self, now: Nanos) {
        let secs = now.saturating_sub(self.refilled_at) as f64 / 1e9;
        self.refilled_at = self.refilled_at.max(now);
        self.balance = (self.balance + secs * self.config.reserve_per_sec).min(self.config.cap);
    }

    /// A first attempt was sent.
    pub fn on_request(&mut self, now: Nanos) {
        self.refill(now);
        self.balance = (self.balance + self.config.ratio).min(self.config.cap);
    }

    /// Takes one retry's token; `false`: the budget is spent, do not retry.
    pub fn try_retry(&mut self, now: Nanos) -> bool {
        self.refill(now);
        if self.balance >= 1.0 {
            self.balance -= 1.0;
            true
        } else {
            false
        }
    }

    /// The current balance (for metrics).
    pub fn balance(&self) -> f64 {
        self.balance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_within_ratio_plus_reserve_in_an_outage() {
        let cfg = RetryBudgetConfig {
            ratio: 0.1,
            reserve_per_sec: 1.0,
            cap: 10.0,
        };
        let mut b = RetryBudget::new(cfg, 0);
        let mut retries = 0u32;
        // 1000 requests over 2 s, every one failing and asking to retry.
        for i in 0..1000u64 {
            let now = i * 2_000_000;
            b.on_request(now);
            if b.try_retry(now) {
                retries += 1;
            }
        }
        // ≤ 0.1 × 1000 + 1/s × 2 s + the initial second.
        assert!(retries <= 103, "{retries}");
        assert!(retries >= 95, "the budget is usable: {retries}");
    }

    #[test]
    fn a_quiet_backend_gets_its_reserve_back_up_to_the_cap() {
        let mut b = RetryBudget::new(RetryBudgetConfig::default(), 0);
        assert!(b.try_retry(0));
        assert!(!b.try_retry(0));
        assert!(b.try_retry(1_000_000_000));
        let later = 1_000_000_000_000;
        let mut n = 0;
        while b.try_retry(later) {
            n += 1;
        }
        assert_eq!(n, 10, "capped");
    }
}
