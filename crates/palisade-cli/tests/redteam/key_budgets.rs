//! Per-key budgets as a hostile tenant meets them, against the real binary
//! (`palisade serve` with a SQLite ledger) and `palisade keys`:
//!
//! - a flood of concurrent large-`max_tokens` requests on a nearly spent
//!   key: every request reserves its worst case before it is sent, so the
//!   key's spend ends within its cap (the upstream used no more than was
//!   reserved: the overshoot bound is zero) and the refused requests say
//!   `key_budget_exceeded`;
//! - rotating the key, or revoking it and creating one under the same name,
//!   is no way to a fresh budget: a budget belongs to the tenant's key name
//!   for its period (the ledger's record of the name seeds it);
//! - a key that is not an admin key — a config key of the tenant, or the
//!   tenant's own runtime key — cannot raise its own budget (403; only
//!   admin keys manage keys, as for every other key change);
//! - the CLI round trip: `keys create|update --max-budget-usd --max-tokens
//!   --budget-period --rpm --tpm`, `keys list --json`, and a hostile value
//!   refused with `invalid_key_budget`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};

const ADMIN: &str = "sk-redteam-admin";
const PLAIN: &str = "sk-redteam-plain";
/// The key's token cap, and what one request of the flood reserves at least
/// (`max_tokens` alone).
const CAP: u64 = 400;
const FLOOD_MAX_TOKENS: u64 = 120;
const FLOOD: usize = 40;

fn sha(key: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct Served {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Served {
    async fn start(dir: &std::path::Path, upstream: &ScriptedUpstream) -> Self {
        let db = dir.join("palisade.db");
        let config = dir.join("palisade.toml");
        std::fs::write(
            &config,
            format!(
                "[ledger]\nurl = \"sqlite:{db}\"\n\
                 [ledger.prices.default]\ninput_usd_per_mtok = 1000.0\noutput_usd_per_mtok = 2000.0\n\
                 [auth.runtime]\nenabled = true\nrefresh_ms = 200\n\
                 [[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{}\"\nadmin = true\n\
                 [[auth.keys]]\nname = \"plain\"\ntenant = \"acme\"\nsha256 = \"{}\"\n\
                 [backends.main]\nbase_url = \"{}\"\n",
                sha(ADMIN),
                sha(PLAIN),
                upstream.base_url(),
                db = db.display(),
            ),
        )
        .expect("config written");
        let port = free_port();
        let log = std::fs::File::create(dir.join("palisade.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--config", &config.display().to_string()])
            .env_remove("PALISADE_CONFIG")
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("palisade starts");
        let served = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = served
                .http
                .get(format!("{}/readyz", served.base))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return served;
            }
            assert!(Instant::now() < deadline, "palisade did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn send(&self, method: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "PATCH" => self.http.patch(url).json(&body),
            _ => self.http.post(url).json(&body),
        };
        let resp = req.bearer_auth(key).send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn chat(&self, key: &str, max_tokens: u64) -> (u16, Option<String>) {
        self.chat_with(key, max_tokens, "m").await
    }

    async fn chat_with(&self, key: &str, max_tokens: u64, model: &str) -> (u16, Option<String>) {
        let (status, body) = self
            .send(
                "POST",
                "/v1/chat/completions",
                key,
                json!({"model": model, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "a b c d e"}]}),
            )
            .await;
        (status, body["error"]["code"].as_str().map(str::to_owned))
    }

    /// `palisade keys ARGS` against this gateway: (success, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .arg("keys")
            .args(args)
            .env("PALISADE_URL", &self.base)
            .env("PALISADE_ADMIN_KEY", ADMIN)
            .env("NO_COLOR", "1")
            .output()
            .expect("palisade keys runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The key named `name` of `acme` as `keys list --json` shows it.
    fn listed(&self, name: &str) -> Value {
        let (ok, out, err) = self.cli(&["list", "--tenant", "acme", "--json"]);
        assert!(ok, "{err}");
        let list: Value = serde_json::from_str(&out).expect("keys list --json is JSON");
        list["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["name"] == name && k["status"] == "active")
            .cloned()
            .unwrap_or_else(|| panic!("no live key {name} in {list}"))
    }

    fn stop(self) {
        let mut child = self.child;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_flood_on_a_nearly_spent_key_stays_within_its_cap() {
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let served = Served::start(dir.path(), &upstream).await;
    let (ok, key, err) = served.cli(&[
        "create",
        "--tenant",
        "acme",
        "--name",
        "flood",
        "--max-tokens",
        &CAP.to_string(),
        "--budget-period",
        "daily",
    ]);
    assert!(ok, "{err}");
    // Nearly spend it: small requests (13 tokens each) until less than two
    // flood reservations fit.
    let mut warmup = 0;
    while served.listed("flood")["spend"]["spent_tokens"]
        .as_u64()
        .unwrap_or(0)
        < CAP - 2 * FLOOD_MAX_TOKENS
    {
        assert_eq!(served.chat(&key, 5).await.0, 200);
        warmup += 1;
        assert!(warmup < 40, "the warm-up never spent the key");
    }
    let before = served.listed("flood")["spend"]["spent_tokens"]
        .as_u64()
        .expect("spent tokens");

    // The flood: 40 concurrent requests, each allowed 120 tokens, to a
    // model that takes 1.5 s, so every reservation is held while the rest
    // of the flood arrives.
    let mut tasks = Vec::with_capacity(FLOOD);
    let served = std::sync::Arc::new(served);
    for _ in 0..FLOOD {
        let (served, key) = (served.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            served.chat_with(&key, FLOOD_MAX_TOKENS, "delay-1500").await
        }));
    }
    let mut admitted = 0u64;
    for task in tasks {
        match task.await.expect("task") {
            (200, _) => admitted += 1,
            (429, Some(code)) => assert_eq!(code, "key_budget_exceeded"),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let served = std::sync::Arc::into_inner(served).expect("tasks done");
    // Settlement follows the response by a moment: wait (bounded) until
    // nothing is held.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut listed = served.listed("flood");
    while listed["spend"]["reserved_tokens"] != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        listed = served.listed("flood");
    }
    let spend = &listed["spend"];
    // Every reservation is at least max_tokens, and only what fits the
    // remaining budget is admitted: at most (CAP - before) / 120 requests.
    assert!(
        admitted <= (CAP - before) / FLOOD_MAX_TOKENS,
        "admitted {admitted} with {before} of {CAP} spent"
    );
    assert!(admitted >= 1, "the last reservations that fit were refused");
    // The bound: spend ends within the cap (the upstream used less than it
    // was allowed, so the overshoot — use beyond reservations — is zero),
    // and nothing is left held once every request ended.
    let spent = spend["spent_tokens"].as_u64().expect("spent");
    assert!(spent <= CAP, "spent {spent} of {CAP}");
    assert_eq!(spent, before + admitted * 13, "{listed}");
    assert_eq!(spend["reserved_tokens"], 0, "{listed}");
    served.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_rotation_recreation_nor_a_tenant_key_resets_or_raises_a_budget() {
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let served = Served::start(dir.path(), &upstream).await;

    // CLI round trip: create with every budget flag, read back, update.
    let (ok, key, err) = served.cli(&[
        "create",
        "--tenant",
        "acme",
        "--name",
        "ci",
        "--max-budget-usd",
        "0.05",
        "--budget-period",
        "daily",
        "--rpm",
        "600",
        "--tpm",
        "100000",
    ]);
    assert!(ok, "{err}");
    let listed = served.listed("ci");
    let id = listed["id"].as_str().expect("id").to_owned();
    assert_eq!(
        listed["budget"],
        json!({"max_budget_usd": 0.05, "max_tokens": null, "budget_period": "daily",
               "requests_per_minute": 600, "tokens_per_minute": 100000}),
        "{listed}"
    );
    let (ok, table, _) = served.cli(&["list", "--tenant", "acme"]);
    assert!(
        ok && table.contains("$0.00/$0.05 daily 600rpm 100000tpm"),
        "{table}"
    );
    let (ok, _, err) = served.cli(&["update", &id, "--max-budget-usd", "-1"]);
    assert!(!ok && err.contains("invalid_key_budget"), "{err}");
    let (ok, _, err) = served.cli(&["update", &id, "--max-budget-usd", "NaN"]);
    assert!(!ok, "NaN accepted: {err}");
    let (ok, _, err) = served.cli(&["update", &id, "--clear", "rpm", "--clear", "tpm"]);
    assert!(ok, "{err}");
    let budget = served.listed("ci")["budget"].clone();
    assert_eq!(budget["requests_per_minute"], Value::Null, "{budget}");
    assert_eq!(budget["max_budget_usd"], 0.05, "{budget}");

    // Spend it ($0.018 a request; one is admitted only while its worst case,
    // about $0.035, still fits in $0.05).
    let mut admitted = 0u32;
    while served.chat(&key, 10).await.0 == 200 {
        admitted += 1;
        assert!(admitted < 10, "never refused");
    }
    assert_eq!(
        served.chat(&key, 10).await.1.as_deref(),
        Some("key_budget_exceeded")
    );

    // The tenant's config key, and the tenant's own runtime key, cannot
    // raise it: only admin keys manage keys.
    let raise = json!({"max_budget_usd": 1000.0});
    let path = format!("/admin/keys/{id}");
    for who in [PLAIN, key.as_str()] {
        let (status, body) = served.send("PATCH", &path, who, raise.clone()).await;
        assert_eq!(status, 403, "{body}");
    }
    assert_eq!(served.listed("ci")["budget"]["max_budget_usd"], 0.05);

    // Rotation keeps the spend with the key.
    let (ok, rotated, err) = served.cli(&["rotate", &id]);
    assert!(ok, "{err}");
    assert_eq!(
        served.chat(&rotated, 10).await.1.as_deref(),
        Some("key_budget_exceeded")
    );
    // Revoke and recreate under the same name, even with a new budget of
    // the same size: the name's spend this period carries over.
    let (ok, _, err) = served.cli(&["revoke", &id]);
    assert!(ok, "{err}");
    let (ok, again, err) = served.cli(&[
        "create",
        "--tenant",
        "acme",
        "--name",
        "ci",
        "--max-budget-usd",
        "0.05",
        "--budget-period",
        "daily",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        served.chat(&again, 10).await.1.as_deref(),
        Some("key_budget_exceeded"),
        "recreating the key handed out a fresh budget"
    );
    let spent = served.listed("ci")["spend"]["spent_usd"]
        .as_f64()
        .expect("spent");
    assert!(
        spent <= 0.05 && spent >= f64::from(admitted) * 0.018 - 1e-9 && admitted >= 1,
        "{admitted} admitted, {spent} spent"
    );
    served.stop();
    // Each refusal was audited with its reason code (gate `limits`).
    let log = std::fs::read_to_string(dir.path().join("palisade.log")).expect("log");
    let audited = log
        .lines()
        .filter(|l| l.contains("reason_code") && l.contains("key_budget_exceeded"))
        .count();
    assert!(audited >= 3, "{audited} refusals audited");
}
