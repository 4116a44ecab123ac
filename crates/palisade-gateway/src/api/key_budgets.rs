//! The budget fields of `/admin/keys` (create and update): a key's spend
//! cap in dollars and/or tokens per UTC period, and its own rates; and how
//! a key's budget and current spend are shown.
//!
//! Body fields (each optional; on update, `null` clears one):
//! `max_budget_usd` (number ≥ 0), `max_tokens` (integer ≥ 0),
//! `budget_period` (`monthly` | `daily`), `requests_per_minute` and
//! `tokens_per_minute` (integers ≥ 1). Anything out of range — negative,
//! fractional counts, absurdly large, a zero rate, an unknown period — is
//! 400 `invalid_key_budget` naming the field in `param`.
//!
//! Must not: enforce anything (`limits::key_budgets` does) or write to the
//! store (`api::keys` does).

use palisade_ledger::StoredBudget;
use palisade_limits::key_budget::{
    count, usd_to_micros, MAX_REQUESTS_PER_MINUTE, MAX_TOKENS, MAX_TOKENS_PER_MINUTE,
};
use palisade_limits::{BudgetPeriod, KeyBudgetError};
use palisade_openai::{ApiError, ErrorCode};
use serde_json::{json, Map, Value};

use crate::http::auth::Principal;
use crate::limits::admission::Admission;

/// The fields this module reads, for "nothing to change" messages.
pub(crate) const FIELDS: [&str; 5] = [
    "max_budget_usd",
    "max_tokens",
    "budget_period",
    "requests_per_minute",
    "tokens_per_minute",
];

fn refused(e: &KeyBudgetError) -> ApiError {
    ApiError::new(ErrorCode::InvalidKeyBudget, e.to_string()).with_param(e.field())
}

/// An integer field in `[min, max]`: absent → `None`; null → `Some(None)`.
fn integer(
    map: &Map<String, Value>,
    field: &'static str,
    min: u64,
    max: u64,
) -> Result<Option<Option<i64>>, ApiError> {
    let out_of_range = || refused(&KeyBudgetError::Count { field, min, max });
    match map.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => {
            let n = v.as_u64().ok_or_else(out_of_range)?;
            let n = count(field, n, min, max).map_err(|e| refused(&e))?;
            Ok(Some(Some(i64::try_from(n).map_err(|_| out_of_range())?)))
        }
    }
}

/// Applies the body's budget fields to `budget`. Returns whether any was
/// given.
///
/// # Errors
/// 400 `invalid_key_budget` for a value out of range.
pub(crate) fn apply(map: &Map<String, Value>, budget: &mut StoredBudget) -> Result<bool, ApiError> {
    let mut changed = false;
    match map.get("max_budget_usd") {
        None => {}
        Some(Value::Null) => {
            budget.max_budget_micros = None;
            changed = true;
        }
        Some(v) => {
            let field = "max_budget_usd";
            let usd = v
                .as_f64()
                .ok_or_else(|| refused(&KeyBudgetError::Dollars { field }))?;
            let micros = usd_to_micros(field, usd).map_err(|e| refused(&e))?;
            budget.max_budget_micros = Some(
                i64::try_from(micros).map_err(|_| refused(&KeyBudgetError::Dollars { field }))?,
            );
            changed = true;
        }
    }
    for (field, min, max, slot) in [
        ("max_tokens", 0, MAX_TOKENS, &mut budget.max_tokens),
        (
            "requests_per_minute",
            1,
            MAX_REQUESTS_PER_MINUTE,
            &mut budget.requests_per_minute,
        ),
        (
            "tokens_per_minute",
            1,
            MAX_TOKENS_PER_MINUTE,
            &mut budget.tokens_per_minute,
        ),
    ] {
        if let Some(v) = integer(map, field, min, max)? {
            *slot = v;
            changed = true;
        }
    }
    match map.get("budget_period") {
        None => {}
        Some(Value::Null) => {
            budget.budget_period = None;
            changed = true;
        }
        Some(v) => {
            let period = v
                .as_str()
                .and_then(BudgetPeriod::parse)
                .ok_or_else(|| refused(&KeyBudgetError::Period))?;
            budget.budget_period = Some(period.as_str().to_owned());
            changed = true;
        }
    }
    Ok(changed)
}

/// The key's budget settings as the API shows them (`null` when unset).
pub(crate) fn describe(budget: &StoredBudget) -> Value {
    json!({
        "max_budget_usd": budget.max_budget_micros.map(|m| m as f64 / 1_000_000.0),
        "max_tokens": budget.max_tokens,
        "budget_period": budget.budget_period.as_deref().unwrap_or("monthly"),
        "requests_per_minute": budget.requests_per_minute,
        "tokens_per_minute": budget.tokens_per_minute,
    })
}

/// The key's spend in its current period as this replica's budgets count
/// it (seeded from the ledger first), or `null` when it has no cap.
pub(crate) async fn spend(
    admission: &Admission,
    principal: &Principal,
    ledger: Option<&std::sync::Arc<palisade_ledger::Ledger>>,
) -> Value {
    let Some(budget) = principal.budget.filter(palisade_limits::KeyBudget::has_cap) else {
        return Value::Null;
    };
    let budgets = admission.key_budgets();
    budgets.prepare(principal, &budget, ledger).await;
    let report = budgets.report(principal, &budget).await;
    json!({
        "period": report.period,
        "period_label": report.period_label,
        "period_ends_at_ms": report.period_ends_at_ms,
        "spent_usd": report.spent_micros.map(|m| m as f64 / 1_000_000.0),
        "reserved_usd": report.reserved_micros.map(|m| m as f64 / 1_000_000.0),
        "spent_tokens": report.spent_tokens,
        "reserved_tokens": report.reserved_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (body, expected budget or the refused field)
    fn check(body: &str, expected: Result<StoredBudget, &str>) {
        let map: Map<String, Value> = serde_json::from_str(body).unwrap();
        let mut budget = StoredBudget::default();
        let got = apply(&map, &mut budget).map(|_| budget);
        match (got, expected) {
            (Ok(b), Ok(e)) => assert_eq!(b, e, "{body}"),
            (Err(err), Err(field)) => {
                assert_eq!(err.code, ErrorCode::InvalidKeyBudget, "{body}");
                assert_eq!(err.status(), 400, "{body}");
                assert_eq!(err.param.as_deref(), Some(field), "{body}");
            }
            (got, expected) => panic!("{body}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn budget_fields_are_validated_with_a_stable_code() {
        check(
            r#"{"max_budget_usd": 2.5, "budget_period": "daily", "requests_per_minute": 60}"#,
            Ok(StoredBudget {
                max_budget_micros: Some(2_500_000),
                budget_period: Some("daily".into()),
                requests_per_minute: Some(60),
                ..StoredBudget::default()
            }),
        );
        check(
            r#"{"max_budget_usd": 0, "max_tokens": 0}"#,
            Ok(StoredBudget {
                max_budget_micros: Some(0),
                max_tokens: Some(0),
                ..StoredBudget::default()
            }),
        );
        for (body, field) in [
            (r#"{"max_budget_usd": -1}"#, "max_budget_usd"),
            (r#"{"max_budget_usd": "NaN"}"#, "max_budget_usd"),
            (r#"{"max_budget_usd": 1e12}"#, "max_budget_usd"),
            (r#"{"max_budget_usd": true}"#, "max_budget_usd"),
            (r#"{"max_tokens": -5}"#, "max_tokens"),
            (r#"{"max_tokens": 1.5}"#, "max_tokens"),
            (r#"{"max_tokens": 1e300}"#, "max_tokens"),
            (r#"{"max_tokens": 18446744073709551615}"#, "max_tokens"),
            (r#"{"requests_per_minute": 0}"#, "requests_per_minute"),
            (r#"{"tokens_per_minute": 0}"#, "tokens_per_minute"),
            (r#"{"budget_period": "weekly"}"#, "budget_period"),
            (r#"{"budget_period": 30}"#, "budget_period"),
        ] {
            check(body, Err(field));
        }
    }
}
