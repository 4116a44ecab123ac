//! The admin web console (`/admin/ui`) in a real headless Chromium, driven
//! over WebDriver (Debian's `chromium` and `chromium-driver`): wrong-key
//! login, login, policy versions and their diff, the audit tail filtered
//! by gate, the shadow policy's divergence, the usage chart, approving a
//! held tool call, creating a runtime key (its secret shown once), seeing
//! it listed and revoking it, the routes view, logout; data carrying
//! markup (a model name, tool arguments, a key's tenant) shown as text,
//! never run.
//! Screenshots go to `<target>/console-screenshots/`.
//!
//! Without chromium the test fails with the reason (it does not pass):
//! set `PALISADE_SKIP_BROWSER=1` to skip it knowingly.

mod console_support;

mod support;

use std::path::PathBuf;
use std::time::Duration;

use console_support::Browser;
use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ADMIN: &str = "sk-console-admin";
const AGENT: &str = "sk-console-agent";
/// Markup a hostile client can put where the console shows data.
const XSS_MODEL: &str = "\"><img src=x onerror=\"window.__xss=1\">";
const XSS_ARG: &str = "/tmp/<script>window.__xss=2</script>\"><img src=x onerror=window.__xss=3>";
const XSS_TENANT: &str = "<script>window.__xss=4</script><img src=x onerror=window.__xss=5>";

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
    // The shadow candidate would also block PII in the input: it disagrees
    // with the active policy on a prompt carrying an e-mail address.
    let shadow_file = dir.path().join("candidate.toml");
    std::fs::write(
        &shadow_file,
        format!(
            "{}\n[tiers.agent.input]\npii = {{ action = \"block\" }}\n",
            policy("0.75")
        ),
    )
    .unwrap();
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

[auth.runtime]
enabled = true
refresh_ms = 200

[ledger]
url = "sqlite:{db}"

[policy]
file = "{}"
shadow_file = "{}"
reload_interval_ms = 100
audit_url = "sqlite:{db}"

[console]
secure_cookie = false
"#,
        upstream.base_url(),
        sha(ADMIN),
        sha(AGENT),
        policy_file.display(),
        shadow_file.display(),
        db = db.display(),
    );
    let gw = support::gateway(&toml).await;
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
    // Allowed by the active policy, blocked by the shadow: one divergence,
    // under the hostile model name.
    let resp = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(AGENT)
        .json(&json!({"model": XSS_MODEL,
            "messages": [{"role": "user", "content": "Write to jane.doe@example.com please"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
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
    // Active, shadow, the previous active.
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert_eq!(versions[2], v1["active"]["version"].as_str().unwrap());
    let diff = b.js(CELL_TEXTS, json!(["#policy-diff li"])).await;
    let diff = diff.to_string();
    assert!(
        diff.contains("tiers.agent.context.injection.threshold") && diff.contains("0.75"),
        "{diff}"
    );
    // The shadow's disagreement: counted, with the example (its hostile
    // model name as text).
    let summary = b
        .js(
            "return document.getElementById('shadow-summary').textContent;",
            json!([]),
        )
        .await;
    assert!(
        summary.as_str().unwrap().contains("disagreed on 1 of"),
        "{summary}"
    );
    let shadow = b.js(CELL_TEXTS, json!(["#shadow-rows td"])).await;
    let shadow: Vec<String> = serde_json::from_value(shadow).unwrap();
    assert!(shadow.iter().any(|t| t == XSS_MODEL), "{shadow:?}");
    assert!(
        shadow
            .iter()
            .any(|t| t.starts_with("block") && t.contains("pii_in_input")),
        "{shadow:?}"
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

    // Keys: config keys listed; create a runtime key (tenant carrying
    // markup), its secret shown once and working; listed; revoked.
    b.click("#nav button[data-page=keys]").await;
    b.wait_for(
        "the keys page",
        "return document.body.dataset.loaded === 'keys';",
    )
    .await;
    let names = b.js(CELL_TEXTS, json!(["#keys-rows td.key-name"])).await;
    assert_eq!(
        names,
        json!(["agent", "ops"]),
        "config keys, sorted by tenant"
    );
    b.type_into("#key-tenant", XSS_TENANT).await;
    b.type_into("#key-name", "ci-bot").await;
    b.type_into("#key-models", "plain-model").await;
    b.type_into("#key-budget-usd", "5").await;
    b.type_into("#key-rpm", "600").await;
    b.click("#key-create").await;
    b.wait_for(
        "the new key's secret",
        "return !document.getElementById('key-secret-box').hidden \
         && document.querySelectorAll('#keys-rows button.revoke').length === 1;",
    )
    .await;
    let secret = b
        .js(
            "return document.getElementById('key-secret').textContent;",
            json!([]),
        )
        .await;
    let secret = secret.as_str().unwrap().to_owned();
    assert!(secret.starts_with("pk-"), "{secret}");
    let chat = |key: String, model: &'static str| {
        let http = http.clone();
        let url = format!("{base}/v1/chat/completions");
        async move {
            http.post(url)
                .bearer_auth(key)
                .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(chat(secret.clone(), "plain-model").await, 200);
    assert_eq!(chat(secret.clone(), "other-model").await, 403, "allowlist");
    let rows = b.js(CELL_TEXTS, json!(["#keys-rows td"])).await;
    let rows: Vec<String> = serde_json::from_value(rows).unwrap();
    assert!(rows.iter().any(|t| t == XSS_TENANT), "{rows:?}");
    assert!(rows.iter().any(|t| t == "plain-model"), "{rows:?}");
    // The budget set in the form, and the spend against it.
    let budget = b.js(CELL_TEXTS, json!(["#keys-rows td.key-budget"])).await;
    assert_eq!(
        budget,
        json!(["$0.00 / $5.00 monthly · 600 rpm"]),
        "{rows:?}"
    );
    assert!(
        !rows.iter().any(|t| t.contains(&secret)),
        "no secret in the list"
    );
    b.screenshot(&shots, "06-keys-created").await;
    // The secret goes when the operator is done with it.
    b.click("#key-secret-done").await;
    let gone = b
        .js(
            "return document.getElementById('key-secret').textContent;",
            json!([]),
        )
        .await;
    assert_eq!(gone, "");
    b.js("window.confirm = () => true;", json!([])).await;
    b.click("#keys-rows button.revoke").await;
    b.wait_for(
        "the revocation",
        "return document.getElementById('status').textContent === 'revoked ci-bot' \
         && document.querySelectorAll('#keys-rows button.revoke').length === 0;",
    )
    .await;
    let status = b.js(CELL_TEXTS, json!(["#keys-rows td.key-status"])).await;
    assert_eq!(status, json!(["revoked"]));
    assert_eq!(chat(secret.clone(), "plain-model").await, 401);
    b.screenshot(&shots, "07-keys-revoked").await;

    // Routes: the wildcard route, its deployment's live state.
    b.click("#nav button[data-page=routes]").await;
    b.wait_for(
        "the routes page",
        "return document.body.dataset.loaded === 'routes';",
    )
    .await;
    let routes = b
        .js(CELL_TEXTS, json!(["#routes-rows td.route-model"]))
        .await;
    assert_eq!(routes, json!(["*"]));
    let deployments = b
        .js(CELL_TEXTS, json!(["#routes-rows div.deployment"]))
        .await;
    let deployments = deployments.to_string();
    assert!(
        deployments.contains("main · weight 1 · healthy · breaker none"),
        "{deployments}"
    );
    b.screenshot(&shots, "08-routes").await;

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
    let gw = support::gateway(&toml).await;
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
