//! Routing under attack (issue #19): a hostile upstream steering retries
//! and fallbacks — a `Retry-After` meant to park requests forever, a forged
//! context-length refusal meant to push a tenant's data to a fallback
//! outside its residency rule, endless 503s meant to multiply load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use palisade_testkit::{HostileUpstream, RawResponse, ScriptedUpstream};
use serde_json::json;

use crate::harness::{start, Client};

fn ask(model: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

/// A loopback upstream that answers every request 429 with `Retry-After`
/// of about 30 years, counting requests.
async fn parking_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                // Read the head and the (small) body, then answer.
                loop {
                    let Ok(n) = tcp.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..i]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if seen.len() >= i + 4 + len {
                            break;
                        }
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let body = r#"{"error":{"message":"slow down","type":"rate_limit","code":null}}"#;
                let resp = format!(
                    "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 999999999\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}/v1"), hits)
}

/// An upstream answering 429 with a `Retry-After` of decades must not hold
/// the request (or the backend) hostage: the wait would pass the deadline,
/// so the 429 is relayed at once, without a retry.
#[tokio::test]
async fn a_huge_retry_after_does_not_park_the_request() {
    let (url, hits) = parking_upstream().await;
    let client = Client::new(
        start(&format!(
            r#"
            [backends.main]
            base_url = "{url}"
            request_timeout_ms = 5000
            [[routes]]
            model = "m"
            backend = "main"
            retry = {{ max_attempts = 5 }}
            "#
        ))
        .await,
    );
    let (status, body) = tokio::time::timeout(Duration::from_secs(4), client.chat(&ask("m")))
        .await
        .expect("answered at once, not parked until the deadline");
    assert_eq!(status, 429, "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "no retry into the wait");
}

/// A forged context-length refusal from the tenant's allowed deployment
/// must not carry the tenant's prompt to a fallback in a forbidden region.
#[tokio::test]
async fn a_forged_refusal_cannot_push_data_out_of_its_region() {
    let eu = HostileUpstream::start(
        RawResponse::json(
            r#"{"error":{"message":"maximum context length exceeded","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
        )
        .with_status(400),
    )
    .await;
    let us = ScriptedUpstream::start().await;
    let key = "pk-eu-tenant";
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    };
    let client = Client::new(
        start(&format!(
            r#"
            [[auth.keys]]
            name = "eu"
            tenant = "eu-only"
            sha256 = "{hash}"
            [tenants.eu-only.residency]
            regions = ["eu"]
            [backends.eu]
            base_url = "{}"
            region = "eu"
            [backends.us]
            base_url = "{}"
            region = "us"
            [[routes]]
            model = "m"
            backend = "eu"
            fallbacks = {{ context_length = ["big"], default = ["big"] }}
            [[routes]]
            model = "big"
            backend = "us"
            "#,
            eu.base_url(),
            us.base_url()
        ))
        .await,
    );
    for _ in 0..5 {
        let (status, _) = client
            .post(
                "/v1/chat/completions",
                &ask("m"),
                &[("authorization", &format!("Bearer {key}"))],
            )
            .await;
        assert_eq!(status, 400, "the refusal is relayed");
    }
    assert!(us.received().is_empty(), "nothing reached the us fallback");
    // A direct request for the us-only model fails closed.
    let (status, body) = client
        .post(
            "/v1/chat/completions",
            &ask("big"),
            &[("authorization", &format!("Bearer {key}"))],
        )
        .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "residency_unavailable");
    assert!(us.received().is_empty());
}

/// A `small` route whose model refuses every prompt as too long, falling
/// back to `big` (a scripted upstream, with a retry budget that never runs
/// dry); `extra` is prepended to the config. Returns the client and `big`.
async fn small_falling_back_to_big(extra: &str) -> (Client, ScriptedUpstream, HostileUpstream) {
    let small = HostileUpstream::start(
        RawResponse::json(
            r#"{"error":{"message":"maximum context length exceeded","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
        )
        .with_status(400),
    )
    .await;
    let big = ScriptedUpstream::start().await;
    let client = Client::new(
        start(&format!(
            r#"
            {extra}
            [backends.small]
            base_url = "{}"
            [backends.big]
            base_url = "{}"
            retry_budget = {{ ratio = 1.0, reserve_per_sec = 100.0, cap = 100.0 }}
            [[routes]]
            model = "small"
            backend = "small"
            fallbacks = {{ context_length = ["big"] }}
            [[routes]]
            model = "big"
            backend = "big"
            "#,
            small.base_url(),
            big.base_url()
        ))
        .await,
    );
    (client, big, small)
}

/// A tenant asks for the cheap model with a prompt too long for it; the
/// route falls back to `big`, whose own rate is one request at a time. The
/// fallback is admitted as a request for `big` (its rate, the key's
/// allowlist, a reservation at its price): the second such request is
/// refused by `big`'s limit. Before the fix a fallback skipped all three,
/// so the cheap model's name was a way around the expensive one's limits.
#[tokio::test]
async fn a_fallback_is_admitted_as_the_model_it_reaches() {
    let (client, big, _small) =
        small_falling_back_to_big("[limits.models.big]\nrequests_per_minute = 60\nburst = 1").await;
    let (status, body) = client
        .post("/v1/chat/completions", &ask("small"), &[])
        .await;
    assert_eq!(status, 200, "the first fallback is served: {body}");
    let (status, body) = client
        .post("/v1/chat/completions", &ask("small"), &[])
        .await;
    assert_eq!(status, 429, "big's own rate applies to a fallback: {body}");
    assert_eq!(big.received().len(), 1, "one request reached big");
}

/// The fallback's model is assigned another policy tier than the model the
/// client named: the request was judged under the first, so it is not sent
/// to the second (its gates would be the wrong ones), and the client hears
/// why.
#[tokio::test]
async fn a_fallback_under_another_tier_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let policy = crate::harness::policy_file(&dir, &crate::harness::stricter_tier_for("big"));
    let (client, big, _small) = small_falling_back_to_big(&policy).await;
    let (status, body) = client
        .post("/v1/chat/completions", &ask("small"), &[])
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("another policy tier"),
        "{body}"
    );
    assert!(big.received().is_empty(), "nothing reached big");
}

/// The finding this closes: overload degradation sent a saturated route's
/// requests to its `overload_model` without the checks a fallback gets. Any
/// tenant that fills the backend (long streams within its own limits) made
/// everyone's requests for `big` be served by `small` under `big`'s tier,
/// though the policy assigns `small` a stricter one (and a key whose
/// allowlist excludes `small` reached it). Now the saturated route keeps
/// the request unless the cheaper model may serve it on its own terms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_degradation_does_not_cross_a_policy_tier() {
    let dir = tempfile::tempdir().unwrap();
    let policy = crate::harness::policy_file(&dir, &crate::harness::stricter_tier_for("small"));
    let main = ScriptedUpstream::start().await;
    let spare = ScriptedUpstream::start().await;
    let client = Client::new(
        start(&format!(
            r#"
            {policy}
            [backends.main]
            base_url = "{}"
            max_in_flight = 1
            first_byte_timeout_ms = 10000
            [backends.spare]
            base_url = "{}"
            [[routes]]
            model = "big"
            backend = "main"
            upstream_model = "slow-head"
            overload_model = "small"
            [[routes]]
            model = "small"
            backend = "spare"
            "#,
            main.base_url(),
            spare.base_url()
        ))
        .await,
    );
    // The attacker fills `main`'s only slot.
    let busy = {
        let (http, url) = (client.http.clone(), client.url("/v1/chat/completions"));
        tokio::spawn(async move { http.post(url).json(&ask("big")).send().await })
    };
    for _ in 0..200 {
        if main.received().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(main.received().len(), 1, "the slot is taken");
    let resp = client
        .http
        .post(client.url("/v1/chat/completions"))
        .json(&ask("big"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "queued on big, then served");
    assert!(
        !resp.headers().contains_key("x-palisade-degraded"),
        "{:?}",
        resp.headers()
    );
    assert!(spare.received().is_empty(), "small was never reached");
    assert_eq!(busy.await.unwrap().unwrap().status().as_u16(), 200);
}

/// The finding this closes: a *route's* residency rule held only while that
/// route served. A client sending an over-long prompt to the EU route
/// triggered its `context_length` fallback at will, and the request landed
/// on the fallback's US deployment. A route's rule now follows its
/// requests to every fallback.
#[tokio::test]
async fn a_routes_residency_follows_its_requests_to_a_fallback() {
    let eu = HostileUpstream::start(
        RawResponse::json(
            r#"{"error":{"message":"maximum context length exceeded","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
        )
        .with_status(400),
    )
    .await;
    let us = ScriptedUpstream::start().await;
    let client = Client::new(
        start(&format!(
            r#"
            [backends.eu]
            base_url = "{}"
            region = "eu"
            [backends.us]
            base_url = "{}"
            region = "us"
            [[routes]]
            model = "eu-llm"
            backend = "eu"
            residency = {{ regions = ["eu"] }}
            fallbacks = {{ context_length = ["big"] }}
            [[routes]]
            model = "big"
            backend = "us"
            "#,
            eu.base_url(),
            us.base_url()
        ))
        .await,
    );
    for _ in 0..3 {
        let (status, body) = client.chat(&ask("eu-llm")).await;
        assert_ne!(status, 200, "{body}");
    }
    assert!(
        us.received().is_empty(),
        "the EU route's prompt reached the US"
    );
    // The US route itself, named directly, is served there.
    let (status, _) = client.chat(&ask("big")).await;
    assert_eq!(status, 200);
    assert_eq!(us.received().len(), 1);
}

/// The finding this closes (found reviewing the fallback fix): the named
/// route's residency rule did not hold when overload degradation or a
/// cascade's cheap stage handed its request to another route: an EU
/// route's cascade sent the prompt to a US cheap model.
#[tokio::test]
async fn a_routes_residency_holds_for_its_cascade_stage() {
    let eu = ScriptedUpstream::start().await;
    let us = ScriptedUpstream::start().await;
    let client = Client::new(
        start(&format!(
            r#"
            [backends.eu]
            base_url = "{}"
            region = "eu"
            [backends.us]
            base_url = "{}"
            region = "us"
            [[routes]]
            model = "eu-smart"
            backend = "eu"
            residency = {{ regions = ["eu"] }}
            cascade = {{ first = "cheap", escalate_on = ["refusal"] }}
            [[routes]]
            model = "cheap"
            backend = "us"
            "#,
            eu.base_url(),
            us.base_url()
        ))
        .await,
    );
    let (status, body) = client.chat(&ask("eu-smart")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        us.received().is_empty(),
        "the EU route's prompt reached the US"
    );
    assert_eq!(eu.received().len(), 1, "the route's own EU model answered");
}
