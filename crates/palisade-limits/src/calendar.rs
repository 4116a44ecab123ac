//! Calendar time for monthly limits: which UTC month a Unix-millisecond timestamp belongs to,
//! when a month's counters reset, how a tenant-month counter is named, and the day of history
//! a spend-rate baseline is learned from.
//!
//! Monthly quotas and budgets never reset by a timer: each (tenant, month) is its own counter
//! key, so the first request of a new month simply lands on a fresh key. Everything here is a
//! pure function of a timestamp the caller read from its wall clock (the only limits that
//! need the calendar rather than a monotonic clock); nothing here reads a clock.

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Minutes in a day: a day of spend divided by this is the baseline per minute.
pub const MINUTES_PER_DAY: u64 = 1_440;

/// A UTC calendar month: the period of monthly quotas and budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    /// The year, e.g. 2026.
    pub year: i64,
    /// 1 to 12.
    pub month: i64,
}

impl Month {
    /// The month holding `unix_ms` (milliseconds since 1970-01-01 UTC; negative is before).
    pub fn of_unix_ms(unix_ms: i64) -> Self {
        let (year, month, _) = civil_from_days(unix_ms.div_euclid(DAY_MS));
        Self { year, month }
    }

    /// Its first millisecond (Unix ms): where a ledger query for its spend starts.
    pub fn start_ms(self) -> i64 {
        days_from_civil(self.year, self.month, 1) * DAY_MS
    }

    /// The month after it.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// When its counters stop counting: the first millisecond of the next month.
    pub fn resets_at_ms(self) -> i64 {
        self.next().start_ms()
    }

    /// `YYYY-MM`.
    pub fn label(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }
}

/// The key of a tenant's counters for `month`: `tenant@YYYY-MM`. `tenant` must already be
/// escaped so it holds no `@` of its own (the gateway escapes every Redis key part).
pub fn month_key(tenant: &str, month: Month) -> String {
    format!("{tenant}@{}", month.label())
}

/// The tenant part of `key` when `key` counts `month`; `None` for another month's key.
pub fn tenant_of_month_key(key: &str, month: Month) -> Option<&str> {
    key.strip_suffix(&month.label())?.strip_suffix('@')
}

/// The `YYYY-MM` part of a month key (the whole key when it has no `@`).
pub fn month_label_of_key(key: &str) -> &str {
    key.rsplit('@').next().unwrap_or_default()
}

/// Where the day of history a spend-rate baseline is learned from starts: a day before
/// `now_ms`, never before the epoch.
pub fn baseline_since_ms(now_ms: i64) -> i64 {
    now_ms.saturating_sub(DAY_MS).max(0)
}

/// A day's token spend as a per-minute baseline.
pub const fn baseline_per_minute(tokens_in_a_day: u64) -> u64 {
    tokens_in_a_day / MINUTES_PER_DAY
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

/// Days from 1970-01-01 to the UTC date (year, month, day) (Hinnant's `days_from_civil`, the
/// inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn timestamps_fall_in_their_utc_month() {
        // (unix ms, month, its start, when it resets)
        let cases = [
            (0, "1970-01", 0, 2_678_400_000),
            (2_678_399_999, "1970-01", 0, 2_678_400_000),
            (2_678_400_000, "1970-02", 2_678_400_000, 5_097_600_000),
            (-1, "1969-12", -2_678_400_000, 0),
            // 2000-02-29 12:00 UTC: a leap day.
            (951_825_600_000, "2000-02", 949_363_200_000, 951_868_800_000),
            // 2024-02-29 23:59:59.999 UTC, the last instant of a leap February.
            (
                1_709_251_199_999,
                "2024-02",
                1_706_745_600_000,
                1_709_251_200_000,
            ),
            (
                1_709_251_200_000,
                "2024-03",
                1_709_251_200_000,
                1_711_929_600_000,
            ),
            // 2026-12-31 23:00 UTC: the year rolls over at the reset.
            (
                1_798_758_000_000,
                "2026-12",
                1_796_083_200_000,
                1_798_761_600_000,
            ),
            (
                1_798_761_600_000,
                "2027-01",
                1_798_761_600_000,
                1_801_440_000_000,
            ),
        ];
        for (ms, label, start, reset) in cases {
            let month = Month::of_unix_ms(ms);
            assert_eq!(month.label(), label, "{ms}");
            assert_eq!(month.start_ms(), start, "{ms}");
            assert_eq!(month.resets_at_ms(), reset, "{ms}");
        }
    }

    #[test]
    fn months_start_where_their_first_day_starts() {
        for days in [0i64, 59, 11_016, 19_723, 20_513, 20_786, -1, 40_000] {
            let ms = days * DAY_MS + 12 * HOUR_MS;
            let month = Month::of_unix_ms(ms);
            let start = month.start_ms();
            assert!(start <= ms && ms < month.resets_at_ms(), "{month:?}");
            // The day before the start is in another month, as is the reset.
            assert_ne!(Month::of_unix_ms(start - 1), month);
            assert_eq!(Month::of_unix_ms(month.resets_at_ms()), month.next());
        }
        assert_eq!(Month::of_unix_ms(1_796_083_200_000).label(), "2026-12");
    }

    #[test]
    fn month_keys_name_a_tenant_month() {
        let march = Month {
            year: 2026,
            month: 3,
        };
        let april = march.next();
        let cases = [
            ("acme", march, Some("acme"), "2026-03"),
            ("acme", april, None, "2026-03"),
            ("", march, Some(""), "2026-03"),
            ("a%40b", march, Some("a%40b"), "2026-03"),
        ];
        let key_of_march = |t: &str| month_key(t, march);
        for (tenant, asked, found, label) in cases {
            let key = key_of_march(tenant);
            assert_eq!(
                tenant_of_month_key(&key, asked),
                found,
                "{key} in {asked:?}"
            );
            assert_eq!(month_label_of_key(&key), label);
        }
        assert_eq!(month_key("acme", march), "acme@2026-03");
        assert_eq!(tenant_of_month_key("acme2026-03", march), None);
        assert_eq!(month_label_of_key("plain"), "plain");
    }

    #[test]
    fn the_baseline_looks_back_one_day() {
        let cases = [(DAY_MS + 5, 5), (DAY_MS, 0), (5, 0), (0, 0), (i64::MIN, 0)];
        for (now, since) in cases {
            assert_eq!(baseline_since_ms(now), since, "{now}");
        }
        assert_eq!(baseline_per_minute(14_400), 10);
        assert_eq!(baseline_per_minute(1_439), 0);
    }
}
