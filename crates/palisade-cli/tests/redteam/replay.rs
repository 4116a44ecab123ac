//! Idempotency keys and the response cache under attack (issue #19): a
//! tenant planting a cache entry for another, a blocked or flagged request
//! coming back as allowed from the cache, an idempotency key reused to read
//! another tenant's response (or to learn that it exists), a hostile
//! upstream's secret stored unjudged, and an eviction flood aimed at other
//! tenants' entries.

use palisade_testkit::{HostileUpstream, RawResponse, ScriptedUpstream};
use serde_json::{json, Value};
use sha2::Digest;

use crate::harness::{start, Client, AWS_KEY, JAILBREAK};

const VICTIM: &str = "sk-victim-0123456789abcdef";
const ATTACKER: &str = "sk-attacker-0123456789abcdef";

fn keys() -> String {
    let hash = |k: &str| hex::encode(sha2::Sha256::digest(k.as_bytes()));
    format!(
        "[[auth.keys]]\nname = \"v\"\ntenant = \"victim\"\nsha256 = \"{}\"\n\
         [[auth.keys]]\nname = \"x\"\ntenant = \"attacker\"\nsha256 = \"{}\"\n",
        hash(VICTIM),
        hash(ATTACKER)
    )
}

struct Tenants {
    client: Client,
}

impl Tenants {
    async fn new(base_url: &str, extra: &str) -> Self {
        let gw = start(&format!(
            "{}{extra}\n[backends.main]\nbase_url = \"{base_url}\"\n",
            keys()
        ))
        .await;
        Self {
            client: Client::new(gw),
        }
    }

    /// Status, `x-palisade-replay`, body text.
    async fn chat(&self, key: &str, idem: Option<&str>, body: &Value) -> (u16, String, String) {
        let mut req = self
            .client
            .http
            .post(self.client.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(body);
        if let Some(k) = idem {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.expect("gateway answers");
        let status = resp.status().as_u16();
        let replay = resp
            .headers()
            .get("x-palisade-replay")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (status, replay, resp.text().await.unwrap_or_default())
    }
}

fn ask(text: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]})
}

/// The attacker sends the victim's likely request first (every spelling of
/// it: reordered keys, spacing, a retrieved-content header), hoping the
/// victim is answered from the attacker's entry. The victim's request still
/// reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_plant_a_cache_entry_for_another() {
    let upstream = ScriptedUpstream::start().await;
    let t = Tenants::new(&upstream.base_url(), "[cache]\nenabled = true").await;
    let body = ask("what is our refund policy");
    let reordered: Value = serde_json::from_str(
        r#"{"messages":[{"content":"what is our refund policy","role":"user"}],"model":"m"}"#,
    )
    .expect("json");
    for planted in [&body, &reordered] {
        let (status, _, _) = t.chat(ATTACKER, None, planted).await;
        assert_eq!(status, 200);
    }
    let planted_hits = upstream.received().len();
    let (status, replay, _) = t.chat(VICTIM, None, &body).await;
    assert_eq!(
        (status, replay.as_str()),
        (200, ""),
        "victim served from the attacker's entry"
    );
    assert_eq!(upstream.received().len(), planted_hits + 1);
    // The victim's own repeat is a hit: the cache works, just never across.
    let (_, replay, _) = t.chat(VICTIM, None, &body).await;
    assert_eq!(replay, "cache");
}

/// A request the input gate blocks never reaches the cache, and one it only
/// flags is judged anew every time: neither comes back as allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_and_flagged_requests_are_never_cached_as_allowed() {
    let upstream = ScriptedUpstream::start().await;
    // Built-in policy: the jailbreak is blocked.
    let t = Tenants::new(&upstream.base_url(), "[cache]\nenabled = true").await;
    for _ in 0..3 {
        let (status, replay, body) = t.chat(ATTACKER, Some("k"), &ask(JAILBREAK)).await;
        assert_eq!((status, replay.as_str()), (400, ""), "{body}");
    }
    assert_eq!(upstream.received().len(), 0);

    // A lenient policy that only flags the jailbreak: it is forwarded, but
    // never cached (each repeat reaches the upstream and is judged again).
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        palisade_policy::BUILTIN_TOML.replace(
            "injection = { threshold = 0.9703, action = \"block\" }",
            "injection = { threshold = 0.9703, action = \"flag\" }",
        ),
    )
    .expect("write");
    let t = Tenants::new(
        &upstream.base_url(),
        &format!(
            "[policy]\nfile = \"{}\"\n[cache]\nenabled = true",
            policy.display()
        ),
    )
    .await;
    for _ in 0..3 {
        let (status, replay, _) = t.chat(ATTACKER, None, &ask(JAILBREAK)).await;
        assert_eq!((status, replay.as_str()), (200, ""));
    }
    assert_eq!(upstream.received().len(), 3);
}

/// A hostile upstream's secret is stored only as the output gate left it:
/// the replay (cache or idempotency) is the redacted response, never the raw one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_never_bypasses_the_output_gate() {
    let completion = json!({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("key {AWS_KEY}")},
                     "finish_reason": "stop"}]});
    let upstream = HostileUpstream::start(RawResponse::json(completion.to_string())).await;
    let t = Tenants::new(&upstream.base_url(), "[cache]\nenabled = true").await;
    let (status, _, first) = t.chat(VICTIM, Some("k"), &ask("show the key")).await;
    assert_eq!(status, 200);
    assert!(!first.contains(AWS_KEY), "{first}");
    let (_, replay, again) = t.chat(VICTIM, Some("k"), &ask("show the key")).await;
    assert_eq!((replay.as_str(), &again), ("idempotency", &first));
    let (_, replay, cached) = t.chat(VICTIM, None, &ask("show the key")).await;
    assert_eq!(replay, "cache");
    assert!(!cached.contains(AWS_KEY), "{cached}");
    assert_eq!(upstream.received().len(), 1);
}

/// The attacker learns the victim's `Idempotency-Key` (a log, a shared
/// client library) and replays it, with the victim's body and with others,
/// even while the victim's request runs: it gets its own outcome every time,
/// never the victim's, and no 409/422 that would reveal the key exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_never_replays_another_tenants_response() {
    let upstream = ScriptedUpstream::start().await;
    let t = Tenants::new(&upstream.base_url(), "").await;
    let slow = json!({"model": "delay-1000", "messages": [{"role": "user", "content": "victim's secret plan"}]});
    let victim = {
        let req = t
            .client
            .http
            .post(t.client.url("/v1/chat/completions"))
            .bearer_auth(VICTIM)
            .header("idempotency-key", "order-42")
            .json(&slow);
        tokio::spawn(async move { req.send().await.expect("answers").status().as_u16() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // While the victim's request runs: no 409 for the attacker.
    let (status, replay, _) = t.chat(ATTACKER, Some("order-42"), &slow).await;
    assert_eq!((status, replay.as_str()), (200, ""));
    assert_eq!(victim.await.expect("joined"), 200);
    // A key whose victim request finished: no replay with the victim's body,
    // no 422 with another.
    let (status, _, _) = t
        .chat(VICTIM, Some("order-43"), &ask("victim's invoice"))
        .await;
    assert_eq!(status, 200);
    let (status, replay, body) = t
        .chat(ATTACKER, Some("order-43"), &ask("victim's invoice"))
        .await;
    assert_eq!((status, replay.as_str()), (200, ""), "{body}");
    let (status, replay, _) = t.chat(ATTACKER, Some("order-44"), &ask("anything")).await;
    assert_eq!((status, replay.as_str()), (200, ""));
    let (status, _, _) = t
        .chat(VICTIM, Some("order-44"), &ask("victim's other"))
        .await;
    assert_eq!(
        status, 200,
        "the attacker's use of a key never blocks the victim's"
    );
    assert_eq!(upstream.received().len(), 6);
    // The victim's key still replays the victim's own outcome.
    let (_, replay, body) = t.chat(VICTIM, Some("order-42"), &slow).await;
    assert_eq!(replay, "idempotency");
    assert!(body.contains("victim's secret plan"));
}

/// The attacker floods unique idempotency keys and unique cacheable
/// requests to push the victim's entries out. Quotas are per tenant: the
/// attacker only ever evicts its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_flood_never_pushes_out_another_tenants_entries() {
    let upstream = ScriptedUpstream::start().await;
    let t = Tenants::new(
        &upstream.base_url(),
        "[idempotency]\nmax_entries_per_tenant = 4\nmax_bytes_per_tenant = 16384\nmax_entry_bytes = 4096\n\
         [cache]\nenabled = true\nmax_entries_per_tenant = 4\nmax_bytes_per_tenant = 16384\nmax_entry_bytes = 4096",
    )
    .await;
    let (_, _, victim_idem) = t.chat(VICTIM, Some("pay-1"), &ask("victim one")).await;
    let (_, _, victim_cached) = t.chat(VICTIM, None, &ask("victim two")).await;
    for i in 0..60 {
        let (status, _, _) = t
            .chat(
                ATTACKER,
                Some(&format!("f{i}")),
                &ask(&format!("flood {i}")),
            )
            .await;
        assert_eq!(status, 200);
        let (status, _, _) = t
            .chat(ATTACKER, None, &ask(&format!("cache flood {i}")))
            .await;
        assert_eq!(status, 200);
    }
    let before = upstream.received().len();
    let (_, replay, body) = t.chat(VICTIM, Some("pay-1"), &ask("victim one")).await;
    assert_eq!((replay.as_str(), &body), ("idempotency", &victim_idem));
    let (_, replay, body) = t.chat(VICTIM, None, &ask("victim two")).await;
    assert_eq!((replay.as_str(), &body), ("cache", &victim_cached));
    assert_eq!(upstream.received().len(), before);
}

/// The finding this closes: a stream the upstream (or a load balancer in
/// front of it) closed cleanly mid-answer, with no `[DONE]`, was recorded
/// as completed: the half answer was cached and replayed to every key of
/// the tenant, and the client's idempotency key was spent on it.
#[tokio::test]
async fn a_stream_cut_short_is_never_cached() {
    let chunk = |text: &str| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                   "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
        )
    };
    let upstream = HostileUpstream::start(RawResponse::sse(chunk("The answer is"))).await;
    let t = Tenants::new(&upstream.base_url(), "[cache]\nenabled = true").await;
    let ask = json!({"model": "m", "stream": true,
                     "messages": [{"role": "user", "content": "What is the answer?"}]});
    let (status, replay, body) = t.chat(VICTIM, None, &ask).await;
    assert_eq!((status, replay.as_str()), (200, ""), "{body}");
    assert!(body.contains("The answer is"), "{body}");
    let (status, replay, _) = t.chat(VICTIM, None, &ask).await;
    assert_eq!(status, 200);
    assert_eq!(replay, "", "the cut stream came back from the cache");
    assert_eq!(upstream.received().len(), 2);
    // Nor does it spend an idempotency key: the retry runs again.
    let (_, replay, _) = t.chat(VICTIM, Some("k-cut"), &ask).await;
    assert_eq!(replay, "");
    let (_, replay, _) = t.chat(VICTIM, Some("k-cut"), &ask).await;
    assert_eq!(replay, "", "the key replayed a stream cut short");
    assert_eq!(upstream.received().len(), 4);

    // The same stream, finished: cached (the check above is about the cut).
    let finished = format!("{}data: [DONE]\n\n", chunk("The answer is 42."));
    let upstream = HostileUpstream::start(RawResponse::sse(finished)).await;
    let t = Tenants::new(&upstream.base_url(), "[cache]\nenabled = true").await;
    t.chat(VICTIM, None, &ask).await;
    let (_, replay, body) = t.chat(VICTIM, None, &ask).await;
    assert_eq!(replay, "cache", "{body}");
    assert_eq!(upstream.received().len(), 1);
}
