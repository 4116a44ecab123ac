//! OpenAI-shaped error bodies with stable codes.
//!
//! Clients (the OpenAI SDKs, LangChain, curl scripts) branch on `error.code` and
//! the HTTP status, so both are part of Palisade's API: a code, once shipped,
//! keeps its meaning and its status. [`ErrorCode::status`] is the single place
//! that maps a code to a status.

use serde::Serialize;

/// The coarse class of an error, rendered as `error.type`.
///
/// OpenAI uses `invalid_request_error`, `authentication_error` and so on; we
/// keep those names where a client may rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The client sent something we cannot accept.
    InvalidRequestError,
    /// Missing or unknown credentials.
    AuthenticationError,
    /// The caller is known but not allowed.
    PermissionError,
    /// The request named something that does not exist (a model, a route).
    NotFoundError,
    /// A limit was hit; `Retry-After` says when to come back.
    RateLimitError,
    /// The upstream model server failed or timed out.
    UpstreamError,
    /// A safety policy refused the request.
    PolicyViolation,
    /// Palisade itself failed; details are in the logs, not in the body.
    ServerError,
}

/// Stable machine-readable error codes (`error.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Malformed JSON, a missing or mistyped required field.
    InvalidRequest,
    /// The body exceeded `server.max_body_bytes`.
    RequestTooLarge,
    /// The body did not arrive within `server.body_read_timeout_ms` (a client
    /// trickling its upload would otherwise hold a connection and a task).
    RequestTimeout,
    /// No `Authorization: Bearer` header.
    MissingApiKey,
    /// A key that hashes to no configured tenant.
    InvalidApiKey,
    /// A valid key without the right for this endpoint (e.g. admin).
    PermissionDenied,
    /// A console session's state-changing call without its CSRF token (the
    /// `x-csrf-token` header): refused as a possible cross-site request.
    CsrfTokenInvalid,
    /// The model is not in the routing table.
    ModelNotFound,
    /// No route at this path.
    NotFound,
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// Connecting to the upstream failed, or it broke the connection.
    UpstreamUnavailable,
    /// The upstream did not answer (or went silent) within its deadline.
    UpstreamTimeout,
    /// The upstream answered with something we cannot relay (an oversized
    /// body or event).
    UpstreamProtocol,
    /// Under an output or tool gate, the upstream answered with a body or an
    /// event the gate cannot parse (not JSON, `NaN`, a truncated object): it
    /// is never relayed unjudged.
    UpstreamInvalidResponse,
    /// The upstream answered with a 5xx. Its body is logged, not relayed:
    /// server errors carry tracebacks and internal paths.
    UpstreamError,
    /// The tenant's request-rate limit is spent; `Retry-After` says when to retry.
    RateLimited,
    /// Too many requests or streams in flight for this key.
    ConcurrencyLimited,
    /// A token budget has no room for this request until its window turns.
    TokensExhausted,
    /// A hard quota is used up; waiting does not help.
    QuotaExceeded,
    /// The API key's own budget (dollars or tokens for its period) is spent
    /// or held by requests in flight; `Retry-After` runs to the period's end.
    KeyBudgetExceeded,
    /// 400: a per-key budget setting is out of range (negative, NaN,
    /// infinite, absurdly large, a zero rate, an unknown period).
    InvalidKeyBudget,
    /// Blocked for repeated offences.
    BlockedOffender,
    /// `POST /admin/policy/rollback` with no earlier version to return to.
    NoPreviousPolicy,
    /// 409: `POST /admin/policy/rollback` on a replica whose policy comes
    /// from a signed bundle: only a newly signed serial changes it.
    PolicyFromBundle,
    /// 422: `POST /admin/config/reload` refused the config file (invalid, or
    /// an edit to a section that needs a restart); the running config stays.
    ConfigReloadRefused,
    /// 404: no tool call waits for confirmation under that id (unknown, already
    /// decided, or lapsed).
    ConfirmationNotFound,
    /// A safety gate refused the request (an injection in the input, in a
    /// retrieved document or tool result). On the wire the code is the
    /// policy's reason code (`prompt_injection`, `indirect_injection`, …).
    PolicyBlocked,
    /// The upstream's completion failed a blocking output check (for
    /// example a `response_format` schema); the code on the wire is the
    /// reason code (`schema_violation`).
    OutputRejected,
    /// The tenant's spend rate is far above its baseline (a leaked key, a
    /// runaway loop): paused for a cooldown; `Retry-After` says how long.
    SpendRateExceeded,
    /// The shared limits backend is unreachable and the policy is to refuse.
    LimitsUnavailable,
    /// The backend's circuit breaker is open after repeated failures.
    CircuitOpen,
    /// No deployment the tenant's and route's data-residency rules allow is
    /// available: the gateway refuses rather than send the data elsewhere.
    ResidencyUnavailable,
    /// The backend is at its in-flight limit and this request could not be
    /// queued (queue full) or waited past the queue timeout.
    UpstreamOverloaded,
    /// The gateway is draining for shutdown.
    ShuttingDown,
    /// The replica enforces no verified policy yet (its signed bundle has not
    /// been fetched and verified): it refuses traffic rather than serve it
    /// unjudged. `Retry-After` says when to retry (another replica).
    NotReady,
    /// The gateway's own capacity is spent: its pool for CPU-heavy checks
    /// stayed full past `server.cpu_queue_timeout_ms`, or it holds
    /// `server.max_connections` connections. `Retry-After` says when to retry.
    Overloaded,
    /// The detection pool stayed full (queue full or wait past its deadline) and the
    /// request's tier fails closed (`on_detector_saturated = "closed"`): refused rather
    /// than judged on less than the full cascade. `Retry-After` says when to retry.
    DetectorSaturated,
    /// The request's `Idempotency-Key` is held by an earlier request that is
    /// still running; `Retry-After` says when to ask again.
    IdempotencyInFlight,
    /// The request's `Idempotency-Key` was used with a different request
    /// body (or endpoint): the client reused a key for another request.
    IdempotencyKeyReused,
    /// The API key is known but past its expiry: ask an admin for a new one
    /// or to extend it (`PATCH /admin/keys/{id}`).
    KeyExpired,
    /// The API key may not call this model (its per-key model allowlist).
    ModelNotAllowed,
    /// The tenant already has as many live runtime keys as
    /// `auth.runtime.max_keys_per_tenant` allows: revoke one first.
    KeyLimitReached,
    /// A live key of this tenant (runtime or config) already has that name.
    KeyNameTaken,
    /// An internal error; never carries details to the client.
    InternalError,
}

impl ErrorCode {
    /// The HTTP status for this code. The one place this mapping lives.
    pub const fn status(self) -> u16 {
        match self {
            Self::InvalidRequest | Self::InvalidKeyBudget => 400,
            Self::MissingApiKey | Self::InvalidApiKey | Self::KeyExpired => 401,
            Self::PermissionDenied
            | Self::CsrfTokenInvalid
            | Self::ModelNotAllowed
            | Self::KeyLimitReached => 403,
            Self::KeyNameTaken => 409,
            Self::ModelNotFound | Self::NotFound | Self::ConfirmationNotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::PolicyBlocked => 400,
            Self::NoPreviousPolicy | Self::PolicyFromBundle | Self::IdempotencyInFlight => 409,
            Self::IdempotencyKeyReused | Self::ConfigReloadRefused => 422,
            Self::RequestTooLarge => 413,
            Self::RequestTimeout => 408,
            Self::RateLimited
            | Self::ConcurrencyLimited
            | Self::TokensExhausted
            | Self::QuotaExceeded
            | Self::KeyBudgetExceeded
            | Self::SpendRateExceeded
            | Self::BlockedOffender => 429,
            Self::UpstreamUnavailable
            | Self::UpstreamProtocol
            | Self::UpstreamInvalidResponse
            | Self::UpstreamError
            | Self::OutputRejected => 502,
            Self::ShuttingDown
            | Self::NotReady
            | Self::LimitsUnavailable
            | Self::UpstreamOverloaded
            | Self::Overloaded
            | Self::DetectorSaturated
            | Self::CircuitOpen
            | Self::ResidencyUnavailable => 503,
            Self::UpstreamTimeout => 504,
            Self::InternalError => 500,
        }
    }

    /// Whether the same request, sent again later, may succeed: rendered as
    /// `x-should-retry`, which the OpenAI SDKs obey over their own status
    /// rules. `false` where a retry only repeats the refusal (bad input,
    /// credentials, a policy verdict, a spent quota, a blocked offender) or
    /// would resend what the upstream answered malformed.
    pub const fn should_retry(self) -> bool {
        match self {
            Self::RequestTimeout
            | Self::RateLimited
            | Self::ConcurrencyLimited
            | Self::TokensExhausted
            | Self::SpendRateExceeded
            | Self::UpstreamUnavailable
            | Self::UpstreamTimeout
            | Self::UpstreamError
            | Self::LimitsUnavailable
            | Self::UpstreamOverloaded
            | Self::CircuitOpen
            | Self::ResidencyUnavailable
            | Self::ShuttingDown
            | Self::NotReady
            | Self::Overloaded
            | Self::DetectorSaturated
            | Self::IdempotencyInFlight
            | Self::InternalError => true,
            Self::InvalidRequest
            | Self::RequestTooLarge
            | Self::MissingApiKey
            | Self::InvalidApiKey
            | Self::PermissionDenied
            | Self::ModelNotFound
            | Self::NotFound
            | Self::MethodNotAllowed
            | Self::UpstreamProtocol
            | Self::UpstreamInvalidResponse
            | Self::QuotaExceeded
            | Self::KeyBudgetExceeded
            | Self::InvalidKeyBudget
            | Self::BlockedOffender
            | Self::NoPreviousPolicy
            | Self::PolicyFromBundle
            | Self::ConfigReloadRefused
            | Self::ConfirmationNotFound
            | Self::PolicyBlocked
            | Self::OutputRejected
            | Self::IdempotencyKeyReused
            | Self::CsrfTokenInvalid
            | Self::KeyExpired
            | Self::ModelNotAllowed
            | Self::KeyLimitReached
            | Self::KeyNameTaken => false,
        }
    }

    /// The `error.type` that goes with this code.
    pub const fn kind(self) -> ErrorKind {
        match self {
            Self::InvalidRequest
            | Self::InvalidKeyBudget
            | Self::NoPreviousPolicy
            | Self::PolicyFromBundle
            | Self::ConfigReloadRefused
            | Self::IdempotencyInFlight
            | Self::IdempotencyKeyReused
            | Self::KeyNameTaken
            | Self::RequestTooLarge
            | Self::RequestTimeout
            | Self::MethodNotAllowed
            | Self::ShuttingDown => ErrorKind::InvalidRequestError,
            Self::NotReady => ErrorKind::ServerError,
            Self::MissingApiKey | Self::InvalidApiKey | Self::KeyExpired => {
                ErrorKind::AuthenticationError
            }
            Self::PermissionDenied
            | Self::CsrfTokenInvalid
            | Self::ModelNotAllowed
            | Self::KeyLimitReached => ErrorKind::PermissionError,
            Self::RateLimited
            | Self::ConcurrencyLimited
            | Self::TokensExhausted
            | Self::QuotaExceeded
            | Self::KeyBudgetExceeded
            | Self::SpendRateExceeded
            | Self::BlockedOffender => ErrorKind::RateLimitError,
            Self::ModelNotFound | Self::NotFound | Self::ConfirmationNotFound => {
                ErrorKind::NotFoundError
            }
            Self::PolicyBlocked | Self::OutputRejected => ErrorKind::PolicyViolation,
            Self::UpstreamUnavailable
            | Self::UpstreamTimeout
            | Self::UpstreamProtocol
            | Self::UpstreamInvalidResponse
            | Self::UpstreamError
            | Self::CircuitOpen
            | Self::ResidencyUnavailable => ErrorKind::UpstreamError,
            Self::InternalError
            | Self::LimitsUnavailable
            | Self::UpstreamOverloaded
            | Self::Overloaded
            | Self::DetectorSaturated => ErrorKind::ServerError,
        }
    }

    /// The code as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::RequestTooLarge => "request_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::MissingApiKey => "missing_api_key",
            Self::InvalidApiKey => "invalid_api_key",
            Self::PermissionDenied => "permission_denied",
            Self::CsrfTokenInvalid => "csrf_token_invalid",
            Self::ModelNotFound => "model_not_found",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamProtocol => "upstream_protocol",
            Self::UpstreamInvalidResponse => "upstream_invalid_response",
            Self::UpstreamError => "upstream_error",
            Self::RateLimited => "rate_limited",
            Self::ConcurrencyLimited => "concurrency_limited",
            Self::TokensExhausted => "tokens_exhausted",
            Self::QuotaExceeded => "quota_exceeded",
            Self::KeyBudgetExceeded => "key_budget_exceeded",
            Self::InvalidKeyBudget => "invalid_key_budget",
            Self::BlockedOffender => "blocked_offender",
            Self::SpendRateExceeded => "spend_rate_exceeded",
            Self::PolicyBlocked => "policy_blocked",
            Self::NoPreviousPolicy => "no_previous_policy",
            Self::PolicyFromBundle => "policy_from_bundle",
            Self::ConfigReloadRefused => "config_reload_refused",
            Self::ConfirmationNotFound => "confirmation_not_found",
            Self::OutputRejected => "output_rejected",
            Self::LimitsUnavailable => "limits_unavailable",
            Self::UpstreamOverloaded => "upstream_overloaded",
            Self::CircuitOpen => "circuit_open",
            Self::ResidencyUnavailable => "residency_unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::NotReady => "not_ready",
            Self::Overloaded => "overloaded",
            Self::DetectorSaturated => "detector_saturated",
            Self::IdempotencyInFlight => "idempotency_in_flight",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::KeyExpired => "key_expired",
            Self::ModelNotAllowed => "model_not_allowed",
            Self::KeyLimitReached => "key_limit_reached",
            Self::KeyNameTaken => "key_name_taken",
            Self::InternalError => "internal_error",
        }
    }
}

/// An error as the client sees it. Serialize it with [`ApiError::to_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Stable code; decides the status.
    pub code: ErrorCode,
    /// Human-readable; must never echo secrets or raw upstream internals.
    pub message: String,
    /// The request field at fault, when there is one (`"model"`, `"messages"`).
    pub param: Option<String>,
    /// Seconds after which retrying may succeed (the `Retry-After` header).
    pub retry_after: Option<u64>,
    /// The policy reason code that replaces [`ErrorCode::as_str`] on the
    /// wire for policy errors (`prompt_injection`, `schema_violation`).
    pub reason: Option<&'static str>,
}

impl ApiError {
    /// An error with no `param`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            param: None,
            retry_after: None,
            reason: None,
        }
    }

    /// A safety-policy refusal: `code` decides the status and type, `reason`
    /// is the `error.code` clients see.
    pub fn policy(code: ErrorCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason: Some(reason),
            ..Self::new(code, message)
        }
    }

    /// Sets the `Retry-After` seconds.
    pub fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after = secs;
        self
    }

    /// Names the request field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// HTTP status for this error.
    pub const fn status(&self) -> u16 {
        self.code.status()
    }

    /// The OpenAI-shaped body, with the request id so a user can quote it to
    /// an operator.
    pub fn to_json(&self, request_id: Option<&str>) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: ErrorKind,
            code: &'static str,
            param: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            request_id: Option<&'a str>,
        }
        let body = Body {
            error: Inner {
                message: &self.message,
                kind: self.code.kind(),
                code: self.reason.unwrap_or(self.code.as_str()),
                param: self.param.as_deref(),
                request_id,
            },
        };
        // Serializing plain strings and enums into a Vec cannot fail.
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":{}}".to_vec())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.reason.unwrap_or(self.code.as_str()),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_shaped() {
        let err = ApiError::new(ErrorCode::ModelNotFound, "no such model: x").with_param("model");
        let v: serde_json::Value = serde_json::from_slice(&err.to_json(Some("req-1"))).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "not_found_error");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["message"], "no such model: x");
        assert_eq!(v["error"]["request_id"], "req-1");
        assert_eq!(err.status(), 404);
    }

    #[test]
    fn policy_errors_carry_the_reason_code() {
        let err = ApiError::policy(ErrorCode::PolicyBlocked, "prompt_injection", "blocked");
        let v: serde_json::Value = serde_json::from_slice(&err.to_json(Some("r"))).unwrap();
        assert_eq!(v["error"]["type"], "policy_violation");
        assert_eq!(v["error"]["code"], "prompt_injection");
        assert_eq!(err.status(), 400);
        assert_eq!(err.to_string(), "prompt_injection: blocked");
    }

    #[test]
    fn param_is_null_when_absent() {
        let err = ApiError::new(ErrorCode::UpstreamTimeout, "slow");
        let v: serde_json::Value = serde_json::from_slice(&err.to_json(None)).unwrap();
        assert!(v["error"]["param"].is_null());
        assert!(v["error"].get("request_id").is_none());
        assert_eq!(err.status(), 504);
    }

    #[test]
    fn wire_names_match_serde_names() {
        // `as_str` and the serde rename must agree, or logs and bodies diverge.
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::RequestTooLarge,
            ErrorCode::RequestTimeout,
            ErrorCode::KeyExpired,
            ErrorCode::ModelNotAllowed,
            ErrorCode::KeyLimitReached,
            ErrorCode::KeyNameTaken,
            ErrorCode::MissingApiKey,
            ErrorCode::InvalidApiKey,
            ErrorCode::PermissionDenied,
            ErrorCode::CsrfTokenInvalid,
            ErrorCode::ModelNotFound,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::UpstreamUnavailable,
            ErrorCode::UpstreamTimeout,
            ErrorCode::UpstreamProtocol,
            ErrorCode::UpstreamInvalidResponse,
            ErrorCode::UpstreamError,
            ErrorCode::RateLimited,
            ErrorCode::ConcurrencyLimited,
            ErrorCode::TokensExhausted,
            ErrorCode::QuotaExceeded,
            ErrorCode::KeyBudgetExceeded,
            ErrorCode::InvalidKeyBudget,
            ErrorCode::BlockedOffender,
            ErrorCode::SpendRateExceeded,
            ErrorCode::PolicyBlocked,
            ErrorCode::NoPreviousPolicy,
            ErrorCode::PolicyFromBundle,
            ErrorCode::ConfigReloadRefused,
            ErrorCode::ConfirmationNotFound,
            ErrorCode::OutputRejected,
            ErrorCode::LimitsUnavailable,
            ErrorCode::UpstreamOverloaded,
            ErrorCode::CircuitOpen,
            ErrorCode::ResidencyUnavailable,
            ErrorCode::ShuttingDown,
            ErrorCode::NotReady,
            ErrorCode::Overloaded,
            ErrorCode::DetectorSaturated,
            ErrorCode::IdempotencyInFlight,
            ErrorCode::IdempotencyKeyReused,
            ErrorCode::InternalError,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn should_retry_follows_whether_waiting_can_help() {
        // (code, retry?) — a table, so a new code's answer is a decision.
        let table = [
            (ErrorCode::RateLimited, true),
            (ErrorCode::ConcurrencyLimited, true),
            (ErrorCode::TokensExhausted, true),
            (ErrorCode::NotReady, true),
            (ErrorCode::ShuttingDown, true),
            (ErrorCode::CircuitOpen, true),
            (ErrorCode::UpstreamTimeout, true),
            (ErrorCode::IdempotencyInFlight, true),
            (ErrorCode::QuotaExceeded, false),
            (ErrorCode::KeyBudgetExceeded, false),
            (ErrorCode::InvalidKeyBudget, false),
            (ErrorCode::BlockedOffender, false),
            (ErrorCode::PolicyBlocked, false),
            (ErrorCode::InvalidApiKey, false),
            (ErrorCode::InvalidRequest, false),
            (ErrorCode::UpstreamInvalidResponse, false),
            (ErrorCode::IdempotencyKeyReused, false),
            (ErrorCode::CsrfTokenInvalid, false),
            (ErrorCode::KeyExpired, false),
            (ErrorCode::ModelNotAllowed, false),
            (ErrorCode::KeyLimitReached, false),
            (ErrorCode::KeyNameTaken, false),
        ];
        for (code, retry) in table {
            assert_eq!(code.should_retry(), retry, "{}", code.as_str());
        }
        // Every status a client is told to come back to after `Retry-After`
        // (429 rate/concurrency/token limits, 503 capacity) says retry,
        // except the two refusals that waiting does not lift.
        for code in [
            ErrorCode::RateLimited,
            ErrorCode::Overloaded,
            ErrorCode::DetectorSaturated,
        ] {
            assert!(code.should_retry());
        }
    }
}
