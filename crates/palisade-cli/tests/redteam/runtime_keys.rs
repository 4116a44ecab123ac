//! Runtime keys (`/admin/keys`, `palisade keys create|rotate|revoke`) as an
//! attacker meets them, against the real binary with its logs captured:
//!
//! - a non-admin key (config or runtime) cannot list, create, rotate,
//!   revoke or escalate keys (403), even for its own tenant: admin keys are
//!   global, and only they manage keys;
//! - a revoked key and a key that never existed are answered identically
//!   (same status, same body but the request id), so a stolen key's holder
//!   cannot tell whether it was revoked; both are one hash-map miss;
//! - a rotated key's old secret stops at once without an overlap;
//! - a flood of concurrent creations for one tenant stops at
//!   `max_keys_per_tenant`;
//! - no issued secret appears in the gateway's logs, in the audit store or
//!   in `GET /admin/keys`, while every change is audited with who did it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_ledger::{Ledger, WriteOptions};
use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};

const ADMIN: &str = "sk-redteam-admin";
const PLAIN: &str = "sk-redteam-plain";
const CAP: usize = 5;

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

    async fn chat(&self, key: &str) -> (u16, Value) {
        self.send(
            "POST",
            "/v1/chat/completions",
            key,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
    }

    /// `palisade keys create` against this gateway: the key from stdout.
    fn cli_create(&self, tenant: &str, name: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["keys", "create", "--tenant", tenant, "--name", name])
            .env("PALISADE_URL", &self.base)
            .env("PALISADE_ADMIN_KEY", ADMIN)
            .output()
            .expect("palisade keys create runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }
}

fn without_request_id(mut v: Value) -> Value {
    if let Some(e) = v.get_mut("error").and_then(Value::as_object_mut) {
        e.remove("request_id");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_keys_resist_escalation_enumeration_floods_and_leaks() {
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("palisade.db");
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\nurl = \"sqlite:{db}\"\n[policy]\naudit_url = \"sqlite:{db}\"\n\
             [auth.runtime]\nenabled = true\nrefresh_ms = 200\nmax_keys_per_tenant = {CAP}\n\
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
    let log_path = dir.path().join("palisade.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--config", &config.display().to_string()])
        .args(["--log-format", "json"])
        .env_remove("PALISADE_CONFIG")
        .env("PALISADE_LOG", "debug")
        .stdout(Stdio::from(log.try_clone().expect("log handle")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("palisade starts");
    let served = Served {
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
        match served
            .http
            .get(format!("{}/readyz", served.base))
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => break,
            _ => {
                assert!(Instant::now() < deadline, "palisade did not become ready");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let mut secrets = Vec::new();

    // A runtime key made with the CLI, and a runtime admin key.
    let user = served.cli_create("acme", "agent");
    assert!(user.starts_with("pk-"), "{user}");
    assert_eq!(served.chat(&user).await.0, 200);
    secrets.push(user.clone());
    let (_, list) = served
        .send("GET", "/admin/keys?tenant=acme", ADMIN, Value::Null)
        .await;
    let user_id = list["keys"][0]["id"].as_str().expect("listed").to_owned();

    // Escalation: neither a non-admin config key nor a non-admin runtime
    // key manages keys, not even its own tenant's or its own.
    for key in [PLAIN, user.as_str()] {
        for (method, path, body) in [
            ("GET", "/admin/keys".to_owned(), Value::Null),
            (
                "POST",
                "/admin/keys".to_owned(),
                json!({"tenant": "acme", "name": "x", "admin": true}),
            ),
            ("POST", format!("/admin/keys/{user_id}/rotate"), json!({})),
            ("POST", format!("/admin/keys/{user_id}/revoke"), json!({})),
            (
                "PATCH",
                format!("/admin/keys/{user_id}"),
                json!({"admin": true}),
            ),
        ] {
            let (status, body) = served.send(method, &path, key, body).await;
            assert_eq!(status, 403, "{method} {path}: {body}");
            assert_eq!(body["error"]["code"], "permission_denied");
        }
    }
    assert_eq!(
        served.chat(&user).await.0,
        200,
        "the key was not rotated or revoked"
    );

    // Rotation without overlap: the old secret stops at once.
    let (status, rotated) = served
        .send(
            "POST",
            &format!("/admin/keys/{user_id}/rotate"),
            ADMIN,
            json!({"reason": "drill"}),
        )
        .await;
    assert_eq!(status, 200);
    let fresh = rotated["key"].as_str().expect("new secret").to_owned();
    secrets.push(fresh.clone());
    assert_eq!(served.chat(&user).await.0, 401);
    assert_eq!(served.chat(&fresh).await.0, 200);

    // A grant of a role is audited as one, not as a bare "update".
    let (status, body) = served
        .send(
            "PATCH",
            &format!("/admin/keys/{user_id}"),
            ADMIN,
            json!({"approver": true, "reason": "on call"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Enumeration: revoked and never-existed look the same.
    let (status, _) = served
        .send(
            "POST",
            &format!("/admin/keys/{user_id}/revoke"),
            ADMIN,
            json!({"reason": "leaked"}),
        )
        .await;
    assert_eq!(status, 200);
    let revoked = served.chat(&fresh).await;
    let unknown = served
        .chat("pk-0000000000000000000000000000000000000000000000000000000000000000")
        .await;
    assert_eq!(revoked.0, 401);
    assert_eq!(
        without_request_id(revoked.1),
        without_request_id(unknown.1),
        "a revoked key must not be told apart from an unknown one"
    );

    // A flood of creations for one tenant stops at the cap.
    let sends = (0..20).map(|i| {
        served.send(
            "POST",
            "/admin/keys",
            ADMIN,
            json!({"tenant": "flood", "name": format!("k{i}")}),
        )
    });
    let results = futures_util::future::join_all(sends).await;
    let created: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), CAP, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 403);
        assert_eq!(body["error"]["code"], "key_limit_reached");
    }
    secrets.extend(
        created
            .iter()
            .filter_map(|b| b["key"].as_str())
            .map(str::to_owned),
    );

    // No secret in the list.
    let (_, all) = served.send("GET", "/admin/keys", ADMIN, Value::Null).await;
    let listed = all.to_string();
    assert_eq!(all["keys"].as_array().map(Vec::len), Some(CAP + 1));
    for s in &secrets {
        assert!(!listed.contains(s.as_str()), "a secret is listed");
    }
    // Config keys are listed beside them, by label only (no hash).
    assert_eq!(
        all["config_keys"].as_array().map(Vec::len),
        Some(2),
        "{all}"
    );
    assert!(!listed.contains(&sha(PLAIN)) && !listed.contains(&sha(ADMIN)));
    let table = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["keys", "list"])
        .env("PALISADE_URL", &served.base)
        .env("PALISADE_ADMIN_KEY", ADMIN)
        .output()
        .expect("palisade keys list runs");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("(config)") && l.contains(" plain ")),
        "{table}"
    );
    for s in &secrets {
        assert!(!table.contains(s.as_str()), "a secret is listed");
    }

    // Stop, then read the logs and the audit store.
    let mut child = served.child;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let _ = child.wait();
    let logs = std::fs::read_to_string(&log_path).expect("log readable");
    assert!(
        logs.contains("key_revoke"),
        "the audit lines are in the log"
    );
    let ledger = Ledger::open(&format!("sqlite:{}", db.display()), WriteOptions::default())
        .await
        .expect("store opens");
    let mut audit = Vec::new();
    ledger
        .audit_export(&mut audit, 0, i64::MAX)
        .await
        .expect("audit export");
    let audit = String::from_utf8(audit).expect("utf-8");
    let admin_lines: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["gate"] == "admin")
        .collect();
    let actions: Vec<&str> = admin_lines
        .iter()
        .filter_map(|v| v["action"].as_str())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "key_create").count(),
        1 + CAP
    );
    assert!(actions.contains(&"key_rotate") && actions.contains(&"key_revoke"));
    let grant = admin_lines
        .iter()
        .find(|v| v["action"] == "key_update")
        .expect("the role grant is audited");
    assert_eq!(
        (&grant["approver"], &grant["admin"], &grant["changed"]),
        (&json!(true), &json!(false), &json!(["approver"])),
        "{grant}"
    );
    assert!(admin_lines
        .iter()
        .all(|v| v["actor_key"] == "ops" && v["policy_version"].is_string()));
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "a secret is in the logs");
        assert!(
            !audit.contains(s.as_str()),
            "a secret is in the audit store"
        );
    }
    ledger.close().await.expect("close");
}
