//! Property tests of the limiters' invariants, one module per limiter. Each property is
//! stated in its test's doc comment.

use std::collections::HashMap;

use palisade_limits::{
    decay, BudgetConfig, EscalationLadder, FairQueue, FairQueueConfig, Gcra, GcraConfig, GcraState,
    LadderConfig, LimitKind, MemoryGcra, Nanos, Rung, SpendRateBreaker, SpendRateConfig,
    TokenBudget,
};
use proptest::prelude::*;

mod gcra {
    use super::*;

    fn config() -> impl Strategy<Value = GcraConfig> {
        (1u64..50, 1u64..10_000, 1u64..20).prop_map(|(limit, period_ms, burst)| {
            GcraConfig::new(limit, Nanos::from_millis(period_ms)).with_burst(burst)
        })
    }

    /// Steps as (gap in units of T/4, cost as a fraction of the burst in 1/8ths).
    fn steps() -> impl Strategy<Value = Vec<(u64, u64)>> {
        prop::collection::vec((0u64..12, 0u64..8), 1..150)
    }

    proptest! {
        /// Over any span `[t_i, t_j]` of a monotone clock, the admitted cost is at most
        /// `burst + (t_j - t_i) * limit / period`; `remaining` never exceeds the burst and
        /// `reset_after` never exceeds `burst * T`.
        #[test]
        fn never_admits_more_than_burst_plus_rate(cfg in config(), steps in steps()) {
            let g = Gcra::new(cfg).unwrap();
            let t_unit = g.emission_interval().get();
            let mut l = MemoryGcra::with_gcra(g);
            let mut now = 1_000_000_000_000u64;
            let mut admitted: Vec<(u64, u64)> = Vec::new();
            for (gap, frac) in steps {
                now += gap * t_unit / 4;
                let cost = (cfg.burst * frac / 8).max(1);
                let d = l.check_n("k", cost, Nanos(now)).unwrap();
                prop_assert!(d.remaining <= cfg.burst);
                prop_assert!(d.reset_after.get() <= cfg.burst * t_unit);
                prop_assert_eq!(d.allowed, d.retry_after == Nanos::ZERO);
                if d.allowed {
                    admitted.push((now, cost));
                }
            }
            for i in 0..admitted.len() {
                let mut sum = 0u128;
                for j in i..admitted.len() {
                    sum += u128::from(admitted[j].1);
                    let span = u128::from(admitted[j].0 - admitted[i].0);
                    let bound = u128::from(cfg.burst)
                        + span * u128::from(cfg.limit) / u128::from(cfg.period.get());
                    prop_assert!(sum <= bound, "admitted {} in {} ns, bound {}", sum, span, bound);
                }
            }
        }

        /// `remaining` is exact: exactly that many more unit requests are admitted at the
        /// same instant. `retry_after` is exact: the refused request is admitted at
        /// `now + retry_after` and still refused one nanosecond earlier.
        #[test]
        fn remaining_and_retry_after_are_exact(cfg in config(), steps in steps()) {
            let g = Gcra::new(cfg).unwrap();
            let t_unit = g.emission_interval().get();
            let mut state: Option<GcraState> = None;
            let mut now = 5_000_000_000u64;
            for (gap, frac) in steps {
                now += gap * t_unit / 4;
                let cost = (cfg.burst * frac / 8).max(1);
                let (d, write) = g.decide(state, cost, Nanos(now)).unwrap();
                if let Some(w) = write {
                    state = Some(w);
                }
                if d.allowed {
                    let mut probe = state;
                    for _ in 0..d.remaining {
                        let (p, w) = g.decide(probe, 1, Nanos(now)).unwrap();
                        prop_assert!(p.allowed);
                        probe = w;
                    }
                    prop_assert!(!g.decide(probe, 1, Nanos(now)).unwrap().0.allowed);
                } else {
                    let at = now + d.retry_after.get();
                    prop_assert!(g.decide(state, cost, Nanos(at)).unwrap().0.allowed);
                    prop_assert!(!g.decide(state, cost, Nanos(at - 1)).unwrap().0.allowed);
                }
            }
        }

        /// A clock that steps backwards is stricter: whatever is admitted at an earlier
        /// reading would also be admitted at the latest reading seen.
        #[test]
        fn clock_steps_back_are_stricter(
            cfg in config(),
            steps in prop::collection::vec((0u64..8, 0u64..8, 1u64..4), 1..100),
        ) {
            let g = Gcra::new(cfg).unwrap();
            let t_unit = g.emission_interval().get();
            let mut state: Option<GcraState> = None;
            let mut latest = 10_000_000_000_000u64;
            for (forward, back, cost) in steps {
                latest += forward * t_unit / 2;
                let now = latest - back * t_unit / 2;
                let cost = cost.min(cfg.burst);
                let (d, write) = g.decide(state, cost, Nanos(now)).unwrap();
                if d.allowed {
                    prop_assert!(g.decide(state, cost, Nanos(latest)).unwrap().0.allowed);
                }
                if let Some(w) = write {
                    state = Some(w);
                }
            }
        }

        /// Eviction never changes a decision: the store (which sweeps idle keys as it
        /// goes) agrees with a reference map that never forgets.
        #[test]
        fn eviction_changes_no_decision(
            cfg in config(),
            steps in prop::collection::vec((0u64..8, 0usize..40), 1..300),
        ) {
            let g = Gcra::new(cfg).unwrap();
            let t_unit = g.emission_interval().get();
            let mut store = MemoryGcra::with_gcra(g);
            let mut reference: HashMap<String, GcraState> = HashMap::new();
            let mut now = 0u64;
            for (gap, key) in steps {
                now += gap * t_unit;
                let key = format!("key-{key}");
                let got = store.check(&key, Nanos(now));
                let (want, write) = g.decide(reference.get(&key).copied(), 1, Nanos(now)).unwrap();
                if let Some(w) = write {
                    reference.insert(key, w);
                }
                prop_assert_eq!(got, want);
            }
            prop_assert!(store.len() <= reference.len());
        }
    }
}

mod budget {
    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Reserve { key: usize, id: usize, amount: u64 },
        Reconcile { id: usize, actual: u64 },
        Cancel { id: usize },
        Advance { secs: u64 },
    }

    fn ops(max_actual: u64) -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            4 => (0usize..3, 0usize..16, 0u64..=600)
                .prop_map(|(key, id, amount)| Op::Reserve { key, id, amount }),
            3 => (0usize..16, 0u64..=max_actual).prop_map(|(id, actual)| Op::Reconcile { id, actual }),
            1 => (0usize..16).prop_map(|id| Op::Cancel { id }),
            1 => (0u64..40).prop_map(|secs| Op::Advance { secs }),
        ];
        prop::collection::vec(op, 1..200)
    }

    const LIMIT: u64 = 1_000;
    const KEYS: [&str; 3] = ["k0", "k1", "k2"];

    /// The reference model: open reservations and spend per key and window.
    #[derive(Default)]
    struct Model {
        open: HashMap<usize, (usize, u64)>,
        settled: HashMap<usize, bool>,
        spent: HashMap<(usize, u64), u64>,
        overshoot: HashMap<(usize, u64), u64>,
    }

    /// Runs `ops` against a one-minute budget of 1,000 tokens and checks, after every
    /// step and for every key:
    /// - a reservation is granted exactly when `spent + reserved + amount <= limit`;
    /// - `spent + reserved <= limit + overshoot`, with overshoot the sum of
    ///   `actual - reserved` over reconciliations that exceeded their reservation;
    /// - repeating a settlement is a duplicate that changes nothing;
    /// - with a reservation ttl longer than the run, the budget matches a reference model
    ///   exactly (reserved = open reservations; spent = this window's charges).
    fn run(ops: Vec<Op>, ttl: Nanos, exact: bool, within: bool) -> Result<(), TestCaseError> {
        let window = Nanos::from_secs(60);
        let mut b = TokenBudget::new(BudgetConfig {
            reservation_ttl: ttl,
            ..BudgetConfig::windowed(LIMIT, window)
        })
        .unwrap();
        let mut m = Model::default();
        let mut now = Nanos::from_secs(1_000);
        for op in ops {
            let win = now.get() / window.get();
            match op {
                Op::Advance { secs } => now = now.saturating_add(Nanos::from_secs(secs)),
                Op::Reserve { key, id, amount } => {
                    let before = b.usage(KEYS[key], now);
                    let r = b.reserve(KEYS[key], &format!("r{id}"), amount, now);
                    match r {
                        Ok(r) if r.duplicate => {
                            prop_assert_eq!(m.open.get(&id), Some(&(key, amount)));
                            let after = b.usage(KEYS[key], now);
                            prop_assert_eq!(
                                after.spent + after.reserved,
                                before.spent + before.reserved
                            );
                        }
                        Ok(r) => {
                            let fits = before.spent + before.reserved + amount <= LIMIT;
                            prop_assert_eq!(r.granted, fits, "{:?} for {}", before, amount);
                            if r.granted {
                                prop_assert!(r.usage.spent + r.usage.reserved <= LIMIT);
                                m.open.insert(id, (key, amount));
                            } else {
                                prop_assert_eq!(r.denial.unwrap().kind, LimitKind::TokensExhausted);
                            }
                        }
                        Err(_) => prop_assert!(
                            m.open.contains_key(&id) || m.settled.contains_key(&id),
                            "conflict only for ids in use"
                        ),
                    }
                }
                Op::Reconcile { id, actual } => {
                    // With `within`, upstreams never use more than was reserved.
                    let actual = match m.open.get(&id) {
                        Some(&(_, amount)) if within => actual.min(amount),
                        _ => actual,
                    };
                    settle_step(&mut b, &mut m, id, Some(actual), now, win, exact)?
                }
                Op::Cancel { id } => settle_step(&mut b, &mut m, id, None, now, win, exact)?,
            }
            let win = now.get() / window.get();
            for (k, key) in KEYS.iter().enumerate() {
                let u = b.usage(key, now);
                prop_assert!(
                    u.spent + u.reserved <= LIMIT + u.overshoot,
                    "{}: {:?}",
                    key,
                    u
                );
                if within {
                    prop_assert!(u.overshoot == 0 && u.spent + u.reserved <= LIMIT);
                }
                if exact {
                    let reserved: u64 = m
                        .open
                        .values()
                        .filter(|(kk, _)| *kk == k)
                        .map(|(_, a)| a)
                        .sum();
                    prop_assert_eq!(u.reserved, reserved, "{}", key);
                    prop_assert_eq!(u.spent, m.spent.get(&(k, win)).copied().unwrap_or(0));
                    prop_assert_eq!(
                        u.overshoot,
                        m.overshoot.get(&(k, win)).copied().unwrap_or(0)
                    );
                    prop_assert_eq!(b.open_reservations(), m.open.len());
                }
            }
        }
        Ok(())
    }

    /// One reconcile (`actual` set) or cancel, checked against the model and repeated to
    /// check idempotency.
    fn settle_step(
        b: &mut TokenBudget,
        m: &mut Model,
        id: usize,
        actual: Option<u64>,
        now: Nanos,
        win: u64,
        exact: bool,
    ) -> Result<(), TestCaseError> {
        let name = format!("r{id}");
        let settle = |b: &mut TokenBudget| match actual {
            Some(a) => b.reconcile(&name, a, now),
            None => b.cancel(&name, now),
        };
        match settle(b) {
            Ok(s) => {
                if !s.duplicate {
                    if let Some((key, amount)) = m.open.remove(&id) {
                        prop_assert_eq!(s.reserved, amount);
                        let charged = actual.unwrap_or(0);
                        *m.spent.entry((key, win)).or_default() += charged;
                        *m.overshoot.entry((key, win)).or_default() +=
                            charged.saturating_sub(amount);
                        m.settled.insert(id, true);
                    }
                }
                prop_assert_eq!(s.overshoot, s.charged.saturating_sub(s.reserved));
                // Repeating it changes nothing. (The repeat may also sweep an expired
                // reservation, which moves tokens from reserved to spent but keeps the sum.)
                let view = |b: &TokenBudget| -> Vec<(u64, u64)> {
                    KEYS.iter()
                        .map(|k| b.usage(k, now))
                        .map(|u| (u.spent + u.reserved, u.overshoot))
                        .collect()
                };
                let snapshot = view(b);
                let again = settle(b).unwrap();
                prop_assert!(again.duplicate);
                prop_assert_eq!(snapshot, view(b));
            }
            Err(_) => prop_assert!(!m.open.contains_key(&id) || !exact),
        }
        Ok(())
    }

    proptest! {
        /// See [`run`]; upstreams may use more than reserved (up to 800 against 600).
        #[test]
        fn matches_the_reference_model(ops in ops(800)) {
            run(ops, Nanos::from_secs(1_000_000), true, false)?;
        }

        /// When every request stays within its reservation, spend never exceeds the limit.
        #[test]
        fn no_overshoot_without_excess(ops in ops(800)) {
            run(ops, Nanos::from_secs(1_000_000), true, true)?;
        }

        /// With reservations expiring mid-run (charged in full, corrected by late
        /// reconciles), the invariants still hold.
        #[test]
        fn invariants_hold_with_expiry(ops in ops(800)) {
            run(ops, Nanos::from_secs(20), false, false)?;
        }
    }
}

mod fair {
    use super::*;

    proptest! {
        /// Two tenants continuously backlogged from the start (never fewer than one request
        /// queued) receive weighted service within twice the largest request cost of each
        /// other, while a third tenant comes and goes at random.
        #[test]
        fn backlogged_gap_is_bounded(
            wa in 1u32..5,
            wb in 1u32..5,
            steps in prop::collection::vec((1u64..=100, 0u8..4), 1..600),
        ) {
            const MAX_COST: u64 = 100;
            let mut q = FairQueue::new(FairQueueConfig::default()).unwrap();
            q.set_weight("a", wa).unwrap();
            q.set_weight("b", wb).unwrap();
            for _ in 0..2 {
                q.enqueue("a").unwrap();
                q.enqueue("b").unwrap();
            }
            let (mut sa, mut sb) = (0u64, 0u64);
            for (cost, c_action) in steps {
                if c_action == 0 && q.queued("c") < 8 {
                    q.enqueue("c").unwrap();
                }
                let t = q.pick_next().unwrap();
                q.charge(&t, cost);
                match &*t {
                    "a" => { sa += cost; q.enqueue("a").unwrap(); }
                    "b" => { sb += cost; q.enqueue("b").unwrap(); }
                    _ => {}
                }
                // |sa / wa - sb / wb| <= 2 * MAX_COST, cross-multiplied to stay in integers.
                let lhs = (i128::from(sa) * i128::from(wb) - i128::from(sb) * i128::from(wa)).abs();
                let rhs = 2 * i128::from(MAX_COST) * i128::from(wa) * i128::from(wb);
                prop_assert!(lhs <= rhs, "a {} (w{}), b {} (w{})", sa, wa, sb, wb);
            }
        }

        /// A tenant that returns after idling is served no more than its share: from its
        /// return on, its service never leads that of a tenant backlogged all along by more
        /// than the largest request cost.
        #[test]
        fn returning_tenant_banks_no_credit(
            alone in 1usize..200,
            steps in prop::collection::vec(1u64..=100, 1..300),
        ) {
            let mut q = FairQueue::new(FairQueueConfig::default()).unwrap();
            q.enqueue("a").unwrap();
            for _ in 0..alone {
                let t = q.pick_next().unwrap();
                q.charge(&t, 50);
                q.enqueue("a").unwrap();
            }
            for _ in 0..2 {
                q.enqueue("a").unwrap();
                q.enqueue("b").unwrap();
            }
            let (mut sa, mut sb) = (0u64, 0u64);
            for cost in steps {
                let t = q.pick_next().unwrap();
                q.charge(&t, cost);
                q.enqueue(&t).unwrap();
                if &*t == "a" { sa += cost } else { sb += cost }
                prop_assert!(sb <= sa + 100, "b {} vs a {}", sb, sa);
            }
        }
    }
}

mod ladder {
    use super::*;

    proptest! {
        /// Decay never increases a score, halves it at one half-life, and does not depend
        /// on how the elapsed time is split.
        #[test]
        fn decay_is_monotone_and_composes(
            score in 0.0f64..1e6,
            a in 0u64..10_000_000_000_000,
            b in 0u64..10_000_000_000_000,
            half_life in 1u64..10_000_000_000_000,
        ) {
            let h = Nanos(half_life);
            let (da, dab) = (decay(score, Nanos(a), h), decay(score, Nanos(a + b), h));
            prop_assert!(da <= score && dab <= da);
            let split = decay(da, Nanos(b), h);
            prop_assert!((split - dab).abs() <= 1e-9 * score.max(1.0), "{} vs {}", split, dab);
            prop_assert!((decay(score, h, h) - score / 2.0).abs() <= 1e-9 * score.max(1.0));
        }

        /// Without new offences, the rung never climbs: once offences stop, a key only
        /// steps down the ladder.
        #[test]
        fn rung_only_steps_down_without_offences(
            offences in prop::collection::vec((0u64..120, 1u32..4), 0..20),
            looks in prop::collection::vec(0u64..7_200, 1..50),
        ) {
            let mut l = EscalationLadder::new(LadderConfig::default()).unwrap();
            let mut now = 0u64;
            for (gap, points) in offences {
                now += gap;
                l.offend("k", points, Nanos::from_secs(now));
            }
            let mut looks = looks;
            looks.sort_unstable();
            let mut last = Rung::Block;
            let mut last_score = f64::INFINITY;
            for dt in looks {
                let s = l.standing("k", Nanos::from_secs(now + dt));
                prop_assert!(s.rung <= last, "{:?} after {:?}", s.rung, last);
                prop_assert!(s.score <= last_score);
                last = s.rung;
                last_score = s.score;
            }
        }
    }
}

mod spend {
    use super::*;

    fn config(factor: u64, floor: u64) -> SpendRateConfig {
        SpendRateConfig {
            factor,
            floor,
            bucket: Nanos::from_secs(60),
            weight: 10,
            cooldown: Nanos::from_secs(120),
        }
    }

    proptest! {
        /// Spend that stays at or under the floor in every bucket never trips the breaker,
        /// whatever its shape.
        #[test]
        fn spend_under_the_floor_never_trips(
            floor in 1u64..100_000,
            records in prop::collection::vec((0u64..30, 0u64..1_000), 1..200),
        ) {
            let mut b = SpendRateBreaker::new(config(10, floor)).unwrap();
            let mut now = 0u64;
            let mut bucket = 0u64;
            let mut in_bucket = 0u64;
            for (gap, tokens) in records {
                now += gap;
                if now / 60 != bucket {
                    bucket = now / 60;
                    in_bucket = 0;
                }
                // Clip to the floor so the bucket total never exceeds it.
                let tokens = tokens.min(floor - in_bucket);
                in_bucket += tokens;
                let v = b.record("t", tokens, Nanos::from_secs(now));
                prop_assert!(!v.tripped_now, "{:?}", v);
                prop_assert!(b.check("t", Nanos::from_secs(now)).is_none());
            }
        }

        /// A trip is reported once per cooldown, refuses for at most the cooldown, and
        /// happens exactly when the bucket's spend first exceeds the threshold.
        #[test]
        fn trips_once_per_cooldown_and_only_above_threshold(
            records in prop::collection::vec((0u64..20, 0u64..20_000), 1..300),
        ) {
            let cfg = config(5, 10_000);
            let mut b = SpendRateBreaker::new(cfg).unwrap();
            let mut now = 0u64;
            let mut last_trip: Option<u64> = None;
            for (gap, tokens) in records {
                now += gap;
                let at = Nanos::from_secs(now);
                let refused_before = b.check("t", at).is_some();
                let v = b.record("t", tokens, at);
                if v.tripped_now {
                    prop_assert!(!refused_before);
                    prop_assert!(v.current > v.threshold);
                    if let Some(t) = last_trip {
                        prop_assert!(now - t >= 120, "re-tripped after {} s", now - t);
                    }
                    last_trip = Some(now);
                } else if !refused_before {
                    prop_assert!(v.current <= v.threshold, "{:?}", v);
                }
                if let Some(wait) = b.check("t", at) {
                    prop_assert!(wait <= cfg.cooldown);
                }
            }
        }
    }
}
