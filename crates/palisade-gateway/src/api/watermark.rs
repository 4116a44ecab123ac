//! `POST /v1/watermark/detect`: does a text carry a tenant's watermark?
//!
//! `{"model": "<watermarked model>", "text": "...", "tenant": "<admin only>"}`
//! tokenizes the text with the model's tokenizer and scores it against the
//! tenant's keys for the current period and `[watermark] detect_periods`
//! before it; detected when the smallest exact p-value is at most
//! `1e-5 / periods` (Bonferroni over the periods tried).
//!
//! The endpoint is an oracle for the green list, so who may ask what is
//! the point of this module (think of a tenant that wants to scrub its
//! outputs before distilling them):
//!
//! - admin keys: any tenant, the full score per period (z, green count,
//!   both p-values) — operators and forensics;
//! - tenant keys: refused unless `tenant_detect_per_day` > 0; then only
//!   their own tenant (naming another is refused the same way, so it does
//!   not reveal which tenants exist), at most that many calls per UTC day
//!   per tenant (not per key: new keys buy nothing), texts of at least
//!   `tenant_min_tokens` distinct tokens, and only a yes/no verdict — no
//!   z, no green count, no period — so one answer carries at most one bit.
//!
//! Must not: score anything itself (`palisade-watermark`), or return any
//! of the key's green tokens.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use palisade_openai::{ApiError, ErrorCode};
use palisade_watermark::{score, Score, DEFAULT_FPR};
use serde::{Deserialize, Serialize};

use crate::http::error::error_response;
use crate::http::request_id::RequestId;
use crate::state::GatewayState;
use crate::watermark::DETECT_CALLS;

/// A tenant key may not call detect (or not for that tenant): 403.
pub(crate) const FORBIDDEN: &str = "watermark_detect_forbidden";
/// A tenant's detect calls for the day are spent: 429.
pub(crate) const QUOTA: &str = "watermark_detect_quota";
/// A tenant's text has too few distinct tokens for a verdict: 400.
pub(crate) const TOO_SHORT: &str = "watermark_text_too_short";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectRequest {
    model: String,
    text: String,
    tenant: Option<String>,
}

#[derive(Debug, Serialize)]
struct PeriodScore {
    period: u64,
    #[serde(flatten)]
    score: Score,
}

#[derive(Debug, Serialize)]
struct DetectResponse {
    model: String,
    tenant: String,
    /// Distinct in-vocabulary tokens scored.
    tokens: u64,
    detected: bool,
    /// Admin only: the false-positive rate each period is judged at.
    #[serde(skip_serializing_if = "Option::is_none")]
    fpr_per_period: Option<f64>,
    /// Admin only: the scores, highest z first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    periods: Vec<PeriodScore>,
}

/// `POST /v1/watermark/detect`
pub async fn detect(
    State(state): State<Arc<GatewayState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match run(&state, &headers, body).await {
        Ok(resp) => Json(resp).into_response(),
        Err(err) => error_response(&err, Some(&request_id)),
    }
}

fn forbidden(message: &str) -> ApiError {
    ApiError::policy(ErrorCode::PermissionDenied, FORBIDDEN, message.to_owned())
}

async fn run(
    state: &GatewayState,
    headers: &HeaderMap,
    body: Body,
) -> Result<DetectResponse, ApiError> {
    let front = crate::pipeline::front::front(state, headers, Some(body)).await?;
    let Some(wm) = state.watermark.as_ref() else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "watermarking is not enabled on this gateway",
        ));
    };
    let principal = front.principal;
    let req: DetectRequest = serde_json::from_slice(&front.body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid detect request: {e}"),
        )
    })?;
    let admin = principal.admin;
    let caller = if admin { "admin" } else { "tenant" };
    let refuse = |outcome: &'static str, err: ApiError| {
        metrics::counter!(DETECT_CALLS, "caller" => caller, "outcome" => outcome).increment(1);
        err
    };
    let tenant: Arc<str> = match (&req.tenant, admin) {
        (Some(t), true) => t.as_str().into(),
        (None, _) => principal.tenant.clone(),
        (Some(t), false) if *t == *principal.tenant => principal.tenant.clone(),
        (Some(_), false) => {
            return Err(refuse(
                "forbidden",
                forbidden("a tenant key may test text only against its own tenant's watermark"),
            ))
        }
    };
    if !admin {
        if wm.config.tenant_detect_per_day == 0 {
            return Err(refuse(
                "forbidden",
                forbidden("watermark detection needs an admin key on this gateway"),
            ));
        }
        if let Err(secs) = wm.take_detect_call(&tenant) {
            return Err(refuse(
                "quota",
                ApiError::policy(
                    ErrorCode::RateLimited,
                    QUOTA,
                    "this tenant's watermark detect calls for today are spent",
                )
                .with_retry_after(Some(secs)),
            ));
        }
    }
    let routing = state.routing.load();
    let route = routing
        .routes
        .resolve(&req.model)
        .filter(|r| wm.config.models.iter().any(|m| **m == *r.public_name))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ModelNotFound,
                format!(
                    "`{}` is not a watermarked model",
                    req.model.chars().take(64).collect::<String>()
                ),
            )
            .with_param("model")
        })?;
    let Some(tokenizer) = route.tokenizer.clone() else {
        return Err(ApiError::new(ErrorCode::InternalError, "internal error"));
    };
    let vocab = tokenizer.vocab_size().unwrap_or(0);
    let text = req.text;
    let tokens = state
        .cpu
        .run(move || tokenizer.encode_ids(&text).unwrap_or_default())
        .await?;
    let now = wm.period_now();
    let periods: Vec<u64> = (0..=wm.config.detect_periods)
        .filter_map(|back| now.checked_sub(back))
        .collect();
    let mut scores = Vec::with_capacity(periods.len());
    for period in periods {
        let list = wm.green_list(&state.cpu, &tenant, period, vocab).await?;
        scores.push(PeriodScore {
            period,
            score: score(&list, &tokens),
        });
    }
    let distinct = scores.first().map_or(0, |s| s.score.tokens);
    if !admin && distinct < wm.config.tenant_min_tokens {
        return Err(refuse(
            "too_short",
            ApiError::policy(
                ErrorCode::InvalidRequest,
                TOO_SHORT,
                format!(
                    "the text has {distinct} distinct tokens; a verdict needs {}",
                    wm.config.tenant_min_tokens
                ),
            )
            .with_param("text"),
        ));
    }
    let fpr = DEFAULT_FPR / scores.len().max(1) as f64;
    let detected = scores.iter().any(|s| s.score.detected(fpr));
    scores.sort_by(|a, b| b.score.z.total_cmp(&a.score.z));
    metrics::counter!(DETECT_CALLS, "caller" => caller, "outcome" => if detected { "detected" } else { "not_detected" }).increment(1);
    Ok(DetectResponse {
        model: route.public_name.to_string(),
        tenant: tenant.to_string(),
        tokens: distinct,
        detected,
        fpr_per_period: admin.then_some(fpr),
        periods: if admin { scores } else { Vec::new() },
    })
}
