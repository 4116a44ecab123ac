//! The attempt planner: the first deployment for a request, and after each
//! failure the next one (another deployment of the route, then the route's
//! fallback chain for the failure's class) or a reason to give up.
//!
//! A deployment whose run-time weight is 0 ([`StateView::weight`]: a
//! canary in analysis or rolled back) is not a candidate for anything; one
//! with a fixed share ([`StateView::share`]: a canary rolling out) gets
//! that share of the route's first attempts.
//!
//! Must not: choose a deployment outside the request's residency rule
//! (tenant and route rules together, for fallback routes too), resend a
//! request whose failure may have reached the model unless it is
//! idempotent, plan past the deadline, or retry without a budget token
//! (a retry after a failure that sent nothing is free: it adds no load).

use crate::{
    pick, DeploymentState, Failure, FailureClass, HedgeOutcome, Labels, Nanos, Residency, Rng,
};

/// One deployment of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The caller's backend index.
    pub backend: usize,
    /// Share of traffic relative to the route's other deployments (≥ 1).
    pub weight: u32,
    /// Where it runs.
    pub labels: Labels,
}

/// A route's fallback chains: other routes (by the caller's index), in
/// order, per failure class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fallbacks {
    /// The chain for one class, when the route names one.
    pub by_class: Vec<(FailureClass, Vec<usize>)>,
    /// The chain for the deployment's failures (connect, 429, 5xx,
    /// timeout, broken) without their own chain. Context-length and
    /// content-filter failures only fall back to a chain named for them.
    pub default: Vec<usize>,
}

impl Fallbacks {
    /// The chain for `class`.
    pub fn chain(&self, class: FailureClass) -> &[usize] {
        if let Some((_, chain)) = self.by_class.iter().find(|(c, _)| *c == class) {
            return chain;
        }
        if class.is_about_the_model() {
            &[]
        } else {
            &self.default
        }
    }
}

/// What the planner needs of one route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSpec {
    /// Its deployments (at least one).
    pub deployments: Vec<Deployment>,
    /// Its fallback chains.
    pub fallbacks: Fallbacks,
    /// Its own residency rule, combined with the tenant's.
    pub residency: Residency,
}

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retry).
    pub max_attempts: u32,
    /// Backoff before the first retry, doubled for each further one; the
    /// wait is drawn uniformly below it (full jitter).
    pub base_backoff: Nanos,
    /// Ceiling of the backoff.
    pub max_backoff: Nanos,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            base_backoff: 25_000_000,
            max_backoff: 1_000_000_000,
        }
    }
}

/// The caller's runtime state: each backend's health and load, and its
/// retry budget.
pub trait StateView {
    /// The backend's state now.
    fn state(&self, backend: usize) -> DeploymentState;
    /// Takes one retry token from the backend's budget.
    fn try_retry(&mut self, backend: usize) -> bool;
    /// The weight deployment `backend` of `route` has now: `configured`
    /// unless something overrides it at run time (a canary rollout's
    /// share). 0 takes the deployment out of the route entirely: no first
    /// attempt, retry or fallback goes to it.
    fn weight(&self, route: usize, backend: usize, configured: u32) -> u32 {
        let _ = (route, backend);
        configured
    }
    /// A fixed share of `route`'s first attempts for one deployment:
    /// `(backend, percent)` (a canary rollout's step). Drawn before load
    /// balancing, so the share holds at any load; the other first attempts
    /// are balanced among the rest.
    fn share(&self, route: usize) -> Option<(usize, u32)> {
        let _ = route;
        None
    }
}

/// One planned attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The route it serves (the primary, or a fallback).
    pub route: usize,
    /// The backend it goes to.
    pub backend: usize,
    /// Wait this long before sending.
    pub delay: Nanos,
    /// 1 for the first attempt.
    pub number: u32,
}

/// Why no (further) attempt is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GiveUp {
    /// The failure may have reached the model and the request is not
    /// idempotent: sending it again could duplicate an action.
    #[error("the failed attempt may have reached the model; not resent")]
    NotSafe,
    /// No deployment is left to try, or `max_attempts` is reached.
    #[error("no deployment left to try")]
    Exhausted,
    /// The next attempt could not start before the deadline.
    #[error("the deadline leaves no time for another attempt")]
    Deadline,
    /// The target backend's retry budget is spent.
    #[error("the retry budget is spent")]
    Budget,
    /// No deployment the residency rule allows is available.
    #[error("no deployment allowed by the residency rule is available")]
    ResidencyUnavailable,
}

/// One request's attempts.
#[derive(Debug, Clone)]
pub struct Planner<'a> {
    routes: &'a [RouteSpec],
    primary: usize,
    tenant_rule: Residency,
    policy: RetryPolicy,
    idempotent: bool,
    deadline: Nanos,
    route: usize,
    attempts: u32,
    tried: Vec<(usize, usize)>,
    visited: Vec<usize>,
    /// Per-request `Retry-After`s: (backend, not before).
    waits: Vec<(usize, Nanos)>,
    /// Hedges planned so far.
    hedges: u32,
}

impl<'a> Planner<'a> {
    /// A planner for a request to `routes[primary]` under the tenant's
    /// residency rule.
    pub fn new(
        routes: &'a [RouteSpec],
        primary: usize,
        tenant_rule: Residency,
        policy: RetryPolicy,
        idempotent: bool,
        deadline: Nanos,
    ) -> Self {
        Self {
            routes,
            primary,
            tenant_rule,
            policy,
            idempotent,
            deadline,
            route: primary,
            attempts: 0,
            tried: Vec::new(),
            visited: vec![primary],
            waits: Vec::new(),
            hedges: 0,
        }
    }

    /// The rule in force for `route`: the tenant's, the route the client
    /// named (its rule says where *its* requests may go, so it follows them
    /// to a fallback) and `route`'s own.
    pub fn rule_for(&self, route: usize) -> Residency {
        let named = match self.routes.get(self.primary) {
            Some(spec) => self.tenant_rule.and(&spec.residency),
            None => self.tenant_rule.clone(),
        };
        match self.routes.get(route) {
            Some(spec) if route != self.primary => named.and(&spec.residency),
            _ => named,
        }
    }

    /// Attempts planned so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Allowed deployments of `route` with their state.
    fn allowed(&self, route: usize, view: &dyn StateView) -> Vec<(usize, u32, DeploymentState)> {
        let Some(spec) = self.routes.get(route) else {
            return Vec::new();
        };
        let rule = self.rule_for(route);
        spec.deployments
            .iter()
            .filter(|d| rule.allows(&d.labels))
            .map(|d| (d.backend, view.weight(route, d.backend, d.weight.max(1))))
            .filter(|(_, weight)| *weight > 0)
            .map(|(backend, weight)| (backend, weight, view.state(backend)))
            .collect()
    }

    fn available(now: Nanos) -> impl Fn(&(usize, u32, DeploymentState)) -> bool {
        move |c| c.2.healthy && c.2.not_before <= now
    }

    /// The first attempt.
    pub fn first(
        &mut self,
        now: Nanos,
        view: &mut dyn StateView,
        rng: &mut dyn Rng,
    ) -> Result<Attempt, GiveUp> {
        let allowed = self.allowed(self.primary, view);
        let healthy: Vec<_> = allowed
            .iter()
            .copied()
            .filter(Self::available(now))
            .collect();
        let choice = if !healthy.is_empty() {
            match view.share(self.primary) {
                Some((canary, pct))
                    if healthy.len() > 1 && healthy.iter().any(|c| c.0 == canary) =>
                {
                    if rng.below(100) < u64::from(pct) {
                        Some(canary)
                    } else {
                        let rest: Vec<_> =
                            healthy.iter().copied().filter(|c| c.0 != canary).collect();
                        pick(&rest, rng)
                    }
                }
                _ => pick(&healthy, rng),
            }
        } else {
            let forbidden_healthy = self.routes.get(self.primary).is_some_and(|spec| {
                spec.deployments.iter().any(|d| {
                    let s = view.state(d.backend);
                    s.healthy && s.not_before <= now
                })
            });
            if allowed.is_empty() || forbidden_healthy {
                return Err(GiveUp::ResidencyUnavailable);
            }
            // Every allowed deployment is unhealthy: try one anyway (its
            // breaker answers fast), as a single-backend route always did.
            pick(&allowed, rng)
        };
        let backend = choice.ok_or(GiveUp::ResidencyUnavailable)?;
        Ok(self.record(self.primary, backend, 0))
    }

    fn record(&mut self, route: usize, backend: usize, delay: Nanos) -> Attempt {
        self.attempts += 1;
        self.route = route;
        self.tried.push((route, backend));
        if !self.visited.contains(&route) {
            self.visited.push(route);
        }
        Attempt {
            route,
            backend,
            delay,
            number: self.attempts,
        }
    }

    /// The attempt after `failure` of the last one, at `now`.
    pub fn after(
        &mut self,
        failure: Failure,
        now: Nanos,
        view: &mut dyn StateView,
        rng: &mut dyn Rng,
    ) -> Result<Attempt, GiveUp> {
        if !failure.class.may_resend(self.idempotent) {
            return Err(GiveUp::NotSafe);
        }
        if let (Some(wait), Some(&(_, backend))) = (failure.retry_after, self.tried.last()) {
            self.waits.push((backend, now.saturating_add(wait)));
        }
        if self.attempts >= self.policy.max_attempts {
            return Err(GiveUp::Exhausted);
        }
        let (route, backend, not_before) = self
            .next_target(failure.class, now, view, rng)
            .ok_or(GiveUp::Exhausted)?;
        let retries = self.attempts; // retries so far + 1 = this retry's number
        let ceiling = self
            .policy
            .base_backoff
            .saturating_mul(1u64 << (retries - 1).min(32))
            .min(self.policy.max_backoff);
        let jitter = rng.below(ceiling.saturating_add(1));
        let delay = jitter.max(not_before.saturating_sub(now));
        if now.saturating_add(delay) >= self.deadline {
            return Err(GiveUp::Deadline);
        }
        // A retry after a failure that sent nothing adds no load beyond the
        // request's own: it is free. Every other retry is paid for.
        let free = failure.class.safety() == crate::Safety::NotSent;
        if !free && !view.try_retry(backend) {
            return Err(GiveUp::Budget);
        }
        Ok(self.record(route, backend, delay))
    }

    /// A hedge of the attempt in flight, at `now`: another allowed,
    /// healthy deployment of the current route — never one this request
    /// already tried, never outside the residency rule — paid from that
    /// backend's retry budget. Refused (with the reason, as the metric's
    /// outcome) for a request that is not idempotent, past `max_extra`
    /// hedges, at the deadline, or when the budget is spent. A hedge is an
    /// attempt: it counts towards the attempts a later retry may make.
    pub fn hedge(
        &mut self,
        max_extra: u32,
        now: Nanos,
        view: &mut dyn StateView,
        rng: &mut dyn Rng,
    ) -> Result<Attempt, HedgeOutcome> {
        if !self.idempotent {
            return Err(HedgeOutcome::Ineligible);
        }
        if self.hedges >= max_extra || self.attempts == 0 {
            return Err(HedgeOutcome::NoDeployment);
        }
        if now >= self.deadline {
            return Err(HedgeOutcome::Deadline);
        }
        let fresh: Vec<_> = self
            .allowed(self.route, view)
            .into_iter()
            .filter(Self::available(now))
            .filter(|c| !self.tried.iter().any(|&(_, b)| b == c.0))
            .filter(|c| {
                self.waits
                    .iter()
                    .all(|&(b, until)| b != c.0 || until <= now)
            })
            .collect();
        let backend = pick(&fresh, rng).ok_or(HedgeOutcome::NoDeployment)?;
        if !view.try_retry(backend) {
            return Err(HedgeOutcome::Budget);
        }
        self.hedges += 1;
        Ok(self.record(self.route, backend, 0))
    }

    /// Remembers an upstream's `Retry-After` for `backend` (a hedged
    /// attempt's failure, where the last attempt planned is not
    /// necessarily the one that failed).
    pub fn wait_for(&mut self, backend: usize, retry_after: Nanos, now: Nanos) {
        self.waits.push((backend, now.saturating_add(retry_after)));
    }

    /// Another deployment of the current route, then the primary route's
    /// chain for `class`, then (same model, after a backoff) a deployment
    /// already tried. Returns (route, backend, not before).
    fn next_target(
        &self,
        class: FailureClass,
        now: Nanos,
        view: &dyn StateView,
        rng: &mut dyn Rng,
    ) -> Option<(usize, usize, Nanos)> {
        let not_before = |backend: usize| {
            self.waits
                .iter()
                .filter(|(b, _)| *b == backend)
                .map(|(_, t)| *t)
                .max()
                .unwrap_or(0)
                .max(view.state(backend).not_before)
        };
        if !class.is_about_the_model() {
            let fresh: Vec<_> = self
                .allowed(self.route, view)
                .into_iter()
                .filter(Self::available(now))
                .filter(|c| !self.tried.contains(&(self.route, c.0)))
                .filter(|c| not_before(c.0) <= now)
                .collect();
            if let Some(b) = pick(&fresh, rng) {
                return Some((self.route, b, 0));
            }
        }
        let chain = self
            .routes
            .get(self.primary)
            .map(|s| s.fallbacks.chain(class))
            .unwrap_or(&[]);
        for &route in chain.iter().filter(|r| !self.visited.contains(r)) {
            let fresh: Vec<_> = self
                .allowed(route, view)
                .into_iter()
                .filter(Self::available(now))
                .filter(|c| not_before(c.0) <= now)
                .collect();
            if let Some(b) = pick(&fresh, rng) {
                return Some((route, b, 0));
            }
        }
        if class.is_about_the_model() {
            return None;
        }
        // The same model again, after its wait: healthy deployments of the
        // current route, tried ones included.
        let again: Vec<_> = self
            .allowed(self.route, view)
            .into_iter()
            .filter(|c| c.2.healthy)
            .collect();
        let b = pick(&again, rng)?;
        Some((self.route, b, not_before(b)))
    }
}
