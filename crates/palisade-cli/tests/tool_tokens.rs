//! Capability tokens across a fleet: `palisade tools keygen` writes one key,
//! two `palisade` replicas sign with it, and a call released by one replica
//! verifies at the other and offline with `palisade tools verify`.

mod support;

use std::process::Command;

use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};
use support::{get_json, post_json, Palisade};

fn palisade(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .output()
        .expect("palisade runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_key_verify_each_others_tokens() {
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tool-signing.key");
    let out = palisade(&["tools", "keygen", key.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(public.len(), 64);
    // Refuses to overwrite a key.
    assert!(!palisade(&["tools", "keygen", key.to_str().unwrap()])
        .status
        .success());
    let shown = palisade(&["tools", "public-key", key.to_str().unwrap()]);
    assert_eq!(String::from_utf8(shown.stdout).unwrap().trim(), public);

    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[backends.main]\nbase_url = \"{}\"\n[tools]\nsigning_key_file = \"{}\"\n",
            upstream.base_url(),
            key.display()
        ),
    )
    .unwrap();
    let envs = [("PALISADE_LOG", "warn")];
    let a = Palisade::serve(&["--config", config.to_str().unwrap()], &envs);
    let b = Palisade::serve(&["--config", config.to_str().unwrap()], &envs);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // Both replicas publish the key that was generated.
    for r in [&a, &b] {
        let k = get_json(&http, &r.url("/v1/tools/public-key"), None).await;
        assert_eq!(k["public_key"], public.as_str());
    }

    // The built-in policy's tool gate: any declared tool, arguments checked.
    let args = r#"{"path": "/srv/report.pdf"}"#;
    let script = format!("CALLS [{{\"name\": \"read_file\", \"arguments\": {args}}}]");
    let request = json!({"model": "tool-calls", "messages": [{"role": "user", "content": script}],
                         "tools": [{"type": "function", "function": {"name": "read_file",
                                    "parameters": {"type": "object", "required": ["path"]}}}]});
    let body = post_json(&http, &a.url("/v1/chat/completions"), None, &request).await;
    let entry = &body["palisade"]["tool_calls"][0];
    assert_eq!(entry["status"], "released", "{body}");
    let token = entry["capability"].as_str().unwrap();
    let arguments = body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();

    // Replica B accepts replica A's token.
    let check = json!({"token": token, "tool": "read_file", "arguments": arguments});
    let verdict = post_json(&http, &b.url("/v1/tools/verify"), None, &check).await;
    assert_eq!(verdict["valid"], true, "{verdict}");

    // Offline: exit 0 for the call, 1 for a tampered one.
    let verify_offline = |arguments: &str| {
        palisade(&[
            "tools",
            "verify",
            token,
            "--public-key",
            &public,
            "--tool",
            "read_file",
            "--arguments",
            arguments,
        ])
    };
    let ok = verify_offline(arguments);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let claims: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(claims["tool"], "read_file");
    let tampered = verify_offline(r#"{"path": "/etc/shadow"}"#);
    assert_eq!(tampered.status.code(), Some(1));
    let why: Value = serde_json::from_slice(&tampered.stdout).unwrap();
    assert_eq!(why["code"], "token_wrong_arguments");
    a.terminate();
    b.terminate();
}

async fn wait_for_redis(client: &reqwest::Client, gw: &Palisade) {
    for _ in 0..100 {
        let body = get_json(client, &gw.url("/readyz"), None).await;
        if body["advisories"]["limits_backend"] == true {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("replica never connected to Redis");
}

/// With Redis, a call held at one replica is listed and released at another,
/// exactly once, and a single-use token is refused at every replica after its
/// first use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_at_one_replica_is_confirmed_at_another() {
    let redis = palisade_testkit::RedisServer::start();
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tool-signing.key");
    assert!(palisade(&["tools", "keygen", key.to_str().unwrap()])
        .status
        .success());
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "default_tier = \"agent\"\n[tools.delete_file]\neffect = \"irreversible\"\n[tiers.agent.tool]\nallow = [\"delete_file\", \"read_file\"]\n",
    )
    .unwrap();
    let sha = |k: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(k.as_bytes()))
    };
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[backends.main]\nbase_url = \"{}\"\n[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\n[tools]\nsigning_key_file = \"{}\"\n[policy]\nfile = \"{}\"\n\
             [[auth.keys]]\nname = \"agent\"\ntenant = \"acme\"\nsha256 = \"{}\"\n\
             [[auth.keys]]\nname = \"approvals\"\ntenant = \"acme\"\nsha256 = \"{}\"\napprover = true\n",
            upstream.base_url(),
            redis.url(),
            key.display(),
            policy.display(),
            sha("sk-agent"),
            sha("sk-approver"),
        ),
    )
    .unwrap();
    let envs = [("PALISADE_LOG", "warn")];
    let a = Palisade::serve(&["--config", config.to_str().unwrap()], &envs);
    let b = Palisade::serve(&["--config", config.to_str().unwrap()], &envs);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    wait_for_redis(&http, &a).await;
    wait_for_redis(&http, &b).await;

    let script = r#"CALLS [{"name": "delete_file", "arguments": {"path": "/srv/old"}}, {"name": "read_file", "arguments": {"path": "/srv/new"}}]"#;
    let request = json!({"model": "tool-calls", "messages": [{"role": "user", "content": script}]});
    let body = post_json(
        &http,
        &a.url("/v1/chat/completions"),
        Some("sk-agent"),
        &request,
    )
    .await;
    let held = &body["palisade"]["tool_calls"][0];
    assert_eq!(held["status"], "pending_confirmation", "{body}");
    let id = held["confirmation_id"].as_str().unwrap().to_owned();

    // Replica B lists it (the write to Redis is asynchronous: allow it a moment).
    let mut listed = Value::Null;
    for _ in 0..50 {
        listed = get_json(&http, &b.url("/v1/tools/pending"), Some("sk-approver")).await;
        if listed["data"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        listed["data"][0]["confirmation_id"],
        id.as_str(),
        "{listed}"
    );

    // Both replicas are asked at once: exactly one releases it.
    let confirm = |r: &Palisade| {
        http.post(r.url("/v1/tools/confirm"))
            .bearer_auth("sk-approver")
            .json(&json!({"confirmation_id": id}))
            .send()
    };
    let (ra, rb) = tokio::join!(confirm(&a), confirm(&b));
    let mut statuses = [ra.unwrap().status().as_u16(), rb.unwrap().status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 404]);

    // The released read_file token is single-use across replicas.
    let released = &body["palisade"]["tool_calls"][1];
    assert_eq!(released["status"], "released");
    let verify = json!({"token": released["capability"], "tool": "read_file",
                        "arguments": {"path": "/srv/new"}, "consume": true});
    let first = post_json(&http, &a.url("/v1/tools/verify"), Some("sk-agent"), &verify).await;
    let second = post_json(&http, &b.url("/v1/tools/verify"), Some("sk-agent"), &verify).await;
    assert_eq!(first["valid"], true, "{first}");
    assert_eq!(second["code"], "token_already_used", "{second}");
    a.terminate();
    b.terminate();
}
