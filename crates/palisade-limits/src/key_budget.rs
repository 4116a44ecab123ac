//! Per-key budgets (what LiteLLM operators know as `max_budget` over a `budget_duration`):
//! a hard cap on one API key's spend, in micro-dollars and/or tokens, per UTC calendar
//! period, plus optional per-key request and token rates.
//!
//! This module holds the settings ([`KeyBudget`]), their validation (with a stable reason
//! code for each refusal, [`KeyBudgetError::code`]) and the period arithmetic
//! ([`BudgetPeriod`], [`PeriodSpan`]): which period a timestamp is in, when it ends, and how
//! a key-period counter is named. The counting itself is [`crate::budget`]'s, with a limit
//! given per call ([`crate::TokenBudget::reserve_with_limit`]) so that a changed budget
//! applies to the next request without losing what was spent.
//!
//! A period is a calendar span, not a sliding window: each (key, period) is its own counter
//! key, so the first request of a new period lands on a fresh key and nothing resets by a
//! timer (as [`crate::calendar`] does for tenant months). Nothing here reads a clock.

use crate::calendar::{Month, DAY_MS};

/// The largest dollar budget accepted: $1bn. Above that a cap caps nothing, and the value
/// is far more likely a typo (a budget in cents, an extra zero block) than an intention.
pub const MAX_BUDGET_USD: f64 = 1_000_000_000.0;

/// The largest token cap accepted: 10^15, below 2^52 so Redis' Lua arithmetic stays exact.
pub const MAX_TOKENS: u64 = 1_000_000_000_000_000;

/// The largest per-key request rate: 10 million a minute (no single key needs more; a
/// larger value is a typo).
pub const MAX_REQUESTS_PER_MINUTE: u64 = 10_000_000;

/// The largest per-key token rate: 10^12 tokens a minute.
pub const MAX_TOKENS_PER_MINUTE: u64 = 1_000_000_000_000;

/// How long a key's spend accumulates before it starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BudgetPeriod {
    /// The UTC calendar month (like tenant quotas): resets on the 1st at 00:00 UTC.
    #[default]
    Monthly,
    /// The UTC calendar day: resets at 00:00 UTC.
    Daily,
}

impl BudgetPeriod {
    /// The stable name (`monthly`, `daily`), as stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Monthly => "monthly",
            Self::Daily => "daily",
        }
    }

    /// Parses [`BudgetPeriod::as_str`]'s names.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "monthly" => Some(Self::Monthly),
            "daily" => Some(Self::Daily),
            _ => None,
        }
    }

    /// The period holding `unix_ms`.
    pub fn span(self, unix_ms: i64) -> PeriodSpan {
        match self {
            Self::Monthly => {
                let month = Month::of_unix_ms(unix_ms);
                PeriodSpan {
                    start_ms: month.start_ms(),
                    end_ms: month.resets_at_ms(),
                    label: month.label(),
                }
            }
            Self::Daily => {
                let start_ms = unix_ms.div_euclid(DAY_MS) * DAY_MS;
                let month = Month::of_unix_ms(start_ms);
                let day = (start_ms - month.start_ms()) / DAY_MS + 1;
                PeriodSpan {
                    start_ms,
                    end_ms: start_ms + DAY_MS,
                    label: format!("{}-{day:02}", month.label()),
                }
            }
        }
    }
}

/// One calendar period: where its spend starts counting, when it resets, its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodSpan {
    /// Its first millisecond (Unix ms): where a ledger query for its spend starts.
    pub start_ms: i64,
    /// The first millisecond of the next period: when its counters stop counting.
    pub end_ms: i64,
    /// `YYYY-MM` (monthly) or `YYYY-MM-DD` (daily): part of the counter key.
    pub label: String,
}

impl PeriodSpan {
    /// Whole seconds from `now_ms` until the period ends, at least 1: the `Retry-After` of a
    /// refusal (waiting less cannot help).
    pub fn retry_after_secs(&self, now_ms: i64) -> u64 {
        let ms = self.end_ms.saturating_sub(now_ms).max(0);
        u64::try_from(ms).unwrap_or(0).div_ceil(1000).max(1)
    }

    /// The counter key of `identity` (already escaped so it holds no `@`) in this period.
    pub fn key(&self, identity: &str) -> String {
        format!("{identity}@{}", self.label)
    }
}

/// One key's budget settings. Every field is optional; an all-`None` budget limits nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyBudget {
    /// Hard spend cap per period in micro-dollars (priced with the ledger's prices).
    pub max_cost_micros: Option<u64>,
    /// Hard cap per period on prompt plus completion tokens.
    pub max_tokens: Option<u64>,
    /// The period both caps count over.
    pub period: BudgetPeriod,
    /// Requests per minute for this key.
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute for this key (reserved like the tenant's).
    pub tokens_per_minute: Option<u64>,
}

/// Why a budget setting was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyBudgetError {
    /// A dollar amount that is not a finite number in `[0, MAX_BUDGET_USD]` (NaN, infinity,
    /// negative, or absurdly large: most likely a typo or a hostile request).
    #[error("`{field}` must be a number of dollars from 0 to {MAX_BUDGET_USD}")]
    Dollars {
        /// The offending field.
        field: &'static str,
    },
    /// A count outside `[min, max]`.
    #[error("`{field}` must be a whole number from {min} to {max}")]
    Count {
        /// The offending field.
        field: &'static str,
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// A period that is neither `monthly` nor `daily`.
    #[error("`budget_period` must be `monthly` or `daily`")]
    Period,
}

impl KeyBudgetError {
    /// The offending field, for the error's `param`.
    pub const fn field(&self) -> &'static str {
        match self {
            Self::Dollars { field } | Self::Count { field, .. } => field,
            Self::Period => "budget_period",
        }
    }
}

/// Dollars to micro-dollars, refusing NaN, infinities, negatives and absurd amounts. A
/// budget of $0 is allowed: it refuses every priced request (a frozen key).
///
/// # Errors
/// [`KeyBudgetError::Dollars`] naming `field`.
pub fn usd_to_micros(field: &'static str, usd: f64) -> Result<u64, KeyBudgetError> {
    if !usd.is_finite() || !(0.0..=MAX_BUDGET_USD).contains(&usd) {
        return Err(KeyBudgetError::Dollars { field });
    }
    // In range by the check above: at most 10^15 micro-dollars.
    Ok((usd * 1_000_000.0).round() as u64)
}

/// A count in `[min, max]`.
///
/// # Errors
/// [`KeyBudgetError::Count`] naming `field`.
pub fn count(field: &'static str, value: u64, min: u64, max: u64) -> Result<u64, KeyBudgetError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(KeyBudgetError::Count { field, min, max })
    }
}

impl KeyBudget {
    /// Whether any limit is set.
    pub const fn is_limited(&self) -> bool {
        self.max_cost_micros.is_some()
            || self.max_tokens.is_some()
            || self.requests_per_minute.is_some()
            || self.tokens_per_minute.is_some()
    }

    /// Whether a per-period cap (dollars or tokens) is set.
    pub const fn has_cap(&self) -> bool {
        self.max_cost_micros.is_some() || self.max_tokens.is_some()
    }

    /// Checks every set value against its range (values read back from a store are checked
    /// again, so a row written by hand cannot smuggle in a zero rate).
    ///
    /// # Errors
    /// The first out-of-range field.
    pub fn validate(&self) -> Result<(), KeyBudgetError> {
        if let Some(m) = self.max_cost_micros {
            count("max_budget_usd", m, 0, (MAX_BUDGET_USD as u64) * 1_000_000).map_err(|_| {
                KeyBudgetError::Dollars {
                    field: "max_budget_usd",
                }
            })?;
        }
        if let Some(t) = self.max_tokens {
            count("max_tokens", t, 0, MAX_TOKENS)?;
        }
        if let Some(r) = self.requests_per_minute {
            count("requests_per_minute", r, 1, MAX_REQUESTS_PER_MINUTE)?;
        }
        if let Some(t) = self.tokens_per_minute {
            count("tokens_per_minute", t, 1, MAX_TOKENS_PER_MINUTE)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_span_their_utc_calendar_unit() {
        // 2026-12-06 20:14:02 UTC.
        let now = 1_796_588_042_000;
        let cases = [
            (
                BudgetPeriod::Monthly,
                now,
                "2026-12",
                1_796_083_200_000,
                1_798_761_600_000,
            ),
            (
                BudgetPeriod::Daily,
                now,
                "2026-12-06",
                1_796_515_200_000,
                1_796_601_600_000,
            ),
            // The last millisecond of a day is still that day.
            (
                BudgetPeriod::Daily,
                1_796_601_599_999,
                "2026-12-06",
                1_796_515_200_000,
                1_796_601_600_000,
            ),
            (BudgetPeriod::Daily, 0, "1970-01-01", 0, DAY_MS),
            (BudgetPeriod::Daily, -1, "1969-12-31", -DAY_MS, 0),
            // A leap day.
            (
                BudgetPeriod::Daily,
                951_825_600_000,
                "2000-02-29",
                951_782_400_000,
                951_868_800_000,
            ),
        ];
        for (period, ms, label, start, end) in cases {
            let span = period.span(ms);
            assert_eq!(span.label, label, "{period:?} {ms}");
            assert_eq!(
                (span.start_ms, span.end_ms),
                (start, end),
                "{period:?} {ms}"
            );
        }
    }

    #[test]
    fn retry_after_runs_to_the_period_end_and_is_never_zero() {
        let span = BudgetPeriod::Daily.span(0);
        let cases = [
            (0, 86_400),
            (DAY_MS - 1, 1),
            (DAY_MS - 1_500, 2),
            (DAY_MS, 1),
        ];
        for (now, secs) in cases {
            assert_eq!(span.retry_after_secs(now), secs, "{now}");
        }
        assert_eq!(span.key("acme/ci"), "acme/ci@1970-01-01");
    }

    #[test]
    fn periods_parse_their_names_only() {
        for p in [BudgetPeriod::Monthly, BudgetPeriod::Daily] {
            assert_eq!(BudgetPeriod::parse(p.as_str()), Some(p));
        }
        for bad in ["", "Monthly", "weekly", "30d"] {
            assert_eq!(BudgetPeriod::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn dollars_are_checked_for_nonsense() {
        let cases: [(f64, Option<u64>); 9] = [
            (0.0, Some(0)),
            (0.5, Some(500_000)),
            (12.345_678_9, Some(12_345_679)),
            (MAX_BUDGET_USD, Some(1_000_000_000_000_000)),
            (-0.01, None),
            (f64::NAN, None),
            (f64::INFINITY, None),
            (MAX_BUDGET_USD * 1.01, None),
            (1e300, None),
        ];
        for (usd, expected) in cases {
            assert_eq!(usd_to_micros("max_budget_usd", usd).ok(), expected, "{usd}");
        }
    }

    #[test]
    fn budgets_validate_every_field() {
        let ok = KeyBudget {
            max_cost_micros: Some(1),
            max_tokens: Some(0),
            period: BudgetPeriod::Daily,
            requests_per_minute: Some(1),
            tokens_per_minute: Some(1),
        };
        assert_eq!(ok.validate(), Ok(()));
        assert!(ok.is_limited() && ok.has_cap());
        assert!(!KeyBudget::default().is_limited());
        let cases = [
            (
                KeyBudget {
                    requests_per_minute: Some(0),
                    ..ok
                },
                "requests_per_minute",
            ),
            (
                KeyBudget {
                    tokens_per_minute: Some(MAX_TOKENS_PER_MINUTE + 1),
                    ..ok
                },
                "tokens_per_minute",
            ),
            (
                KeyBudget {
                    max_tokens: Some(MAX_TOKENS + 1),
                    ..ok
                },
                "max_tokens",
            ),
            (
                KeyBudget {
                    max_cost_micros: Some(u64::MAX),
                    ..ok
                },
                "max_budget_usd",
            ),
        ];
        for (budget, field) in cases {
            assert_eq!(budget.validate().map_err(|e| e.field()), Err(field));
        }
    }
}

#[cfg(test)]
mod counting {
    use crate::{BudgetConfig, Nanos, TokenBudget};

    /// Per-key caps count in one store whose configured limit is a ceiling; each call
    /// brings the key's own limit.
    fn store() -> TokenBudget {
        TokenBudget::new(BudgetConfig::quota(1 << 52)).unwrap()
    }

    #[test]
    fn a_per_call_limit_admits_up_to_itself_and_a_raised_one_unblocks() {
        let mut b = store();
        let t = Nanos::from_secs(1);
        // (request, amount, limit in force, granted)
        let steps = [
            ("r1", 60, 100, true),
            ("r2", 50, 100, false),
            ("r3", 40, 100, true),
            ("r4", 1, 100, false),
            // The operator raises the cap: the next request fits again.
            ("r5", 50, 150, true),
            // And lowers it: nothing is clawed back, the next one is refused.
            ("r6", 1, 120, false),
        ];
        for (id, amount, limit, granted) in steps {
            let r = b
                .reserve_with_limit("k@2026-12", id, amount, limit, t)
                .unwrap();
            assert_eq!(r.granted, granted, "{id}");
            assert_eq!(r.usage.limit, limit, "{id}");
        }
        let usage = b.usage_with_limit("k@2026-12", 150, t);
        assert_eq!((usage.reserved, usage.remaining), (150, 0));
        // Larger than the cap itself: no wait can help.
        assert!(b
            .reserve_with_limit("k@2026-12", "r7", 151, 150, t)
            .is_err());
        // Another key is independent.
        assert!(
            b.reserve_with_limit("j@2026-12", "r8", 100, 100, t)
                .unwrap()
                .granted
        );
    }

    #[test]
    fn a_finished_period_is_forgotten_once_nothing_is_held() {
        let mut b = store();
        let t = Nanos::from_secs(1);
        b.seed_spent("k@2026-11", 70, t);
        assert!(
            b.reserve_with_limit("k@2026-11", "r", 5, 100, t)
                .unwrap()
                .granted
        );
        assert!(!b.forget("k@2026-11"), "an open reservation keeps it");
        b.reconcile("r", 5, t).unwrap();
        assert!(b.forget("k@2026-11"));
        assert_eq!(b.usage("k@2026-11", t).spent, 0);
        assert!(!b.forget("never-seen"));
    }

    #[test]
    fn a_refresh_raises_spend_and_never_lowers_it() {
        let mut b = store();
        let t = Nanos::from_secs(1);
        b.seed_spent("k", 70, t);
        b.raise_spent("k", 40, t);
        assert_eq!(
            b.usage("k", t).spent,
            70,
            "a lagging ledger hands nothing back"
        );
        b.raise_spent("k", 90, t);
        assert_eq!(
            b.usage("k", t).spent,
            90,
            "other replicas' spend is taken in"
        );
        assert!(!b.reserve_with_limit("k", "r", 11, 100, t).unwrap().granted);
    }
}
