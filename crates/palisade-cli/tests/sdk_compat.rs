//! The official OpenAI Python SDK against the `palisade` binary, in open mode
//! and with API keys: chat, streaming with usage, models, embeddings, and the
//! SDK's typed errors for our error codes. The SDK runs from a venv that
//! `tools/sdk-check/venv` creates once.

mod support;

use std::process::Command;

use palisade_testkit::ScriptedUpstream;
use support::Palisade;

fn sdk_python() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/sdk-check/venv");
    let out = Command::new(script).output().expect("venv script runs");
    assert!(
        out.status.success(),
        "cannot prepare the OpenAI SDK venv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn run_check(python: &str, base_url: &str, key: Option<&str>) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tools/sdk-check/check.py"
    );
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(base_url).arg("scripted-model");
    if let Some(k) = key {
        cmd.arg(k);
    }
    let out = cmd.output().expect("python runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "SDK check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_works_through_palisade() {
    let python = sdk_python();
    let upstream = ScriptedUpstream::start().await;

    let open = Palisade::serve(&["--upstream", &upstream.base_url()], &[]);
    let url = open.url("/v1");
    tokio::task::spawn_blocking({
        let python = python.clone();
        move || run_check(&python, &url, None)
    })
    .await
    .unwrap();
    drop(open);

    let dir = std::env::temp_dir().join(format!("palisade-sdk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("keys.toml");
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"pk-sdk-test"))
    };
    std::fs::write(
        &config,
        format!(
            "[[auth.keys]]\nname = \"sdk\"\ntenant = \"t\"\nsha256 = \"{hash}\"\n[backends.main]\nbase_url = \"{}\"\n[[routes]]\nmodel = \"scripted-model\"\nbackend = \"main\"\n",
            upstream.base_url()
        ),
    )
    .unwrap();
    let keyed = Palisade::serve(&["--config", config.to_str().unwrap()], &[]);
    let url = keyed.url("/v1");
    tokio::task::spawn_blocking(move || run_check(&python, &url, Some("pk-sdk-test")))
        .await
        .unwrap();
}
