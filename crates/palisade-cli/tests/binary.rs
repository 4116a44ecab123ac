//! The `palisade` binary as users run it: flags, environment, SIGTERM.

mod support;

use std::time::Duration;

use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};
use support::Palisade;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_upstream_flag_forwards_and_drains_on_sigterm() {
    let upstream = ScriptedUpstream::start().await;
    let gw = Palisade::serve(&["--upstream", &upstream.base_url()], &[]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let resp = client
        .post(gw.url("/v1/chat/completions"))
        .json(
            &json!({"model": "m", "messages": [{"role": "user", "content": "through the binary"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "through the binary"
    );

    // A slow request is in flight when SIGTERM arrives: it must complete.
    let url = gw.url("/v1/chat/completions");
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .post(url)
                .json(&json!({"model": "slow-head", "messages": [{"role": "user", "content": "drained"}]}))
                .send()
                .await
        }
    });
    while upstream.received().len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.terminate();
    let resp = slow
        .await
        .unwrap()
        .expect("in-flight request survives SIGTERM");
    assert_eq!(resp.status(), 200);

    let mut gw = gw;
    let mut waited = 0;
    let status = loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            break status;
        }
        assert!(waited < 100, "palisade did not exit after draining");
        waited += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
}

#[test]
fn open_mode_on_a_public_address_is_refused_with_the_key_named() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("PALISADE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth.mode"), "{stderr}");
}

#[test]
fn config_check_names_the_bad_key_and_accepts_the_example() {
    let dir = std::env::temp_dir().join(format!("palisade-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[backends.main]\nbase_url = \"http://127.0.0.1:8000/v1\"\nconect_timeout_ms = 5\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("conect_timeout_ms"), "{stderr}");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/palisade.toml");
    // `serve` would refuse to start without the tenant's upstream key and
    // tool credential the example names, so `config check` says so.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["config", "check", example])
        .env("OPENAI_API_KEY", "sk-example")
        .env_remove("ACME_OPENAI_API_KEY")
        .env_remove("ACME_SMTP_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ACME_OPENAI_API_KEY is not set")
            && stdout.contains("ACME_SMTP_TOKEN is not set"),
        "{stdout}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["config", "check", example])
        .env("OPENAI_API_KEY", "sk-example")
        .env("ACME_OPENAI_API_KEY", "sk-acme")
        .env("ACME_SMTP_TOKEN", "smtp-token")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn keys_generate_produces_a_hash_that_keys_hash_reproduces() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["keys", "generate", "--tenant", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // The key goes to standard error, never into the config entry.
    let key = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.starts_with("pk-"))
        .expect("key printed")
        .to_owned();
    assert!(!text.contains(&key));
    let hash = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("sha256 = \"")
                .map(|h| h.trim_end_matches('"').to_owned())
        })
        .expect("hash printed");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["keys", "hash", &key])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hash);
}

/// `SIGHUP` reloads the config file the way `serve` read it at start: the
/// `--listen` flag is applied again, so a hot edit is not refused as a
/// listener change. A route and backend added to the file serve after the
/// first signal, a limits edit is in force after the second, and each new
/// version shows in `/admin/config`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_routes_and_limits_with_the_same_flags() {
    let (upstream, second) = (
        ScriptedUpstream::start().await,
        ScriptedUpstream::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.toml");
    let config = |burst: u32, with_second: bool| {
        let mut text = format!(
            "[reload]\nconfig_poll_ms = 0\n[backends.main]\nbase_url = \"{}\"\n\
             [limits]\nrequests_per_minute = 60\nburst = {burst}\n\
             [[routes]]\nmodel = \"m\"\nbackend = \"main\"\n",
            upstream.base_url()
        );
        if with_second {
            text.push_str(&format!(
                "[backends.second]\nbase_url = \"{}\"\n\
                 [[routes]]\nmodel = \"s\"\nbackend = \"second\"\n",
                second.base_url()
            ));
        }
        text
    };
    std::fs::write(&path, config(50, false)).unwrap();
    let gw = Palisade::serve(&["--config", path.to_str().unwrap()], &[]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let status = |client: reqwest::Client, url: String| async move {
        client
            .get(url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let chat = |model: &'static str| {
        client
            .post(gw.url("/v1/chat/completions"))
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    let hup_and_wait = |applied: u64| {
        let (client, url, pid) = (client.clone(), gw.url("/admin/config"), gw.child.id());
        async move {
            let hup = std::process::Command::new("kill")
                .arg("-HUP")
                .arg(pid.to_string())
                .status()
                .unwrap();
            assert!(hup.success());
            let mut after = Value::Null;
            for _ in 0..200 {
                after = status(client.clone(), url.clone()).await;
                if after["config"]["reloads_applied"] == applied
                    || after["config"]["last_result"] != "applied"
                        && after["config"]["last_result"].is_string()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            after
        }
    };
    let before = status(client.clone(), gw.url("/admin/config")).await;
    assert_eq!(before["config"]["reloads_applied"], 0, "{before}");
    assert_eq!(chat("s").await.unwrap().status(), 404);

    std::fs::write(&path, config(50, true)).unwrap();
    let after = hup_and_wait(1).await;
    assert_eq!(after["config"]["last_result"], "applied", "{after}");
    assert_ne!(after["config"]["hash"], before["config"]["hash"]);
    assert_eq!(after["routing_generation"], 2, "{after}");
    let resp = chat("s").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-palisade-backend"], "second");
    assert_eq!(second.received().len(), 1);

    // Burst 1 is in force after the second signal: the second request at
    // once is refused.
    std::fs::write(&path, config(1, true)).unwrap();
    let after = hup_and_wait(2).await;
    assert_eq!(after["config"]["reloads_applied"], 2, "{after}");
    // The routing sections did not change: the snapshot is kept.
    assert_eq!(after["routing_generation"], 2, "{after}");
    // The used share of the old burst is carried over (a reload gives no
    // fresh burst), so the first request may have to wait for the rate's
    // refill (60/min: one a second): poll, bounded, until one is admitted…
    let mut admitted = false;
    for _ in 0..40 {
        match chat("m").await.unwrap().status().as_u16() {
            200 => {
                admitted = true;
                break;
            }
            429 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        admitted,
        "the rate never admitted a request after the reload"
    );
    // …then the next one at once finds the burst of 1 spent.
    assert_eq!(chat("m").await.unwrap().status(), 429);
}
