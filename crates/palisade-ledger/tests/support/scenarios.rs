//! Behaviour both stores must share, written once against `Ledger`.

use std::sync::Arc;
use std::time::Instant;

use palisade_ledger::{GroupBy, Ledger, LedgerError, Recorded, Spent, UsageQuery, UsageRow};

use super::{entry, export, DAY0, DAY_MS};

pub async fn idempotent_on_request_id(ledger: &Ledger) {
    let first = entry("req-1", "acme", "m", DAY0, 100, 10);
    assert_eq!(ledger.record(&first).await.unwrap(), Recorded::Inserted);
    // A retry, even one carrying different figures, does not count twice:
    // the first row stands.
    let mut retry = first.clone();
    retry.completion_tokens = 999;
    assert_eq!(ledger.record(&retry).await.unwrap(), Recorded::Duplicate);
    ledger.record_nowait(retry).unwrap();
    // The same new id twice in one batch: written once.
    let twin = entry("req-2", "acme", "m", DAY0, 1, 1);
    ledger.record_nowait(twin.clone()).unwrap();
    ledger.record_nowait(twin.clone()).unwrap();
    ledger.flush().await.unwrap();
    assert_eq!(ledger.record(&twin).await.unwrap(), Recorded::Duplicate);
    assert_eq!(
        ledger.spent("acme", 0).await.unwrap(),
        Spent {
            requests: 2,
            tokens: 112,
            cost_micros: 123
        }
    );
    assert_eq!(export(ledger).await, vec![first, twin]);
}

fn row(group: &str, requests: u64, prompt: u64, completion: u64) -> UsageRow {
    UsageRow {
        group: group.to_owned(),
        requests,
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        cost_micros: i64::try_from(prompt + 2 * completion).unwrap(),
    }
}

pub async fn usage_groups_and_filters(ledger: &Ledger) {
    let entries = [
        entry("a1", "acme", "small", DAY0, 10, 1),
        entry("a2", "acme", "large", DAY0 + 1000, 20, 2),
        entry("a3", "acme", "large", DAY0 + DAY_MS, 30, 3),
        entry("b1", "beta", "small", DAY0 + DAY_MS + 5, 40, 4),
        // The last millisecond of day 2, and the first of day 3.
        entry("b2", "beta", "small", DAY0 + 2 * DAY_MS - 1, 50, 5),
        entry("b3", "beta", "small", DAY0 + 2 * DAY_MS, 60, 6),
    ];
    for e in &entries {
        assert_eq!(ledger.record(e).await.unwrap(), Recorded::Inserted);
    }
    let check = |tenant: Option<&str>, since, until, group_by, expected: Vec<UsageRow>| {
        let query = UsageQuery {
            tenant: tenant.map(str::to_owned),
            since_ms: since,
            until_ms: until,
            group_by,
        };
        async move {
            assert_eq!(ledger.usage(&query).await.unwrap(), expected, "{query:?}");
        }
    };
    let all = (DAY0, DAY0 + 3 * DAY_MS);
    check(
        None,
        all.0,
        all.1,
        GroupBy::Tenant,
        vec![row("acme", 3, 60, 6), row("beta", 3, 150, 15)],
    )
    .await;
    check(
        None,
        all.0,
        all.1,
        GroupBy::Model,
        vec![row("large", 2, 50, 5), row("small", 4, 160, 16)],
    )
    .await;
    check(
        None,
        all.0,
        all.1,
        GroupBy::Day,
        vec![
            row("2026-03-01", 2, 30, 3),
            row("2026-03-02", 3, 120, 12),
            row("2026-03-03", 1, 60, 6),
        ],
    )
    .await;
    // One tenant; `since` inclusive, `until` exclusive.
    check(
        Some("beta"),
        DAY0 + DAY_MS + 5,
        DAY0 + 2 * DAY_MS,
        GroupBy::Day,
        vec![row("2026-03-02", 2, 90, 9)],
    )
    .await;
    check(Some("nobody"), all.0, all.1, GroupBy::Tenant, vec![]).await;
    assert_eq!(
        ledger.spent("acme", DAY0 + 1000).await.unwrap(),
        Spent {
            requests: 2,
            tokens: 55,
            cost_micros: 60
        }
    );
    assert_eq!(ledger.spent("nobody", 0).await.unwrap(), Spent::default());
}

/// Many tasks record at once, each also retrying an id another task
/// wrote: every id is counted exactly once.
pub async fn concurrent_tasks_count_each_request_once(ledger: Arc<Ledger>) {
    const TASKS: usize = 32;
    const PER_TASK: usize = 50;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let ledger = Arc::clone(&ledger);
        handles.push(tokio::spawn(async move {
            let (mut inserted, mut duplicate) = (0, 0);
            for i in 0..PER_TASK {
                // Every task writes its own ids and the same ids as its
                // neighbour, so each id is written twice, concurrently.
                for owner in [t, (t + 1) % TASKS] {
                    let id = format!("c-{owner}-{i}");
                    match ledger
                        .record(&entry(&id, "acme", "m", DAY0, 1, 1))
                        .await
                        .unwrap()
                    {
                        Recorded::Inserted => inserted += 1,
                        Recorded::Duplicate => duplicate += 1,
                    }
                }
            }
            (inserted, duplicate)
        }));
    }
    let (mut inserted, mut duplicate) = (0, 0);
    for h in handles {
        let (i, d) = h.await.unwrap();
        inserted += i;
        duplicate += d;
    }
    assert_eq!(inserted, TASKS * PER_TASK);
    assert_eq!(duplicate, TASKS * PER_TASK);
    let spent = ledger.spent("acme", 0).await.unwrap();
    assert_eq!(spent.requests, (TASKS * PER_TASK) as u64);
    assert_eq!(spent.tokens, 2 * (TASKS * PER_TASK) as u64);
}

/// `record_nowait` entries are all there once `flush` returns.
pub async fn nowait_entries_are_durable_after_flush(ledger: &Ledger) {
    for i in 0..2000 {
        ledger
            .record_nowait(entry(&format!("n-{i}"), "acme", "m", DAY0 + i, 1, 0))
            .unwrap();
    }
    ledger.flush().await.unwrap();
    assert_eq!(ledger.spent("acme", 0).await.unwrap().requests, 2000);
}

/// The export gives back exactly what was recorded, optional fields and
/// all, in insertion order.
pub async fn export_round_trips(ledger: &Ledger) {
    let mut entries = Vec::new();
    for i in 0..2500_i64 {
        let mut e = entry(&format!("x-{i}"), "acme", "m", DAY0 + i, 7, 3);
        if i % 3 == 0 {
            e.cached_tokens = Some(4);
            e.reasoning_tokens = Some(1);
            e.tool_loop_tokens = Some(2);
            e.outcome = palisade_ledger::Outcome::ClientDisconnected;
            e.usage_source = palisade_ledger::UsageSource::Counted;
            e.status = 499;
        }
        entries.push(e);
    }
    for e in &entries {
        ledger.record_nowait(e.clone()).unwrap();
    }
    ledger.flush().await.unwrap();
    assert_eq!(export(ledger).await, entries);
}

/// Values a database cannot hold are refused before they are queued.
pub async fn invalid_entries_are_refused(ledger: &Ledger) {
    let check = |mut e: palisade_ledger::LedgerEntry,
                 f: fn(&mut palisade_ledger::LedgerEntry),
                 field: &str| {
        f(&mut e);
        let field = field.to_owned();
        async move {
            match ledger.record(&e).await {
                Err(LedgerError::InvalidEntry { field: got, .. }) => assert_eq!(got, field),
                other => panic!("expected InvalidEntry({field}), got {other:?}"),
            }
        }
    };
    let e = entry("bad", "acme", "m", DAY0, 1, 1);
    check(e.clone(), |e| e.prompt_tokens = u64::MAX, "prompt_tokens").await;
    check(
        e.clone(),
        |e| e.cached_tokens = Some(u64::MAX),
        "cached_tokens",
    )
    .await;
    check(e.clone(), |e| e.ts = -1, "ts").await;
    check(e, |e| e.request_id.clear(), "request_id").await;
    assert_eq!(ledger.spent("acme", 0).await.unwrap().requests, 0);
}

/// The same ledger, opened with tiny batches and a linger, still records
/// every entry once (`ledger` must have been opened with such options).
pub async fn small_batches_with_linger(ledger: &Ledger) {
    let entries: Vec<_> = (0..200)
        .map(|i| entry(&format!("s-{i}"), "acme", "m", DAY0, 1, 0))
        .collect();
    let pending: Vec<_> = entries.iter().map(|e| ledger.record(e)).collect();
    for (i, r) in futures_join(pending).await.into_iter().enumerate() {
        assert_eq!(r.unwrap(), Recorded::Inserted, "s-{i}");
    }
    assert_eq!(ledger.spent("acme", 0).await.unwrap().requests, 200);
}

/// Awaits every future concurrently (a tiny `join_all`, to avoid a
/// dependency).
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

/// With a queue of one, `record_nowait` reports `QueueFull` instead of
/// waiting, and exactly the accepted entries are written.
pub async fn a_full_queue_is_reported_not_waited_on(ledger: &Ledger) {
    let (mut accepted, mut full) = (0_u64, 0_u64);
    for i in 0..5000 {
        match ledger.record_nowait(entry(&format!("q-{i}"), "acme", "m", DAY0, 1, 0)) {
            Ok(()) => accepted += 1,
            Err(LedgerError::QueueFull) => full += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    ledger.flush().await.unwrap();
    assert!(full > 0, "a queue of one never filled in 5000 tight sends");
    assert_eq!(ledger.spent("acme", 0).await.unwrap().requests, accepted);
}

/// Entries per second through `record` from `tasks` concurrent tasks, and
/// through `record_nowait` + one `flush`. Printed, not asserted.
pub async fn measure(label: &str, ledger: Arc<Ledger>, tasks: usize, per_task: usize) {
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let ledger = Arc::clone(&ledger);
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                let e = entry(&format!("speed-{t}-{i}"), "acme", "m", DAY0, 100, 20);
                let _ = ledger.record(&e).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let awaited = (tasks * per_task) as f64 / start.elapsed().as_secs_f64();
    let n = tasks * per_task;
    let start = Instant::now();
    for i in 0..n {
        let e = entry(&format!("speed-nowait-{i}"), "acme", "m", DAY0, 100, 20);
        // A full queue is back-pressure: wait for the writer to catch up.
        while let Err(LedgerError::QueueFull) = ledger.record_nowait(e.clone()) {
            ledger.flush().await.unwrap();
        }
    }
    ledger.flush().await.unwrap();
    let nowait = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "LEDGER SPEED {label}: record (awaited, {tasks} tasks): {awaited:.0} entries/s; \
         record_nowait + flush: {nowait:.0} entries/s ({n} entries each)"
    );
}

/// A runtime key's budget columns round-trip through insert, update and load,
/// and a key's spend is counted by tenant and key name from a start time.
pub async fn key_budgets_round_trip_and_key_spend_is_by_name(ledger: &Ledger) {
    use palisade_ledger::{KeyWrite, StoredBudget, StoredKey};
    let mut key = StoredKey {
        id: "key_1".into(),
        tenant: "acme".into(),
        name: "ci".into(),
        sha256: "00".repeat(32),
        old_sha256: None,
        old_until_ms: None,
        admin: false,
        approver: false,
        executor: false,
        models: None,
        expires_ms: None,
        created_ms: 1,
        rotated_ms: None,
        revoked_ms: None,
        budget: StoredBudget {
            max_budget_micros: Some(2_500_000),
            max_tokens: None,
            budget_period: Some("daily".into()),
            requests_per_minute: Some(60),
            tokens_per_minute: None,
        },
    };
    assert_eq!(
        ledger.key_insert(&key, 10).await.unwrap(),
        KeyWrite::Written
    );
    assert_eq!(ledger.keys_load().await.unwrap(), vec![key.clone()]);
    key.budget.max_budget_micros = None;
    key.budget.max_tokens = Some(1_000);
    key.budget.tokens_per_minute = Some(500);
    assert_eq!(ledger.key_update(&key).await.unwrap(), KeyWrite::Written);
    assert_eq!(ledger.keys_load().await.unwrap(), vec![key]);

    // Entries of two keys of one tenant, and of another tenant's key of the same name.
    let mut rows = Vec::new();
    for (id, tenant, key_name, ts, prompt) in [
        ("k1", "acme", "ci", DAY0, 10),
        ("k2", "acme", "ci", DAY0 + 5, 20),
        ("k3", "acme", "web", DAY0 + 5, 400),
        ("k4", "other", "ci", DAY0 + 5, 8_000),
        ("k5", "acme", "ci", DAY0 - 1, 90_000),
    ] {
        let mut e = entry(id, tenant, "m", ts, prompt, 0);
        e.key_name = key_name.to_owned();
        rows.push(e);
    }
    for e in &rows {
        let _ = ledger.record(e).await.unwrap();
    }
    let spent = ledger.key_spent("acme", "ci", DAY0).await.unwrap();
    assert_eq!(
        (spent.requests, spent.tokens, spent.cost_micros),
        (2, 30, 30)
    );
    let none = ledger.key_spent("acme", "nobody", DAY0).await.unwrap();
    assert_eq!(none.requests, 0);
}
