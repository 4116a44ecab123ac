//! Admission decisions, which limit said no, and the response headers that explain it.
//!
//! The codes returned by [`LimitKind::code`] are part of Palisade's API (clients branch on
//! `error.code`); once shipped they never change. The HTTP status is *not* chosen here:
//! every limit maps to 429 in the one place that maps errors to statuses, in the gateway.
//! Header *names and values* are computed here as plain strings so that the gateway stays
//! free of limit arithmetic and this crate stays free of HTTP types.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::time::Nanos;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitKind {
    /// A request-rate (GCRA) limit: too many requests in too short a time.
    RateLimited,
    /// A windowed token budget (tokens per minute, per day) has no room for this request's
    /// reservation until the window turns.
    TokensExhausted,
    /// Too many requests or streams in flight for this key or backend.
    ConcurrencyLimited,
    /// A hard quota (for example monthly tokens) is used up; it does not refill by waiting.
    QuotaExceeded,
    /// The caller is blocked by the escalation ladder for repeated offences.
    BlockedOffender,
}

impl LimitKind {
    /// Every kind, for exhaustive tests and metric label registration.
    pub const ALL: [Self; 5] = [
        Self::RateLimited,
        Self::TokensExhausted,
        Self::ConcurrencyLimited,
        Self::QuotaExceeded,
        Self::BlockedOffender,
    ];

    /// The stable `error.code` on the wire.
    pub const fn code(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::TokensExhausted => "tokens_exhausted",
            Self::ConcurrencyLimited => "concurrency_limited",
            Self::QuotaExceeded => "quota_exceeded",
            Self::BlockedOffender => "blocked_offender",
        }
    }
}

/// A refusal: which limit, and when trying again could succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// The limit that refused.
    pub kind: LimitKind,
    /// How long until the same request could be admitted; `None` when waiting is not known
    /// to help (a hard quota, a concurrency slot that frees when some other request ends).
    pub retry_after: Option<Nanos>,
}

impl Denial {
    /// The `Retry-After` value in whole seconds, rounded up (RFC 9110 §10.2.3).
    pub const fn retry_after_secs(&self) -> Option<u64> {
        match self.retry_after {
            Some(n) => Some(n.as_secs_ceil()),
            None => None,
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admit it now.
    Allow,
    /// Admit it after an added delay (the escalation ladder's "slow" rung).
    Delay(Nanos),
    /// Refuse it.
    Deny(Denial),
}

impl Decision {
    /// True for [`Decision::Allow`] and [`Decision::Delay`].
    pub const fn is_admitted(&self) -> bool {
        !matches!(self, Self::Deny(_))
    }

    /// Combines the decisions of two limiters applied to one request: a denial beats a
    /// delay beats an admission; of two denials the one with the longer (or unknown) wait
    /// wins, since the client must satisfy both; of two delays the longer wins.
    #[must_use]
    pub fn and(self, other: Self) -> Self {
        match (self, other) {
            (Self::Deny(a), Self::Deny(b)) => {
                let a_wait = a.retry_after.unwrap_or(Nanos::MAX);
                let b_wait = b.retry_after.unwrap_or(Nanos::MAX);
                Self::Deny(if b_wait > a_wait { b } else { a })
            }
            (d @ Self::Deny(_), _) | (_, d @ Self::Deny(_)) => d,
            (Self::Delay(a), Self::Delay(b)) => Self::Delay(a.max(b)),
            (d @ Self::Delay(_), Self::Allow) | (Self::Allow, d @ Self::Delay(_)) => d,
            (Self::Allow, Self::Allow) => Self::Allow,
        }
    }
}

/// One limit's state as OpenAI's `x-ratelimit-*` headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// The capacity (`x-ratelimit-limit-*`).
    pub limit: u64,
    /// What is left now (`x-ratelimit-remaining-*`).
    pub remaining: u64,
    /// Time until the limit is back to full (`x-ratelimit-reset-*`).
    pub reset_after: Nanos,
}

/// The rate-limit headers of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimitHeaders {
    /// The request-rate limit, for the `-requests` headers.
    pub requests: Option<RateLimitInfo>,
    /// The token limit, for the `-tokens` headers.
    pub tokens: Option<RateLimitInfo>,
    /// Set on refusals that can be retried: the `Retry-After` header.
    pub retry_after: Option<Nanos>,
}

impl RateLimitHeaders {
    /// Header names (lowercase) and values, in a stable order.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(7);
        if let Some(r) = self.retry_after {
            out.push(("retry-after", r.as_secs_ceil().to_string()));
        }
        if let Some(i) = self.requests {
            out.push(("x-ratelimit-limit-requests", i.limit.to_string()));
            out.push(("x-ratelimit-remaining-requests", i.remaining.to_string()));
            out.push(("x-ratelimit-reset-requests", format_reset(i.reset_after)));
        }
        if let Some(i) = self.tokens {
            out.push(("x-ratelimit-limit-tokens", i.limit.to_string()));
            out.push(("x-ratelimit-remaining-tokens", i.remaining.to_string()));
            out.push(("x-ratelimit-reset-tokens", format_reset(i.reset_after)));
        }
        out
    }
}

/// Formats a reset time the way OpenAI's `x-ratelimit-reset-*` headers do (Go duration
/// style: `"0s"`, `"17ms"`, `"1s"`, `"6m0s"`, `"1h2m3.5s"`), rounded **up** to the
/// millisecond so that a client waiting the stated time finds the limit reset.
pub fn format_reset(after: Nanos) -> String {
    let ms = after.get().div_ceil(1_000_000);
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1_000 % 60,
        ms % 1_000,
    );
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(out, "{s}");
    if frac > 0 {
        let digits = format!("{frac:03}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let codes: Vec<_> = LimitKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(
            codes,
            [
                "rate_limited",
                "tokens_exhausted",
                "concurrency_limited",
                "quota_exceeded",
                "blocked_offender"
            ]
        );
        for k in LimitKind::ALL {
            // The serde name is the code, so config and logs use the same words.
            assert_eq!(serde_name(k), k.code());
        }
    }

    /// Checks that a kind deserializes from its code (without pulling in serde_json) and
    /// returns that code.
    fn serde_name(k: LimitKind) -> &'static str {
        use serde::de::value::{Error, StrDeserializer};
        use serde::de::IntoDeserializer;
        let d: StrDeserializer<'_, Error> = k.code().into_deserializer();
        assert_eq!(LimitKind::deserialize(d).unwrap(), k);
        k.code()
    }

    #[test]
    fn reset_format() {
        fn check(ns: u64, expected: &str) {
            assert_eq!(format_reset(Nanos(ns)), expected, "{ns}ns");
        }
        check(0, "0s");
        check(1, "1ms");
        check(17_000_000, "17ms");
        check(999_000_001, "1s");
        check(1_000_000_000, "1s");
        check(1_500_000_000, "1.5s");
        check(1_050_000_000, "1.05s");
        check(360_000_000_000, "6m0s");
        check(3_723_500_000_000, "1h2m3.5s");
        check(3_600_000_000_000, "1h0m0s");
    }

    #[test]
    fn header_pairs() {
        let h = RateLimitHeaders {
            requests: Some(RateLimitInfo {
                limit: 60,
                remaining: 0,
                reset_after: Nanos::from_millis(1_500),
            }),
            tokens: Some(RateLimitInfo {
                limit: 150_000,
                remaining: 149_984,
                reset_after: Nanos::from_millis(6),
            }),
            retry_after: Some(Nanos::from_millis(1_001)),
        };
        let got: Vec<String> = h
            .to_pairs()
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        assert_eq!(
            got,
            [
                "retry-after: 2",
                "x-ratelimit-limit-requests: 60",
                "x-ratelimit-remaining-requests: 0",
                "x-ratelimit-reset-requests: 1.5s",
                "x-ratelimit-limit-tokens: 150000",
                "x-ratelimit-remaining-tokens: 149984",
                "x-ratelimit-reset-tokens: 6ms",
            ]
        );
        assert!(RateLimitHeaders::default().to_pairs().is_empty());
    }

    #[test]
    fn combining_decisions() {
        let deny = |kind, secs: Option<u64>| {
            Decision::Deny(Denial {
                kind,
                retry_after: secs.map(Nanos::from_secs),
            })
        };
        fn check(a: Decision, b: Decision, expected: Decision) {
            assert_eq!(a.and(b), expected, "{a:?} and {b:?}");
            assert_eq!(b.and(a), expected, "{b:?} and {a:?}");
        }
        let slow = Decision::Delay(Nanos::from_millis(200));
        check(Decision::Allow, Decision::Allow, Decision::Allow);
        check(Decision::Allow, slow, slow);
        check(slow, Decision::Delay(Nanos::from_millis(50)), slow);
        let rate = deny(LimitKind::RateLimited, Some(2));
        check(slow, rate, rate);
        let tokens = deny(LimitKind::TokensExhausted, Some(30));
        check(rate, tokens, tokens);
        let quota = deny(LimitKind::QuotaExceeded, None);
        check(tokens, quota, quota);
        assert!(!rate.is_admitted() && slow.is_admitted());
        if let Decision::Deny(d) = rate {
            assert_eq!(d.retry_after_secs(), Some(2));
        }
    }
}
