//! The ledger's data: one [`LedgerEntry`] per request, and the shapes of the
//! usage reports read back from a store.

use serde::{Deserialize, Serialize};

use crate::LedgerError;

/// Milliseconds in a UTC day, for grouping by day.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// How a request ended, as far as accounting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The upstream finished and the client received the whole response.
    Completed,
    /// The client went away before the response ended (mid-stream included).
    ClientDisconnected,
    /// The upstream failed (connect error, 5xx, torn stream).
    UpstreamError,
    /// A gateway timeout fired (first byte, idle or total deadline).
    Timeout,
    /// The gateway refused the request (limit, quota, policy) before or
    /// instead of forwarding it.
    Refused,
    /// The gateway itself failed (an opaque 500).
    InternalError,
}

impl Outcome {
    /// The stable string stored in the database and written to JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::ClientDisconnected => "client_disconnected",
            Self::UpstreamError => "upstream_error",
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::InternalError => "internal_error",
        }
    }

    pub(crate) fn from_db(s: &str) -> Result<Self, LedgerError> {
        Ok(match s {
            "completed" => Self::Completed,
            "client_disconnected" => Self::ClientDisconnected,
            "upstream_error" => Self::UpstreamError,
            "timeout" => Self::Timeout,
            "refused" => Self::Refused,
            "internal_error" => Self::InternalError,
            _ => return Err(corrupt("outcome", s)),
        })
    }
}

/// Where the token counts of an entry come from, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UsageSource {
    /// The upstream's `usage` object.
    Upstream,
    /// The gateway counted the relayed text itself (the upstream reported
    /// nothing, e.g. a stream cut short).
    Counted,
    /// Neither: the admission estimate stands in for the real figure.
    Estimated,
}

impl UsageSource {
    /// The stable string stored in the database and written to JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Counted => "counted",
            Self::Estimated => "estimated",
        }
    }

    pub(crate) fn from_db(s: &str) -> Result<Self, LedgerError> {
        Ok(match s {
            "upstream" => Self::Upstream,
            "counted" => Self::Counted,
            "estimated" => Self::Estimated,
            _ => return Err(corrupt("usage_source", s)),
        })
    }
}

/// One request's accounting row.
///
/// `request_id` is the idempotency key: recording the same id twice keeps the
/// first row (see [`crate::Recorded`]). It must therefore be an id the
/// gateway minted, never one a client chose: a client that could pick its
/// ledger id could replay one id to have every later request ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Unique per request, minted by the gateway (see the type's doc).
    pub request_id: String,
    /// When the request ended, in Unix milliseconds (the caller's clock).
    /// Must not be negative.
    pub ts: i64,
    /// The tenant the key belongs to.
    pub tenant: String,
    /// The API key's configured name (never the key itself).
    pub key_name: String,
    /// The model the client asked for.
    pub model: String,
    /// The backend the request was routed to (empty when refused first).
    pub backend: String,
    /// The API path, e.g. `/v1/chat/completions`.
    pub endpoint: String,
    /// The HTTP status the client received.
    pub status: u16,
    /// How the request ended.
    pub outcome: Outcome,
    /// Prompt tokens, including cached ones.
    pub prompt_tokens: u64,
    /// Completion tokens, including reasoning ones.
    pub completion_tokens: u64,
    /// Prompt tokens served from the upstream's cache, when reported.
    pub cached_tokens: Option<u64>,
    /// Completion tokens spent on reasoning, when reported.
    pub reasoning_tokens: Option<u64>,
    /// Tokens spent in gateway-run tool loops, when any. Informational: they
    /// are already part of `prompt_tokens` / `completion_tokens`.
    pub tool_loop_tokens: Option<u64>,
    /// What the gateway reserved at admission (prompt estimate + max tokens).
    pub estimated_tokens: u64,
    /// Where `prompt_tokens` and `completion_tokens` come from.
    pub usage_source: UsageSource,
    /// Cost in micro-dollars, from [`crate::PriceTable::cost_of`].
    pub cost_micros: i64,
    /// Time from accepting the request to its end, in milliseconds.
    pub latency_ms: u64,
    /// Upstream attempts (1 unless the request was retried or fell back;
    /// `backend` is the one that answered). Absent in older exports: 1.
    #[serde(default = "one_attempt")]
    pub attempts: u32,
}

fn one_attempt() -> u32 {
    1
}

impl LedgerEntry {
    /// Prompt plus completion tokens.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// An entry checked and converted to the integer types both databases
/// store (`BIGINT` is signed), so the writer cannot fail on a value.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub request_id: String,
    pub ts: i64,
    pub tenant: String,
    pub key_name: String,
    pub model: String,
    pub backend: String,
    pub endpoint: String,
    pub status: i32,
    pub outcome: &'static str,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub tool_loop_tokens: Option<i64>,
    pub estimated_tokens: i64,
    pub usage_source: &'static str,
    pub cost_micros: i64,
    pub latency_ms: i64,
    pub attempts: i64,
}

fn int(field: &'static str, v: u64) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| LedgerError::InvalidEntry {
        field,
        reason: "larger than a signed 64-bit integer",
    })
}

fn opt(field: &'static str, v: Option<u64>) -> Result<Option<i64>, LedgerError> {
    v.map(|v| int(field, v)).transpose()
}

impl Row {
    pub(crate) fn from_entry(e: LedgerEntry) -> Result<Self, LedgerError> {
        if e.request_id.is_empty() {
            return Err(LedgerError::InvalidEntry {
                field: "request_id",
                reason: "empty",
            });
        }
        if e.ts < 0 {
            return Err(LedgerError::InvalidEntry {
                field: "ts",
                reason: "negative",
            });
        }
        Ok(Self {
            ts: e.ts,
            status: i32::from(e.status),
            outcome: e.outcome.as_str(),
            prompt_tokens: int("prompt_tokens", e.prompt_tokens)?,
            completion_tokens: int("completion_tokens", e.completion_tokens)?,
            cached_tokens: opt("cached_tokens", e.cached_tokens)?,
            reasoning_tokens: opt("reasoning_tokens", e.reasoning_tokens)?,
            tool_loop_tokens: opt("tool_loop_tokens", e.tool_loop_tokens)?,
            estimated_tokens: int("estimated_tokens", e.estimated_tokens)?,
            usage_source: e.usage_source.as_str(),
            cost_micros: e.cost_micros,
            latency_ms: int("latency_ms", e.latency_ms)?,
            attempts: i64::from(e.attempts),
            request_id: e.request_id,
            tenant: e.tenant,
            key_name: e.key_name,
            model: e.model,
            backend: e.backend,
            endpoint: e.endpoint,
        })
    }
}

/// The raw values of one stored row, as both stores read them.
#[derive(Debug)]
pub(crate) struct StoredRow {
    pub request_id: String,
    pub ts: i64,
    pub tenant: String,
    pub key_name: String,
    pub model: String,
    pub backend: String,
    pub endpoint: String,
    pub status: i64,
    pub outcome: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub tool_loop_tokens: Option<i64>,
    pub estimated_tokens: i64,
    pub usage_source: String,
    pub cost_micros: i64,
    pub latency_ms: i64,
    pub attempts: i64,
}

pub(crate) fn corrupt(column: &'static str, value: impl ToString) -> LedgerError {
    LedgerError::Corrupt {
        column,
        value: value.to_string(),
    }
}

pub(crate) fn unsigned(column: &'static str, v: i64) -> Result<u64, LedgerError> {
    u64::try_from(v).map_err(|_| corrupt(column, v))
}

impl StoredRow {
    pub(crate) fn into_entry(self) -> Result<LedgerEntry, LedgerError> {
        let opt = |c, v: Option<i64>| v.map(|v| unsigned(c, v)).transpose();
        Ok(LedgerEntry {
            status: u16::try_from(self.status).map_err(|_| corrupt("status", self.status))?,
            outcome: Outcome::from_db(&self.outcome)?,
            prompt_tokens: unsigned("prompt_tokens", self.prompt_tokens)?,
            completion_tokens: unsigned("completion_tokens", self.completion_tokens)?,
            cached_tokens: opt("cached_tokens", self.cached_tokens)?,
            reasoning_tokens: opt("reasoning_tokens", self.reasoning_tokens)?,
            tool_loop_tokens: opt("tool_loop_tokens", self.tool_loop_tokens)?,
            estimated_tokens: unsigned("estimated_tokens", self.estimated_tokens)?,
            usage_source: UsageSource::from_db(&self.usage_source)?,
            latency_ms: unsigned("latency_ms", self.latency_ms)?,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| corrupt("attempts", self.attempts))?,
            request_id: self.request_id,
            ts: self.ts,
            tenant: self.tenant,
            key_name: self.key_name,
            model: self.model,
            backend: self.backend,
            endpoint: self.endpoint,
            cost_micros: self.cost_micros,
        })
    }
}

/// What a usage report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GroupBy {
    /// One row per tenant.
    Tenant,
    /// One row per model.
    Model,
    /// One row per UTC day of `ts`, keyed `YYYY-MM-DD`.
    Day,
}

/// A usage report's filter: entries with `since_ms <= ts < until_ms`,
/// optionally of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageQuery {
    /// Only this tenant's entries, when set.
    pub tenant: Option<String>,
    /// Inclusive lower bound, Unix milliseconds.
    pub since_ms: i64,
    /// Exclusive upper bound, Unix milliseconds.
    pub until_ms: i64,
    /// The grouping.
    pub group_by: GroupBy,
}

/// One group of a usage report. Rows come sorted by `group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// The tenant, the model, or the UTC day (`YYYY-MM-DD`).
    pub group: String,
    /// Number of entries.
    pub requests: u64,
    /// Sum of prompt tokens.
    pub prompt_tokens: u64,
    /// Sum of completion tokens.
    pub completion_tokens: u64,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: u64,
    /// Sum of costs, micro-dollars.
    pub cost_micros: i64,
}

/// What a tenant has used since a point in time, to seed quotas at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Spent {
    /// Number of entries.
    pub requests: u64,
    /// Prompt plus completion tokens.
    pub tokens: u64,
    /// Cost, micro-dollars.
    pub cost_micros: i64,
}

/// The UTC calendar day `days` days after 1970-01-01 as (year, month, day)
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days from 1970-01-01 to the UTC date (year, month, day) (Hinnant's
/// `days_from_civil`, the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC calendar day `days` days after 1970-01-01, as `YYYY-MM-DD`.
pub(crate) fn format_day(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A UTC calendar month: the period of monthly quotas and budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    /// The year, e.g. 2026.
    pub year: i64,
    /// 1 to 12.
    pub month: i64,
}

impl Month {
    /// The month holding `ts_ms` (Unix milliseconds).
    pub fn of_unix_ms(ts_ms: i64) -> Month {
        let (year, month, _) = civil_from_days(ts_ms.div_euclid(DAY_MS));
        Month { year, month }
    }

    /// Its first millisecond, for ledger queries ([`crate::Ledger::spent`]).
    pub fn start_ms(self) -> i64 {
        days_from_civil(self.year, self.month, 1) * DAY_MS
    }

    /// `YYYY-MM`.
    pub fn label(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_format_as_utc_dates() {
        let check = |days, expected: &str| assert_eq!(format_day(days), expected);
        check(0, "1970-01-01");
        check(59, "1970-03-01");
        check(11_016, "2000-02-29");
        check(19_723, "2024-01-01");
        check(20_513, "2026-03-01");
    }

    #[test]
    fn months_start_where_their_first_day_starts() {
        for days in [0i64, 59, 11_016, 19_723, 20_513, 20_786, -1, 40_000] {
            let ms = days * DAY_MS + 12 * 3_600_000;
            let month = Month::of_unix_ms(ms);
            let start = month.start_ms();
            assert!(start <= ms, "{month:?}");
            assert_eq!(format_day(start / DAY_MS)[8..], *"01");
            assert_eq!(format_day(days)[..7], month.label());
            // The day before the start is in another month.
            assert_ne!(Month::of_unix_ms(start - 1), month);
        }
        assert_eq!(Month::of_unix_ms(1_796_083_200_000).label(), "2026-12");
    }

    #[test]
    fn outcomes_round_trip_through_their_stored_names() {
        for o in [
            Outcome::Completed,
            Outcome::ClientDisconnected,
            Outcome::UpstreamError,
            Outcome::Timeout,
            Outcome::Refused,
            Outcome::InternalError,
        ] {
            assert_eq!(Outcome::from_db(o.as_str()).unwrap(), o);
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
        }
        assert!(Outcome::from_db("exploded").is_err());
    }
}
