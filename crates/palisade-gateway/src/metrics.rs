//! Prometheus metrics: names, help texts, buckets and the `/metrics` handle.
//!
//! Names follow `palisade_<area>_<what>_<unit|total>`. Label values are
//! bounded: routes are fixed paths, statuses are codes, and model names from
//! wildcard routes go through [`ModelLabels`], which caps how many distinct
//! names become series (a client sending random model names must not be able
//! to blow up the metrics store).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Live runtime API keys in this replica's table (`[auth.runtime]`).
pub const RUNTIME_KEYS: &str = "palisade_auth_runtime_keys";
/// Runtime key table polls, by result (reloaded, unchanged, error).
pub const RUNTIME_KEYS_REFRESH: &str = "palisade_auth_runtime_keys_refresh_total";
/// Changes made through `/admin/keys`, by action and result.
pub const KEY_ADMIN_ACTIONS: &str = "palisade_admin_key_actions_total";
/// Requests served, by route, model and status.
pub const REQUESTS_TOTAL: &str = "palisade_http_requests_total";
/// Wall time from request head to the end of the response body.
pub const REQUEST_DURATION: &str = "palisade_http_request_duration_seconds";
/// Requests currently being served (streams until they end).
pub const IN_FLIGHT: &str = "palisade_http_in_flight_requests";
/// Time from sending upstream to the upstream's response head.
pub const UPSTREAM_HEAD: &str = "palisade_upstream_response_head_seconds";
/// Upstream failures by backend and error code.
pub const UPSTREAM_ERRORS: &str = "palisade_upstream_errors_total";
/// Streams: request start to the first event carrying data.
pub const STREAM_TTFT: &str = "palisade_stream_time_to_first_token_seconds";
/// Streams: gap between consecutive data events.
pub const STREAM_GAP: &str = "palisade_stream_inter_chunk_gap_seconds";
/// Streams: request start to the first chunk carrying data sent to the
/// client (after the output gate's hold-back).
pub const CLIENT_TTFT: &str = "palisade_stream_client_time_to_first_token_seconds";
/// Streams: gap between consecutive chunks carrying data sent to the client.
pub const CLIENT_GAP: &str = "palisade_stream_client_inter_chunk_gap_seconds";
/// Streams currently open.
pub const STREAMS_OPEN: &str = "palisade_streams_open";
/// Streams ended, by how they ended.
pub const STREAMS_ENDED: &str = "palisade_streams_ended_total";
/// A backend's current in-flight limit (moves with adaptive concurrency).
pub const BACKEND_LIMIT: &str = "palisade_backend_concurrency_limit";
/// Ledger rows that could not be written.
pub const LEDGER_ERRORS: &str = "palisade_ledger_write_errors_total";
/// Requests degraded (cheaper model, capped max_tokens) under overload.
pub const DEGRADED: &str = "palisade_requests_degraded_total";
/// Low-priority requests shed because their backend was saturated.
pub const SHED: &str = "palisade_backend_shed_total";
/// Keys blocked by the escalation ladder.
pub const OFFENDERS_BLOCKED: &str = "palisade_limits_offenders_blocked_total";
/// Shared limits backend (Redis) calls that failed or timed out.
pub const LIMITS_BACKEND_ERRORS: &str = "palisade_limits_backend_errors_total";
/// Safety-gate decisions, by gate and enforced action.
pub const GATE_DECISIONS: &str = "palisade_gate_decisions_total";
/// Policy file changes that were not installed (invalid, or not signed by a trusted key).
pub const POLICY_RELOAD_REFUSED: &str = "palisade_policy_reload_refused_total";
/// Audit records the store refused (they are still in the log).
pub const AUDIT_ERRORS: &str = "palisade_audit_write_errors_total";
/// Log lines (access, audit) that found the log writer's queue full and waited
/// for it (the writer is in the binary; lines are never dropped).
pub const LOG_QUEUE_FULL: &str = "palisade_log_queue_full_total";
/// Spans dropped: the export queue was full, or the collector failed or
/// timed out.
pub const TRACE_SPANS_DROPPED: &str = "palisade_trace_spans_dropped_total";
/// Spans the collector accepted.
pub const TRACE_SPANS_EXPORTED: &str = "palisade_trace_spans_exported_total";
/// Idempotency and cache lookups, by table and result.
pub const REPLAY_LOOKUPS: &str = "palisade_replay_lookups_total";
/// Responses offered to a replay table, by table and whether they were kept.
pub const REPLAY_STORED: &str = "palisade_replay_stored_total";
/// Completions that carried the system prompt's canary.
pub const CANARY_LEAKS: &str = "palisade_canary_leaks_total";
/// Streams: how long the output gate held text back before releasing it.
pub const STREAM_HOLDBACK: &str = "palisade_stream_holdback_seconds";
/// SSE keep-alive comments sent while an upstream was silent.
pub const SSE_HEARTBEATS: &str = "palisade_sse_heartbeats_total";
/// Streams the output gate ended with `finish_reason: "content_filter"`.
pub const STREAMS_FILTERED: &str = "palisade_streams_content_filtered_total";
/// Gate decisions where the shadow policy disagreed with the active one.
pub const SHADOW_DIVERGENCES: &str = "palisade_policy_shadow_divergences_total";
/// Alerts raised (budget thresholds, spend-rate trips), by kind.
pub const ALERTS: &str = "palisade_alerts_total";
/// Alerts the webhook did not accept after retries.
pub const ALERT_DELIVERY_FAILURES: &str = "palisade_alert_webhook_failures_total";
/// Requests whose untrusted content the context gate quarantined.
pub const QUARANTINED: &str = "palisade_context_quarantined_total";
/// Tool calls judged, by outcome (released, withheld, pending).
pub const TOOL_CALLS: &str = "palisade_tool_calls_total";
/// Time spent judging one response's tool calls (schema, policy, signing).
pub const TOOL_CHECK: &str = "palisade_tool_check_seconds";
/// Process start until this replica first enforced a verified policy (gauge).
pub const SECURITY_PROVISIONING: &str = "palisade_security_provisioning_seconds";
/// A bundle's signing time until it was active here (histogram).
pub const BUNDLE_PROPAGATION: &str = "palisade_bundle_propagation_seconds";
/// Requests that reached a policy decision with no active verified policy: a
/// tripwire that must stay 0.
pub const REQUESTS_WITHOUT_POLICY: &str = "palisade_requests_without_policy_total";
/// The serial of the active bundle (gauge).
pub const BUNDLE_SERIAL: &str = "palisade_bundle_serial";
/// Bundles refused (bad signature, older serial, ...), by reason.
pub const BUNDLE_REFUSED: &str = "palisade_bundle_refused_total";
/// Requests refused with `not_ready` because no verified policy is active.
pub const NOT_READY_REFUSED: &str = "palisade_not_ready_refused_total";

/// 1, labelled with the build's version: which build each replica runs.
pub const BUILD_INFO: &str = "palisade_build_info";
/// Error answers the gateway gave, by their wire `error.code` (a fixed set:
/// the error codes and the policy's reason codes).
pub const REFUSALS: &str = "palisade_refusals_total";
/// Tokens accounted in the ledger, by tenant, model and direction (input, output).
pub const TOKENS: &str = "palisade_tokens_total";
/// Cost accounted in the ledger, in micro-dollars, by tenant and model.
pub const COST_MICRODOLLARS: &str = "palisade_cost_microdollars_total";
/// 1 from a backend's circuit opening until a good probe closes it, by backend.
pub const CIRCUIT_OPEN: &str = "palisade_backend_circuit_open";
/// 1 while the shared limits backend (Redis) answers, 0 while its fallback is in use.
pub const LIMITS_BACKEND_UP: &str = "palisade_limits_backend_up";

/// How many distinct tenants and models become label values of the usage
/// counters; the rest are counted under `other`.
const USAGE_LABEL_CAP: usize = 256;

/// Latency buckets from 100 µs to 5 min: gateway overhead lives at the low
/// end, LLM generation at the high end, and both must be readable.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histogram samples are folded into their buckets. The exporter
/// buffers raw samples until upkeep runs; without it, memory grows with
/// traffic between scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder (once) and returns its render handle.
/// `None` if another recorder was installed first (e.g. by an embedding app).
/// Call [`spawn_upkeep`] from inside the runtime.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            start_at_zero();
            Some(handle)
        })
        .clone()
}

/// Runs the exporter's upkeep every [`UPKEEP_INTERVAL`] for as long as the
/// runtime lives.
pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// Counters an alert rule watches with `increase()` start at 0: a series
/// that first appears at 1 shows no increase, so the first event would
/// never page.
fn start_at_zero() {
    for name in [
        CANARY_LEAKS,
        AUDIT_ERRORS,
        LEDGER_ERRORS,
        REQUESTS_WITHOUT_POLICY,
    ] {
        counter!(name).increment(0);
    }
    for reason in crate::bundle::activate::Refusal::LABELS {
        counter!(BUNDLE_REFUSED, "reason" => *reason).increment(0);
    }
    for result in crate::reload::Outcome::LABELS {
        counter!(crate::reload::RELOADS, "result" => result).increment(0);
    }
    for kind in [
        palisade_anomaly::AlertKind::InjectionBurst,
        palisade_anomaly::AlertKind::RefusalBurst,
        palisade_anomaly::AlertKind::LoadSurge,
    ] {
        counter!(crate::anomaly::ALERTS_TOTAL, "kind" => kind.as_str()).increment(0);
    }
}

fn describe() {
    crate::canary::describe_metrics();
    describe_gauge!(BUILD_INFO, "1, labelled with this build's version.");
    describe_counter!(
        crate::reload::RELOADS,
        "Config file reload attempts, by result (applied, unchanged, invalid, restart_required)."
    );
    describe_counter!(
        REFUSALS,
        "Error answers given, by wire error code (error codes and policy reason codes)."
    );
    describe_counter!(
        TOKENS,
        "Tokens accounted in the ledger, by tenant, model and direction (input, output)."
    );
    describe_counter!(
        COST_MICRODOLLARS,
        "Cost accounted in the ledger in micro-dollars (price table), by tenant and model."
    );
    describe_gauge!(
        CIRCUIT_OPEN,
        "1 from a backend's circuit opening until a good probe closes it."
    );
    describe_gauge!(
        LIMITS_BACKEND_UP,
        "1 while the shared limits backend answers; 0 while its fallback is in use."
    );
    describe_gauge!(
        RUNTIME_KEYS,
        "Live runtime API keys in this replica's key table."
    );
    describe_counter!(
        RUNTIME_KEYS_REFRESH,
        "Runtime key table polls of the store, by result (reloaded, unchanged, error)."
    );
    describe_counter!(
        KEY_ADMIN_ACTIONS,
        "Key changes through /admin/keys, by action (create, rotate, revoke, update) and result."
    );
    describe_counter!(
        TRACE_SPANS_DROPPED,
        "Trace spans dropped: the export queue was full, or the collector refused, failed or timed out."
    );
    describe_counter!(
        TRACE_SPANS_EXPORTED,
        "Trace spans the OTLP collector accepted."
    );
    describe_counter!(
        LOG_QUEUE_FULL,
        "Log lines that found the log writer's queue full and waited (never dropped)."
    );
    describe_counter!(
        REPLAY_LOOKUPS,
        "Replay-table lookups: table (idempotency, cache) and result (new, replay, in_flight, mismatch, full, hit, miss)."
    );
    describe_counter!(
        REPLAY_STORED,
        "Responses offered to a replay table, by table and stored (true, or false: too large or the key's lease was lost)."
    );
    describe_counter!(
        REQUESTS_TOTAL,
        "HTTP requests served, by route, model and status."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from request head to the end of the response body."
    );
    describe_gauge!(IN_FLIGHT, "Requests being served, open streams included.");
    describe_gauge!(
        "palisade_extraction_hunt_campaigns",
        "Campaigns (groups of keys acting together) found by the last extraction hunt."
    );
    describe_counter!(
        "palisade_extraction_hunt_alerts_total",
        "Hunt campaigns alerted (once per campaign)."
    );
    describe_histogram!(
        UPSTREAM_HEAD,
        Unit::Seconds,
        "Time from sending a request upstream to its response head, by backend and outcome."
    );
    describe_counter!(
        UPSTREAM_ERRORS,
        "Upstream failures, by backend and error code."
    );
    describe_histogram!(
        STREAM_TTFT,
        Unit::Seconds,
        "Streams: time from request start to the first data event."
    );
    describe_histogram!(
        STREAM_GAP,
        Unit::Seconds,
        "Streams: gap between consecutive data events."
    );
    describe_histogram!(
        CLIENT_TTFT,
        Unit::Seconds,
        "Streams: time from request start to the first data the client received (after the output gate)."
    );
    describe_histogram!(
        CLIENT_GAP,
        Unit::Seconds,
        "Streams: gap between consecutive chunks of data the client received (the cadence the client sees; compare with the upstream's inter-chunk gap)."
    );
    describe_gauge!(STREAMS_OPEN, "Streams currently open.");
    describe_counter!(STREAMS_ENDED, "Streams ended, by outcome.");
    describe_counter!(
        CANARY_LEAKS,
        "Completions that carried the system prompt's canary (withheld)."
    );
    describe_histogram!(
        STREAM_HOLDBACK,
        Unit::Seconds,
        "Streams: time the output gate held text back before releasing it."
    );
    describe_counter!(
        GATE_DECISIONS,
        "Safety-gate decisions, by gate and enforced action (allow, flag, redact, quarantine, confirm, block)."
    );
    describe_counter!(
        POLICY_RELOAD_REFUSED,
        "Policy file changes refused on reload (invalid, or not signed by a trusted key); the running policy stays."
    );
    describe_counter!(
        SHADOW_DIVERGENCES,
        "Gate decisions where the shadow policy's action differed from the active policy's."
    );
    describe_counter!(
        ALERTS,
        "Alerts raised: monthly budget thresholds and spend-rate trips, by kind."
    );
    describe_counter!(
        QUARANTINED,
        "Requests whose retrieved or tool content was quarantined by the context gate."
    );
    describe_counter!(
        TOOL_CALLS,
        "Tool calls the model emitted, by outcome: released, withheld, pending (confirmation)."
    );
    describe_histogram!(
        TOOL_CHECK,
        Unit::Seconds,
        "Time to judge one response's tool calls: arguments, schema, policy, token signing."
    );
    describe_counter!(
        ALERT_DELIVERY_FAILURES,
        "Alerts the webhook did not accept after retries (they are still logged)."
    );
    describe_gauge!(
        BACKEND_LIMIT,
        "A backend's current in-flight limit (adaptive concurrency moves it)."
    );
    describe_counter!(
        SHED,
        "Low-priority requests shed because their backend was saturated."
    );
    describe_counter!(LEDGER_ERRORS, "Ledger rows that could not be written.");
    describe_counter!(
        OFFENDERS_BLOCKED,
        "Offences that put an API key on the escalation ladder's block rung."
    );
    describe_gauge!(
        SECURITY_PROVISIONING,
        Unit::Seconds,
        "Process start until this replica first enforced a verified policy."
    );
    describe_histogram!(
        BUNDLE_PROPAGATION,
        Unit::Seconds,
        "A bundle's signing time (created_at) until it was active on this replica."
    );
    describe_counter!(
        REQUESTS_WITHOUT_POLICY,
        "Requests that reached a policy decision without an active verified policy (must stay 0)."
    );
    describe_gauge!(BUNDLE_SERIAL, "Serial of the active signed bundle.");
    describe_counter!(BUNDLE_REFUSED, "Bundles refused, by reason.");
    describe_counter!(
        NOT_READY_REFUSED,
        "Requests refused with not_ready while no verified policy was active."
    );
    describe_counter!(
        LIMITS_BACKEND_ERRORS,
        "Shared limits backend (Redis) calls that failed or timed out; the fallback decided instead."
    );
}

/// Records a finished request.
pub fn request_done(route: &'static str, model: &str, status: u16, elapsed: Duration) {
    let status = status_label(status);
    counter!(REQUESTS_TOTAL, "route" => route, "model" => model.to_owned(), "status" => status)
        .increment(1);
    histogram!(REQUEST_DURATION, "route" => route, "status" => status)
        .record(elapsed.as_secs_f64());
}

/// Records an upstream response head (or its failure).
pub fn upstream_response_head(backend: &str, outcome: &'static str, elapsed: Duration) {
    histogram!(UPSTREAM_HEAD, "backend" => backend.to_owned(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// Records an upstream error by its stable code.
pub fn upstream_error(backend: &str, code: &'static str) {
    counter!(UPSTREAM_ERRORS, "backend" => backend.to_owned(), "code" => code).increment(1);
}

/// Tracks in-flight requests: +1 now, -1 when dropped (so a request whose
/// future is cancelled is still counted out).
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    /// Counts a request in.
    pub fn enter() -> Self {
        gauge!(IN_FLIGHT).increment(1.0);
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(IN_FLIGHT).decrement(1.0);
    }
}

fn status_label(status: u16) -> &'static str {
    // Static strings for the statuses we emit, so no allocation per request.
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// Caps the number of distinct model names used as label values.
#[derive(Debug)]
pub struct ModelLabels {
    seen: Mutex<HashSet<Arc<str>>>,
    cap: usize,
}

impl ModelLabels {
    /// Keeps at most `cap` distinct names; the rest are labelled `other`.
    pub fn new(cap: usize) -> Self {
        Self {
            seen: Mutex::new(HashSet::new()),
            cap,
        }
    }

    /// The label for `model`.
    pub fn label(&self, model: &str) -> Arc<str> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = seen.get(model) {
            return existing.clone();
        }
        if seen.len() >= self.cap {
            return "other".into();
        }
        let label: Arc<str> = model.into();
        seen.insert(label.clone());
        label
    }
}

/// Counts one error answer by its wire code.
pub(crate) fn refusal(code: &'static str) {
    counter!(REFUSALS, "code" => code).increment(1);
}

/// Counts a ledger row's tokens and cost. Tenants and models pass through
/// capped label sets: runtime tenants and wildcard model names are the
/// client's to choose.
pub(crate) fn usage(tenant: &str, model: &str, input: u64, output: u64, cost_micros: i64) {
    static TENANTS: OnceLock<ModelLabels> = OnceLock::new();
    static MODELS: OnceLock<ModelLabels> = OnceLock::new();
    let tenant = TENANTS
        .get_or_init(|| ModelLabels::new(USAGE_LABEL_CAP))
        .label(tenant);
    let model = MODELS
        .get_or_init(|| ModelLabels::new(USAGE_LABEL_CAP))
        .label(model);
    for (direction, n) in [("input", input), ("output", output)] {
        if n > 0 {
            counter!(TOKENS, "tenant" => tenant.to_string(), "model" => model.to_string(), "direction" => direction)
                .increment(n);
        }
    }
    if let Ok(cost @ 1..) = u64::try_from(cost_micros) {
        counter!(COST_MICRODOLLARS, "tenant" => tenant.to_string(), "model" => model.to_string())
            .increment(cost);
    }
}

/// Counts one replay-table lookup (`table` and `result` are fixed strings).
pub(crate) fn replay_lookup(table: &'static str, result: &'static str) {
    counter!(REPLAY_LOOKUPS, "table" => table, "result" => result).increment(1);
}

/// Counts one response offered to a replay table.
pub(crate) fn replay_stored(table: &'static str, kept: bool) {
    counter!(REPLAY_STORED, "table" => table, "stored" => if kept { "true" } else { "false" })
        .increment(1);
}

/// Counts trace spans dropped (full queue, failed export).
pub(crate) fn trace_spans_dropped(n: u64) {
    counter!(TRACE_SPANS_DROPPED).increment(n);
}

/// Counts trace spans exported.
pub(crate) fn trace_spans_exported(n: u64) {
    counter!(TRACE_SPANS_EXPORTED).increment(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_labels_are_capped() {
        let labels = ModelLabels::new(2);
        assert_eq!(&*labels.label("a"), "a");
        assert_eq!(&*labels.label("b"), "b");
        assert_eq!(&*labels.label("c"), "other");
        assert_eq!(&*labels.label("a"), "a");
    }
}
