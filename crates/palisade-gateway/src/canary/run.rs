//! One canaried route's task: when each deployment is due, replay the
//! golden set against it (deployments concurrently, items one after the
//! other: a canary adds at most one request at a time to a deployment),
//! grade, then judge every deployment against its baseline and move the
//! rollout.
//!
//! Bounded: each golden answer has `timeout_ms` for everything (head and
//! body) and at most `max_body_bytes` of body, so a hostile or stalled
//! upstream costs one timeout per item and cannot hold the task; a run
//! ends when the route's task is cancelled (reload) or the gateway stops.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use palisade_canary::{evaluate, grade, Answer, Check, Evaluation, GoldenItem, Grade, Summary};
use palisade_openai::request::Endpoint;
use serde_json::json;
use tokio::sync::{oneshot, watch};

use super::{
    now_nanos, Alive, Env, RouteCanary, Target, CHECKS_TOTAL, DRIFT, LAST_FAILURES, ROLLOUTS_TOTAL,
    SCORE, TRAFFIC_PCT,
};

const SEC: u64 = 1_000_000_000;

/// The audit trail's tenant for canary records: not a configurable tenant
/// name, so canary rows never mix with a tenant's.
pub(crate) const AUDIT_TENANT: &str = "(canary)";

/// How often target `t` is replayed: the route's interval, or the rollout's
/// step time when shorter while its rollout is still moving.
fn period(route: &RouteCanary, t: &Target) -> u64 {
    let interval = route.config.interval_s.saturating_mul(SEC);
    let moving = t.rolled_out
        && route.rollout.as_ref().is_some_and(|c| {
            matches!(
                c.lock().phase(),
                palisade_canary::Phase::Analysing | palisade_canary::Phase::Stepping { .. }
            )
        });
    match &route.rollout_config {
        Some(cfg) if moving => interval.min(cfg.step_every_s.saturating_mul(SEC)),
        _ => interval,
    }
}

/// When target `t` is due next (`now_nanos` scale).
fn due_at(route: &RouteCanary, t: &Target, started: u64) -> u64 {
    let last = t.cell.lock().last_run;
    let period = period(route, t);
    match last {
        Some(at) => at.saturating_add(period),
        None if route.config.on_new_deployment => 0,
        None => started.saturating_add(period),
    }
}

/// The route's task, until cancelled or stopped. Each deployment's replay
/// runs on its own (concurrently, in this task): a slow or stalled
/// deployment delays only its own verdicts, never the others'.
pub(super) async fn route_loop(
    route: Arc<RouteCanary>,
    env: Env,
    mut cancel: oneshot::Receiver<()>,
    mut stop: watch::Receiver<bool>,
    alive: Alive,
) {
    let _alive = alive;
    let started = now_nanos();
    publish_traffic(&route);
    let mut inflight = FuturesUnordered::new();
    let mut running: HashSet<usize> = HashSet::new();
    loop {
        let now = now_nanos();
        for t in &route.targets {
            if !running.contains(&t.index) && due_at(&route, t, started) <= now {
                running.insert(t.index);
                let (route, env) = (&route, &env);
                inflight.push(async move {
                    replay(route, t, env).await;
                    t.index
                });
            }
        }
        let next = route
            .targets
            .iter()
            .filter(|t| !running.contains(&t.index))
            .map(|t| due_at(&route, t, started))
            .min()
            .unwrap_or(u64::MAX);
        // At most an hour at a time: the period may change (a rollout
        // step shortens it) and a long sleep is re-planned.
        let wait = Duration::from_nanos(next.saturating_sub(now).clamp(1_000_000, 3_600 * SEC));
        tokio::select! {
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                running.remove(&done);
                judge(&route, &env, done);
            }
            _ = tokio::time::sleep(wait) => {}
            _ = &mut cancel => return,
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Replays the golden set against one deployment and records the grades.
async fn replay(route: &RouteCanary, t: &Target, env: &Env) {
    let mut failures = Vec::new();
    let mut failed_items = 0usize;
    for item in &route.golden.items {
        let g = ask(route, t, item, env).await;
        for (check, ok) in &g.results {
            metrics::counter!(CHECKS_TOTAL,
                "route" => route.route.clone(), "backend" => t.backend.name.clone(),
                "check" => check.as_str(), "result" => if *ok { "pass" } else { "fail" })
            .increment(1);
        }
        if !g.passed() {
            failed_items += 1;
        }
        failures.extend(g.failures.iter().cloned());
        t.cell.lock().window.record(&g);
    }
    let mut st = t.cell.lock();
    st.last_run = Some(now_nanos());
    st.last_run_unix_ms = Some(unix_ms());
    st.runs += 1;
    for f in &failures {
        if st.last_failures.len() >= LAST_FAILURES {
            st.last_failures.pop_front();
        }
        st.last_failures.push_back(f.clone());
    }
    drop(st);
    let mut details = serde_json::Map::new();
    details.insert("backend".into(), json!(t.backend.name));
    details.insert("items".into(), json!(route.golden.len()));
    details.insert("failed_items".into(), json!(failed_items));
    details.insert(
        "failures".into(),
        json!(failures.iter().take(3).collect::<Vec<_>>()),
    );
    audit(
        env,
        route,
        "run",
        if failed_items == 0 { "pass" } else { "fail" },
        details,
    );
}

/// Sends one golden prompt and grades the answer.
async fn ask(route: &RouteCanary, t: &Target, item: &GoldenItem, env: &Env) -> Grade {
    let timeout = Duration::from_millis(route.config.timeout_ms);
    let sent = Instant::now();
    let fetched = tokio::time::timeout(timeout, fetch(route, t, item, env, sent + timeout)).await;
    let latency_ms = sent.elapsed().as_millis() as u64;
    let (text, error) = match fetched {
        Ok(Ok(text)) => (Some(text), None),
        Ok(Err(e)) => (None, Some(e)),
        Err(_) => (
            None,
            Some(format!("no whole answer within {} ms", timeout.as_millis())),
        ),
    };
    grade(
        item,
        &Answer {
            text: text.as_deref(),
            error: error.as_deref(),
            latency_ms,
        },
    )
}

/// The request as user traffic to this route would look upstream.
fn body(route: &RouteCanary, item: &GoldenItem, env: &Env) -> Bytes {
    let mut body = json!({
        "model": route.upstream_model,
        "messages": item.messages,
        "temperature": item.temperature,
    });
    let max_tokens = item.max_tokens.map(u64::from).or(env.default_max_tokens);
    if let (Some(m), Some(obj)) = (max_tokens, body.as_object_mut()) {
        obj.insert("max_tokens".into(), json!(m));
    }
    Bytes::from(body.to_string())
}

async fn fetch(
    route: &RouteCanary,
    t: &Target,
    item: &GoldenItem,
    env: &Env,
    deadline: Instant,
) -> Result<String, String> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut resp = t
        .backend
        .post_json(
            Endpoint::ChatCompletions,
            body(route, item, env),
            &request_id,
            "",
            deadline,
            &[],
        )
        .await
        .map_err(|(e, _)| format!("{}: {}", e.code.as_str(), e.message))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("upstream status {}", status.as_u16()));
    }
    let max = route.config.max_body_bytes;
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("body over {max} bytes"));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("body: {e}"))? {
        if buf.len() + chunk.len() > max {
            return Err(format!("body over {max} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&buf).map_err(|_| "body is not JSON".to_owned())?;
    value["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "not a chat completion".to_owned())
}

/// Whether `t` counts toward the route's baseline: every deployment but a
/// rollout's that is not promoted yet.
fn in_baseline(route: &RouteCanary, t: &Target) -> bool {
    !t.rolled_out || route.rollout.as_ref().is_some_and(|c| c.pct().is_none())
}

/// Judges every deployment against the others, publishes, alerts, and
/// moves the rollout when its deployment is the one (`ran`, a backend
/// index) whose replay just ended.
fn judge(route: &RouteCanary, env: &Env, ran: usize) {
    let now = now_nanos();
    let rule = route.rule();
    let summaries: Vec<Summary> = route
        .targets
        .iter()
        .map(|t| t.cell.lock().window.summary())
        .collect();
    for (i, t) in route.targets.iter().enumerate() {
        let baseline = route
            .targets
            .iter()
            .enumerate()
            .filter(|(j, other)| *j != i && in_baseline(route, other))
            .map(|(j, _)| &summaries[j])
            .fold(None::<Summary>, |acc, s| {
                Some(match acc {
                    None => s.clone(),
                    Some(a) => a.pooled(s),
                })
            });
        let eval = evaluate(&rule, &summaries[i], baseline.as_ref());
        publish_scores(route, t, &summaries[i]);
        let (change, drifted, reasons) = {
            let mut st = t.cell.lock();
            let change = st.monitor.update(&eval, now);
            st.judged = eval.judged > 0;
            (change, st.monitor.drifted(), st.monitor.reasons().to_vec())
        };
        metrics::gauge!(DRIFT, "route" => route.route.clone(), "backend" => t.backend.name.clone())
            .set(if drifted { 1.0 } else { 0.0 });
        match change {
            Some(true) => alert(env, route, t, "drift", &reasons),
            Some(false) => alert(env, route, t, "recovered", &[]),
            None => {}
        }
        if t.rolled_out && ran == t.index {
            step(
                route,
                env,
                t,
                &eval,
                drifted,
                summaries[i].items >= rule.min_samples,
            );
        }
    }
}

/// Moves the rollout of `t` after a run.
fn step(
    route: &RouteCanary,
    env: &Env,
    t: &Target,
    eval: &Evaluation,
    drifted: bool,
    enough: bool,
) {
    let Some(cell) = &route.rollout else {
        return;
    };
    let reason = eval
        .findings
        .iter()
        .map(palisade_canary::Finding::describe)
        .collect::<Vec<_>>()
        .join("; ");
    let drift = eval.drifted().then_some(reason.as_str());
    // Still drifted under hold-down (not significant this time): no step.
    let judged = enough && eval.judged > 0 && !drifted;
    let transition = {
        let mut rollout = cell.lock();
        let transition = rollout.observe(now_nanos(), drift, judged);
        cell.publish(rollout.traffic_pct());
        transition
    };
    publish_traffic(route);
    let Some(transition) = transition else {
        return;
    };
    let mut details = serde_json::Map::new();
    details.insert("backend".into(), json!(t.backend.name));
    match transition {
        palisade_canary::Transition::Stepped { from, to } => {
            let action = match (from, to) {
                (0, _) if to < 100 => "start",
                (_, 100) => "promote",
                _ => "step",
            };
            metrics::counter!(ROLLOUTS_TOTAL, "route" => route.route.clone(), "action" => action)
                .increment(1);
            details.insert("from_pct".into(), json!(from));
            details.insert("to_pct".into(), json!(to));
            tracing::info!(
                target: "palisade::canary",
                route = %route.route, backend = %t.backend.name, from, to, action,
                "canary rollout stepped"
            );
            audit(env, route, action, "canary_healthy", details);
        }
        palisade_canary::Transition::RolledBack { from, reason } => {
            metrics::counter!(ROLLOUTS_TOTAL, "route" => route.route.clone(), "action" => "rollback")
                .increment(1);
            details.insert("from_pct".into(), json!(from));
            details.insert("to_pct".into(), json!(0));
            details.insert("reason".into(), json!(reason));
            audit(env, route, "rollback", "canary_drift", details);
            alert(env, route, t, "rollback", &[reason]);
        }
    }
}

fn publish_traffic(route: &RouteCanary) {
    if let (Some(cell), Some(t)) = (&route.rollout, route.targets.iter().find(|t| t.rolled_out)) {
        metrics::gauge!(TRAFFIC_PCT, "route" => route.route.clone(), "backend" => t.backend.name.clone())
            .set(f64::from(cell.pct().unwrap_or(100)));
    }
}

fn publish_scores(route: &RouteCanary, t: &Target, s: &Summary) {
    let set = |metric: &'static str, value: Option<f64>| {
        if let Some(v) = value {
            metrics::gauge!(SCORE, "route" => route.route.clone(),
                "backend" => t.backend.name.clone(), "metric" => metric)
            .set(v);
        }
    };
    for (check, name) in [
        (Check::Answer, "answer_rate"),
        (Check::Json, "json_rate"),
        (Check::Refusal, "refusal_rate"),
        (Check::Length, "length_rate"),
        (Check::Latency, "latency_rate"),
    ] {
        set(name, s.rate(check).value());
    }
    set("refusal_share", s.refusal_rate);
    set("mean_chars", s.mean_chars);
    set("latency_p50_ms", s.latency_p50_ms.map(|v| v as f64));
    set("latency_p95_ms", s.latency_p95_ms.map(|v| v as f64));
}

/// One canary record on the audit trail (gate `canary`).
fn audit(
    env: &Env,
    route: &RouteCanary,
    action: &str,
    reason_code: &str,
    details: serde_json::Map<String, serde_json::Value>,
) {
    env.gates.audit.write_decision(
        env.gates.policy.peek().version().to_string(),
        &uuid::Uuid::new_v4().to_string(),
        AUDIT_TENANT,
        "",
        &route.route,
        &route.route,
        ("canary", action, reason_code),
        details,
    );
}

/// Log (`palisade::alert`), audit and webhook for a drift, a recovery or
/// a rollback.
fn alert(env: &Env, route: &RouteCanary, t: &Target, kind: &'static str, reasons: &[String]) {
    let body = json!({
        "category": "canary",
        "kind": kind,
        "ts_ms": unix_ms(),
        "route": route.route,
        "backend": t.backend.name,
        "reasons": reasons,
    })
    .to_string();
    if kind == "recovered" {
        tracing::info!(target: "palisade::alert", alert = %body, "canary recovered");
    } else {
        tracing::warn!(target: "palisade::alert", alert = %body, "canary alert");
    }
    if kind != "rollback" {
        let mut details = serde_json::Map::new();
        details.insert("backend".into(), json!(t.backend.name));
        details.insert("reasons".into(), json!(reasons));
        audit(
            env,
            route,
            kind,
            if kind == "drift" {
                "canary_drift"
            } else {
                "canary_healthy"
            },
            details,
        );
    }
    if let (Some(url), Some(client)) = (env.webhook.clone(), env.http.clone()) {
        // Never on the canary's own time: a slow webhook must not delay
        // the next verdict (delivery retries are bounded).
        tokio::spawn(async move {
            crate::limits::spend::deliver(&client, &url, &body).await;
        });
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
