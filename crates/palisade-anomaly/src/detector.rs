//! The detector: counts gate outcomes per tenant and key in tumbling
//! windows, tests each closed window against the scope's baseline, learns
//! the baselines, and holds capacity signals down across scale events.
//!
//! Must not: read the clock or allocate per observation beyond a scope's
//! first sighting; every entry point takes `now_ms`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::params::Params;
use crate::stats::{binomial_z, Ewma};

/// What the gates did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Passed without a finding.
    Allowed,
    /// Passed, but a rule flagged, redacted or quarantined something.
    Flagged,
    /// Refused by a gate (an injection, a jailbreak, …).
    Blocked,
    /// Refused for capacity (the detection or CPU pool was saturated).
    Refused,
}

/// One request's outcome, for a tenant and (when known) an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The API key's id, when the request had one.
    pub key: Option<&'a str>,
    /// What the gates did.
    pub outcome: Outcome,
}

/// A scale event: an autoscaler, an operator or the fleet registry says the
/// fleet is changing size.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScaleEvent {
    /// The replica count the fleet is going to, when known.
    pub replicas: Option<u32>,
    /// Who said so (`hpa`, `keda`, `generic`, …), for the log.
    pub source: String,
}

/// Which signal an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A tenant's (or key's) share of flagged and blocked requests jumped
    /// above its baseline: an attack burst, whatever the traffic volume.
    InjectionBurst,
    /// A tenant's share of capacity refusals jumped (outside scale events).
    RefusalBurst,
    /// This replica's load, normalized to the fleet, surged with no scale
    /// event under way.
    LoadSurge,
}

impl AlertKind {
    /// The stable snake_case name (same as serde).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::InjectionBurst => "injection_burst",
            AlertKind::RefusalBurst => "refusal_burst",
            AlertKind::LoadSurge => "load_surge",
        }
    }
}

/// One deduplicated alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The signal.
    pub kind: AlertKind,
    /// The tenant, for per-tenant signals.
    pub tenant: Option<String>,
    /// The tenant's keys that fired on their own, if any.
    pub keys: Vec<String>,
    /// The window the evidence is from (`[start, end)`, the caller's clock).
    pub window_start_ms: u64,
    /// Its end.
    pub window_end_ms: u64,
    /// Requests in the window (the tenant's; this replica's for a surge).
    pub requests: u64,
    /// Of which flagged/blocked (or refused); for a surge, equal to `requests`.
    pub events: u64,
    /// The window's rate per 1,000 requests (for a surge: fleet-normalized
    /// requests per window).
    pub rate_per_1k: f64,
    /// The baseline it was tested against, in the same unit.
    pub baseline_per_1k: f64,
    /// The binomial z-score (for a surge: the ratio to the baseline).
    pub score: f64,
    /// The replica count the detector believed in.
    pub replicas: u32,
    /// Whether a scale event was under way.
    pub scaling: bool,
}

/// What the detector is doing, for `GET /admin/anomaly`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The replica count in use.
    pub replicas: u32,
    /// Whether a scale event's hold-down is active.
    pub scaling: bool,
    /// When it ends, if one is active.
    pub hold_until_ms: Option<u64>,
    /// Tenants and keys with a baseline.
    pub tracked_scopes: usize,
    /// Observations not counted because `max_scopes` was reached.
    pub dropped_observations: u64,
    /// Alerts raised.
    pub alerts_raised: u64,
    /// Alerts suppressed as duplicates.
    pub alerts_suppressed: u64,
    /// The fleet-normalized load baseline (requests per window), once learnt.
    pub load_baseline: Option<f64>,
}

/// A tenant, or one key of a tenant.
type ScopeKey = (String, Option<String>);

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    requests: u64,
    content: u64,
    refused: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Baseline {
    content: Ewma,
    refusal: Ewma,
    last_seen_ms: u64,
}

/// A window's test of one scope on one signal.
#[derive(Debug, Clone, Copy)]
struct Test {
    requests: u64,
    events: u64,
    p0: f64,
    z: f64,
    fired: bool,
}

/// The scaling-aware detector (see the crate docs). Single-threaded: the
/// gateway feeds it from one task.
#[derive(Debug, Clone)]
pub struct Detector {
    params: Params,
    replicas: u32,
    hold_until_ms: Option<u64>,
    /// The load baseline is re-based on the first window after a hold-down.
    rebase_load: bool,
    window_start_ms: Option<u64>,
    counts: HashMap<ScopeKey, Counts>,
    baselines: HashMap<ScopeKey, Baseline>,
    window_requests: u64,
    load: Ewma,
    last_alert: HashMap<(AlertKind, Option<String>), u64>,
    dropped: u64,
    raised: u64,
    suppressed: u64,
}

impl Detector {
    /// A detector for a fleet of `replicas` (at least 1). `params` should be
    /// validated ([`Params::validate`]).
    pub fn new(params: Params, replicas: u32) -> Self {
        Self {
            params,
            replicas: replicas.max(1),
            hold_until_ms: None,
            rebase_load: false,
            window_start_ms: None,
            counts: HashMap::new(),
            baselines: HashMap::new(),
            window_requests: 0,
            load: Ewma::default(),
            last_alert: HashMap::new(),
            dropped: 0,
            raised: 0,
            suppressed: 0,
        }
    }

    /// The parameters in use.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Counts one request, after closing any windows that ended by `now_ms`
    /// (their alerts are returned).
    pub fn observe(&mut self, obs: &Observation<'_>, now_ms: u64) -> Vec<Alert> {
        let alerts = self.tick(now_ms);
        self.window_requests += 1;
        let tenant_scope = (obs.tenant.to_owned(), None);
        self.count(tenant_scope, obs.outcome, now_ms);
        if let Some(key) = obs.key {
            self.count(
                (obs.tenant.to_owned(), Some(key.to_owned())),
                obs.outcome,
                now_ms,
            );
        }
        alerts
    }

    /// Closes every window that ended by `now_ms`; returns their alerts.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Alert> {
        let window = self.params.window_ms.max(1);
        let mut alerts = Vec::new();
        let Some(mut start) = self.window_start_ms else {
            self.window_start_ms = Some(now_ms - now_ms % window);
            return alerts;
        };
        while now_ms >= start.saturating_add(window) {
            let end = start + window;
            alerts.extend(self.close_window(start, end));
            // After a long idle gap, jump to the current window at once:
            // the empty windows between carry nothing to test.
            start = if now_ms >= end.saturating_add(window) {
                self.load_idle_gap();
                now_ms - now_ms % window
            } else {
                end
            };
        }
        self.window_start_ms = Some(start);
        alerts
    }

    /// The fleet's replica count changed (the fleet registry's setter): a
    /// scale event if it differs from the current one.
    pub fn set_replicas(&mut self, replicas: u32, now_ms: u64) {
        let replicas = replicas.max(1);
        if replicas != self.replicas {
            self.replicas = replicas;
            self.hold_down(now_ms);
        }
    }

    /// An autoscaler or operator says a scale event is under way.
    pub fn scale_event(&mut self, event: &ScaleEvent, now_ms: u64) {
        if let Some(replicas) = event.replicas {
            self.replicas = replicas.max(1);
        }
        self.hold_down(now_ms);
    }

    /// Whether capacity signals are held down at `now_ms`.
    pub fn scaling(&self, now_ms: u64) -> bool {
        self.hold_until_ms.is_some_and(|until| now_ms < until)
    }

    /// The replica count in use.
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// A summary for operators.
    pub fn status(&self, now_ms: u64) -> Status {
        Status {
            replicas: self.replicas,
            scaling: self.scaling(now_ms),
            hold_until_ms: self.hold_until_ms.filter(|&u| now_ms < u),
            tracked_scopes: self.baselines.len(),
            dropped_observations: self.dropped,
            alerts_raised: self.raised,
            alerts_suppressed: self.suppressed,
            load_baseline: (self.load.samples > 0).then_some(self.load.mean),
        }
    }

    fn hold_down(&mut self, now_ms: u64) {
        let until = now_ms.saturating_add(self.params.hold_down_ms);
        self.hold_until_ms = Some(self.hold_until_ms.map_or(until, |u| u.max(until)));
        self.rebase_load = true;
    }

    /// Empty windows skipped over teach the load baseline one zero-load
    /// window (not one per skipped window: an idle night must not make the
    /// morning a surge).
    fn load_idle_gap(&mut self) {
        if self.load.samples > 0 {
            self.load.update(0.0, self.params.alpha);
        }
    }

    fn count(&mut self, scope: ScopeKey, outcome: Outcome, now_ms: u64) {
        let full = self.baselines.len() >= self.params.max_scopes;
        if full && !self.baselines.contains_key(&scope) && !self.evict_idle() {
            self.dropped += 1;
            return;
        }
        self.baselines
            .entry(scope.clone())
            .or_default()
            .last_seen_ms = now_ms;
        let c = self.counts.entry(scope).or_default();
        c.requests += 1;
        match outcome {
            Outcome::Flagged | Outcome::Blocked => c.content += 1,
            Outcome::Refused => c.refused += 1,
            Outcome::Allowed => {}
        }
    }

    /// Drops the longest-unseen baseline that has nothing in the current
    /// window; `false` if every tracked scope is active now.
    fn evict_idle(&mut self) -> bool {
        let victim = self
            .baselines
            .iter()
            .filter(|(k, _)| !self.counts.contains_key(*k))
            .min_by_key(|(_, b)| b.last_seen_ms)
            .map(|(k, _)| k.clone());
        match victim {
            Some(k) => {
                self.baselines.remove(&k);
                true
            }
            None => false,
        }
    }

    fn close_window(&mut self, start: u64, end: u64) -> Vec<Alert> {
        // A window counts as scaling if any part of it was.
        let scaling = self.scaling(start) || self.scaling(end.saturating_sub(1));
        let mut alerts = Vec::new();
        let counts = std::mem::take(&mut self.counts);
        let requests = std::mem::take(&mut self.window_requests);
        if let Some(alert) = self.test_load(requests, scaling, start, end) {
            alerts.push(alert);
        }
        // Tenants first, then keys (BTreeMap: deterministic alert order).
        let ordered: BTreeMap<&ScopeKey, &Counts> = counts.iter().collect();
        let mut bursts: BTreeMap<String, (Option<Test>, Vec<String>)> = BTreeMap::new();
        let mut refusals: BTreeMap<String, Test> = BTreeMap::new();
        for (scope, c) in &ordered {
            let content = self.test(scope, c.requests, c.content, |b| b.content);
            if content.fired {
                let entry = bursts.entry(scope.0.clone()).or_default();
                match &scope.1 {
                    None => entry.0 = Some(content),
                    Some(key) => entry.1.push(key.clone()),
                }
            }
            let refusal = self.test(scope, c.requests, c.refused, |b| b.refusal);
            if refusal.fired && !scaling && scope.1.is_none() {
                refusals.insert(scope.0.clone(), refusal);
            }
            self.learn(scope, content, refusal, scaling);
        }
        for (tenant, (tenant_test, keys)) in bursts {
            // A key can fire inside a tenant that does not (one bad key of a
            // big tenant): the alert then carries the key's own evidence.
            let test = match tenant_test {
                Some(t) => t,
                None => {
                    let Some(first) = keys.first() else { continue };
                    let scope = (tenant.clone(), Some(first.clone()));
                    let c = counts.get(&scope).copied().unwrap_or_default();
                    self.test(&scope, c.requests, c.content, |b| b.content)
                }
            };
            alerts.push(self.alert(
                AlertKind::InjectionBurst,
                Some(tenant),
                keys,
                test,
                start,
                end,
                scaling,
            ));
        }
        for (tenant, test) in refusals {
            alerts.push(self.alert(
                AlertKind::RefusalBurst,
                Some(tenant),
                Vec::new(),
                test,
                start,
                end,
                scaling,
            ));
        }
        alerts.retain(|a| self.dedup(a));
        alerts
    }

    /// The load test and the load baseline's learning.
    fn test_load(&mut self, requests: u64, scaling: bool, start: u64, end: u64) -> Option<Alert> {
        // Normalized to the fleet: each replica sees about 1/replicas of it.
        let fleet = requests as f64 * f64::from(self.replicas);
        if scaling {
            return None;
        }
        if std::mem::take(&mut self.rebase_load) {
            self.load.rebase(fleet);
            return None;
        }
        let warm = self.load.samples >= self.params.warmup_windows;
        let baseline = self.load.mean.max(1.0);
        let ratio = fleet / baseline;
        if warm && requests >= self.params.surge_min_requests && ratio >= self.params.surge_ratio {
            return Some(Alert {
                kind: AlertKind::LoadSurge,
                tenant: None,
                keys: Vec::new(),
                window_start_ms: start,
                window_end_ms: end,
                requests,
                events: requests,
                rate_per_1k: fleet,
                baseline_per_1k: self.load.mean,
                score: ratio,
                replicas: self.replicas,
                scaling,
            });
        }
        self.load.update(fleet, self.params.alpha);
        None
    }

    /// Tests `events` of `requests` against the scope's baseline (a key
    /// without a warm baseline of its own borrows its tenant's).
    fn test(
        &self,
        scope: &ScopeKey,
        requests: u64,
        events: u64,
        which: fn(&Baseline) -> Ewma,
    ) -> Test {
        let p = &self.params;
        let warm = |s: &ScopeKey| {
            self.baselines
                .get(s)
                .map(which)
                .filter(|e| e.samples >= p.warmup_windows)
        };
        let own = warm(scope);
        let inherited = || {
            scope
                .1
                .as_ref()
                .and_then(|_| warm(&(scope.0.clone(), None)))
        };
        let p0 = own
            .or_else(inherited)
            .map_or(p.prior_rate, |e| e.mean)
            .max(p.floor_rate);
        let z = binomial_z(events, requests, p0);
        let rate = if requests == 0 {
            0.0
        } else {
            events as f64 / requests as f64
        };
        let fired = requests >= p.min_requests
            && events >= p.min_events
            && z >= p.z_threshold
            && rate >= p0 + p.min_excess;
        Test {
            requests,
            events,
            p0,
            z,
            fired,
        }
    }

    /// Baselines learn from windows with enough requests that did not fire
    /// (a burst must not teach the baseline that bursts are normal);
    /// refusal baselines are frozen while scaling (capacity, not behaviour).
    fn learn(&mut self, scope: &ScopeKey, content: Test, refusal: Test, scaling: bool) {
        let (alpha, min) = (self.params.alpha, self.params.min_requests);
        let Some(b) = self.baselines.get_mut(scope) else {
            return;
        };
        if content.requests >= min && !content.fired {
            b.content
                .update(content.events as f64 / content.requests as f64, alpha);
        }
        if refusal.requests >= min && !refusal.fired && !scaling {
            b.refusal
                .update(refusal.events as f64 / refusal.requests as f64, alpha);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn alert(
        &self,
        kind: AlertKind,
        tenant: Option<String>,
        keys: Vec<String>,
        test: Test,
        start: u64,
        end: u64,
        scaling: bool,
    ) -> Alert {
        let rate = if test.requests == 0 {
            0.0
        } else {
            test.events as f64 / test.requests as f64
        };
        Alert {
            kind,
            tenant,
            keys,
            window_start_ms: start,
            window_end_ms: end,
            requests: test.requests,
            events: test.events,
            rate_per_1k: rate * 1000.0,
            baseline_per_1k: test.p0 * 1000.0,
            score: test.z,
            replicas: self.replicas,
            scaling,
        }
    }

    /// `true` if the alert is new (not raised for its kind and tenant within
    /// `dedup_ms`); records it.
    fn dedup(&mut self, alert: &Alert) -> bool {
        let key = (alert.kind, alert.tenant.clone());
        let at = alert.window_end_ms;
        if let Some(&last) = self.last_alert.get(&key) {
            if at < last.saturating_add(self.params.dedup_ms) {
                self.suppressed += 1;
                return false;
            }
        }
        // Bounded like the scopes: forget alerts older than the dedup period.
        if self.last_alert.len() >= self.params.max_scopes {
            let horizon = at.saturating_sub(self.params.dedup_ms);
            self.last_alert.retain(|_, t| *t >= horizon);
        }
        self.last_alert.insert(key, at);
        self.raised += 1;
        true
    }
}
