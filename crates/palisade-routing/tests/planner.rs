//! The planner's rules as tables and properties: residency holds under any
//! failure sequence, ambiguous failures are not resent, retries stay within
//! attempts, deadline and budget.

use palisade_routing::*;
use proptest::prelude::*;

const SEC: Nanos = 1_000_000_000;

/// Backends' state: health per backend, unlimited or no budget.
struct View {
    healthy: Vec<bool>,
    not_before: Vec<Nanos>,
    budget: u32,
}

impl View {
    fn all_healthy(n: usize) -> Self {
        Self {
            healthy: vec![true; n],
            not_before: vec![0; n],
            budget: u32::MAX,
        }
    }
}

impl StateView for View {
    fn state(&self, backend: usize) -> DeploymentState {
        DeploymentState {
            healthy: self.healthy[backend],
            not_before: self.not_before[backend],
            ..DeploymentState::default()
        }
    }
    fn try_retry(&mut self, _backend: usize) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }
}

fn dep(backend: usize, region: &str) -> Deployment {
    Deployment {
        backend,
        weight: 1,
        labels: Labels {
            region: Some(region.to_owned()),
            provider: None,
            data_classes: vec![],
        },
    }
}

fn eu() -> Residency {
    Residency {
        regions: vec!["eu".to_owned()],
        ..Residency::default()
    }
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_backoff: 10_000_000,
        max_backoff: 100_000_000,
    }
}

/// Route 0: backends 0 (eu), 1 (us); falls back to route 1 (backend 2,
/// eu) on everything, to route 2 (backend 3, eu, long context) on context
/// length.
fn routes() -> Vec<RouteSpec> {
    vec![
        RouteSpec {
            deployments: vec![dep(0, "eu"), dep(1, "us")],
            fallbacks: Fallbacks {
                by_class: vec![(FailureClass::ContextLength, vec![2])],
                default: vec![1],
            },
            residency: Residency::default(),
        },
        RouteSpec {
            deployments: vec![dep(2, "eu")],
            ..RouteSpec::default()
        },
        RouteSpec {
            deployments: vec![dep(3, "eu")],
            ..RouteSpec::default()
        },
    ]
}

#[test]
fn connect_errors_move_to_another_deployment_then_the_fallback() {
    let routes = routes();
    let mut view = View::all_healthy(4);
    let mut rng = SplitMix(3);
    let mut p = Planner::new(&routes, 0, Residency::default(), policy(4), false, 10 * SEC);
    let first = p.first(0, &mut view, &mut rng).unwrap();
    let second = p
        .after(Failure::of(FailureClass::Connect), 0, &mut view, &mut rng)
        .unwrap();
    assert_ne!(first.backend, second.backend);
    assert_eq!(second.route, 0);
    let third = p
        .after(Failure::of(FailureClass::Connect), 0, &mut view, &mut rng)
        .unwrap();
    assert_eq!((third.route, third.backend), (1, 2));
    assert_eq!(third.number, 3);
}

#[test]
fn a_hedge_goes_to_the_other_deployment_once_within_budget_and_residency() {
    let routes = routes();
    // Open rule: the hedge goes to the deployment not tried, never to a
    // fallback route, and only `max_extra` times.
    let mut view = View::all_healthy(4);
    let mut rng = SplitMix(7);
    let mut p = Planner::new(&routes, 0, Residency::default(), policy(3), true, 10 * SEC);
    let first = p.first(0, &mut view, &mut rng).unwrap();
    let hedge = p.hedge(1, SEC / 10, &mut view, &mut rng).unwrap();
    assert_ne!(hedge.backend, first.backend);
    assert_eq!((hedge.route, hedge.number), (0, 2));
    assert_eq!(
        p.hedge(1, SEC / 5, &mut view, &mut rng),
        Err(HedgeOutcome::NoDeployment)
    );
    // EU only: the other deployment is forbidden, no hedge.
    let mut p = Planner::new(&routes, 0, eu(), policy(3), true, 10 * SEC);
    assert_eq!(p.first(0, &mut view, &mut rng).unwrap().backend, 0);
    assert_eq!(
        p.hedge(1, SEC / 10, &mut view, &mut rng),
        Err(HedgeOutcome::NoDeployment)
    );
    // Budget spent: no hedge, and nothing was recorded as tried.
    let mut broke = View {
        budget: 0,
        ..View::all_healthy(4)
    };
    let mut p = Planner::new(&routes, 0, Residency::default(), policy(3), true, 10 * SEC);
    p.first(0, &mut broke, &mut rng).unwrap();
    assert_eq!(
        p.hedge(1, SEC / 10, &mut broke, &mut rng),
        Err(HedgeOutcome::Budget)
    );
    assert_eq!(p.attempts(), 1);
    // Not idempotent: never hedged; past the deadline: not either.
    let mut p = Planner::new(&routes, 0, Residency::default(), policy(3), false, 10 * SEC);
    p.first(0, &mut view, &mut rng).unwrap();
    assert_eq!(
        p.hedge(1, SEC / 10, &mut view, &mut rng),
        Err(HedgeOutcome::Ineligible)
    );
    let mut p = Planner::new(&routes, 0, Residency::default(), policy(3), true, 10 * SEC);
    p.first(0, &mut view, &mut rng).unwrap();
    assert_eq!(
        p.hedge(1, 10 * SEC, &mut view, &mut rng),
        Err(HedgeOutcome::Deadline)
    );
}

#[test]
fn each_class_follows_its_own_chain_or_none() {
    let routes = routes();
    let table = [
        (FailureClass::ContextLength, Ok(2)),
        (FailureClass::ContentFilter, Err(GiveUp::Exhausted)),
        (FailureClass::Unavailable, Ok(0)),
        (FailureClass::RateLimited, Ok(0)),
    ];
    for (class, want) in table {
        let mut view = View::all_healthy(4);
        // Only the eu deployment of route 0 is allowed, so the "another
        // deployment" step has nothing and the chain decides.
        let mut p = Planner::new(&routes, 0, eu(), policy(3), false, 10 * SEC);
        let mut rng = SplitMix(1);
        assert_eq!(p.first(0, &mut view, &mut rng).unwrap().backend, 0);
        let got = p
            .after(Failure::of(class), 0, &mut view, &mut rng)
            .map(|a| a.route);
        let want = match want {
            Ok(0) => Ok(1), // the default chain
            other => other,
        };
        assert_eq!(got, want, "{class:?}");
    }
}

#[test]
fn ambiguous_failures_are_not_resent_unless_idempotent() {
    let routes = routes();
    for class in [
        FailureClass::Timeout,
        FailureClass::Broken,
        FailureClass::ServerError,
    ] {
        let mut view = View::all_healthy(4);
        let mut rng = SplitMix(9);
        let mut p = Planner::new(&routes, 0, Residency::default(), policy(5), false, 10 * SEC);
        p.first(0, &mut view, &mut rng).unwrap();
        assert_eq!(
            p.after(Failure::of(class), 0, &mut view, &mut rng),
            Err(GiveUp::NotSafe),
            "{class:?}"
        );
        let mut p = Planner::new(&routes, 0, Residency::default(), policy(5), true, 10 * SEC);
        p.first(0, &mut view, &mut rng).unwrap();
        assert!(p.after(Failure::of(class), 0, &mut view, &mut rng).is_ok());
    }
}

#[test]
fn retry_after_the_deadline_or_budget_is_refused() {
    let single = vec![RouteSpec {
        deployments: vec![dep(0, "eu")],
        ..RouteSpec::default()
    }];
    let mut view = View::all_healthy(1);
    let mut rng = SplitMix(2);
    // Retry-After 5 s on the only deployment: the wait is honoured...
    let mut p = Planner::new(&single, 0, Residency::default(), policy(3), false, 10 * SEC);
    p.first(0, &mut view, &mut rng).unwrap();
    let failure = Failure {
        class: FailureClass::RateLimited,
        retry_after: Some(5 * SEC),
    };
    let a = p.after(failure, 0, &mut view, &mut rng).unwrap();
    assert_eq!((a.backend, a.delay), (0, 5 * SEC));
    // ...unless it ends past the deadline.
    let mut p = Planner::new(&single, 0, Residency::default(), policy(3), false, 4 * SEC);
    p.first(0, &mut view, &mut rng).unwrap();
    assert_eq!(
        p.after(failure, 0, &mut view, &mut rng),
        Err(GiveUp::Deadline)
    );
    // No budget: no retry, except after a failure that sent nothing.
    view.budget = 0;
    let mut p = Planner::new(&single, 0, Residency::default(), policy(3), false, 10 * SEC);
    p.first(0, &mut view, &mut rng).unwrap();
    assert_eq!(
        p.after(
            Failure::of(FailureClass::Unavailable),
            0,
            &mut view,
            &mut rng
        ),
        Err(GiveUp::Budget)
    );
    let mut p = Planner::new(&single, 0, Residency::default(), policy(3), false, 10 * SEC);
    p.first(0, &mut view, &mut rng).unwrap();
    assert!(p
        .after(Failure::of(FailureClass::Connect), 0, &mut view, &mut rng)
        .is_ok());
}

#[test]
fn backoff_is_full_jitter_below_a_doubling_ceiling() {
    let single = vec![RouteSpec {
        deployments: vec![dep(0, "eu")],
        ..RouteSpec::default()
    }];
    let mut view = View::all_healthy(1);
    let mut rng = SplitMix(11);
    let mut max_seen = [0; 3];
    for _ in 0..300 {
        let mut p = Planner::new(
            &single,
            0,
            Residency::default(),
            policy(4),
            false,
            100 * SEC,
        );
        p.first(0, &mut view, &mut rng).unwrap();
        for seen in &mut max_seen {
            let a = p
                .after(Failure::of(FailureClass::Connect), 0, &mut view, &mut rng)
                .unwrap();
            *seen = (*seen).max(a.delay);
        }
    }
    // Ceilings 10, 20, 40 ms; full jitter reaches close to each.
    assert!(
        max_seen[0] <= 10_000_000 && max_seen[0] > 8_000_000,
        "{max_seen:?}"
    );
    assert!(
        max_seen[1] <= 20_000_000 && max_seen[1] > 16_000_000,
        "{max_seen:?}"
    );
    assert!(
        max_seen[2] <= 40_000_000 && max_seen[2] > 32_000_000,
        "{max_seen:?}"
    );
}

#[test]
fn residency_fails_closed_when_only_a_forbidden_deployment_is_healthy() {
    let routes = routes();
    let mut view = View::all_healthy(4);
    view.healthy[0] = false; // the eu deployment is down, us is up
    let mut rng = SplitMix(5);
    let mut p = Planner::new(&routes, 0, eu(), policy(3), false, 10 * SEC);
    assert_eq!(
        p.first(0, &mut view, &mut rng),
        Err(GiveUp::ResidencyUnavailable)
    );
    let us_only = vec![RouteSpec {
        deployments: vec![dep(1, "us")],
        ..RouteSpec::default()
    }];
    let mut p = Planner::new(&us_only, 0, eu(), policy(3), false, 10 * SEC);
    assert_eq!(
        p.first(0, &mut view, &mut rng),
        Err(GiveUp::ResidencyUnavailable)
    );
    // Without a rule, an all-unhealthy route still gets its attempt.
    let mut view = View::all_healthy(2);
    view.healthy = vec![false, false];
    let mut p = Planner::new(
        &us_only,
        0,
        Residency::default(),
        policy(3),
        false,
        10 * SEC,
    );
    assert_eq!(p.first(0, &mut view, &mut rng).unwrap().backend, 1);
}

const REGIONS: [&str; 3] = ["eu", "us", "ap"];
const PROVIDERS: [&str; 2] = ["azure", "self"];

fn arb_labels() -> impl Strategy<Value = Labels> {
    (
        prop::option::of(0..3usize),
        prop::option::of(0..2usize),
        any::<bool>(),
    )
        .prop_map(|(r, p, pii)| Labels {
            region: r.map(|i| REGIONS[i].to_owned()),
            provider: p.map(|i| PROVIDERS[i].to_owned()),
            data_classes: if pii { vec!["pii".to_owned()] } else { vec![] },
        })
}

fn arb_rule() -> impl Strategy<Value = Residency> {
    (
        prop::collection::vec(0..3usize, 0..3),
        prop::collection::vec(0..2usize, 0..2),
        any::<bool>(),
    )
        .prop_map(|(r, p, pii)| Residency {
            regions: r.into_iter().map(|i| REGIONS[i].to_owned()).collect(),
            providers: p.into_iter().map(|i| PROVIDERS[i].to_owned()).collect(),
            data_classes: if pii { vec!["pii".to_owned()] } else { vec![] },
        })
}

/// Up to 4 routes over 6 backends, each backend with fixed labels; random
/// fallback chains.
fn arb_world() -> impl Strategy<Value = (Vec<Labels>, Vec<RouteSpec>)> {
    prop::collection::vec(arb_labels(), 6).prop_flat_map(|labels| {
        let route = (
            prop::collection::vec((0..6usize, 1..4u32), 1..4),
            prop::collection::vec(0..4usize, 0..3),
            prop::collection::vec(0..4usize, 0..2),
            arb_rule(),
        );
        let l2 = labels.clone();
        prop::collection::vec(route, 1..4).prop_map(move |specs| {
            let n = specs.len();
            let routes = specs
                .into_iter()
                .map(|(deps, default, ctx, residency)| RouteSpec {
                    deployments: deps
                        .into_iter()
                        .map(|(b, w)| Deployment {
                            backend: b,
                            weight: w,
                            labels: l2[b].clone(),
                        })
                        .collect(),
                    fallbacks: Fallbacks {
                        by_class: vec![(
                            FailureClass::ContextLength,
                            ctx.into_iter().filter(|r| *r < n).collect(),
                        )],
                        default: default.into_iter().filter(|r| *r < n).collect(),
                    },
                    residency,
                })
                .collect();
            (labels.clone(), routes)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No attempt ever goes to a deployment outside the tenant's, the named
    /// route's and the serving route's residency rules (a route's rule
    /// follows its requests to a fallback), whatever fails, whatever is
    /// healthy.
    #[test]
    fn no_plan_leaves_the_residency_rule(
        (labels, routes) in arb_world(),
        tenant in arb_rule(),
        failures in prop::collection::vec((0..8usize, prop::option::of(0..3u64)), 0..8),
        health in prop::collection::vec(prop::collection::vec(any::<bool>(), 6), 9),
        idempotent in any::<bool>(),
        max_attempts in 1..6u32,
        budget in 0..5u32,
        seed in any::<u64>(),
    ) {
        let mut rng = SplitMix(seed);
        let mut view = View { healthy: health[0].clone(), not_before: vec![0; 6], budget };
        let mut p = Planner::new(&routes, 0, tenant.clone(), policy(max_attempts), idempotent, 30 * SEC);
        let check = |a: &Attempt| {
            let rule = tenant.and(&routes[0].residency).and(&routes[a.route].residency);
            prop_assert!(rule.allows(&labels[a.backend]), "{a:?} under {rule:?}");
            prop_assert!(routes[a.route].deployments.iter().any(|d| d.backend == a.backend));
            Ok(())
        };
        let Ok(first) = p.first(0, &mut view, &mut rng) else { return Ok(()); };
        check(&first)?;
        let mut now = 0;
        for (i, (class, wait)) in failures.into_iter().enumerate() {
            view.healthy = health[i + 1].clone();
            let class = FailureClass::ALL[class];
            let failure = Failure { class, retry_after: wait.map(|s| s * SEC) };
            match p.after(failure, now, &mut view, &mut rng) {
                Ok(a) => {
                    check(&a)?;
                    prop_assert!(class.may_resend(idempotent));
                    prop_assert!(a.number <= max_attempts);
                    now += a.delay;
                    prop_assert!(now < 30 * SEC);
                }
                Err(_) => break,
            }
        }
        prop_assert!(p.attempts() <= max_attempts);
    }

    /// A hedge never goes to a deployment this request already tried (the
    /// first attempt, an earlier hedge, a retry), nor outside the tenant's
    /// and the route's residency rules; a request that is not idempotent is
    /// never hedged; hedges stay within `max_extra` and the budget.
    #[test]
    fn a_hedge_never_goes_to_a_tried_deployment_nor_outside_residency(
        (labels, routes) in arb_world(),
        tenant in arb_rule(),
        health in prop::collection::vec(prop::collection::vec(any::<bool>(), 6), 4),
        idempotent in any::<bool>(),
        max_extra in 1..4u32,
        budget in 0..4u32,
        seed in any::<u64>(),
    ) {
        let mut rng = SplitMix(seed);
        let mut view = View { healthy: health[0].clone(), not_before: vec![0; 6], budget };
        let mut p = Planner::new(&routes, 0, tenant.clone(), policy(5), idempotent, 30 * SEC);
        let Ok(first) = p.first(0, &mut view, &mut rng) else { return Ok(()); };
        let mut tried = vec![first.backend];
        let mut hedges = 0u32;
        for (i, h) in health.iter().enumerate().skip(1) {
            view.healthy = h.clone();
            let before = view.budget;
            match p.hedge(max_extra, i as Nanos * 1_000_000, &mut view, &mut rng) {
                Ok(a) => {
                    prop_assert!(idempotent, "a non-idempotent request was hedged");
                    let rule = tenant.and(&routes[a.route].residency);
                    prop_assert!(rule.allows(&labels[a.backend]), "{a:?} under {rule:?}");
                    prop_assert!(!tried.contains(&a.backend), "{a:?} already tried: {tried:?}");
                    prop_assert!(h[a.backend], "an unhealthy deployment was hedged to");
                    prop_assert_eq!(view.budget, before - 1, "a hedge is paid for");
                    tried.push(a.backend);
                    hedges += 1;
                }
                Err(HedgeOutcome::Budget) => prop_assert_eq!(before, 0),
                Err(HedgeOutcome::Ineligible) => prop_assert!(!idempotent),
                Err(_) => {}
            }
        }
        prop_assert!(hedges <= max_extra);
    }
}

/// A view whose run-time weights zero some backends (a canary in analysis
/// or rolled back).
struct Zeroed {
    inner: View,
    zero: Vec<usize>,
}

impl StateView for Zeroed {
    fn state(&self, backend: usize) -> DeploymentState {
        self.inner.state(backend)
    }
    fn try_retry(&mut self, backend: usize) -> bool {
        self.inner.try_retry(backend)
    }
    fn weight(&self, _route: usize, backend: usize, configured: u32) -> u32 {
        if self.zero.contains(&backend) {
            0
        } else {
            configured
        }
    }
}

#[test]
fn a_deployment_at_weight_zero_gets_no_attempt_at_all() {
    let routes = routes();
    let mut rng = SplitMix(3);
    for seed in 0..200 {
        rng.0 = seed;
        let mut view = Zeroed {
            inner: View::all_healthy(4),
            zero: vec![1],
        };
        let mut p = Planner::new(&routes, 0, Residency::default(), policy(4), true, 10 * SEC);
        let a = p.first(0, &mut view, &mut rng).unwrap();
        assert_eq!(a.backend, 0, "the zeroed deployment is never first");
        // Every further attempt (retries of the same model, fallbacks) too.
        let mut now = 0;
        while let Ok(next) = p.after(
            Failure {
                class: FailureClass::Unavailable,
                retry_after: None,
            },
            now,
            &mut view,
            &mut rng,
        ) {
            assert_ne!(next.backend, 1);
            now += next.delay + 1;
        }
    }
}

/// A view giving backend 1 a fixed share of route 0's first attempts.
struct Shared {
    inner: View,
    pct: u32,
}

impl StateView for Shared {
    fn state(&self, backend: usize) -> DeploymentState {
        self.inner.state(backend)
    }
    fn try_retry(&mut self, backend: usize) -> bool {
        self.inner.try_retry(backend)
    }
    fn share(&self, route: usize) -> Option<(usize, u32)> {
        (route == 0).then_some((1, self.pct))
    }
}

#[test]
fn a_fixed_share_holds_whatever_the_load() {
    let routes = routes();
    for (pct, lo, hi) in [(5u32, 300, 700), (30, 2_700, 3_300), (100, 10_000, 10_000)] {
        let mut rng = SplitMix(11);
        let mut view = Shared {
            inner: View::all_healthy(4),
            pct,
        };
        let mut hits = 0;
        for _ in 0..10_000 {
            let mut p = Planner::new(&routes, 0, Residency::default(), policy(1), false, 10 * SEC);
            if p.first(0, &mut view, &mut rng).unwrap().backend == 1 {
                hits += 1;
            }
        }
        assert!((lo..=hi).contains(&hits), "{pct} %: {hits}");
    }
    // Unhealthy, the canary gets nothing and the rest everything.
    let mut view = Shared {
        inner: View::all_healthy(4),
        pct: 100,
    };
    view.inner.healthy[1] = false;
    let mut rng = SplitMix(1);
    let mut p = Planner::new(&routes, 0, Residency::default(), policy(1), false, 10 * SEC);
    assert_eq!(p.first(0, &mut view, &mut rng).unwrap().backend, 0);
}
