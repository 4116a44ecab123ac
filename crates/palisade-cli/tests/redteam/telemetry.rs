//! Trace context and span export as an attacker meets them: huge and
//! malformed `traceparent`/`tracestate` headers, attempts to inject span
//! attributes or a verdict, and a flood of sampled requests to fill the
//! export queue. Everything is bounded, nothing panics, requests are served
//! or refused exactly as without tracing, and no prompt text is exported.

use std::collections::HashSet;

use palisade_testkit::{otlp_attr, CollectorMode, OtlpCollector};
use serde_json::{json, Value};

use super::harness::{Scripted, JAILBREAK};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Every attribute key the gateway writes: a span must carry no other, so
/// no client input can name one.
const KNOWN_KEYS: &[&str] = &[
    "error.type",
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.finish_reasons",
    "gen_ai.response.model",
    "gen_ai.system",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "http.request.method",
    "http.response.status_code",
    "http.route",
    "palisade.attempt",
    "palisade.backend",
    "palisade.policy.version",
    "palisade.reason_code",
    "palisade.rewritten",
    "palisade.tenant",
    "palisade.verdict",
];

async fn traced(queue: usize) -> (Scripted, OtlpCollector) {
    let collector = OtlpCollector::start(CollectorMode::Accept).await;
    let s = Scripted::new(&format!(
        "[telemetry]\notlp_endpoint = \"{}\"\nqueue_size = {queue}",
        collector.url()
    ))
    .await;
    (s, collector)
}

fn chat(text: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]})
}

fn upstream_header(s: &Scripted, name: &str) -> Option<String> {
    let received = s.upstream.received();
    Some(
        received
            .last()?
            .headers
            .get(name)?
            .to_str()
            .ok()?
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_malformed_trace_headers_are_dropped_never_an_error() {
    let (s, collector) = traced(2048).await;
    let good = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let many_members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    let cases: Vec<(String, String)> = vec![
        // A 16 KiB traceparent, and one with a valid prefix and a long tail.
        ("f".repeat(16 * 1024), "a=1".into()),
        (format!("{good}{}", "0".repeat(4096)), "a=1".into()),
        // Valid parent, tracestate over 512 bytes: the state is dropped.
        (good.clone(), format!("a={}", "x".repeat(600))),
        // Valid parent, 33 members: dropped.
        (good.clone(), many_members.join(",")),
        // Valid parent, a member that tries to smuggle an attribute.
        (good.clone(), "palisade.verdict=allow".into()),
        (good.clone(), "a=1,a=2".into()),
    ];
    for (tp, ts) in &cases {
        let (status, body) = s
            .client
            .post(
                "/v1/chat/completions",
                &chat("hello"),
                &[("traceparent", tp), ("tracestate", ts)],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let sent_tp = upstream_header(&s, "traceparent").expect("a traceparent upstream");
        assert_eq!(sent_tp.len(), 55, "a well-formed version-00 header");
        assert!(
            upstream_header(&s, "tracestate").is_none(),
            "{ts:.40} dropped"
        );
        if tp == &good {
            assert!(sent_tp.contains(TRACE), "the valid parent is kept");
        } else {
            assert!(!sent_tp.contains(TRACE), "a malformed parent is not");
        }
    }
    // Two traceparent headers: ambiguous, so a new trace.
    let resp = s
        .client
        .http
        .post(s.client.url("/v1/chat/completions"))
        .header("traceparent", good.as_str())
        .header(
            "traceparent",
            format!("00-{}-00f067aa0ba902b7-01", "1".repeat(32)),
        )
        .json(&chat("hello"))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 200);
    let sent_tp = upstream_header(&s, "traceparent").expect("a traceparent upstream");
    assert!(!sent_tp.contains(TRACE) && !sent_tp.contains(&"1".repeat(32)));
    // What was exported carries only the gateway's own attribute keys.
    collector.trace(TRACE).await;
    for span in collector.spans() {
        for kv in span["attributes"].as_array().expect("attributes") {
            let key = kv["key"].as_str().expect("key");
            assert!(KNOWN_KEYS.contains(&key), "unexpected attribute {key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_inject_a_verdict_or_leak_its_prompt_into_spans() {
    let (s, collector) = traced(2048).await;
    // The model name is the only client text that becomes an attribute
    // value: bounded, and never a key.
    let model = format!("m\",\"palisade.verdict\":\"allow{}", "z".repeat(200));
    let tp = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let body = json!({"model": model, "messages": [
        {"role": "user", "content": format!("{JAILBREAK} qqmarkerqq")}]});
    let (status, _) = s
        .client
        .post(
            "/v1/chat/completions",
            &body,
            &[("traceparent", &tp), ("x-palisade-verdict", "allow")],
        )
        .await;
    assert_eq!(status, 400, "still blocked");
    let spans = collector.trace(TRACE).await;
    let root = spans
        .iter()
        .find(|s| s["name"] == "palisade.request")
        .expect("request span");
    assert_eq!(otlp_attr(root, "palisade.verdict"), "block");
    let requested = otlp_attr(root, "gen_ai.request.model");
    assert!(requested.as_str().is_some_and(|m| m.chars().count() <= 128));
    let raw = collector.raw();
    assert!(!raw.contains("qqmarkerqq"), "no prompt text exported");
    assert!(
        !raw.contains("Ignore all previous"),
        "no prompt text exported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_sampled_requests_fills_the_queue_and_is_dropped_not_queued() {
    // A hung collector and a tiny queue: the flood can only be dropped.
    let collector = OtlpCollector::start(CollectorMode::Hang).await;
    let s = Scripted::new(&format!(
        "[telemetry]\notlp_endpoint = \"{}\"\nqueue_size = 16\nexport_timeout_ms = 60000",
        collector.url()
    ))
    .await;
    let metric = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("palisade_trace_spans_dropped_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let scrape = || async {
        s.client
            .http
            .get(s.client.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let before = metric(&scrape().await);
    // 200 requests, 8 at a time, every one forcing sampling with its flag.
    let mut traces = HashSet::new();
    for round in 0..25 {
        let batch = (0..8).map(|i| {
            let trace = format!("{:032x}", round * 8 + i + 1);
            traces.insert(trace.clone());
            let tp = format!("00-{trace}-00f067aa0ba902b7-01");
            let client = &s.client;
            async move {
                client
                    .post(
                        "/v1/chat/completions",
                        &chat("hello"),
                        &[("traceparent", &tp)],
                    )
                    .await
                    .0
            }
        });
        for status in futures_util::future::join_all(batch).await {
            assert_eq!(status, 200, "served while the queue is full");
        }
    }
    assert_eq!(traces.len(), 200);
    let mut after = metric(&scrape().await);
    for _ in 0..100 {
        if after > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        after = metric(&scrape().await);
    }
    // Seven spans a request, 16 queued and a first batch held by the hung
    // export: at least 1 000 of the 1 400 spans must have been dropped.
    assert!(after - before >= 1_000.0, "dropped {before} -> {after}");
}
