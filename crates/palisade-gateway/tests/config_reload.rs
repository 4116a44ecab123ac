//! Config hot reload through a running gateway: the config file is edited
//! on disk (and reloaded by polling or `POST /admin/config/reload`), with a
//! real scripted upstream on loopback. Limits change without a restart,
//! counters survive edits, and a bad or restart-only edit keeps the running
//! config and says why.

mod support;

use std::time::Duration;

use palisade_gateway::{ReloadOutcome, RunningGateway};
use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};
use support::{key_hash, reloadable as start};

const KEY_A: &str = "sk-tenant-a-0123456789abcdef";
const KEY_B: &str = "sk-tenant-b-0123456789abcdef";
const KEY_OPS: &str = "sk-operator-0123456789abcdef";

fn base(upstream: &ScriptedUpstream, poll_ms: u64) -> String {
    format!(
        "[[auth.keys]]\nname = \"a\"\ntenant = \"a\"\nsha256 = \"{}\"\n\
         [[auth.keys]]\nname = \"b\"\ntenant = \"b\"\nsha256 = \"{}\"\n\
         [[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{}\"\nadmin = true\n\
         [reload]\nconfig_poll_ms = {poll_ms}\n\
         [backends.main]\nbase_url = \"{}\"\n",
        key_hash(KEY_A),
        key_hash(KEY_B),
        key_hash(KEY_OPS),
        upstream.base_url()
    )
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(gw: &RunningGateway) -> Self {
        Self {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            base: format!("http://{}", gw.local_addr()),
        }
    }

    async fn chat(&self, key: &str) -> (u16, String) {
        let resp = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(key)
            .json(&json!({"model": "m", "max_tokens": 5,
                          "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        (
            status,
            body["error"]["message"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// Requests admitted before the first refusal (at most `cap`).
    async fn admitted(&self, key: &str, cap: usize) -> usize {
        for n in 0..cap {
            if self.chat(key).await.0 != 200 {
                return n;
            }
        }
        cap
    }

    async fn admin_config(&self) -> Value {
        self.http
            .get(format!("{}/admin/config", self.base))
            .bearer_auth(KEY_OPS)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn reload(&self) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/admin/config/reload", self.base))
            .bearer_auth(KEY_OPS)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn metric(&self, line: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_rate_applies_without_restart_and_counters_survive_other_edits() {
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.toml");
    let base = base(&upstream, 100);
    let limits =
        |a: &str, b: &str| format!("{base}[limits.tenants.a]\n{a}\n[limits.tenants.b]\n{b}\n");
    let rate = "requests_per_minute = 60\nburst = 5";
    std::fs::write(&path, limits(rate, rate)).unwrap();
    let gw = start(&path).await;
    let client = Client::new(&gw);
    let first_hash = client.admin_config().await["config"]["hash"].clone();
    assert!(first_hash.as_str().unwrap().starts_with("sha256:"));

    // Tenant a spends its burst.
    assert_eq!(client.admitted(KEY_A, 10).await, 5);
    // An edit elsewhere (a comment, tenant b's in-flight cap) is applied by
    // polling and does not refill a's bucket.
    std::fs::write(
        &path,
        limits(
            rate,
            &format!("{rate}\n# edited\nmax_in_flight_per_key = 8"),
        ),
    )
    .unwrap();
    let mut applied = false;
    for _ in 0..100 {
        let status = client.admin_config().await;
        if status["config"]["hash"] != first_hash {
            assert_eq!(status["config"]["last_result"], "applied", "{status}");
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(applied, "the poller never applied the edit");
    let (status, message) = client.chat(KEY_A).await;
    assert_eq!(status, 429, "a's counters were reset by an unrelated edit");
    assert!(message.contains("60 requests per minute"), "{message}");

    // Tenant b used one of five; its rate is then lowered to 1/min, burst 2:
    // the fifth it had used carries over, so one more fits, not four.
    assert_eq!(client.chat(KEY_B).await.0, 200);
    std::fs::write(&path, limits(rate, "requests_per_minute = 1\nburst = 2")).unwrap();
    assert_eq!(gw.reload_config().await, ReloadOutcome::Applied);
    assert_eq!(client.admitted(KEY_B, 5).await, 1);
    let (status, message) = client.chat(KEY_B).await;
    assert_eq!(status, 429);
    assert!(message.contains("1 requests per minute"), "{message}");
    assert!(
        client
            .metric("palisade_config_reload_total{result=\"applied\"}")
            .await
            >= 2
    );
    gw.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_or_restart_only_edit_keeps_the_running_config_and_says_why() {
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.toml");
    // Polling off: every reload here is the endpoint's.
    let base = base(&upstream, 0);
    let good = format!("{base}[limits.tenants.a]\nrequests_per_minute = 60\nburst = 2\n");
    std::fs::write(&path, &good).unwrap();
    let gw = start(&path).await;
    let client = Client::new(&gw);
    let hash = client.admin_config().await["config"]["hash"].clone();
    let invalid_before = client
        .metric("palisade_config_reload_total{result=\"invalid\"}")
        .await;

    // A value that does not validate: refused, named, counted.
    std::fs::write(
        &path,
        format!("{base}[limits.tenants.a]\nrequests_per_minute = 60\nburst = 0\n"),
    )
    .unwrap();
    let (status, body) = client.reload().await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "config_reload_refused");
    let shown = client.admin_config().await;
    assert_eq!(shown["config"]["hash"], hash, "the running config stays");
    assert_eq!(shown["config"]["last_result"], "invalid");
    let error = shown["config"]["last_error"].as_str().unwrap();
    assert!(error.contains("burst"), "{error}");
    assert!(
        client
            .metric("palisade_config_reload_total{result=\"invalid\"}")
            .await
            > invalid_before
    );
    // Not TOML at all: the same.
    std::fs::write(&path, "[limits\nrequests_per_minute = ").unwrap();
    assert_eq!(client.reload().await.0, 422);

    // A restart-only section (the listener) edited beside a hot one: the
    // whole edit is refused, the hot part too.
    std::fs::write(
        &path,
        format!(
            "{base}[server]\nlisten = \"127.0.0.1:9\"\n[limits.tenants.a]\nrequests_per_minute = 6000\nburst = 100\n"
        ),
    )
    .unwrap();
    assert_eq!(
        gw.reload_config().await,
        ReloadOutcome::RestartRequired(vec!["server".to_owned()])
    );
    let shown = client.admin_config().await;
    assert_eq!(shown["config"]["last_result"], "restart_required");
    assert!(shown["config"]["last_error"]
        .as_str()
        .unwrap()
        .contains("server"));
    // Still the old rate (burst 2), and still serving.
    assert_eq!(client.admitted(KEY_A, 10).await, 2);
    // Putting the running file back is `unchanged`.
    std::fs::write(&path, &good).unwrap();
    assert_eq!(gw.reload_config().await, ReloadOutcome::Unchanged);
    gw.shutdown();
}
