//! The token ledger through the gateway: one row per request that reached
//! the upstream, with the upstream's usage, in a real SQLite file.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use palisade_gateway::RunningGateway;
use palisade_ledger::{Ledger, LedgerEntry, Outcome, UsageSource, WriteOptions};
use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};

async fn rows(path: &std::path::Path) -> Vec<LedgerEntry> {
    let ledger = Ledger::open(
        &format!("sqlite:{}", path.display()),
        WriteOptions::default(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    ledger.export_jsonl(&mut out).await.unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A gateway on a loopback port from `toml`, and a client for it.
async fn start(toml: &str) -> (RunningGateway, reqwest::Client) {
    let gw = support::gateway(toml).await;
    (gw, reqwest::Client::builder().no_proxy().build().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_request_gets_one_row_with_its_usage() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let upstream = ScriptedUpstream::start().await;
    let toml = format!(
        "[ledger]\nurl = \"sqlite:{}\"\n[ledger.prices.default]\ninput_usd_per_mtok = 1.0\noutput_usd_per_mtok = 2.0\n[backends.main]\nbase_url = \"{}\"",
        db.display(),
        upstream.base_url()
    );
    let (gw, client) = start(&toml).await;
    let url = format!("http://{}/v1/chat/completions", gw.local_addr());

    // Non-streaming: the row is committed before the response arrives.
    let resp = client
        .post(&url)
        .header("x-request-id", "same-client-id")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "one two three"}]}))
        .send()
        .await
        .unwrap();
    let plain_id = resp.headers()["x-palisade-ledger-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(resp.status(), 200);
    // Streaming, the client not asking for usage.
    let resp = client
        .post(&url)
        .header("x-request-id", "same-client-id")
        .json(&json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "four five"}]}))
        .send()
        .await
        .unwrap();
    let stream_id = resp.headers()["x-palisade-ledger-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = resp.text().await.unwrap();
    assert!(
        body.ends_with("data: [DONE]\n\n"),
        "[DONE] is released after the row: {body:?}"
    );
    assert!(!body.contains("\"usage\""));
    // A stream the client abandons.
    let resp = client
        .post(&url)
        .json(&json!({"model": "endless", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    let gone_id = resp.headers()["x-palisade-ledger-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // Leave once some generated text has arrived (not just the role chunk),
    // so there is something to count.
    let mut s = resp.bytes_stream();
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen.extend_from_slice(&s.next().await.unwrap().unwrap());
        if seen.windows(3).any(|w| w == b" w1") {
            break;
        }
    }
    drop(s);
    // A request the upstream refuses.
    let resp = client
        .post(&url)
        .json(&json!({"model": "error-400", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    let refused_id = resp.headers()["x-palisade-ledger-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(resp.status(), 400);

    let mut found = Vec::new();
    for _ in 0..100 {
        found = rows(&db).await;
        if found.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let by_id = |id: &str| {
        found
            .iter()
            .find(|r| r.request_id == id)
            .unwrap_or_else(|| panic!("row {id} in {found:?}"))
    };
    assert_eq!(
        found.len(),
        4,
        "one row per request, client ids notwithstanding"
    );

    let plain = by_id(&plain_id);
    assert_eq!(
        (plain.prompt_tokens, plain.completion_tokens),
        (6, 3),
        "the scripted upstream's usage"
    );
    assert_eq!(plain.usage_source, UsageSource::Upstream);
    assert_eq!(plain.outcome, Outcome::Completed);
    // 6 prompt tokens at $1/M + 3 completion tokens at $2/M = 12 micro-dollars.
    assert_eq!(plain.cost_micros, 12);
    assert_eq!(plain.tenant, "local");

    let streamed = by_id(&stream_id);
    assert_eq!((streamed.prompt_tokens, streamed.completion_tokens), (5, 2));
    assert_eq!(
        streamed.usage_source,
        UsageSource::Upstream,
        "usage was requested upstream"
    );

    let gone = by_id(&gone_id);
    assert_eq!(gone.outcome, Outcome::ClientDisconnected);
    assert_eq!(
        gone.usage_source,
        UsageSource::Counted,
        "no usage chunk: counted from the text"
    );
    assert!(gone.completion_tokens > 0);

    let refused = by_id(&refused_id);
    assert_eq!(refused.outcome, Outcome::Refused);
    assert_eq!(refused.prompt_tokens + refused.completion_tokens, 0);
    let ready: Value = client
        .get(format!("http://{}/readyz", gw.local_addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["conditions"]["ledger"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_usage_reports_the_ledger_to_admin_keys_only() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = ScriptedUpstream::start().await;
    let hash = |k: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(k.as_bytes()))
    };
    let toml = format!(
        "[[auth.keys]]\nname = \"app\"\ntenant = \"acme\"\nsha256 = \"{}\"\n[[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{}\"\nadmin = true\n[ledger]\nurl = \"sqlite:{}\"\n[backends.main]\nbase_url = \"{}\"",
        hash("pk-app"),
        hash("pk-ops"),
        dir.path().join("l.db").display(),
        upstream.base_url()
    );
    let (gw, client) = start(&toml).await;
    let base = format!("http://{}", gw.local_addr());
    for _ in 0..3 {
        let resp = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth("pk-app")
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "one two"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let get = |key: Option<&'static str>, query: &str| {
        let mut req = client.get(format!("{base}/admin/usage{query}"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
    };
    assert_eq!(get(None, "").await.unwrap().status(), 401);
    let denied = get(Some("pk-app"), "").await.unwrap();
    assert_eq!(denied.status(), 403);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["code"], "permission_denied");
    let bad = get(Some("pk-ops"), "?by=week").await.unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = get(Some("pk-ops"), "?by=tenant")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let acme = &body["data"][0];
    assert_eq!(acme["group"], "acme");
    assert_eq!(acme["requests"], 3);
    // 2 words + 3 prompt tokens, 2 completion tokens, per request.
    assert_eq!(acme["total_tokens"], 21);
}

/// Red team (issue #17's borrowed tally): a hostile upstream dresses its
/// usage chunk so that a reader searching for `"usage"` (or a derived
/// struct reading the first of two members) would miss it, and plants a
/// decoy `"usage"` inside a string. The ledger still records the upstream's
/// own figures, never the smaller count of the text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disguised_stream_usage_is_still_recorded() {
    use palisade_testkit::{HostileUpstream, RawResponse};
    fn chunk(content: &str) -> String {
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
            serde_json::to_string(content).unwrap()
        )
    }
    let usage = r#"{"prompt_tokens":900,"completion_tokens":700,"total_tokens":1600}"#;
    let cases = [
        ("escaped key", format!("data: {{\"id\":\"c\",\"choices\":[],\"us\\u0061ge\":{usage}}}\n\n")),
        ("null first, then the real one", format!("data: {{\"id\":\"c\",\"choices\":[],\"usage\":null,\"usage\":{usage}}}\n\n")),
        ("on a content chunk", format!("data: {{\"id\":\"c\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"x\"}}}}],\"\\u0075sage\":{usage}}}\n\n")),
    ];
    for (name, usage_event) in cases {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let mut sse = chunk("Sure. ");
        // A decoy: `"usage"` with small figures inside the text.
        sse.push_str(&chunk(
            "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2} ",
        ));
        sse.push_str(&usage_event);
        sse.push_str("data: [DONE]\n\n");
        let upstream = HostileUpstream::start(RawResponse::sse(sse)).await;
        let toml = format!(
            "[ledger]\nurl = \"sqlite:{}\"\n[backends.main]\nbase_url = \"{}\"",
            db.display(),
            upstream.base_url()
        );
        let (gw, client) = start(&toml).await;
        let resp = client
            .post(format!("http://{}/v1/chat/completions", gw.local_addr()))
            .json(&json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        let body = resp.text().await.unwrap();
        assert!(body.ends_with("data: [DONE]\n\n"), "{name}: {body}");
        let mut found = Vec::new();
        for _ in 0..100 {
            found = rows(&db).await;
            if !found.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert_eq!(
            (found[0].prompt_tokens, found[0].completion_tokens),
            (900, 700),
            "{name}: the upstream's usage, not the decoy nor a count"
        );
        assert_eq!(found[0].usage_source, UsageSource::Upstream, "{name}");
    }
}
