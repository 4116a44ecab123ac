//! Table tests of the detector on scripted traffic: steady state, benign
//! spikes with and without scale events, an attack burst inside a spike,
//! refusals during scaling, per-key bursts, dedup and the scope bound.

use palisade_anomaly::{Alert, AlertKind, Detector, Observation, Outcome, Params, ScaleEvent};

const WINDOW: u64 = 10_000;

/// One window of traffic: per tenant, (requests, flagged, refused).
type Window<'a> = Vec<(&'a str, u64, u64, u64)>;

/// Feeds `windows` one after another (events spread evenly in each window)
/// and returns every alert, with the index of the window its evidence is
/// from (an alert is raised when that window closes).
fn run(det: &mut Detector, start_ms: u64, windows: &[Window<'_>]) -> Vec<(usize, Alert)> {
    let mut out: Vec<Alert> = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let w_start = start_ms + i as u64 * WINDOW;
        let total: u64 = w.iter().map(|t| t.1).sum();
        let mut seq = 0u64;
        for &(tenant, n, flagged, refused) in w {
            for j in 0..n {
                // Flags and refusals spread through the tenant's requests.
                let outcome = if j * flagged / n.max(1) != (j + 1) * flagged / n.max(1) {
                    Outcome::Flagged
                } else if j * refused / n.max(1) != (j + 1) * refused / n.max(1) {
                    Outcome::Refused
                } else {
                    Outcome::Allowed
                };
                let at = w_start + seq * (WINDOW - 1) / total.max(1);
                seq += 1;
                let key = if tenant.ends_with("-k2") {
                    Some("k2")
                } else {
                    Some("k1")
                };
                let tenant = tenant.trim_end_matches("-k2");
                for a in det.observe(
                    &Observation {
                        tenant,
                        key,
                        outcome,
                    },
                    at,
                ) {
                    out.push(a);
                }
            }
        }
    }
    let end = start_ms + windows.len() as u64 * WINDOW;
    out.extend(det.tick(end));
    out.into_iter()
        .map(|a| (((a.window_start_ms - start_ms) / WINDOW) as usize, a))
        .collect()
}

const TENANTS: [&str; 5] = ["t0", "t1", "t2", "t3", "t4"];

/// Benign traffic: `n` requests per tenant, 2% flagged.
fn benign(n: u64) -> Window<'static> {
    TENANTS.iter().map(|&t| (t, n, n / 50, 0)).collect()
}

fn warm(det: &mut Detector) -> u64 {
    let steady: Vec<Window<'_>> = (0..10).map(|_| benign(100)).collect();
    assert!(
        run(det, 0, &steady).is_empty(),
        "steady benign traffic alerts"
    );
    10 * WINDOW
}

#[test]
fn steady_benign_traffic_raises_nothing() {
    let mut det = Detector::new(Params::default(), 1);
    let now = warm(&mut det);
    let more: Vec<Window<'_>> = (0..30).map(|_| benign(100)).collect();
    assert!(run(&mut det, now, &more).is_empty());
}

#[test]
fn benign_spike_with_a_scale_event_raises_nothing() {
    let mut det = Detector::new(Params::default(), 1);
    let now = warm(&mut det);
    let mut spike: Vec<Window<'_>> = vec![benign(100)];
    spike.extend((0..6).map(|_| benign(1_000)));
    // The autoscaler reacts within the spike's first window.
    let mut alerts = run(&mut det, now, &spike[..1]);
    det.scale_event(
        &ScaleEvent {
            replicas: Some(4),
            source: "hpa".into(),
        },
        now + WINDOW + 500,
    );
    alerts.extend(run(&mut det, now + WINDOW, &spike[1..]));
    assert!(alerts.is_empty(), "{alerts:?}");
    assert!(det.scaling(now + 2 * WINDOW));
}

#[test]
fn benign_spike_without_a_scale_event_raises_one_load_surge() {
    let mut det = Detector::new(Params::default(), 1);
    let now = warm(&mut det);
    let spike: Vec<Window<'_>> = (0..8).map(|_| benign(1_000)).collect();
    let alerts = run(&mut det, now, &spike);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].1.kind, AlertKind::LoadSurge);
    assert_eq!(alerts[0].0, 0, "raised in the spike's first window");
}

#[test]
fn one_tenants_burst_inside_a_spike_still_alerts_once() {
    let mut det = Detector::new(Params::default(), 1);
    let now = warm(&mut det);
    det.scale_event(
        &ScaleEvent {
            replicas: Some(10),
            source: "keda".into(),
        },
        now,
    );
    let mut spike: Vec<Window<'_>> = (0..6).map(|_| benign(1_000)).collect();
    // t3 sends 200 injections among its 1,000 requests in windows 2..5.
    for w in &mut spike[2..] {
        w[3] = ("t3", 1_000, 20 + 200, 0);
    }
    let alerts = run(&mut det, now, &spike);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let (window, alert) = &alerts[0];
    assert_eq!(*window, 2, "alerted in the window the burst began");
    assert_eq!(alert.kind, AlertKind::InjectionBurst);
    assert_eq!(alert.tenant.as_deref(), Some("t3"));
    assert!(alert.scaling, "raised during the scale event");
    assert!(
        alert.rate_per_1k > 200.0 && alert.baseline_per_1k < 50.0,
        "{alert:?}"
    );
}

#[test]
fn a_small_burst_in_a_small_tenant_is_caught() {
    let mut det = Detector::new(Params::default(), 1);
    let now = warm(&mut det);
    let mut w = benign(100);
    w[1] = ("t1", 40, 12, 0);
    let alerts = run(&mut det, now, &[w]);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].1.tenant.as_deref(), Some("t1"));
}

#[test]
fn noise_below_the_evidence_floor_is_not_a_burst() {
    let mut det = Detector::new(Params::default(), 1);
    let now = warm(&mut det);
    // Too few requests (10 < min_requests), and too few events (4 < min_events).
    let mut a = benign(100);
    a[1] = ("t1", 10, 10, 0);
    let mut b = benign(100);
    b[2] = ("t2", 100, 4, 0);
    assert!(run(&mut det, now, &[a, b]).is_empty());
}

#[test]
fn refusals_alert_outside_scale_events_only() {
    let mut held = Detector::new(Params::default(), 1);
    let now = warm(&mut held);
    let mut free = held.clone();
    let mut w = benign(100);
    w[0] = ("t0", 100, 2, 40);
    held.set_replicas(3, now);
    assert!(run(&mut held, now, &[w.clone()]).is_empty());
    let alerts = run(&mut free, now, &[w]);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].1.kind, AlertKind::RefusalBurst);
}

#[test]
fn one_bad_key_of_a_large_tenant_is_named() {
    let mut det = Detector::new(Params::default(), 1);
    // t0 has two keys; k2 is quiet, then bursts while k1 carries the volume.
    let mut steady = benign(100);
    steady.push(("t0-k2", 30, 0, 0));
    let windows: Vec<Window<'_>> = (0..10).map(|_| steady.clone()).collect();
    assert!(run(&mut det, 0, &windows).is_empty());
    let mut w = benign(2_000);
    w.push(("t0-k2", 30, 15, 0));
    let mut alerts = run(&mut det, 10 * WINDOW, &[w]);
    // The 20x volume is a load surge too; the burst is what matters here.
    alerts.retain(|a| a.1.kind == AlertKind::InjectionBurst);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].1.tenant.as_deref(), Some("t0"));
    assert_eq!(alerts[0].1.keys, vec!["k2".to_owned()]);
}

#[test]
fn a_sustained_burst_alerts_once_per_dedup_period() {
    let params = Params {
        dedup_ms: 60_000,
        ..Params::default()
    };
    let mut det = Detector::new(params, 1);
    let now = warm(&mut det);
    let mut w = benign(100);
    w[4] = ("t4", 100, 60, 0);
    let windows: Vec<Window<'_>> = (0..12).map(|_| w.clone()).collect();
    let alerts = run(&mut det, now, &windows);
    // Windows 0..12 span 120 s: alerts at windows 0 and 6 (60 s apart).
    let at: Vec<usize> = alerts.iter().map(|a| a.0).collect();
    assert_eq!(at, vec![0, 6], "{alerts:?}");
    assert!(det.status(now + 12 * WINDOW).alerts_suppressed >= 10);
}

#[test]
fn the_load_baseline_survives_a_proportional_scale_out() {
    let mut det = Detector::new(Params::default(), 2);
    let now = warm(&mut det);
    let before = det.status(now).load_baseline.unwrap();
    // The fleet doubles with traffic: each replica's share is unchanged.
    det.set_replicas(4, now);
    let windows: Vec<Window<'_>> = (0..20).map(|_| benign(50)).collect();
    assert!(run(&mut det, now, &windows).is_empty());
    let after = det.status(now + 20 * WINDOW).load_baseline.unwrap();
    assert!(
        (after - before).abs() / before < 0.01,
        "{before} -> {after}"
    );
}

#[test]
fn scopes_are_bounded() {
    let params = Params {
        max_scopes: 8,
        ..Params::default()
    };
    let mut det = Detector::new(params, 1);
    let names: Vec<String> = (0..100).map(|i| format!("tenant{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        // Each in its own window, so idle ones can be evicted.
        let at = i as u64 * WINDOW;
        det.observe(
            &Observation {
                tenant: name,
                key: Some("k"),
                outcome: Outcome::Allowed,
            },
            at,
        );
    }
    assert!(det.status(100 * WINDOW).tracked_scopes <= 8);
    // All in one window: the excess is dropped and counted, not stored.
    let mut det = Detector::new(
        Params {
            max_scopes: 8,
            ..Params::default()
        },
        1,
    );
    for name in &names {
        det.observe(
            &Observation {
                tenant: name,
                key: None,
                outcome: Outcome::Allowed,
            },
            5,
        );
    }
    let status = det.status(5);
    assert_eq!(status.tracked_scopes, 8);
    assert_eq!(status.dropped_observations, 92);
}
