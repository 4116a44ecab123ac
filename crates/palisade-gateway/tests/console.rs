//! The admin web console (`/admin/ui`) in a real headless Chromium, driven
//! over WebDriver (Debian's `chromium` and `chromium-driver`): wrong-key
//! login, login, policy versions and their diff, the audit tail filtered
//! by gate, the usage chart, approving a held tool call, logout; data
//! carrying markup (a model name, tool arguments) shown as text, never run.
//! Screenshots go to `<target>/console-screenshots/`.
//!
//! Without chromium the test fails with the reason (it does not pass):
//! set `PALISADE_SKIP_BROWSER=1` to skip it knowingly.

mod console_support;

use std::path::PathBuf;
use std::time::Duration;

use console_support::Browser;
use palisade_config::{Config, Sources};
use palisade_gateway::Gateway;
use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ADMIN: &str = "sk-console-admin";
const AGENT: &str = "sk-console-agent";
/// Markup a hostile client can put where the console shows data.
const XSS_MODEL: &str = "\"><img src=x onerror=\"window.__xss=1\">";
const XSS_ARG: &str = "/tmp/<script>window.__xss=2</script>\"><img src=x onerror=window.__xss=3>";

fn policy(threshold: &str) -> String {
    format!(
        r#"
label = "console {threshold}"
default_tier = "agent"

[tools.delete_file]
effect = "irreversible"
schema = {{ type = "object", properties = {{ path = {{ type = "string" }} }}, required = ["path"] }}

[tiers.agent.context]
injection = {{ threshold = {threshold}, action = "flag" }}

[tiers.agent.tool]
allow = ["delete_file"]
"#
    )
}

fn sha(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn screenshots() -> PathBuf {
    // <target>/tmp → <target>/console-screenshots
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("console-screenshots"))
        .unwrap_or_else(|| PathBuf::from("console-screenshots"))
}

/// The table cells' texts of `css` rows, by a script in the page.
const CELL_TEXTS: &str =
    "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_drives_the_admin_api_in_a_real_browser() {
    if let Some(reason) = console_support::unavailable() {
        if std::env::var_os("PALISADE_SKIP_BROWSER").is_some() {
            eprintln!("SKIPPED (PALISADE_SKIP_BROWSER): {reason}");
            return;
        }
        panic!("{reason}; set PALISADE_SKIP_BROWSER=1 to skip this test knowingly");
    }
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, policy("0.8609")).unwrap();
    let db = dir.path().join("ledger.db");
    let toml = format!(
        r#"
[backends.main]
base_url = "{}"

[[auth.keys]]
name = "ops"
tenant = "ops"
sha256 = "{}"
admin = true

[[auth.keys]]
name = "agent"
tenant = "acme"
sha256 = "{}"

[ledger]
url = "sqlite:{db}"

[policy]
file = "{}"
reload_interval_ms = 100
audit_url = "sqlite:{db}"

[console]
secure_cookie = false
"#,
        upstream.base_url(),
        sha(ADMIN),
        sha(AGENT),
        policy_file.display(),
        db = db.display(),
    );
    let config = Config::load(&Sources {
        toml: Some(&toml),
        ..Sources::default()
    })
    .unwrap();
    let gw = Gateway::with_env(config, |_| None)
        .unwrap()
        .start(Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let base = format!("http://{}", gw.local_addr());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // A second policy version, so there is history to diff.
    let v1: Value = http
        .get(format!("{base}/admin/policy"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    std::fs::write(&policy_file, policy("0.75")).unwrap();
    let mut reloaded = false;
    for _ in 0..100 {
        let p: Value = http
            .get(format!("{base}/admin/policy"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if p["history"].as_array().is_some_and(|h| !h.is_empty()) {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "the edited policy file was not reloaded");

    // Traffic: a usage row under a model name carrying markup, and a held
    // irreversible tool call whose argument carries markup.
    for model in [XSS_MODEL, "plain-model"] {
        let resp = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(AGENT)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hello"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    }
    let calls = json!([{"name": "delete_file", "arguments": {"path": XSS_ARG}}]);
    let held: Value = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(AGENT)
        .json(&json!({"model": "tool-calls",
            "messages": [{"role": "user", "content": format!("CALLS {calls}")}],
            "tools": [{"type": "function", "function": {"name": "delete_file", "parameters": {"type": "object"}}}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        held["palisade"]["tool_calls"][0]["status"], "pending_confirmation",
        "{held}"
    );

    let shots = screenshots();
    let b = Browser::start().await;
    b.goto(&format!("{base}/admin/ui")).await;
    b.wait_for("the page", "return document.body.dataset.ready === '1';")
        .await;

    // A wrong key: refused, nothing shown.
    b.type_into("#login-key", "sk-wrong").await;
    b.click("#login-submit").await;
    b.wait_for(
        "the login error",
        "return document.getElementById('login-error').textContent.length > 0;",
    )
    .await;
    assert_eq!(
        b.js("return document.getElementById('app').hidden;", json!([]))
            .await,
        true
    );
    b.screenshot(&shots, "01-login-refused").await;

    // The admin key: in, on the policy page.
    b.type_into("#login-key", ADMIN).await;
    b.click("#login-submit").await;
    b.wait_for(
        "the policy page",
        "return document.body.dataset.loaded === 'policy';",
    )
    .await;
    let versions = b
        .js(CELL_TEXTS, json!(["#policy-versions tbody td.mono"]))
        .await;
    let versions: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(versions[1], v1["active"]["version"].as_str().unwrap());
    let diff = b.js(CELL_TEXTS, json!(["#policy-diff li"])).await;
    let diff = diff.to_string();
    assert!(
        diff.contains("tiers.agent.context.injection.threshold") && diff.contains("0.75"),
        "{diff}"
    );
    b.screenshot(&shots, "02-policy").await;

    // The audit tail, filtered by gate.
    b.click("#nav button[data-page=audit]").await;
    b.wait_for(
        "the audit page",
        "return document.body.dataset.loaded === 'audit';",
    )
    .await;
    let all = b.js(CELL_TEXTS, json!(["#audit-rows td.gate"])).await;
    let all: Vec<String> = serde_json::from_value(all).unwrap();
    assert!(all.iter().any(|g| g == "tool"), "{all:?}");
    assert!(all.iter().any(|g| g != "tool"), "{all:?}");
    b.js(
        "document.getElementById('audit-gate').value = 'tool'; document.body.dataset.loaded = '';",
        json!([]),
    )
    .await;
    b.click("#audit-run").await;
    b.wait_for(
        "the filtered audit",
        "return document.body.dataset.loaded === 'audit';",
    )
    .await;
    let tool = b.js(CELL_TEXTS, json!(["#audit-rows td.gate"])).await;
    let tool: Vec<String> = serde_json::from_value(tool).unwrap();
    assert!(
        !tool.is_empty() && tool.iter().all(|g| g == "tool"),
        "{tool:?}"
    );
    b.screenshot(&shots, "03-audit").await;

    // Usage by model: an SVG bar per model; the hostile name is text.
    b.click("#nav button[data-page=usage]").await;
    b.wait_for(
        "the usage page",
        "return document.body.dataset.loaded === 'usage';",
    )
    .await;
    b.js(
        "document.getElementById('usage-by').value = 'model'; document.body.dataset.loaded = '';",
        json!([]),
    )
    .await;
    b.click("#usage-run").await;
    b.wait_for(
        "usage by model",
        "return document.body.dataset.loaded === 'usage';",
    )
    .await;
    let bars = b
        .js(
            "return document.querySelectorAll('#usage-svg rect.bar').length;",
            json!([]),
        )
        .await;
    assert!(bars.as_u64().unwrap() >= 2, "{bars}");
    let labels = b.js(CELL_TEXTS, json!(["#usage-table tbody td"])).await;
    assert!(
        labels
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str() == Some(XSS_MODEL)),
        "{labels}"
    );
    b.screenshot(&shots, "04-usage").await;

    // The held call: its markup shown as text; approved from the page.
    b.click("#nav button[data-page=tools]").await;
    b.wait_for(
        "the tools page",
        "return document.body.dataset.loaded === 'tools';",
    )
    .await;
    let args = b.js(CELL_TEXTS, json!(["#tools-rows td.args"])).await;
    assert!(
        args.to_string().contains("<script>window.__xss=2</script>"),
        "{args}"
    );
    b.screenshot(&shots, "05-tool-confirmations").await;
    b.click("#tools-rows button.approve").await;
    b.wait_for(
        "the approval",
        "return document.getElementById('status').textContent === 'approved: released' \
         && document.querySelectorAll('#tools-rows button.approve').length === 0;",
    )
    .await;
    let pending: Value = http
        .get(format!("{base}/v1/tools/pending"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending["data"], json!([]), "{pending}");

    // Nothing the data carried ran, and no element was made from it.
    let injected = b
        .js(
            "return [window.__xss === undefined, document.querySelectorAll('#app img, #app script').length];",
            json!([]),
        )
        .await;
    assert_eq!(injected, json!([true, 0]));

    // Quotas, limits, fleet, anomaly, hunt: each page loads its endpoint.
    for page in ["quotas", "limits", "fleet", "anomaly", "hunt"] {
        b.click(&format!("#nav button[data-page={page}]")).await;
        b.wait_for(
            page,
            &format!("return (document.body.dataset.loaded || '').startsWith('{page}');"),
        )
        .await;
        let loaded = b
            .js("return document.body.dataset.loaded;", json!([]))
            .await;
        // The page shows what its endpoint answers: the data, or its error.
        let resp = http
            .get(format!("{base}/admin/{page}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        if resp.status().is_success() {
            assert_eq!(loaded, page, "{page} failed to load");
        } else {
            let err: Value = resp.json().await.unwrap();
            assert_eq!(loaded, format!("{page}:error"));
            let shown = b
                .js(
                    "return document.getElementById('status').textContent;",
                    json!([]),
                )
                .await;
            let code = err["error"]["code"].as_str().unwrap();
            assert!(
                shown.as_str().unwrap().starts_with(code),
                "{shown} vs {err}"
            );
        }
    }

    // Logout: back to the login form, and the cookie is dead.
    b.click("#logout").await;
    b.wait_for(
        "logout",
        "return document.body.dataset.loaded === 'logged-out';",
    )
    .await;
    b.goto(&format!("{base}/admin/ui/")).await;
    b.wait_for("the page", "return document.body.dataset.ready === '1';")
        .await;
    let state = b
        .js(
            "return [document.getElementById('login').hidden, document.getElementById('app').hidden];",
            json!([]),
        )
        .await;
    assert_eq!(state, json!([false, true]));
    b.quit().await;
    drop(upstream);
}

/// The console's read endpoints over bearer keys (what scripts use): no
/// cookie, no CSRF token needed; bounded pages; the limits view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reads_are_bounded_and_bearer_calls_need_no_csrf_token() {
    let upstream = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let toml = format!(
        "[backends.main]\nbase_url = \"{}\"\ncircuit_breaker = {{ error_rate = 0.5, window = 20, min_requests = 10, cooldown_ms = 1000 }}\n\
         [[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{}\"\nadmin = true\n\
         [[auth.keys]]\nname = \"agent\"\ntenant = \"acme\"\nsha256 = \"{}\"\n\
         [policy]\naudit_url = \"sqlite:{}\"\n",
        upstream.base_url(),
        sha(ADMIN),
        sha(AGENT),
        db.display()
    );
    let config = Config::load(&Sources {
        toml: Some(&toml),
        ..Sources::default()
    })
    .unwrap();
    let gw = Gateway::with_env(config, |_| None)
        .unwrap()
        .start(Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let base = format!("http://{}", gw.local_addr());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: String, key: &'static str| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let resp = http.get(url).bearer_auth(key).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for _ in 0..3 {
        let resp = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(AGENT)
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Audit records are committed by the store's writer; wait for them.
    let mut rows = 0;
    for _ in 0..100 {
        let (_, page) = get("/admin/audit?tenant=acme&limit=500".into(), ADMIN).await;
        rows = page["data"].as_array().map_or(0, Vec::len);
        if rows >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rows >= 3, "{rows} audit rows");
    let (status, page) = get("/admin/audit?tenant=acme&limit=1".into(), ADMIN).await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_offset"], 1);
    let (_, other) = get("/admin/audit?tenant=nobody".into(), ADMIN).await;
    assert_eq!(other["data"], json!([]));
    for bad in [
        "limit=0",
        "offset=990&limit=20",
        "limit=1001",
        "limit=x",
        "colour=red",
    ] {
        let (status, err) = get(format!("/admin/audit?{bad}"), ADMIN).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["error"]["code"], "invalid_request", "{bad}");
    }
    // Tenant keys are refused.
    assert_eq!(get("/admin/audit".into(), AGENT).await.0, 403);
    assert_eq!(get("/admin/limits".into(), AGENT).await.0, 403);
    assert_eq!(get("/admin/policy/diff".into(), AGENT).await.0, 403);
    // Limits: the backend, its closed breaker, the local limiter.
    let (status, limits) = get("/admin/limits".into(), ADMIN).await;
    assert_eq!(status, 200);
    assert_eq!(limits["backends"][0]["name"], "main");
    assert_eq!(limits["backends"][0]["breaker"], "closed");
    assert_eq!(limits["limiter"]["backend"], "local");
    // The diff of a version with itself is empty; an unknown version is 404.
    let (status, diff) = get("/admin/policy/diff".into(), ADMIN).await;
    assert_eq!(status, 200);
    assert_eq!(diff["changes"], json!([]));
    let (status, err) = get("/admin/policy/diff?from=sha256:00".into(), ADMIN).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["param"], "from");
    // A bearer POST needs no CSRF token (scripts keep working).
    let resp = http
        .post(format!("{base}/admin/policy/rollback"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_previous_policy");
    drop(upstream);
}
