//! The rate gate, first of the gates: request-rate (GCRA) and in-flight
//! limits per tenant and key, in memory, from `palisade-limits`.
//!
//! This is the single-replica backend: state lives in this process. The
//! arithmetic is `palisade-limits`' (pure, clock injected); this module owns
//! the locks, the clock and the mapping to HTTP (429, `Retry-After`,
//! `x-ratelimit-*`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue};
use palisade_config::{LimitsConfig, TenantLimits};
use palisade_limits::{
    Acquire, ConcurrencyLimiter, GcraConfig, MemoryGcra, Nanos, Permit, RateLimitHeaders,
};
use palisade_openai::{ApiError, ErrorCode};

use crate::auth::Principal;

/// A tenant's compiled limits.
#[derive(Debug)]
struct TenantGate {
    /// Requests per minute (for messages) and the limiter.
    rate: Option<(u64, Mutex<MemoryGcra>)>,
    max_in_flight_per_key: Option<u32>,
}

/// The rate gate.
#[derive(Debug)]
pub struct Admission {
    /// The process-local clock's origin; limits see nanoseconds since it.
    origin: Instant,
    default: TenantGate,
    tenants: HashMap<String, TenantGate>,
    in_flight: Arc<Mutex<ConcurrencyLimiter>>,
}

/// Errors compiling limits (the config validation makes these unreachable
/// in practice; they are kept typed rather than unwrapped).
#[derive(Debug, thiserror::Error)]
#[error("limits: {0}")]
pub struct AdmissionError(#[from] palisade_limits::LimitError);

fn gate(limits: TenantLimits) -> Result<TenantGate, AdmissionError> {
    let rate = match (limits.requests_per_minute, limits.effective_burst()) {
        (Some(rpm), Some(burst)) => Some((
            rpm,
            Mutex::new(MemoryGcra::new(
                GcraConfig::new(rpm, Nanos::from_secs(60)).with_burst(burst),
            )?),
        )),
        _ => None,
    };
    Ok(TenantGate {
        rate,
        max_in_flight_per_key: limits.max_in_flight_per_key,
    })
}

/// A request that passed the gate: the headers to send and, when an
/// in-flight limit applies, the slot it holds until dropped.
#[derive(Debug, Default)]
pub struct Admitted {
    /// `x-ratelimit-*` values for the response.
    pub headers: RateLimitHeaders,
    /// Held for the life of the request (the stream, for streams).
    pub slot: Option<InFlightSlot>,
}

/// An in-flight slot; released when dropped, however the request ends.
#[derive(Debug)]
pub struct InFlightSlot {
    limiter: Arc<Mutex<ConcurrencyLimiter>>,
    permit: Option<Permit>,
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            let mut limiter = self.limiter.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = limiter.release(permit);
        }
    }
}

impl Admission {
    /// Compiles the configured limits.
    pub fn from_config(config: &LimitsConfig) -> Result<Self, AdmissionError> {
        let tenants = config
            .tenants
            .iter()
            .map(|(name, l)| Ok((name.clone(), gate(l.or(config.default))?)))
            .collect::<Result<_, AdmissionError>>()?;
        // The limiter's own cap is a ceiling; per-key maxima are passed on
        // each acquire.
        let ceiling = u32::MAX;
        Ok(Self {
            origin: Instant::now(),
            default: gate(config.default)?,
            tenants,
            in_flight: Arc::new(Mutex::new(ConcurrencyLimiter::new(ceiling)?)),
        })
    }

    fn now(&self) -> Nanos {
        Nanos(self.origin.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64)
    }

    /// Decides whether `principal` may start a request now.
    pub fn admit(&self, principal: &Principal) -> Result<Admitted, (ApiError, RateLimitHeaders)> {
        let gate = self
            .tenants
            .get(&*principal.tenant)
            .unwrap_or(&self.default);
        let mut headers = RateLimitHeaders::default();
        if let Some((rpm, rate)) = &gate.rate {
            let decision = rate
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .check(&principal.tenant, self.now());
            headers.requests = Some(decision.info());
            if !decision.allowed {
                headers.retry_after = Some(decision.retry_after);
                let secs = decision.retry_after.as_secs_ceil().max(1);
                let err = ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "rate limit of {rpm} requests per minute reached for this tenant; retry in {secs} s"
                    ),
                )
                .with_retry_after(Some(secs));
                return Err((err, headers));
            }
        }
        let mut slot = None;
        if let Some(max) = gate.max_in_flight_per_key {
            let key = format!("{}/{}", principal.tenant, principal.key_name);
            let mut limiter = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match limiter.try_acquire_up_to(&key, max) {
                Acquire::Acquired { permit, .. } => {
                    slot = Some(InFlightSlot {
                        limiter: self.in_flight.clone(),
                        permit: Some(permit),
                    });
                }
                Acquire::Full { in_flight, .. } => {
                    let err = ApiError::new(
                        ErrorCode::ConcurrencyLimited,
                        format!(
                            "{in_flight} requests already in flight for this API key (limit {max}); retry when one completes"
                        ),
                    )
                    .with_retry_after(Some(1));
                    return Err((err, headers));
                }
            }
        }
        Ok(Admitted { headers, slot })
    }
}

/// Writes rate-limit headers into a response's headers.
pub fn apply_headers(headers: &RateLimitHeaders, out: &mut HeaderMap) {
    for (name, value) in headers.to_pairs() {
        // Upstream rate-limit headers describe the upstream account, not the
        // caller's limits at this gateway: ours replace them.
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.insert(HeaderName::from_static(name), value);
        }
    }
}
