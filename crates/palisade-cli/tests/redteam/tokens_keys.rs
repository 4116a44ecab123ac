//! Capability tokens, canonical arguments, policy signatures and keys: issue 12, items
//! 9 to 13, tried as an attacker would.
//!
//! - 9: one tenant parking tool calls evicted another's; oversized calls passed on every
//!   path but streams; conversation counters were one global map.
//! - 10: any agent key could mint a token through the guard API and collect the tenant's
//!   tool credential from `/v1/tools/verify`.
//! - 11: `100000000000000000000` and `…001` hashed alike; duplicate names collapsed.
//! - 12: a signature covered the bytes only: the shadow file or an older signed policy
//!   replaced the active one.
//! - 13: `keys generate >> palisade.toml` wrote the key into the config; `:` in tenant
//!   names made Redis keys collide; `rediss://` passed config check.
//!
//! These tests run a policy with a tool catalogue (the built-in one has none, so nothing
//! waits for confirmation), except where a test says otherwise.

use std::time::Duration;

use palisade_config::{Config, Sources};
use palisade_gateway::{Gateway, RunningGateway};
use palisade_testkit::{RedisServer, ScriptedUpstream};
use serde_json::{json, Value};

use crate::harness::Client;

const POLICY: &str = r#"
default_tier = "agent"
label = "red team tools"

[tools.search_docs]
effect = "read_only"

[tools.delete_file]
effect = "irreversible"

[tiers.agent.tool]
allow = ["search_docs", "delete_file"]
max_rounds = 1
"#;

fn sha(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// `[[auth.keys]]` entries: (key, tenant, extra attribute line).
fn keys(entries: &[(&str, &str, &str)]) -> String {
    entries
        .iter()
        .map(|(key, tenant, extra)| {
            format!(
                "[[auth.keys]]\nname = \"{key}\"\ntenant = \"{tenant}\"\nsha256 = \"{}\"\n{extra}\n",
                sha(key)
            )
        })
        .collect()
}

/// A gateway in front of `upstream` with the tool policy, `extra` config and an
/// environment (tool credentials).
struct Gw {
    client: Client,
    _dir: tempfile::TempDir,
}

impl Gw {
    async fn start(upstream: &ScriptedUpstream, extra: &str, env: &[(&str, &str)]) -> Gw {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, POLICY).expect("policy written");
        let toml = format!(
            "[backends.main]\nbase_url = \"{}\"\n[policy]\nfile = \"{}\"\n{extra}",
            upstream.base_url(),
            policy.display()
        );
        let config = Config::load(&Sources {
            toml: Some(&toml),
            ..Sources::default()
        })
        .expect("config loads");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let gw: RunningGateway = Gateway::with_env(config, move |var| {
            env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
        })
        .expect("gateway builds")
        .start(Some("127.0.0.1:0".parse().expect("addr")))
        .await
        .expect("gateway starts");
        Gw {
            client: Client::new(gw),
            _dir: dir,
        }
    }

    async fn post(&self, path: &str, key: &str, body: &Value, extra: &[(&str, &str)]) -> Value {
        let auth = format!("Bearer {key}");
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        self.client.post(path, body, &headers).await.1
    }

    /// The guard API's verdict on `calls` (name, raw arguments).
    async fn guard(&self, key: &str, calls: &[(&str, &str)]) -> Vec<Value> {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| {
                json!({"id": format!("c{i}"), "type": "function",
                       "function": {"name": name, "arguments": args}})
            })
            .collect();
        let body = json!({"model": "agent", "tool_calls": calls});
        let verdict = self.post("/v1/guard/tool_calls", key, &body, &[]).await;
        verdict["tool_calls"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("no verdict: {verdict}"))
    }

    /// A proxied chat in which the model emits `calls` (a `CALLS` script).
    async fn chat_calls(&self, key: &str, calls: Value, headers: &[(&str, &str)]) -> Value {
        let body = json!({"model": "tool-calls", "messages": [
            {"role": "user", "content": format!("CALLS {calls}")}]});
        self.post("/v1/chat/completions", key, &body, headers).await
    }

    async fn wait_for_redis(&self) {
        for _ in 0..100 {
            let ready: Value = self
                .client
                .http
                .get(self.client.url("/readyz"))
                .send()
                .await
                .expect("readyz answers")
                .json()
                .await
                .unwrap_or(Value::Null);
            if ready["advisories"]["limits_backend"] == true
                || ready["checks"]["limits_backend"] == true
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway never connected to Redis");
    }
}

fn report(body: &Value) -> Vec<Value> {
    body["palisade"]["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no tool report: {body}"))
}

/// The claims of a `pcap1.` token, decoded (not verified).
fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).expect("claims part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

// ---------------------------------------------------------------------------
// 9: the held-call store
// ---------------------------------------------------------------------------

const HOLD_LIMITS: &str =
    "[tools]\nmax_pending = 8\nmax_pending_per_tenant = 3\nmax_conversations_per_tenant = 4\n";

/// The victim's call waits for confirmation; the attacker parks 40 irreversible calls;
/// the victim's approver still finds and releases the victim's call. Then the store is
/// full of other tenants' calls and a new tenant's call is withheld, never anyone's
/// evicted.
async fn parking_cannot_evict_another_tenants_call(gw: &Gw, settle: Duration) {
    let parked = gw
        .guard(
            "sk-victim",
            &[("delete_file", r#"{"path": "/srv/victim"}"#)],
        )
        .await;
    assert_eq!(parked[0]["status"], "pending_confirmation", "{parked:?}");
    let id = parked[0]["confirmation_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(settle).await;
    for i in 0..40 {
        let path = format!("{{\"path\": \"/tmp/{i}\"}}");
        let v = gw.guard("sk-attacker", &[("delete_file", &path)]).await;
        assert_eq!(v[0]["status"], "pending_confirmation", "{v:?}");
    }
    tokio::time::sleep(settle).await;
    let released = gw
        .post(
            "/v1/tools/confirm",
            "sk-victim-approver",
            &json!({"confirmation_id": id}),
            &[],
        )
        .await;
    assert_eq!(released["status"], "released", "{released}");
    assert!(released["capability"]
        .as_str()
        .is_some_and(|t| t.starts_with("pcap1.")));
}

fn hold_keys() -> String {
    keys(&[
        ("sk-victim", "victim", ""),
        ("sk-victim-approver", "victim", "approver = true"),
        ("sk-attacker", "attacker", ""),
        ("sk-third", "third", ""),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_parking_calls_cannot_evict_another_tenants() {
    let upstream = ScriptedUpstream::start().await;
    let gw = Gw::start(&upstream, &format!("{HOLD_LIMITS}{}", hold_keys()), &[]).await;
    parking_cannot_evict_another_tenants_call(&gw, Duration::ZERO).await;
    // 1 victim call was taken; the attacker holds 3 (its cap). Fill up with a third
    // tenant: past max_pending (8) its call is withheld, nobody else's dropped.
    let victim = gw
        .guard("sk-victim", &[("delete_file", r#"{"path": "/a"}"#)])
        .await;
    assert_eq!(victim[0]["status"], "pending_confirmation");
    for i in 0..3 {
        let v = gw
            .guard("sk-third", &[("delete_file", &format!("{{\"n\": {i}}}"))])
            .await;
        assert_eq!(v[0]["status"], "pending_confirmation", "{v:?}");
    }
    // victim 1 + attacker 3 + third 3 = 7; one more fits, then the store is full.
    let more = gw
        .guard("sk-victim", &[("delete_file", r#"{"path": "/b"}"#)])
        .await;
    assert_eq!(more[0]["status"], "pending_confirmation");
    let full = gw
        .guard("sk-victim", &[("delete_file", r#"{"path": "/c"}"#)])
        .await;
    assert_eq!(full[0]["status"], "withheld", "{full:?}");
    assert!(full[0]["detail"]
        .as_str()
        .is_some_and(|d| d.contains("max_pending")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_parking_calls_in_redis_cannot_evict_another_tenants() {
    let redis = RedisServer::start();
    let upstream = ScriptedUpstream::start().await;
    let extra = format!(
        "{HOLD_LIMITS}[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout_ms = 500\n{}",
        redis.url(),
        hold_keys()
    );
    let gw = Gw::start(&upstream, &extra, &[]).await;
    gw.wait_for_redis().await;
    // Writes to Redis are in the background: let each batch land.
    parking_cannot_evict_another_tenants_call(&gw, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_calls_are_withheld_on_every_path() {
    let upstream = ScriptedUpstream::start().await;
    let gw = Gw::start(&upstream, "[tools]\nmax_call_bytes = 1024\n", &[]).await;
    let big = json!({"q": "x".repeat(2_000)}).to_string();
    // The guard API.
    let v = gw.guard("any", &[("search_docs", &big)]).await;
    assert_eq!(v[0]["status"], "withheld", "{v:?}");
    assert!(v[0]["detail"]
        .as_str()
        .is_some_and(|d| d.contains("max_call_bytes")));
    // A whole (not streamed) response.
    let body = gw
        .chat_calls(
            "any",
            json!([{"name": "search_docs", "arguments": big}]),
            &[],
        )
        .await;
    assert_eq!(report(&body)[0]["status"], "withheld", "{body}");
    assert!(body["choices"][0]["message"]["tool_calls"].is_null());
    // Under the bound, the same call is released.
    let small = json!({"q": "x".repeat(100)}).to_string();
    assert_eq!(
        gw.guard("any", &[("search_docs", &small)]).await[0]["status"],
        "released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_conversations_of_one_tenant_do_not_reset_another_tenants_loop_caps() {
    let upstream = ScriptedUpstream::start().await;
    let extra = format!(
        "{HOLD_LIMITS}{}",
        keys(&[("sk-victim", "victim", ""), ("sk-attacker", "attacker", "")])
    );
    let gw = Gw::start(&upstream, &extra, &[]).await;
    let call = json!([{"name": "search_docs", "arguments": {"q": "x"}}]);
    let conv = [("x-palisade-conversation", "victim-loop")];
    let first = gw.chat_calls("sk-victim", call.clone(), &conv).await;
    assert_eq!(report(&first)[0]["status"], "released", "{first}");
    let second = gw.chat_calls("sk-victim", call.clone(), &conv).await;
    assert_eq!(report(&second)[0]["reasons"], json!(["tool_round_limit"]));
    for i in 0..30 {
        let header = format!("flood-{i}");
        gw.chat_calls(
            "sk-attacker",
            call.clone(),
            &[("x-palisade-conversation", &header)],
        )
        .await;
    }
    let third = gw.chat_calls("sk-victim", call, &conv).await;
    assert_eq!(
        report(&third)[0]["reasons"],
        json!(["tool_round_limit"]),
        "the victim's loop count survived the flood: {third}"
    );
}

// ---------------------------------------------------------------------------
// 10: who gets tool credentials; telling guard tokens apart
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keys_minting_through_the_guard_api_get_no_credential() {
    let upstream = ScriptedUpstream::start().await;
    let extra = format!(
        "{}[tenants.acme]\ntool_credentials_env = {{ search_docs = \"ACME_SEARCH_TOKEN\" }}\n",
        keys(&[
            ("sk-agent", "acme", ""),
            ("sk-executor", "acme", "executor = true"),
        ])
    );
    let gw = Gw::start(
        &upstream,
        &extra,
        &[("ACME_SEARCH_TOKEN", "search-secret-acme-0123")],
    )
    .await;
    let args = r#"{"q": "quarterly numbers"}"#;
    // The attack: no messages (no taint), tier chosen by `model`, token minted.
    let v = gw.guard("sk-agent", &[("search_docs", args)]).await;
    assert_eq!(v[0]["status"], "released", "{v:?}");
    let token = v[0]["capability"].as_str().unwrap().to_owned();
    assert_eq!(claims(&token)["src"], "guard");
    let verify = json!({"token": token, "tool": "search_docs", "arguments": args});
    let by_agent = gw.post("/v1/tools/verify", "sk-agent", &verify, &[]).await;
    assert_eq!(by_agent["valid"], true, "{by_agent}");
    assert_eq!(by_agent["source"], "guard");
    assert!(by_agent.get("credential").is_none(), "{by_agent}");
    assert_eq!(by_agent["credential_withheld"], "not_executor");
    assert!(!by_agent.to_string().contains("search-secret-acme-0123"));
    // The executor gets it, and is told where the token came from.
    let by_executor = gw
        .post("/v1/tools/verify", "sk-executor", &verify, &[])
        .await;
    assert_eq!(by_executor["credential"], "search-secret-acme-0123");
    assert_eq!(by_executor["source"], "guard");
    assert_eq!(by_executor["claims"]["src"], "guard");
    // A token from a proxied response says `proxy` and carries no `src` claim.
    let body = gw
        .chat_calls(
            "sk-agent",
            json!([{"name": "search_docs", "arguments": args}]),
            &[],
        )
        .await;
    let proxied = report(&body)[0]["capability"].as_str().unwrap().to_owned();
    assert!(claims(&proxied).get("src").is_none());
    let verify = json!({"token": proxied, "tool": "search_docs", "arguments": args});
    let v = gw
        .post("/v1/tools/verify", "sk-executor", &verify, &[])
        .await;
    assert_eq!(
        (v["valid"].as_bool(), v["source"].as_str()),
        (Some(true), Some("proxy"))
    );
}

// ---------------------------------------------------------------------------
// 11: canonical arguments
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_one_big_number_does_not_cover_its_neighbour() {
    let upstream = ScriptedUpstream::start().await;
    let gw = Gw::start(&upstream, "", &[]).await;
    let signed = r#"{"q": "pay", "amount": 100000000000000000000}"#;
    let body = gw
        .chat_calls(
            "any",
            json!([{"name": "search_docs", "arguments": signed}]),
            &[],
        )
        .await;
    let entry = &report(&body)[0];
    assert_eq!(entry["status"], "released", "{body}");
    let token = entry["capability"].as_str().unwrap();
    let verify =
        |arguments: Value| json!({"token": token, "tool": "search_docs", "arguments": arguments});
    // The same call, as a string and as the raw object: valid.
    let same = gw
        .post("/v1/tools/verify", "any", &verify(json!(signed)), &[])
        .await;
    assert_eq!(same["valid"], true, "{same}");
    let neighbour = r#"{"q": "pay", "amount": 100000000000000000001}"#;
    let v = gw
        .post("/v1/tools/verify", "any", &verify(json!(neighbour)), &[])
        .await;
    assert_eq!(v["code"], "token_wrong_arguments", "{v}");
    // Sent as an object, the body's number is not rounded before hashing either.
    let raw = format!(r#"{{"token": "{token}", "tool": "search_docs", "arguments": {neighbour}}}"#);
    let resp = gw
        .client
        .http
        .post(gw.client.url("/v1/tools/verify"))
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "token_wrong_arguments", "{v}");
    assert_ne!(
        palisade_tools::arguments_sha256(signed).unwrap(),
        palisade_tools::arguments_sha256(neighbour).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_naming_a_member_twice_are_never_released() {
    let upstream = ScriptedUpstream::start().await;
    let gw = Gw::start(&upstream, "", &[]).await;
    // A schema check keeps the last `path`, an executor in another language may use the
    // first: one hash must not cover both readings.
    let twice = r#"{"q": "/srv/public", "q": "/etc/shadow"}"#;
    let body = gw
        .chat_calls(
            "any",
            json!([{"name": "search_docs", "arguments": twice}]),
            &[],
        )
        .await;
    assert_eq!(report(&body)[0]["status"], "withheld", "{body}");
    assert_eq!(
        report(&body)[0]["reasons"],
        json!(["tool_arguments_invalid"])
    );
    let v = gw.guard("any", &[("search_docs", twice)]).await;
    assert_eq!(v[0]["status"], "withheld", "{v:?}");
    assert!(!body.to_string().contains("/etc/shadow"));
}

// ---------------------------------------------------------------------------
// 12: policy signatures
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_or_shadow_signed_policy_cannot_replace_the_active_one() {
    use palisade_policy::signature::{public_key_of, sign_document, Role};
    const SEED: &str = "5265642d7465616d207369676e696e67207365656420666f7220706f6c696379";
    let public = public_key_of(SEED).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (active, shadow) = (
        dir.path().join("active.toml"),
        dir.path().join("shadow.toml"),
    );
    let labelled = |label: &str| {
        palisade_policy::BUILTIN_TOML.replace(
            "label = \"builtin default\"",
            &format!("label = \"{label}\""),
        )
    };
    let write = |path: &std::path::Path, label: &str, serial: u64, role: Role| {
        let text = labelled(label);
        std::fs::write(path, &text).unwrap();
        let sig = sign_document(SEED, text.as_bytes(), serial, role).unwrap();
        std::fs::write(format!("{}.sig", path.display()), sig).unwrap();
    };
    write(&active, "v5", 5, Role::Active);
    write(&shadow, "candidate", 9, Role::Shadow);
    let upstream = ScriptedUpstream::start().await;
    let config = |min_serial: u64| {
        format!(
            "[backends.main]\nbase_url = \"{}\"\n{}[policy]\nfile = \"{}\"\nshadow_file = \"{}\"\nreload_interval_ms = 50\ntrusted_keys = [\"{public}\"]\nmin_serial = {min_serial}\n",
            upstream.base_url(),
            keys(&[("sk-ops", "ops", "admin = true")]),
            active.display(),
            shadow.display()
        )
    };
    let start = |toml: String| async move {
        let config = Config::load(&Sources {
            toml: Some(&toml),
            ..Sources::default()
        })
        .map_err(|e| e.to_string())?;
        Gateway::new(config)
            .map_err(|e| e.to_string())?
            .start(Some("127.0.0.1:0".parse().unwrap()))
            .await
            .map_err(|e| e.to_string())
    };
    // A replica told the fleet runs serial 6 or later does not start on serial 5.
    let Err(err) = start(config(6)).await else {
        panic!("a serial below policy.min_serial started");
    };
    assert!(err.contains("serial 5"), "{err}");
    let client = Client::new(start(config(0)).await.expect("starts"));
    let label = || async {
        let v: Value = client
            .http
            .get(client.url("/admin/policy"))
            .bearer_auth("sk-ops")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["active"]["label"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(label().await, "v5");

    // The attack: the signed shadow candidate copied over the active file.
    std::fs::copy(&shadow, &active).unwrap();
    std::fs::copy(
        format!("{}.sig", shadow.display()),
        format!("{}.sig", active.display()),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(label().await, "v5", "a shadow-signed file is not enforced");
    // An older signed active policy (serial 3) copied in.
    write(&active, "v3", 3, Role::Active);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(label().await, "v5", "an older serial is not reinstated");
    // A newer one is installed.
    write(&active, "v6", 6, Role::Active);
    let mut now = String::new();
    for _ in 0..100 {
        now = label().await;
        if now == "v6" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(now, "v6");
}

// ---------------------------------------------------------------------------
// 13: keys and stores
// ---------------------------------------------------------------------------

fn palisade(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .env_remove("PALISADE_CONFIG")
        .env_remove("PALISADE_UPSTREAM")
        .output()
        .expect("palisade runs")
}

#[test]
fn keys_generate_appended_to_the_config_leaves_no_key_in_it() {
    let out = palisade(&["keys", "generate", "--tenant", "acme", "--executor"]);
    assert!(out.status.success());
    let config = String::from_utf8_lossy(&out.stdout);
    let shown = String::from_utf8_lossy(&out.stderr);
    let key = shown
        .lines()
        .find(|l| l.starts_with("pk-"))
        .expect("the key, on standard error");
    assert!(
        !config.contains(key),
        "the key landed in the config: {config}"
    );
    assert!(!config.contains("pk-"), "{config}");
    assert!(config.contains("executor = true"), "{config}");
    // Appended to a config, it loads (the entry is all there is on stdout).
    let loaded: Config = Config::load(&Sources {
        toml: Some(&config),
        ..Sources::default()
    })
    .expect("the appended entry is valid config");
    assert!(loaded.auth.keys[0].executor);

    // --key-file: a new file only its owner can read, never overwritten.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.key");
    let file_s = file.to_str().unwrap();
    let out = palisade(&["keys", "generate", "--tenant", "acme", "--key-file", file_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = std::fs::read_to_string(&file).unwrap();
    assert!(key.starts_with("pk-"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(key.trim()));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(key.trim()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let again = palisade(&["keys", "generate", "--tenant", "acme", "--key-file", file_s]);
    assert!(!again.status.success(), "never overwrites a key file");
    assert!(
        again.stdout.is_empty(),
        "no entry for a key that was not stored"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), key);
}

#[test]
fn tls_store_urls_are_refused_at_config_check_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, key) in [
        (
            "[limits]\nbackend = \"redis\"\nredis_url = \"rediss://cache.internal:6380/0\"\n",
            "limits.redis_url",
        ),
        (
            "[ledger]\nurl = \"postgres://palisade@db/palisade?sslmode=require\"\n",
            "ledger.url",
        ),
        (
            "[policy]\naudit_url = \"postgresql://p@db/audit?sslmode=verify-full\"\n",
            "policy.audit_url",
        ),
    ] {
        let file = dir.path().join("palisade.toml");
        std::fs::write(&file, toml).unwrap();
        let out = palisade(&["config", "check", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml} passed config check");
        assert!(err.contains(key), "{err}");
        assert!(err.contains("TLS"), "{err}");
    }
}

/// Tenant `a:b` in conversation `c`, tenant `a` in conversation `b:c`: their Redis
/// counters used to be one key, so `a`'s loop stopped `a:b`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_names_with_colons_do_not_share_redis_counters() {
    let redis = RedisServer::start();
    let upstream = ScriptedUpstream::start().await;
    let extra = format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout_ms = 500\n{}",
        redis.url(),
        keys(&[("sk-a", "a", ""), ("sk-ab", "a:b", "")])
    );
    let gw = Gw::start(&upstream, &extra, &[]).await;
    gw.wait_for_redis().await;
    let call = json!([{"name": "search_docs", "arguments": {"q": "x"}}]);
    for _ in 0..3 {
        gw.chat_calls("sk-a", call.clone(), &[("x-palisade-conversation", "b:c")])
            .await;
        // Counters reach Redis in the background.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let stopped = gw
        .chat_calls("sk-a", call.clone(), &[("x-palisade-conversation", "b:c")])
        .await;
    assert_eq!(report(&stopped)[0]["reasons"], json!(["tool_round_limit"]));
    let other = gw
        .chat_calls("sk-ab", call, &[("x-palisade-conversation", "c")])
        .await;
    assert_eq!(
        report(&other)[0]["status"],
        "released",
        "another tenant's loop must not count: {other}"
    );
}
