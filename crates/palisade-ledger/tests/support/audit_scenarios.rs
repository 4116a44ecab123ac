//! Audit-log behaviour both stores must share, written once against
//! `Ledger`.

use std::collections::HashSet;
use std::sync::Arc;

use palisade_ledger::{AuditFilter, Ledger, LedgerError, Recorded};

use super::{audit_entry, audit_export, entry, request_id_of, DAY0};

/// Records come back byte for byte, in `seq` order; `seq` grows with the
/// queue order; a request may have several records at one gate.
pub async fn audit_appends_and_exports_in_order(ledger: &Ledger) {
    let ts = |i: u64| DAY0 as u64 + i;
    let entries = [
        audit_entry("r1", "acme", "input", "allow", ts(0)),
        audit_entry("r1", "acme", "output", "redact", ts(5)),
        audit_entry("r2", "beta", "input", "block", ts(10)),
        // The same request and gate twice (one decision per document at
        // the context gate): two rows, not a duplicate.
        audit_entry("r3", "acme", "context", "flag", ts(20)),
        audit_entry("r3", "acme", "context", "flag", ts(20)),
        audit_entry("r4", "beta", "input", "allow", ts(30)),
    ];
    let mut seqs = Vec::new();
    for e in &entries {
        seqs.push(ledger.audit(e.clone()).await.unwrap());
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq must grow: {seqs:?}"
    );
    let json: Vec<String> = entries.iter().map(|e| e.json.clone()).collect();
    assert_eq!(audit_export(ledger).await, json);

    // The window is `since <= ts_ms < until`.
    let mut out = Vec::new();
    let n = ledger
        .audit_export(&mut out, ts(5) as i64, ts(20) as i64)
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{}\n{}\n", json[1], json[2])
    );
    let mut out = Vec::new();
    let n = ledger.audit_export(&mut out, ts(31) as i64, i64::MAX).await;
    assert_eq!((n.unwrap(), out.len()), (0, 0));

    // The audit log lives beside the ledger, not in it.
    assert_eq!(ledger.spent("acme", 0).await.unwrap().requests, 0);
}

/// `audit_tail` gives the newest `n` matching records, newest last.
pub async fn audit_tail_filters_newest_last(ledger: &Ledger) {
    let ts = DAY0 as u64;
    let rows = [
        ("t1", "acme", "input", "allow"),
        ("t2", "acme", "output", "redact"),
        ("t3", "beta", "input", "block"),
        ("t4", "acme", "input", "block"),
        ("t5", "beta", "context", "flag"),
        ("t6", "acme", "input", "allow"),
    ];
    for (i, (id, tenant, gate, action)) in rows.iter().enumerate() {
        ledger
            .audit(audit_entry(id, tenant, gate, action, ts + i as u64))
            .await
            .unwrap();
    }
    let check = |n: usize, filter: AuditFilter, expected: &'static [&'static str]| async move {
        let got: Vec<String> = ledger
            .audit_tail(n, &filter)
            .await
            .unwrap()
            .iter()
            .map(|l| request_id_of(l))
            .collect();
        assert_eq!(got, expected, "n={n} {filter:?}");
    };
    let f = |tenant: Option<&str>, gate: Option<&str>, action: Option<&str>| AuditFilter {
        tenant: tenant.map(str::to_owned),
        gate: gate.map(str::to_owned),
        action: action.map(str::to_owned),
        ..AuditFilter::default()
    };
    check(2, AuditFilter::default(), &["t5", "t6"]).await;
    check(
        100,
        AuditFilter::default(),
        &["t1", "t2", "t3", "t4", "t5", "t6"],
    )
    .await;
    check(0, AuditFilter::default(), &[]).await;
    check(10, f(Some("beta"), None, None), &["t3", "t5"]).await;
    check(2, f(Some("acme"), Some("input"), None), &["t4", "t6"]).await;
    check(10, f(None, None, Some("block")), &["t3", "t4"]).await;
    check(10, f(Some("acme"), Some("input"), Some("block")), &["t4"]).await;
    check(10, f(Some("nobody"), None, None), &[]).await;
    let by_request = AuditFilter {
        request_id: Some("t2".to_owned()),
        ..AuditFilter::default()
    };
    check(10, by_request, &["t2"]).await;
    let by_version = AuditFilter {
        policy_version: Some("sha256:00112233aabbccdd".to_owned()),
        ..AuditFilter::default()
    };
    check(1, by_version, &["t6"]).await;
}

/// Queued audit records and ledger entries share the queue: one `flush`
/// makes both durable, and a batch may mix them.
pub async fn audit_nowait_is_durable_after_flush(ledger: &Ledger) {
    for i in 0..1500_u64 {
        let id = format!("n-{i}");
        ledger
            .audit_nowait(audit_entry(&id, "acme", "input", "allow", DAY0 as u64 + i))
            .unwrap();
        if i % 3 == 0 {
            ledger
                .record_nowait(entry(&id, "acme", "m", DAY0, 1, 0))
                .unwrap();
        }
    }
    ledger.flush().await.unwrap();
    let ids: Vec<String> = audit_export(ledger)
        .await
        .iter()
        .map(|l| request_id_of(l))
        .collect();
    let expected: Vec<String> = (0..1500).map(|i| format!("n-{i}")).collect();
    assert_eq!(ids, expected);
    assert_eq!(ledger.spent("acme", 0).await.unwrap().requests, 500);
}

/// Many tasks write ledger rows and audit records at once: every awaited
/// audit record is stored once, with its own `seq`.
pub async fn concurrent_audit_and_ledger_writes(ledger: Arc<Ledger>) {
    const TASKS: usize = 16;
    const PER_TASK: usize = 40;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let ledger = Arc::clone(&ledger);
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..PER_TASK {
                let id = format!("c-{t}-{i}");
                let e = entry(&id, "acme", "m", DAY0, 1, 1);
                assert_eq!(ledger.record(&e).await.unwrap(), Recorded::Inserted);
                let a = audit_entry(&id, "acme", "output", "allow", DAY0 as u64);
                seqs.push(ledger.audit(a).await.unwrap());
            }
            seqs
        }));
    }
    let mut seqs = HashSet::new();
    for h in handles {
        for s in h.await.unwrap() {
            assert!(seqs.insert(s), "seq {s} given twice");
        }
    }
    let stored = audit_export(&ledger).await;
    assert_eq!(stored.len(), TASKS * PER_TASK);
    let ids: HashSet<String> = stored.iter().map(|l| request_id_of(l)).collect();
    assert_eq!(ids.len(), TASKS * PER_TASK);
    assert_eq!(
        ledger.spent("acme", 0).await.unwrap().requests,
        (TASKS * PER_TASK) as u64
    );
}

/// What cannot be stored as one line of an export is refused before it is
/// queued, naming the field.
pub async fn invalid_audit_entries_are_refused(ledger: &Ledger) {
    let check = |f: fn(&mut palisade_ledger::AuditEntry), field: &'static str| async move {
        let mut e = audit_entry("bad", "acme", "input", "allow", DAY0 as u64);
        f(&mut e);
        match ledger.audit(e.clone()).await {
            Err(LedgerError::InvalidEntry { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected InvalidEntry({field}), got {other:?}"),
        }
        match ledger.audit_nowait(e) {
            Err(LedgerError::InvalidEntry { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected InvalidEntry({field}), got {other:?}"),
        }
    };
    check(|e| e.json = "{\"a\":\n1}".to_owned(), "json").await;
    check(|e| e.json = "not json".to_owned(), "json").await;
    check(|e| e.ts_ms = u64::MAX, "ts_ms").await;
    check(|e| e.request_id.clear(), "request_id").await;
    ledger.flush().await.unwrap();
    assert!(audit_export(ledger).await.is_empty());
}
