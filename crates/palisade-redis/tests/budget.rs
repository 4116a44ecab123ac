//! The Redis token budget against a real `redis-server`: the in-memory budget's semantics,
//! shared exactly by concurrent replicas.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_limits::{
    BudgetConfig, BudgetUsage, LimitError, LimitKind, Nanos, Reservation, SettleKind, Settlement,
    TokenBudget,
};
use palisade_redis::{RedisLimitError, RedisTokenBudget};
use palisade_testkit::RedisServer;

/// A window that does not turn during any test run: epoch-aligned, it ends in 2070.
const LONG: Nanos = Nanos::from_secs(100 * 365 * 86_400);

async fn budget(redis: &RedisServer) -> RedisTokenBudget {
    RedisTokenBudget::connect(
        &redis.url(),
        "test",
        Duration::from_secs(2),
        Duration::from_secs(2),
    )
    .await
    .expect("connects to the test redis")
}

/// A plain connection, to look at the keys the scripts leave.
async fn raw(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

/// `(spent, reserved, overshoot, remaining)`.
fn counts(u: &BudgetUsage) -> (u64, u64, u64, u64) {
    (u.spent, u.reserved, u.overshoot, u.remaining)
}

async fn check(b: &RedisTokenBudget, config: &BudgetConfig, key: &str, want: (u64, u64, u64, u64)) {
    let u = b.usage(config, key).await.unwrap();
    assert_eq!(counts(&u), want, "{key}: {u:?}");
}

/// The in-memory error inside a Redis error, or a panic for a Redis failure.
fn limit_error(e: RedisLimitError) -> LimitError {
    match e {
        RedisLimitError::Limit(e) => e,
        other => panic!("redis failed: {other}"),
    }
}

/// Waits (at most one window) until at least `min_left` of the current window remains,
/// so a test's steps all fall in one window.
async fn fresh_window(b: &RedisTokenBudget, config: &BudgetConfig, min_left: Duration) {
    let left = b.usage(config, "probe").await.unwrap().reset_after.unwrap();
    if left.to_duration() < min_left {
        tokio::time::sleep(left.to_duration() + Duration::from_millis(20)).await;
    }
}

/// xorshift64*: deterministic test randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[tokio::test]
async fn grants_up_to_the_limit_then_says_when_the_window_turns() {
    let redis = RedisServer::start();
    let b = budget(&redis).await;
    let window = Duration::from_secs(60);
    let tpm = BudgetConfig::windowed(1_000, Nanos::from(window));
    fresh_window(&b, &tpm, Duration::from_secs(3)).await;

    let r = b.reserve(&tpm, "t", "r1", 400).await.unwrap();
    assert!(r.granted && !r.duplicate && r.denial.is_none());
    assert_eq!(counts(&r.usage), (0, 400, 0, 600));
    assert!(b.reserve(&tpm, "t", "r2", 400).await.unwrap().granted);
    let refused = b.reserve(&tpm, "t", "r3", 300).await.unwrap();
    assert!(!refused.granted);
    assert_eq!(counts(&refused.usage), (0, 800, 0, 200));
    let denial = refused.denial.unwrap();
    assert_eq!(denial.kind, LimitKind::TokensExhausted);
    // Redis runs on this machine's clock: the retry is the time to the minute's end.
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let expected = window.as_millis() - since_epoch.as_millis() % window.as_millis();
    let retry = denial.retry_after.unwrap().to_duration().as_millis();
    assert!(
        retry.abs_diff(expected) < 500,
        "retry {retry} ms, expected {expected} ms"
    );
    assert_eq!(denial.retry_after, refused.usage.reset_after);

    // Exactly to the limit, then not one token more.
    assert!(b.reserve(&tpm, "t", "r4", 200).await.unwrap().granted);
    assert!(!b.reserve(&tpm, "t", "r5", 1).await.unwrap().granted);
    // Another key is independent.
    assert!(b.reserve(&tpm, "u", "r6", 1_000).await.unwrap().granted);
    assert_eq!(
        limit_error(b.reserve(&tpm, "t", "r7", 1_001).await.unwrap_err()),
        LimitError::CostExceedsCapacity {
            cost: 1_001,
            capacity: 1_000
        }
    );

    let quota = BudgetConfig::quota(1_000);
    assert!(b.reserve(&quota, "q", "q1", 1_000).await.unwrap().granted);
    let refused = b.reserve(&quota, "q", "q2", 1).await.unwrap();
    assert!(!refused.granted);
    assert_eq!(refused.denial.unwrap().kind, LimitKind::QuotaExceeded);
    assert_eq!(refused.denial.unwrap().retry_after, None);
    assert_eq!(refused.usage.info(), None);
}

#[tokio::test]
async fn reconcile_releases_the_rest_and_records_overshoot() {
    let redis = RedisServer::start();
    let b = budget(&redis).await;
    let c = BudgetConfig::windowed(1_000, LONG);
    b.reserve(&c, "t", "r1", 600).await.unwrap();
    b.reserve(&c, "t", "r2", 300).await.unwrap();
    let s = b.reconcile(&c, "r1", 250).await.unwrap();
    assert_eq!(
        s,
        Settlement {
            kind: SettleKind::Reconciled,
            reserved: 600,
            charged: 250,
            overshoot: 0,
            duplicate: false
        }
    );
    check(&b, &c, "t", (250, 300, 0, 450)).await;
    // The upstream used more than reserved: charged anyway, recorded as overshoot.
    let s = b.reconcile(&c, "r2", 500).await.unwrap();
    assert_eq!((s.reserved, s.charged, s.overshoot), (300, 500, 200));
    check(&b, &c, "t", (750, 0, 200, 250)).await;
    // A cancelled reservation charges nothing.
    b.reserve(&c, "t", "r3", 200).await.unwrap();
    let s = b.cancel(&c, "r3").await.unwrap();
    assert_eq!(
        (s.kind, s.reserved, s.charged),
        (SettleKind::Cancelled, 200, 0)
    );
    check(&b, &c, "t", (750, 0, 200, 250)).await;
}

#[tokio::test]
async fn settling_is_idempotent_and_conflicts_are_errors() {
    let redis = RedisServer::start();
    let b = budget(&redis).await;
    let c = BudgetConfig::windowed(1_000, LONG);
    b.reserve(&c, "t", "r1", 100).await.unwrap();
    let dup = b.reserve(&c, "t", "r1", 100).await.unwrap();
    assert!(dup.granted && dup.duplicate);
    check(&b, &c, "t", (0, 100, 0, 900)).await;

    let first = b.reconcile(&c, "r1", 80).await.unwrap();
    let again = b.reconcile(&c, "r1", 80).await.unwrap();
    assert_eq!(
        again,
        Settlement {
            duplicate: true,
            ..first
        }
    );
    check(&b, &c, "t", (80, 0, 0, 920)).await;
    let conflict = |id: &str| LimitError::ReservationConflict(id.to_owned());
    let err = |r: Result<Settlement, RedisLimitError>| limit_error(r.unwrap_err());
    assert_eq!(err(b.reconcile(&c, "r1", 90).await), conflict("r1"));
    assert_eq!(err(b.cancel(&c, "r1").await), conflict("r1"));
    assert_eq!(
        limit_error(b.reserve(&c, "t", "r1", 100).await.unwrap_err()),
        conflict("r1")
    );

    b.reserve(&c, "t", "r2", 100).await.unwrap();
    for (key, amount) in [("u", 100), ("t", 101)] {
        assert_eq!(
            limit_error(b.reserve(&c, key, "r2", amount).await.unwrap_err()),
            conflict("r2")
        );
    }
    assert!(!b.cancel(&c, "r2").await.unwrap().duplicate);
    assert!(b.cancel(&c, "r2").await.unwrap().duplicate);
    check(&b, &c, "t", (80, 0, 0, 920)).await;
    assert_eq!(
        err(b.reconcile(&c, "nope", 1).await),
        LimitError::UnknownReservation("nope".into())
    );
}

/// Two replicas (two connections), 200 concurrent requests (retrying when refused)
/// reserving random amounts and reconciling with at most what they reserved: sampled at any time and at the end,
/// `spent + reserved` never exceeds the limit, and the final spend is exactly the sum of
/// the granted requests' actual usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_exact_budget() {
    const LIMIT: u64 = 20_000;
    let redis = RedisServer::start();
    let replicas = [budget(&redis).await, budget(&redis).await];
    let c = BudgetConfig::windowed(LIMIT, LONG);
    let run = async {
        let stop = Arc::new(AtomicBool::new(false));
        let worst = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (b, stop, worst) = (replicas[0].clone(), stop.clone(), worst.clone());
            tokio::spawn(async move {
                let mut samples = 0u32;
                while !stop.load(Ordering::Acquire) {
                    let u = b.usage(&c, "shared").await.unwrap();
                    worst.fetch_max(u.spent + u.reserved, Ordering::Relaxed);
                    samples += 1;
                }
                samples
            })
        };
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let b = replicas[(i % 2) as usize].clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i + 1));
                tokio::time::sleep(Duration::from_millis(rng.below(10))).await;
                let amount = 500 + rng.below(2_501);
                let id = format!("req-{i}");
                // A refused request retries a few times, as a client honouring 429s would,
                // so reserves keep racing reconciles for the whole run.
                let mut refusals = 0;
                for _ in 0..20 {
                    let r = b.reserve(&c, "shared", &id, amount).await.unwrap();
                    assert!(r.usage.spent + r.usage.reserved <= LIMIT, "{r:?}");
                    if r.granted {
                        tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
                        // Mostly far below the reservation (it reserves `max_tokens`), so the
                        // contended resource is what is held in flight, not what is spent.
                        let actual = match rng.below(10) {
                            0 => amount,
                            _ => rng.below(amount / 10 + 1),
                        };
                        let s = b.reconcile(&c, &id, actual).await.unwrap();
                        assert_eq!((s.charged, s.overshoot, s.duplicate), (actual, 0, false));
                        return (Some(actual), refusals);
                    }
                    refusals += 1;
                    tokio::time::sleep(Duration::from_millis(1 + rng.below(10))).await;
                }
                (None, refusals)
            }));
        }
        let mut granted = Vec::new();
        let mut refusals = 0;
        for t in tasks {
            let (actual, refused) = t.await.unwrap();
            granted.extend(actual);
            refusals += refused;
        }
        stop.store(true, Ordering::Release);
        let samples = sampler.await.unwrap();
        (granted, refusals, samples, worst.load(Ordering::Relaxed))
    };
    let (granted, refusals, samples, worst) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the run finishes within a minute");
    assert!(
        granted.len() > 50 && refusals > 100,
        "the budget was contended: {} of 200 granted, {refusals} refusals",
        granted.len()
    );
    assert!(samples >= 5, "usage was sampled during the run ({samples})");
    assert!(worst <= LIMIT, "spent + reserved reached {worst}");
    let u = replicas[1].usage(&c, "shared").await.unwrap();
    assert_eq!(u.spent, granted.iter().sum::<u64>());
    assert_eq!((u.reserved, u.overshoot), (0, 0));
}

#[tokio::test]
async fn lost_reservations_are_charged_in_full_then_corrected_once() {
    let redis = RedisServer::start();
    let b = budget(&redis).await;
    let c = BudgetConfig {
        reservation_ttl: Nanos::from_millis(300),
        ..BudgetConfig::windowed(1_000, LONG)
    };
    b.reserve(&c, "t", "lost", 400).await.unwrap();
    b.reserve(&c, "t", "also-lost", 100).await.unwrap();
    check(&b, &c, "t", (0, 500, 0, 500)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Past the ttl, the next call on the key charges them in full.
    let r = b.reserve(&c, "t", "other", 1).await.unwrap();
    assert_eq!(counts(&r.usage), (500, 1, 0, 499));
    // The late reconcile replaces the full charge with the real one, once.
    let s = b.reconcile(&c, "lost", 100).await.unwrap();
    assert_eq!(
        (s.kind, s.reserved, s.charged, s.duplicate),
        (SettleKind::Reconciled, 400, 100, false)
    );
    check(&b, &c, "t", (200, 1, 0, 799)).await;
    assert!(b.reconcile(&c, "lost", 100).await.unwrap().duplicate);
    check(&b, &c, "t", (200, 1, 0, 799)).await;
    // A late cancel refunds the whole charge.
    b.cancel(&c, "also-lost").await.unwrap();
    check(&b, &c, "t", (100, 1, 0, 899)).await;
}

#[tokio::test]
async fn window_turnover_restarts_spent_and_carries_reservations() {
    let redis = RedisServer::start();
    let b = budget(&redis).await;
    let c = BudgetConfig::windowed(2_000, Nanos::from_secs(1));
    fresh_window(&b, &c, Duration::from_millis(600)).await;
    b.reserve(&c, "t", "open", 300).await.unwrap();
    b.reserve(&c, "t", "done", 600).await.unwrap();
    b.reconcile(&c, "done", 700).await.unwrap();
    let before = b.usage(&c, "t").await.unwrap();
    assert_eq!(counts(&before), (700, 300, 100, 1_000));

    tokio::time::sleep(before.reset_after.unwrap().to_duration() + Duration::from_millis(50)).await;
    // New window: spent and overshoot restart, the open reservation still holds its tokens.
    check(&b, &c, "t", (0, 300, 0, 1_700)).await;
    // No state for this window yet, so a seed applies (and keeps the reservation), once.
    assert!(b.seed_spent_if_absent(&c, "t", 50).await.unwrap());
    assert!(!b.seed_spent_if_absent(&c, "t", 999).await.unwrap());
    check(&b, &c, "t", (50, 300, 0, 1_650)).await;
    // Settled in this window, charged to it.
    b.reconcile(&c, "open", 300).await.unwrap();
    check(&b, &c, "t", (350, 0, 0, 1_650)).await;
}

#[tokio::test]
async fn seed_spent_if_absent_seeds_once() {
    let redis = RedisServer::start();
    let b = budget(&redis).await;
    let quota = BudgetConfig::quota(1_000);
    assert!(b.seed_spent_if_absent(&quota, "t", 900).await.unwrap());
    // A second replica starting later must not overwrite the live count.
    b.reserve(&quota, "t", "r1", 50).await.unwrap();
    b.reconcile(&quota, "r1", 50).await.unwrap();
    assert!(!b.seed_spent_if_absent(&quota, "t", 900).await.unwrap());
    check(&b, &quota, "t", (950, 0, 0, 50)).await;
    let refused = b.reserve(&quota, "t", "r2", 51).await.unwrap();
    assert_eq!(refused.denial.unwrap().kind, LimitKind::QuotaExceeded);

    // A windowed key with state in the current window is not seeded either.
    let c = BudgetConfig::windowed(1_000, LONG);
    b.reserve(&c, "w", "r3", 10).await.unwrap();
    assert!(!b.seed_spent_if_absent(&c, "w", 500).await.unwrap());
    check(&b, &c, "w", (0, 10, 0, 990)).await;
}

/// What one reserve came to, comparable across backends (reset times differ: the memory
/// budget runs on a made-up clock).
type Outcome = Result<(bool, bool, Option<LimitKind>, (u64, u64, u64, u64)), LimitError>;

fn outcome(r: Result<Reservation, LimitError>) -> Outcome {
    r.map(|r| {
        (
            r.granted,
            r.duplicate,
            r.denial.map(|d| d.kind),
            counts(&r.usage),
        )
    })
}

/// A deterministic sequence of reserves (some over the limit, some reusing ids), reconciles
/// (some beyond the reservation, some of unknown ids) and cancels, within one window,
/// gives the same outcomes and the same usage in memory and in Redis.
#[tokio::test]
async fn matches_the_in_memory_budget() {
    const KEYS: [&str; 3] = ["k0", "k1", "k2"];
    let redis = RedisServer::start();
    let b = budget(&redis).await;
    let c = BudgetConfig::windowed(1_000, LONG);
    let mut mem = TokenBudget::new(c).unwrap();
    let now = Nanos::from_secs(1_000);
    let mut rng = Rng(42);
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut last_reserve = ("k0", String::new(), 0);
    for step in 0..400 {
        let id = format!("r{}", rng.below(48));
        let what = match rng.below(20) {
            0..=8 => {
                // Sometimes a retry of the previous reserve, to reach duplicates.
                if rng.below(4) > 0 {
                    let key = KEYS[rng.below(3) as usize];
                    let amount = match rng.below(10) {
                        0 => 1_001 + rng.below(100),
                        _ => rng.below(601),
                    };
                    last_reserve = (key, id, amount);
                }
                let (key, id, amount) = last_reserve.clone();
                let m = outcome(mem.reserve(key, &id, amount, now));
                let r = outcome(b.reserve(&c, key, &id, amount).await.map_err(limit_error));
                let what = match &m {
                    Ok((true, true, ..)) => "duplicate reserve",
                    Ok((true, ..)) => "grant",
                    Ok(_) => "denial",
                    Err(_) => "reserve error",
                };
                assert_eq!(m, r, "step {step}: reserve {key} {id} {amount}");
                what
            }
            9..=15 => {
                let actual = rng.below(801);
                let m = mem.reconcile(&id, actual, now);
                let r = b.reconcile(&c, &id, actual).await.map_err(limit_error);
                assert_eq!(m, r, "step {step}: reconcile {id} {actual}");
                settle_name(&m)
            }
            _ => {
                let m = mem.cancel(&id, now);
                let r = b.cancel(&c, &id).await.map_err(limit_error);
                assert_eq!(m, r, "step {step}: cancel {id}");
                settle_name(&m)
            }
        };
        *seen.entry(what.to_owned()).or_default() += 1;
        for key in KEYS {
            let r = b.usage(&c, key).await.unwrap();
            assert_eq!(
                counts(&mem.usage(key, now)),
                counts(&r),
                "step {step}: {key}"
            );
        }
    }
    // The sequence reached every branch, so agreement means something.
    for what in [
        "grant",
        "denial",
        "duplicate reserve",
        "reserve error",
        "settled",
        "duplicate settlement",
        "unknown",
        "conflict",
    ] {
        assert!(seen.get(what).copied().unwrap_or(0) > 0, "{what}: {seen:?}");
    }
}

fn settle_name(r: &Result<Settlement, LimitError>) -> &'static str {
    match r {
        Ok(s) if s.duplicate => "duplicate settlement",
        Ok(_) => "settled",
        Err(LimitError::UnknownReservation(_)) => "unknown",
        Err(_) => "conflict",
    }
}

#[tokio::test]
async fn idle_state_expires_but_quota_state_stays() {
    let redis = RedisServer::start();
    let b = budget(&redis).await;
    let mut conn = raw(&redis).await;
    let c = BudgetConfig {
        reservation_ttl: Nanos::from_secs(5),
        settled_ttl: Nanos::from_secs(2),
        ..BudgetConfig::windowed(1_000, Nanos::from_secs(1))
    };
    b.reserve(&c, "idle", "a", 10).await.unwrap();
    b.reconcile(&c, "a", 10).await.unwrap();
    // Nothing open: the state lives to the end of the window, the settlement for its ttl.
    let ttl = pttl(&mut conn, "test:budget:idle").await;
    assert!((1..=1_000).contains(&ttl), "budget pttl {ttl}");
    let ttl = pttl(&mut conn, "test:res:a").await;
    assert!(
        (1_000..=2_000).contains(&ttl),
        "settled reservation pttl {ttl}"
    );

    // An open reservation keeps its key's state past the window, until its expiry's window.
    b.reserve(&c, "busy", "b", 10).await.unwrap();
    for key in ["test:budget:busy", "test:open:busy"] {
        let ttl = pttl(&mut conn, key).await;
        assert!((5_000..=6_000).contains(&ttl), "{key} pttl {ttl}");
    }

    // A hard quota never expires by itself: forgetting it would refill it.
    let quota = BudgetConfig::quota(1_000);
    b.reserve(&quota, "q", "c", 10).await.unwrap();
    b.reconcile(&quota, "c", 10).await.unwrap();
    assert_eq!(pttl(&mut conn, "test:budget:q").await, -1);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg("test:budget:idle")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0, "an idle window's state expired");
    check(&b, &c, "busy", (0, 10, 0, 990)).await;
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_within_the_call_timeout() {
    let mut redis = RedisServer::start();
    let timeout = Duration::from_millis(500);
    let b = RedisTokenBudget::connect(&redis.url(), "test", Duration::from_secs(2), timeout)
        .await
        .unwrap();
    let c = BudgetConfig::windowed(1_000, LONG);
    assert!(b.reserve(&c, "t", "r1", 10).await.unwrap().granted);
    redis.stop();
    let started = Instant::now();
    let err = b.reserve(&c, "t", "r2", 10).await.unwrap_err();
    assert!(
        matches!(err, RedisLimitError::Redis(_) | RedisLimitError::Timeout(_)),
        "{err}"
    );
    assert!(
        started.elapsed() < timeout * 3,
        "took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert!(b.reconcile(&c, "r1", 10).await.is_err());
    assert!(started.elapsed() < timeout * 3);

    // Nothing listens on the dead server's port any more: connecting fails fast too.
    let started = Instant::now();
    let refused =
        RedisTokenBudget::connect(&redis.url(), "test", Duration::from_secs(1), timeout).await;
    assert!(refused.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Lua numbers are doubles and Lua prints them with 14 digits: token counts up to 2^53 - 1
/// must still round-trip exactly, and larger ones are refused rather than rounded.
#[tokio::test]
async fn counts_up_to_2_pow_53_stay_exact() {
    const MAX: u64 = (1 << 53) - 1;
    let redis = RedisServer::start();
    let b = budget(&redis).await;
    let c = BudgetConfig::quota(MAX);
    let big = MAX - 7;
    let r = b.reserve(&c, "t", "r1", big).await.unwrap();
    assert!(r.granted);
    assert_eq!(counts(&r.usage), (0, big, 0, 7));
    assert!(!b.reserve(&c, "t", "r2", 8).await.unwrap().granted);
    assert!(b.reserve(&c, "t", "r2", 7).await.unwrap().granted);
    assert_eq!(
        b.reconcile(&c, "r1", big - 1).await.unwrap().charged,
        big - 1
    );
    check(&b, &c, "t", (big - 1, 7, 0, 1)).await;
    assert!(matches!(
        b.reconcile(&c, "r2", 1 << 53).await,
        Err(RedisLimitError::OutOfRange { value, .. }) if value == 1 << 53
    ));
    assert!(matches!(
        b.reserve(&BudgetConfig::quota(1 << 53), "t", "r3", 1).await,
        Err(RedisLimitError::OutOfRange { .. })
    ));
}
