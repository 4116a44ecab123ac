//! Monthly quotas (hard), budgets (soft, with alerts) and the spend-rate
//! breaker, through the gateway with a real SQLite ledger, a scripted
//! upstream and a webhook receiver, all on loopback.

mod support;

use std::time::Duration;

use palisade_gateway::RunningGateway;
use palisade_testkit::{ScriptedUpstream, WebhookRecorder};
use serde_json::{json, Value};
use sha2::Digest;
use support::gateway as start;

const KEY_A: &str = "sk-tenant-a-0123456789abcdef";
const KEY_B: &str = "sk-tenant-b-0123456789abcdef";
const KEY_OPS: &str = "sk-operator-0123456789abcdef";

fn keys() -> String {
    let hash = |k: &str| hex::encode(sha2::Sha256::digest(k.as_bytes()));
    format!(
        "[[auth.keys]]\nname = \"a\"\ntenant = \"a\"\nsha256 = \"{}\"\n[[auth.keys]]\nname = \"b\"\ntenant = \"b\"\nsha256 = \"{}\"\n[[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{}\"\nadmin = true\n",
        hash(KEY_A),
        hash(KEY_B),
        hash(KEY_OPS)
    )
}

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    fn new(gw: &RunningGateway) -> Self {
        Self {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            url: format!("http://{}/v1/chat/completions", gw.local_addr()),
        }
    }

    /// One chat request: "a b c d e" costs 13 tokens at the scripted upstream
    /// (prompt 5 words + 3, completion 5); `max_tokens` 10 bounds the reservation.
    async fn chat(&self, key: &str) -> reqwest::Response {
        self.http
            .post(&self.url)
            .bearer_auth(key)
            .json(&json!({"model": "m", "max_tokens": 10,
                          "messages": [{"role": "user", "content": "a b c d e"}]}))
            .send()
            .await
            .unwrap()
    }
}

async fn code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

fn config(db: &std::path::Path, upstream: &ScriptedUpstream, extra: &str) -> String {
    format!(
        "{}[ledger]\nurl = \"sqlite:{}\"\n[ledger.prices.default]\ninput_usd_per_mtok = 1000.0\noutput_usd_per_mtok = 2000.0\n[backends.main]\nbase_url = \"{}\"\n{extra}",
        keys(),
        db.display(),
        upstream.base_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monthly_token_quota_refuses_when_spent_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let upstream = ScriptedUpstream::start().await;
    let toml = config(
        &db,
        &upstream,
        "[limits.tenants.a]\nmonthly_token_quota = 130",
    );
    let gw = start(&toml).await;
    let client = Client::new(&gw);
    let mut admitted = 0;
    let mut refusal = None;
    for _ in 0..30 {
        let resp = client.chat(KEY_A).await;
        if resp.status() == 200 {
            admitted += 1;
            continue;
        }
        refusal = Some(code(resp).await);
        break;
    }
    // Each request uses 13 tokens and reserves ~prompt estimate + 10, so the
    // quota of 130 admits fewer than 10 before the next reservation no
    // longer fits, and never lets spend exceed 130.
    assert_eq!(
        refusal,
        Some((429, "quota_exceeded".to_owned())),
        "after {admitted}"
    );
    assert!((7..=9).contains(&admitted), "admitted {admitted}");
    assert!(admitted * 13 <= 130);
    // Another tenant has no quota.
    assert_eq!(client.chat(KEY_B).await.status(), 200);
    // Operators see the standing (open mode is off: tenant keys are not
    // admin keys).
    let url = format!("http://{}/admin/quotas", gw.local_addr());
    let resp = client
        .http
        .get(&url)
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let report: Value = client
        .http
        .get(&url)
        .bearer_auth(KEY_OPS)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "a")
        .expect("tenant a is reported");
    assert_eq!(a["counters"][0]["unit"], "tokens");
    assert_eq!(a["counters"][0]["spent"], admitted * 13);
    assert_eq!(a["counters"][0]["reserved"], 0);
    assert_eq!(a["counters"][0]["quota"], 130);
    gw.shutdown();
    gw.wait().await.unwrap();

    // A new process seeds the month from the ledger: still refused.
    let gw = start(&toml).await;
    let client = Client::new(&gw);
    assert_eq!(
        code(client.chat(KEY_A).await).await,
        (429, "quota_exceeded".to_owned())
    );
    gw.shutdown();
    gw.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monthly_cost_quota_is_priced_from_the_price_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let upstream = ScriptedUpstream::start().await;
    // $1000 / Mtok in, $2000 / Mtok out: one request (8 in, 5 out) costs
    // $0.018; the quota of $0.10 admits a handful.
    let toml = config(
        &db,
        &upstream,
        "[limits.tenants.a]\nmonthly_cost_quota_usd = 0.10",
    );
    let gw = start(&toml).await;
    let client = Client::new(&gw);
    let mut admitted = 0;
    let mut refused = None;
    for _ in 0..30 {
        let resp = client.chat(KEY_A).await;
        if resp.status() != 200 {
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            refused = Some((status, body));
            break;
        }
        admitted += 1;
    }
    let (status, body) = refused.expect("the cost quota refuses");
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("of $0.10"), "{message}");
    assert!((2..=5).contains(&admitted), "admitted {admitted}");
    gw.shutdown();
    gw.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_alerts_fire_once_per_threshold_and_not_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let upstream = ScriptedUpstream::start().await;
    let webhook = WebhookRecorder::start().await;
    let toml = config(
        &db,
        &upstream,
        &format!(
            "[limits]\nalert_webhook_url = \"{}\"\nbudget_alert_percents = [50, 80, 100]\n[limits.tenants.a]\nmonthly_token_budget = 100",
            webhook.url()
        ),
    );
    let gw = start(&toml).await;
    let client = Client::new(&gw);
    // A soft budget refuses nothing: 10 requests = 130 tokens, past 100%.
    for _ in 0..10 {
        assert_eq!(client.chat(KEY_A).await.status(), 200);
    }
    let alerts = webhook.wait_for(3).await;
    let percents: Vec<u64> = alerts
        .iter()
        .map(|a| a["percent"].as_u64().unwrap())
        .collect();
    assert_eq!(percents, [50, 80, 100], "{alerts:?}");
    for a in &alerts {
        assert_eq!(a["kind"], "budget_threshold");
        assert_eq!(a["tenant"], "a");
        assert_eq!(a["unit"], "tokens");
        assert_eq!(a["budget"], 100);
        let spent = a["spent"].as_u64().unwrap();
        assert!(spent * 100 >= 100 * a["percent"].as_u64().unwrap());
        assert_eq!(spent % 13, 0, "spent counts whole requests: {spent}");
    }
    gw.shutdown();
    gw.wait().await.unwrap();
    // After a restart the crossed thresholds are known from the ledger.
    let gw = start(&toml).await;
    let client = Client::new(&gw);
    assert_eq!(client.chat(KEY_A).await.status(), 200);
    // Alerts are delivered within milliseconds on loopback; give a repeat
    // ample time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(webhook.bodies().len(), 3, "no repeated alerts");
    gw.shutdown();
    gw.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spend_rate_breaker_pauses_a_runaway_tenant_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let upstream = ScriptedUpstream::start().await;
    let webhook = WebhookRecorder::start().await;
    let toml = config(
        &db,
        &upstream,
        &format!(
            "[limits]\nalert_webhook_url = \"{}\"\n[limits.spend_rate]\nfactor = 10\nfloor_tokens_per_minute = 100\ncooldown_secs = 120",
            webhook.url()
        ),
    );
    let gw = start(&toml).await;
    let client = Client::new(&gw);
    let mut admitted = 0;
    let mut refused = None;
    for _ in 0..30 {
        let resp = client.chat(KEY_A).await;
        if resp.status() != 200 {
            let retry = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap();
            refused = Some((code(resp).await, retry));
            break;
        }
        admitted += 1;
    }
    let ((status, code_name), retry) = refused.expect("the breaker trips");
    assert_eq!((status, code_name.as_str()), (429, "spend_rate_exceeded"));
    assert!((100..=120).contains(&retry), "Retry-After {retry}");
    // 13 tokens a request: the 8th crosses 100 in the minute (unless the
    // minute turned mid-run, which only delays the trip).
    assert!((8..=16).contains(&admitted), "admitted {admitted}");
    // The other tenant is not affected.
    assert_eq!(client.chat(KEY_B).await.status(), 200);
    let alerts = webhook.wait_for(1).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "spend_rate_tripped");
    assert_eq!(alerts[0]["tenant"], "a");
    assert!(alerts[0]["tokens_this_minute"].as_u64().unwrap() > 100);
    gw.shutdown();
    gw.wait().await.unwrap();
}
