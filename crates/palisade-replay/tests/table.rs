//! Table tests for the replay table: leases, replays, conflicts, expiry, and
//! the quotas that keep one tenant from displacing another.

use palisade_replay::{scope_key, Begin, Fingerprint, Limits, Stored, Table};
use proptest::prelude::*;

const LIMITS: Limits = Limits {
    ttl_ms: 1_000,
    max_entries: 4,
    max_bytes: 4 * 1024,
    max_entry_bytes: 2 * 1024,
};

fn key(tenant: &str, k: &str) -> [u8; 32] {
    scope_key(&[tenant.as_bytes(), k.as_bytes()])
}

fn fp(body: &str) -> Fingerprint {
    Fingerprint::of_bytes("chat", body.as_bytes())
}

fn stored(body: &str) -> Stored {
    Stored {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
        origin: "req-1".into(),
        policy_version: "sha256:00".into(),
    }
}

fn lease(b: Begin) -> palisade_replay::Lease {
    match b {
        Begin::Fresh(l) => l,
        other => panic!("expected a fresh lease, got {other:?}"),
    }
}

#[test]
fn first_request_leases_repeats_wait_then_replay() {
    let mut t = Table::new(LIMITS);
    let k = key("a", "k1");
    let l = lease(t.begin("a", k, fp("x"), 500, 0));
    assert_eq!(
        t.begin("a", k, fp("x"), 500, 100),
        Begin::InFlight {
            retry_after_ms: 400
        }
    );
    assert_eq!(t.begin("a", k, fp("other"), 500, 100), Begin::Mismatch);
    assert!(t.complete("a", k, l, stored("answer"), 200));
    match t.begin("a", k, fp("x"), 500, 300) {
        Begin::Replay(s) => assert_eq!(s.body, b"answer"),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.begin("a", k, fp("other"), 500, 300), Begin::Mismatch);
    // After the TTL the key is new again.
    assert!(matches!(
        t.begin("a", k, fp("other"), 500, 1_300),
        Begin::Fresh(_)
    ));
}

#[test]
fn a_released_key_is_free_and_a_stale_lease_cannot_complete() {
    let mut t = Table::new(LIMITS);
    let k = key("a", "k");
    let first = lease(t.begin("a", k, fp("x"), 500, 0));
    t.release("a", k, first);
    let second = lease(t.begin("a", k, fp("x"), 500, 10));
    // The first holder's lease is gone: it can neither release nor complete.
    t.release("a", k, first);
    assert!(matches!(
        t.begin("a", k, fp("x"), 500, 20),
        Begin::InFlight { .. }
    ));
    assert!(!t.complete("a", k, first, stored("stale"), 30));
    // A lease that ran out (the holder crashed or hung) frees the key.
    let third = lease(t.begin("a", k, fp("x"), 500, 600));
    assert!(!t.complete("a", k, second, stored("late"), 610));
    assert!(t.complete("a", k, third, stored("fresh"), 620));
    assert!(matches!(t.begin("a", k, fp("x"), 500, 630), Begin::Replay(s) if s.body == b"fresh"));
}

#[test]
fn tenants_never_see_each_others_entries() {
    let mut t = Table::new(LIMITS);
    // The same digest in two shards (a caller bug) still does not cross.
    let k = key("shared", "k");
    assert!(t.put("a", k, stored("a's"), 0));
    assert_eq!(t.get("b", k, 1), None);
    assert!(matches!(t.begin("b", k, fp("x"), 500, 1), Begin::Fresh(_)));
    assert_eq!(
        t.get("a", k, 2).map(|s| s.body.clone()),
        Some(b"a's".to_vec())
    );
}

#[test]
fn a_flood_evicts_only_the_flooders_own_entries() {
    let mut t = Table::new(LIMITS);
    assert!(t.put("victim", key("victim", "v"), stored("keep"), 0));
    for i in 0..1_000u64 {
        t.put(
            "flood",
            key("flood", &i.to_string()),
            stored("spam"),
            i % 900,
        );
        let (n, bytes) = t.usage("flood");
        assert!(n <= LIMITS.max_entries && bytes <= LIMITS.max_bytes);
    }
    assert!(t.get("victim", key("victim", "v"), 950).is_some());
}

#[test]
fn oversized_entries_are_not_stored() {
    let mut t = Table::new(LIMITS);
    let big = "x".repeat(LIMITS.max_entry_bytes);
    assert!(!t.put("a", key("a", "k"), stored(&big), 0));
    let k = key("a", "i");
    let l = lease(t.begin("a", k, fp("x"), 500, 0));
    assert!(!t.complete("a", k, l, stored(&big), 1));
    // Not stored means released: the retry runs again.
    assert!(matches!(t.begin("a", k, fp("x"), 500, 2), Begin::Fresh(_)));
    assert_eq!(t.total(), (1, 0));
}

#[test]
fn a_quota_full_of_live_leases_refuses_new_keys() {
    let mut t = Table::new(LIMITS);
    for i in 0..LIMITS.max_entries {
        lease(t.begin("a", key("a", &i.to_string()), fp("x"), 500, 0));
    }
    assert_eq!(
        t.begin("a", key("a", "one more"), fp("x"), 500, 1),
        Begin::Full
    );
    // Another tenant is not affected, and expired leases make room.
    assert!(matches!(
        t.begin("b", key("b", "k"), fp("x"), 500, 1),
        Begin::Fresh(_)
    ));
    assert!(matches!(
        t.begin("a", key("a", "one more"), fp("x"), 500, 501),
        Begin::Fresh(_)
    ));
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8, usize),
    Begin(u8, u8, bool),
    Get(u8, u8),
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3u8, 0..20u8, 0..1_500usize).prop_map(|(t, k, n)| Op::Put(t, k, n)),
        (0..3u8, 0..20u8, any::<bool>()).prop_map(|(t, k, c)| Op::Begin(t, k, c)),
        (0..3u8, 0..20u8).prop_map(|(t, k)| Op::Get(t, k)),
        (0..400u64).prop_map(Op::Tick),
    ]
}

proptest! {
    /// Under any sequence: every tenant stays within its quota, and an entry
    /// is only ever gone by its own tenant's activity or its TTL.
    #[test]
    fn quotas_hold_and_tenants_are_isolated(ops in proptest::collection::vec(op(), 1..300)) {
        let mut t = Table::new(LIMITS);
        let mut now = 0u64;
        // Tenant 9 stores once and is never touched again.
        prop_assert!(t.put("t9", key("t9", "k"), stored("sentinel"), 0));
        for op in ops {
            match op {
                Op::Put(tn, k, n) => {
                    let tenant = format!("t{tn}");
                    t.put(&tenant, key(&tenant, &k.to_string()), stored(&"y".repeat(n)), now);
                }
                Op::Begin(tn, k, complete) => {
                    let tenant = format!("t{tn}");
                    let kk = key(&tenant, &format!("i{k}"));
                    if let Begin::Fresh(l) = t.begin(&tenant, kk, fp("b"), 100, now) {
                        if complete {
                            t.complete(&tenant, kk, l, stored("done"), now);
                        }
                    }
                }
                Op::Get(tn, k) => {
                    let tenant = format!("t{tn}");
                    t.get(&tenant, key(&tenant, &k.to_string()), now);
                }
                // Time stays within the sentinel's TTL.
                Op::Tick(d) => now = (now + d).min(LIMITS.ttl_ms - 1),
            }
            for tn in 0..3 {
                let (n, bytes) = t.usage(&format!("t{tn}"));
                prop_assert!(n <= LIMITS.max_entries, "entries {n}");
                prop_assert!(bytes <= LIMITS.max_bytes, "bytes {bytes}");
            }
            prop_assert!(t.get("t9", key("t9", "k"), now).is_some());
        }
    }
}
