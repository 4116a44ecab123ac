//! Per-key budgets through the gateway: runtime keys with a dollar or token
//! cap per period, a real scripted upstream, a real SQLite ledger (and a
//! real PostgreSQL store with real Redis for two replicas), all on loopback.
//!
//! The scripted upstream charges "a b c d e" 8 prompt + 5 completion
//! tokens; at $1000/$2000 per million tokens that is $0.018 a request.

mod support;

use std::time::{Duration, Instant};

use palisade_gateway::RunningGateway;
use palisade_testkit::{PostgresServer, RedisServer, ScriptedUpstream};
use serde_json::{json, Value};

const ADMIN: &str = "sk-admin-test";
const REFRESH_MS: u64 = 200;
/// How long a change may take to reach a replica: the refresh interval
/// plus slack for a loaded CI machine.
const BOUND: Duration = Duration::from_millis(REFRESH_MS + 4_800);
/// The scripted upstream's charge for one request, in tokens and dollars.
const TOKENS_PER_REQUEST: u64 = 13;
const USD_PER_REQUEST: f64 = 0.018;

fn toml(ledger_url: &str, upstream: &str, extra: &str) -> String {
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(ADMIN.as_bytes()));
    format!(
        "[ledger]\nurl = \"{ledger_url}\"\n\
         [ledger.prices.default]\ninput_usd_per_mtok = 1000.0\noutput_usd_per_mtok = 2000.0\n\
         [auth.runtime]\nenabled = true\nrefresh_ms = {REFRESH_MS}\n\
         [[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{hash}\"\nadmin = true\n\
         [backends.main]\nbase_url = \"{upstream}\"\n{extra}"
    )
}

async fn start(toml: &str) -> RunningGateway {
    let gw = support::gateway(toml).await;
    // Bounded: ready once the limits backend (when any) is connected.
    for _ in 0..200 {
        let ready = client()
            .get(format!("http://{}/readyz", gw.local_addr()))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return gw;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never became ready");
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// One request with `key` (chat, streamed chat or the Responses API):
/// (status, error code, Retry-After seconds).
async fn call(gw: &RunningGateway, key: &str, kind: usize) -> (u16, Option<String>, Option<u64>) {
    let base = format!("http://{}", gw.local_addr());
    let req = match kind % 3 {
        0 => client()
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"model": "m", "max_tokens": 10,
                    "messages": [{"role": "user", "content": "a b c d e"}]})),
        1 => client()
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"model": "m", "max_tokens": 10, "stream": true,
                    "messages": [{"role": "user", "content": "a b c d e"}]})),
        _ => client()
            .post(format!("{base}/v1/responses"))
            .json(&json!({"model": "m", "max_output_tokens": 10, "input": "a b c d e"})),
    };
    let resp = req.bearer_auth(key).send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = resp.text().await.unwrap_or_default();
    let code = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|b| b["error"]["code"].as_str().map(str::to_owned));
    (status, code, retry)
}

async fn admin(gw: &RunningGateway, method: &str, path: &str, body: Value) -> (u16, Value) {
    let url = format!("http://{}{path}", gw.local_addr());
    let req = match method {
        "GET" => client().get(url),
        "PATCH" => client().patch(url).json(&body),
        _ => client().post(url).json(&body),
    };
    let resp = req.bearer_auth(ADMIN).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn create(gw: &RunningGateway, body: Value) -> (String, String) {
    let (status, created) = admin(gw, "POST", "/admin/keys", body).await;
    assert_eq!(status, 201, "{created}");
    (
        created["key"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    )
}

/// Sends requests with `key` (round robin over `gws` and the three kinds)
/// until one is refused; returns how many were admitted and the refusal.
async fn spend_until_refused(
    gws: &[&RunningGateway],
    key: &str,
) -> (u64, (u16, Option<String>, Option<u64>)) {
    for i in 0..60 {
        let got = call(gws[i % gws.len()], key, i).await;
        if got.0 != 200 {
            return (i as u64, got);
        }
    }
    panic!("never refused after 60 requests");
}

/// Waits (bounded by [`BOUND`]) until `key` gets `want` from `gw`.
async fn until(gw: &RunningGateway, key: &str, want: u16) {
    let start = Instant::now();
    loop {
        let (status, code, _) = call(gw, key, 0).await;
        if status == want {
            return;
        }
        assert!(
            start.elapsed() < BOUND,
            "still {status} {code:?} after {:?}, want {want}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn seconds_to_month_end() -> u64 {
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    palisade_limits::BudgetPeriod::Monthly
        .span(now_ms)
        .retry_after_secs(now_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_key_is_refused_until_raised_and_neither_restart_rotation_nor_recreation_resets_it()
{
    let dir = tempfile::tempdir().unwrap();
    let ledger = format!("sqlite:{}", dir.path().join("ledger.db").display());
    let upstream = ScriptedUpstream::start().await;
    let config = toml(&ledger, &upstream.base_url(), "");
    let gw = start(&config).await;
    let (ci, ci_id) = create(
        &gw,
        json!({"tenant": "acme", "name": "ci", "max_budget_usd": 0.1}),
    )
    .await;
    let (web, _) = create(&gw, json!({"tenant": "acme", "name": "web"})).await;

    // Chat, streamed chat and Responses requests all count; $0.10 admits
    // five requests of $0.018 at most, and never lets spend pass $0.10.
    let (admitted, refusal) = spend_until_refused(&[&gw], &ci).await;
    assert_eq!(refusal.0, 429, "{refusal:?}");
    assert_eq!(refusal.1.as_deref(), Some("key_budget_exceeded"));
    let retry = refusal.2.expect("Retry-After on a key budget refusal");
    let to_end = seconds_to_month_end();
    assert!(
        retry <= to_end && retry + 5 >= to_end,
        "Retry-After {retry} s, the month ends in {to_end} s"
    );
    assert!((2..=5).contains(&admitted), "admitted {admitted}");
    assert!(admitted as f64 * USD_PER_REQUEST <= 0.1);
    // The tenant's other key is not touched.
    assert_eq!(call(&gw, &web, 0).await.0, 200);

    // The list shows the cap and the spend against it.
    let (_, list) = admin(&gw, "GET", "/admin/keys?tenant=acme", Value::Null).await;
    let shown = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ci")
        .unwrap()
        .clone();
    assert_eq!(shown["budget"]["max_budget_usd"], 0.1, "{shown}");
    // Every admitted request was charged (chat and streams $0.018, the
    // Responses shape a little more), and the cap held.
    let spent = shown["spend"]["spent_usd"].as_f64().unwrap();
    assert!(
        spent >= admitted as f64 * USD_PER_REQUEST - 1e-9 && spent <= 0.1,
        "{admitted} admitted: {shown}"
    );

    // Rotation keeps the spend with the key: the new secret is refused too.
    let (status, rotated) = admin(
        &gw,
        "POST",
        &format!("/admin/keys/{ci_id}/rotate"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let ci = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&gw, &ci, 0).await.1.as_deref(),
        Some("key_budget_exceeded")
    );
    // So does revoking it and creating a key of the same name.
    let (status, _) = admin(
        &gw,
        "POST",
        &format!("/admin/keys/{ci_id}/revoke"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (ci, ci_id) = create(
        &gw,
        json!({"tenant": "acme", "name": "ci", "max_budget_usd": 0.1}),
    )
    .await;
    assert_eq!(
        call(&gw, &ci, 0).await.1.as_deref(),
        Some("key_budget_exceeded")
    );

    // A restart reads the spend back from the ledger.
    gw.shutdown();
    let gw = start(&config).await;
    assert_eq!(
        call(&gw, &ci, 1).await.1.as_deref(),
        Some("key_budget_exceeded"),
        "a restart handed the budget out again"
    );

    // Raising the budget unblocks the key, spend kept: $0.20 admits about
    // as many requests again, not $0.20's worth.
    let (status, updated) = admin(
        &gw,
        "PATCH",
        &format!("/admin/keys/{ci_id}"),
        json!({"max_budget_usd": 0.2}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["budget"]["max_budget_usd"], 0.2);
    let (more, refusal) = spend_until_refused(&[&gw], &ci).await;
    assert_eq!(refusal.1.as_deref(), Some("key_budget_exceeded"));
    assert!((2..=6).contains(&more), "{admitted} then {more}");
    let (_, list) = admin(&gw, "GET", "/admin/keys?tenant=acme", Value::Null).await;
    let spent = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == ci_id.as_str())
        .map(|k| k["spend"]["spent_usd"].as_f64().unwrap())
        .unwrap();
    assert!(
        spent <= 0.2 && spent >= (admitted + more) as f64 * USD_PER_REQUEST - 1e-9,
        "{spent}"
    );
    gw.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_token_cap_and_key_rates_refuse_with_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = format!("sqlite:{}", dir.path().join("ledger.db").display());
    let upstream = ScriptedUpstream::start().await;
    let gw = start(&toml(&ledger, &upstream.base_url(), "")).await;
    let (tok, _) = create(
        &gw,
        json!({"tenant": "acme", "name": "tok", "max_tokens": 60, "budget_period": "daily"}),
    )
    .await;
    let (admitted, refusal) = spend_until_refused(&[&gw], &tok).await;
    assert_eq!(refusal.1.as_deref(), Some("key_budget_exceeded"));
    assert!(admitted * TOKENS_PER_REQUEST <= 60 && admitted >= 1);
    let retry = refusal.2.unwrap();
    assert!((1..=86_400).contains(&retry), "a day at most: {retry}");

    let (rpm, _) = create(
        &gw,
        json!({"tenant": "acme", "name": "rpm", "requests_per_minute": 1}),
    )
    .await;
    assert_eq!(call(&gw, &rpm, 0).await.0, 200);
    let (status, code, retry) = call(&gw, &rpm, 0).await;
    assert_eq!((status, code.as_deref()), (429, Some("rate_limited")));
    assert!(retry.is_some_and(|r| r >= 1));

    let (tpm, _) = create(
        &gw,
        json!({"tenant": "acme", "name": "tpm", "tokens_per_minute": 30}),
    )
    .await;
    let (admitted, refusal) = spend_until_refused(&[&gw], &tpm).await;
    assert_eq!(refusal.1.as_deref(), Some("tokens_exhausted"));
    assert!(admitted <= 2, "admitted {admitted}");

    // Out-of-range settings are refused whole, with a stable code.
    for body in [
        json!({"tenant": "acme", "name": "x", "max_budget_usd": -1}),
        json!({"tenant": "acme", "name": "x", "max_budget_usd": 1e10}),
        json!({"tenant": "acme", "name": "x", "requests_per_minute": 0}),
        json!({"tenant": "acme", "name": "x", "budget_period": "weekly"}),
    ] {
        let (status, err) = admin(&gw, "POST", "/admin/keys", body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(err["error"]["code"], "invalid_key_budget", "{err}");
    }
    gw.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_and_postgres_enforce_one_budget() {
    let pg = PostgresServer::start();
    let redis = RedisServer::start();
    let upstream = ScriptedUpstream::start().await;
    let extra = format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\non_backend_error = \"deny\"\n",
        redis.url()
    );
    let config = toml(&pg.url(), &upstream.base_url(), &extra);
    let a = start(&config).await;
    let b = start(&config).await;
    let (key, id) = create(
        &a,
        json!({"tenant": "acme", "name": "shared", "max_tokens": 130}),
    )
    .await;
    until(&b, &key, 200).await;
    // Requests alternate between the replicas: one budget of 130 tokens
    // admits what one replica alone would (at most 130 / 13 = 10), not
    // twice that.
    let (admitted, refusal) = spend_until_refused(&[&a, &b], &key).await;
    assert_eq!(refusal.1.as_deref(), Some("key_budget_exceeded"));
    let admitted = admitted + 1; // The request `until` spent on B.
    assert!(
        admitted * TOKENS_PER_REQUEST <= 130 && admitted >= 6,
        "admitted {admitted}"
    );
    assert_eq!(call(&a, &key, 0).await.0, 429);
    assert_eq!(call(&b, &key, 0).await.0, 429);

    // Raised through A: B unblocks within the refresh interval.
    let (status, _) = admin(
        &a,
        "PATCH",
        &format!("/admin/keys/{id}"),
        json!({"max_tokens": 1_000}),
    )
    .await;
    assert_eq!(status, 200);
    until(&b, &key, 200).await;
    a.shutdown();
    b.shutdown();
}
