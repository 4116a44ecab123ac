//! Capability tokens across a fleet: `palisade tools keygen` writes one key,
//! two `palisade` replicas sign with it, and a call released by one replica
//! verifies at the other and offline with `palisade tools verify`.

mod support;

use std::process::Command;

use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};
use support::Palisade;

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
        let k: Value = http
            .get(r.url("/v1/tools/public-key"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(k["public_key"], public.as_str());
    }

    // The built-in policy's tool gate: any declared tool, arguments checked.
    let args = r#"{"path": "/srv/report.pdf"}"#;
    let script = format!("CALLS [{{\"name\": \"read_file\", \"arguments\": {args}}}]");
    let body: Value = http
        .post(a.url("/v1/chat/completions"))
        .json(
            &json!({"model": "tool-calls", "messages": [{"role": "user", "content": script}],
                      "tools": [{"type": "function", "function": {"name": "read_file",
                                 "parameters": {"type": "object", "required": ["path"]}}}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = &body["palisade"]["tool_calls"][0];
    assert_eq!(entry["status"], "released", "{body}");
    let token = entry["capability"].as_str().unwrap();
    let arguments = body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();

    // Replica B accepts replica A's token.
    let verdict: Value = http
        .post(b.url("/v1/tools/verify"))
        .json(&json!({"token": token, "tool": "read_file", "arguments": arguments}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verdict["valid"], true, "{verdict}");

    // Offline: exit 0 for the call, 1 for a tampered one.
    let ok = palisade(&[
        "tools",
        "verify",
        token,
        "--public-key",
        &public,
        "--tool",
        "read_file",
        "--arguments",
        arguments,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let claims: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(claims["tool"], "read_file");
    let tampered = palisade(&[
        "tools",
        "verify",
        token,
        "--public-key",
        &public,
        "--tool",
        "read_file",
        "--arguments",
        r#"{"path": "/etc/shadow"}"#,
    ]);
    assert_eq!(tampered.status.code(), Some(1));
    let why: Value = serde_json::from_slice(&tampered.stdout).unwrap();
    assert_eq!(why["code"], "token_wrong_arguments");
    a.terminate();
    b.terminate();
}
