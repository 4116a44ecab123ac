//! Hedged requests: the first attempt of a side-effect-free request races
//! the route's hedge delay; when the delay passes first, a second attempt
//! goes to another deployment ([`palisade_routing::Planner::hedge`]: never
//! the one already tried, never outside residency, paid from the target's
//! retry budget, never past the deadline). The first **complete** good
//! answer wins — its body is read whole before it counts, so a deployment
//! that sends a fast head and a slow body does not win — and the other
//! attempts are cancelled: their futures are dropped, which drops their
//! HTTP requests and closes their connections.
//!
//! Which requests are hedged ([`eligible`]): embeddings always; chat and
//! legacy completions only on a route declared `idempotent` (no tools that
//! act), and only when not streamed. A stream is never hedged: its first
//! event goes to the client at once, so a second stream could only be
//! raced on its first event, and both would then be generating (and
//! billable) at the upstreams while only one reaches the client; the
//! output gate's hold-back would also have to run on both. Not worth it
//! for the latency-critical requests hedging is for (embeddings, short
//! completions), which are rarely streamed.
//!
//! What is counted: the ledger row's `attempts` counts every attempt sent
//! (hedges included) and names the winner's backend; the tenant's token
//! budget is reconciled once, against the winner's usage — the loser was
//! cancelled mid-answer, so its usage is unknown and it is the gateway's
//! latency insurance, not the tenant's request; each hedged request writes
//! one routing audit record (`hedge`, reason `won`/`lost`, the cancelled
//! deployment and the winner), and `palisade_hedge_total{route,outcome}`
//! counts every decision (won, lost, not needed, skipped and why).
//!
//! Must not: hedge a request [`eligible`] refuses, send a hedge the planner
//! did not plan, wait for a queue slot at the hedge's backend (a busy
//! backend is skipped), or hold a lock across an await.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use palisade_openai::request::Endpoint;
use palisade_openai::ApiError;
use palisade_routing::{
    Attempt, HedgeDelay, HedgeOutcome, HedgePolicy, LatencyWindow, Planner, SplitMix,
};

use super::attempts::{classify, Outcome};
use super::Outstanding;
use crate::context::RequestCtx;
use crate::http::auth::Principal;
use crate::limits::scheduler::BackendSlot;
use crate::pipeline::forward;
use crate::routing::Route;
use crate::snapshot::RoutingSnapshot;
use crate::telemetry::Open;

/// Hedging decisions per route: `won`, `lost`, `not_needed`, `ineligible`,
/// `skipped_budget`, `skipped_no_deployment`, `skipped_deadline`,
/// `skipped_busy`.
pub(crate) const HEDGES: &str = "palisade_hedge_total";

/// A route's hedging: its policy and its recent latency.
#[derive(Debug)]
pub(crate) struct RouteHedge {
    pub(crate) policy: HedgePolicy,
    window: Mutex<LatencyWindow>,
}

impl RouteHedge {
    /// From a validated `[[routes]] hedge` table.
    pub(crate) fn from_config(cfg: &palisade_config::HedgeConfig) -> Self {
        const MS: u64 = 1_000_000;
        let delay = match (cfg.after_ms, cfg.after.as_deref()) {
            (Some(ms), _) => HedgeDelay::Fixed(ms.saturating_mul(MS)),
            (None, after) => HedgeDelay::Percentile {
                // Validated; p95 is only the fallback of an impossible case.
                q: after
                    .and_then(palisade_config::parse_percentile)
                    .unwrap_or(0.95),
                min: cfg.min_ms.saturating_mul(MS),
                max: cfg.max_ms.saturating_mul(MS),
            },
        };
        Self {
            policy: HedgePolicy {
                delay,
                max_extra: cfg.max_extra,
            },
            window: Mutex::new(LatencyWindow::new(cfg.window_ms.saturating_mul(MS), 0)),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, LatencyWindow> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The delay before a hedge at `now` (balancer nanoseconds).
    fn delay(&self, now: u64) -> Duration {
        Duration::from_nanos(self.policy.delay(&self.window(), now))
    }

    /// A complete good answer took `latency`.
    fn observe(&self, now: u64, latency: Duration) {
        self.window().observe(now, latency.as_nanos() as u64);
    }
}

/// Whether this request may be sent twice: embeddings always; chat and
/// completions on an idempotent route when not streamed; nothing else
/// (the Responses API stores state upstream).
pub(super) fn eligible(endpoint: Endpoint, route: &Route, stream: bool) -> bool {
    match endpoint {
        Endpoint::Embeddings => true,
        Endpoint::ChatCompletions | Endpoint::Completions => route.idempotent && !stream,
        _ => false,
    }
}

/// Counts one hedging decision.
pub(super) fn count(route: &Route, outcome: HedgeOutcome) {
    metrics::counter!(HEDGES, "route" => route.public_name.to_string(), "outcome" => outcome.as_str())
        .increment(1);
}

/// One attempt of the race, finished.
pub(super) struct Leg {
    pub(super) attempt: Attempt,
    pub(super) outcome: Outcome,
    /// From sending to the complete body (an answer) or the failure.
    pub(super) latency: Duration,
    pub(super) span: Open,
    /// The response head's status, or the transport error.
    pub(super) head: Result<u16, ApiError>,
    pub(super) outstanding: Outstanding,
    /// The hedge's own place at its backend's queue (the first attempt's
    /// is the context's).
    pub(super) slot: Option<BackendSlot>,
}

/// How the race ended.
pub(super) struct Raced {
    /// The winner, or the last attempt that failed.
    pub(super) leg: Leg,
    /// Hedges sent.
    pub(super) hedges: u32,
    /// Backends of the attempts cancelled because another won, with how
    /// long they had run.
    pub(super) cancelled: Vec<(usize, Duration)>,
    /// Failed legs that ended before the race did (besides `leg`).
    pub(super) failed: Vec<Leg>,
    /// A due hedge was not sent (budget, residency, deadline, busy): that
    /// outcome is already counted.
    pub(super) skipped: bool,
}

/// What one request brings to the race.
pub(super) struct Entrants<'a> {
    pub(super) routing: &'a RoutingSnapshot,
    pub(super) route: &'a Route,
    pub(super) hedge: &'a RouteHedge,
    pub(super) principal: &'a Principal,
    pub(super) body: &'a Bytes,
    pub(super) deadline: Instant,
}

/// Sends `first` and, while no complete good answer has come, a hedge
/// after each delay (up to the policy's `max_extra`, as the planner
/// allows). Returns when an attempt answers well, or when every attempt
/// sent has failed.
pub(super) async fn race(
    e: &Entrants<'_>,
    first: Attempt,
    planner: &mut Planner<'_>,
    rng: &mut SplitMix,
    ctx: &RequestCtx,
) -> Raced {
    let balancer = &e.routing.balancer;
    let started = Instant::now();
    let mut legs = FuturesUnordered::new();
    legs.push(run_leg(e, first, None, ctx));
    // Backends of the attempts sent and not yet finished, and when.
    let mut running = vec![(first.backend, started)];
    let mut hedges = 0u32;
    let mut hedging = true;
    let mut skipped = false;
    let mut failed: Vec<Leg> = Vec::new();
    let mut next_at = started + e.hedge.delay(balancer.nanos(started));
    loop {
        let timer = tokio::time::sleep_until(next_at.into());
        tokio::select! {
            biased;
            Some(leg) = legs.next() => {
                if let Some(i) = running.iter().position(|r| r.0 == leg.attempt.backend) {
                    running.swap_remove(i);
                }
                if matches!(leg.outcome, Outcome::Answer(_)) {
                    let now = balancer.nanos(Instant::now());
                    e.hedge.observe(now, leg.latency);
                    // Dropping the futures still running cancels them: their
                    // requests are dropped and their connections closed.
                    drop(legs);
                    let cancelled = running.iter().map(|&(b, at)| (b, at.elapsed())).collect();
                    return Raced { leg, hedges, cancelled, failed, skipped };
                }
                if legs.is_empty() {
                    // Every attempt sent failed: the retry rules take over.
                    return Raced { leg, hedges, cancelled: Vec::new(), failed, skipped };
                }
                failed.push(leg);
            }
            () = timer, if hedging => {
                let at = Instant::now();
                let now = balancer.nanos(at);
                let planned = {
                    let mut view = balancer.view(&e.routing.backends, at);
                    planner.hedge(e.hedge.policy.max_extra, now, &mut view, rng)
                };
                match planned {
                    Ok(attempt) => match hedge_slot(e, attempt, ctx).await {
                        Ok(slot) => {
                            hedges += 1;
                            running.push((attempt.backend, Instant::now()));
                            legs.push(run_leg(e, attempt, slot, ctx));
                            next_at = at + e.hedge.delay(now);
                        }
                        Err(outcome) => {
                            count(e.route, outcome);
                            skipped = true;
                            hedging = false;
                        }
                    },
                    Err(outcome) => {
                        // The first refusal of a request is its outcome;
                        // a second hedge's "none left" is not worth a count.
                        if hedges == 0 {
                            count(e.route, outcome);
                            skipped = true;
                        }
                        hedging = false;
                    }
                }
            }
        }
    }
}

/// The hedge's place at its backend's queue: taken at once or not at all
/// (a saturated backend is no place for extra load).
async fn hedge_slot(
    e: &Entrants<'_>,
    attempt: Attempt,
    ctx: &RequestCtx,
) -> Result<Option<BackendSlot>, HedgeOutcome> {
    let Some(scheduler) = &e.routing.backends[attempt.backend].scheduler else {
        return Ok(None);
    };
    if scheduler.is_saturated() {
        return Err(HedgeOutcome::Busy);
    }
    let cost = ctx
        .tokens
        .as_ref()
        .map_or(1, crate::limits::accounting::TokenAccounting::reserved);
    // A zero timeout still polls the acquisition once: a free slot is
    // taken, a queue is not joined.
    match tokio::time::timeout(
        Duration::ZERO,
        scheduler.acquire(
            &e.principal.tenant,
            e.principal.priority_class,
            cost,
            e.deadline,
        ),
    )
    .await
    {
        Ok(Ok(slot)) => Ok(Some(slot)),
        _ => Err(HedgeOutcome::Busy),
    }
}

/// One attempt: sent, its head classified, and a good answer's body read
/// whole (so it is complete when it wins).
async fn run_leg(
    e: &Entrants<'_>,
    attempt: Attempt,
    slot: Option<BackendSlot>,
    ctx: &RequestCtx,
) -> Leg {
    let backend = &e.routing.backends[attempt.backend];
    let outstanding = e
        .routing
        .balancer
        .begin(attempt.backend, attempt.number == 1);
    let sent_at = Instant::now();
    let span = ctx.trace.begin();
    let own_slot = slot.as_ref().or(ctx._backend_slot.as_ref());
    let result = forward::forward(
        backend,
        e.body.clone(),
        &e.principal.tenant,
        e.deadline,
        ctx,
        own_slot,
        &span,
    )
    .await;
    let head = match &result {
        Ok(resp) => Ok(resp.status().as_u16()),
        Err((err, _)) => Err(err.clone()),
    };
    let outcome = match classify(e.routing, e.route, backend, result, e.deadline).await {
        Outcome::Answer(resp) => whole(backend, resp, e.deadline).await,
        failed => failed,
    };
    Leg {
        attempt,
        outcome,
        latency: sent_at.elapsed(),
        span,
        head,
        outstanding,
        slot,
    }
}

/// Reads a usable answer's body, so the race is won by a complete answer;
/// a body that breaks is the attempt's failure.
async fn whole(
    backend: &crate::upstream::Backend,
    resp: reqwest::Response,
    deadline: Instant,
) -> Outcome {
    let status = resp.status();
    let headers = resp.headers().clone();
    match forward::read_upstream_body(backend, resp, deadline).await {
        Ok(bytes) => {
            let mut rebuilt = http::Response::new(bytes);
            *rebuilt.status_mut() = status;
            *rebuilt.headers_mut() = headers;
            Outcome::Answer(reqwest::Response::from(rebuilt))
        }
        Err(err) => Outcome::Failed {
            failure: palisade_routing::Failure::of(palisade_routing::FailureClass::Broken),
            last: Err(err),
        },
    }
}
