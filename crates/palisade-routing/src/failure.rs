//! Failure classes of one attempt and whether each may be sent again (the
//! table is in the crate doc).
//!
//! Must not: look at response bodies beyond what the caller classified.

use crate::Nanos;

/// What went wrong with one attempt, before any response byte reached the
/// client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// No connection could be made; nothing was sent.
    Connect,
    /// The upstream answered 429.
    RateLimited,
    /// The upstream answered 502 or 503: it refused before doing work.
    Unavailable,
    /// Any other 5xx: the upstream took the body and failed.
    ServerError,
    /// The body was sent and no response head came in time.
    Timeout,
    /// The connection broke after the body was sent.
    Broken,
    /// The prompt does not fit this model's context (400
    /// `context_length_exceeded`): only a longer-context model can help.
    ContextLength,
    /// The upstream's content filter refused the request.
    ContentFilter,
}

/// Whether a failed attempt may have had an effect at the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Safety {
    /// The request never left: retrying cannot duplicate anything.
    NotSent,
    /// The upstream answered that it did not act on the request.
    Refused,
    /// The upstream may have acted on it: retry only idempotent requests.
    Ambiguous,
}

impl FailureClass {
    /// Every class, for tables and property tests.
    pub const ALL: [FailureClass; 8] = [
        Self::Connect,
        Self::RateLimited,
        Self::Unavailable,
        Self::ServerError,
        Self::Timeout,
        Self::Broken,
        Self::ContextLength,
        Self::ContentFilter,
    ];

    /// The class's safety (see the crate doc's table).
    pub fn safety(self) -> Safety {
        match self {
            Self::Connect => Safety::NotSent,
            Self::RateLimited | Self::Unavailable | Self::ContextLength | Self::ContentFilter => {
                Safety::Refused
            }
            Self::ServerError | Self::Timeout | Self::Broken => Safety::Ambiguous,
        }
    }

    /// May a request failing this way be sent again? `idempotent`: the
    /// request has no side effect at the model (the caller decides: the
    /// endpoint or the route's declaration).
    pub fn may_resend(self, idempotent: bool) -> bool {
        idempotent || self.safety() != Safety::Ambiguous
    }

    /// Classes about the model, not the deployment: another deployment of
    /// the same model would answer the same, so only a fallback helps.
    pub fn is_about_the_model(self) -> bool {
        matches!(self, Self::ContextLength | Self::ContentFilter)
    }

    /// Classes that count against a deployment's health.
    pub fn is_deployment_fault(self) -> bool {
        !self.is_about_the_model() && self != Self::RateLimited
    }

    /// The name used in config (`fallbacks.<name>`) and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::Broken => "broken",
            Self::ContextLength => "context_length",
            Self::ContentFilter => "content_filter",
        }
    }

    /// Classifies an upstream status (with the error body's `error.code` or
    /// `error.type`, when the caller read one). `None`: not a failure this
    /// crate handles (the answer goes to the client as it is).
    pub fn from_status(status: u16, error_code: Option<&str>) -> Option<Self> {
        let code = error_code.unwrap_or("");
        match status {
            429 => Some(Self::RateLimited),
            502 | 503 => Some(Self::Unavailable),
            500..=599 => Some(Self::ServerError),
            400 | 413 if code.contains("context_length") => Some(Self::ContextLength),
            400 if code.contains("content_filter") || code.contains("content_policy") => {
                Some(Self::ContentFilter)
            }
            _ => None,
        }
    }
}

/// One failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong.
    pub class: FailureClass,
    /// The upstream's `Retry-After`, when it sent one.
    pub retry_after: Option<Nanos>,
}

impl Failure {
    /// A failure without `Retry-After`.
    pub fn of(class: FailureClass) -> Self {
        Self {
            class,
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambiguous_failures_are_resent_only_when_idempotent() {
        for class in FailureClass::ALL {
            let ambiguous = class.safety() == Safety::Ambiguous;
            assert!(class.may_resend(true), "{class:?}");
            assert_eq!(class.may_resend(false), !ambiguous, "{class:?}");
        }
        assert!(!FailureClass::Timeout.may_resend(false));
        assert!(!FailureClass::Broken.may_resend(false));
        assert!(FailureClass::Connect.may_resend(false));
    }

    #[test]
    fn statuses_classify() {
        let table = [
            (429, None, Some(FailureClass::RateLimited)),
            (503, None, Some(FailureClass::Unavailable)),
            (502, None, Some(FailureClass::Unavailable)),
            (500, None, Some(FailureClass::ServerError)),
            (504, None, Some(FailureClass::ServerError)),
            (
                400,
                Some("context_length_exceeded"),
                Some(FailureClass::ContextLength),
            ),
            (
                400,
                Some("content_filter"),
                Some(FailureClass::ContentFilter),
            ),
            (400, Some("invalid_request_error"), None),
            (404, None, None),
            (200, None, None),
        ];
        for (status, code, want) in table {
            assert_eq!(FailureClass::from_status(status, code), want, "{status}");
        }
    }
}
