//! Attacks on the admin web console's session layer (`/admin/ui`): a
//! cross-site page riding the operator's cookie (CSRF), a planted session
//! id (fixation), a tenant key logging in, a stale cookie, a login flood
//! against the session table, and script injection through data the page
//! shows (tenant names, audit reasons, tool arguments). The browser-side
//! rendering is checked in a real Chromium by
//! `crates/palisade-gateway/tests/console.rs`; here, the page's source is
//! checked never to build HTML from strings.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{start, Client};

const ADMIN: &str = "sk-console-admin";
const TENANT: &str = "sk-console-tenant";

fn hash(key: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()))
}

async fn gateway(console: &str) -> Client {
    let toml = format!(
        "[backends.main]\nbase_url = \"http://127.0.0.1:9\"\n\
         [[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{}\"\nadmin = true\n\
         [[auth.keys]]\nname = \"eve\"\ntenant = \"eve\"\nsha256 = \"{}\"\n\
         [console]\nsecure_cookie = false\n{console}",
        hash(ADMIN),
        hash(TENANT)
    );
    Client::new(start(&toml).await)
}

/// A login: the session cookie value (`None` when refused), the CSRF token, the status.
struct Login {
    status: u16,
    cookie: Option<String>,
    csrf: String,
    set_cookie: String,
}

async fn login(c: &Client, key: &str, cookie: Option<&str>) -> Login {
    let mut req = c
        .http
        .post(c.url("/admin/ui/login"))
        .json(&json!({ "key": key }));
    if let Some(v) = cookie {
        req = req.header("cookie", format!("palisade_console={v}"));
    }
    let resp = req.send().await.expect("gateway answers");
    let status = resp.status().as_u16();
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let cookie = set_cookie
        .strip_prefix("palisade_console=")
        .and_then(|rest| rest.split(';').next())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    Login {
        status,
        cookie,
        csrf: body["csrf_token"].as_str().unwrap_or_default().to_owned(),
        set_cookie,
    }
}

/// GET `path` with only the session cookie.
async fn get_with_cookie(c: &Client, path: &str, cookie: &str) -> u16 {
    c.http
        .get(c.url(path))
        .header("cookie", format!("palisade_console={cookie}"))
        .send()
        .await
        .expect("gateway answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_post_without_the_csrf_token_is_refused() {
    let c = gateway("").await;
    let s = login(&c, ADMIN, None).await;
    assert_eq!(s.status, 200);
    let cookie = s.cookie.expect("a session cookie");
    assert!(s.set_cookie.contains("HttpOnly"), "{}", s.set_cookie);
    assert!(s.set_cookie.contains("SameSite=Strict"), "{}", s.set_cookie);
    // What a hostile page's form post would send: the cookie (had the
    // browser attached it), a foreign Origin, no token; then a wrong token.
    for token in [None, Some("0".repeat(64)), Some(String::new())] {
        let mut req = c
            .http
            .post(c.url("/admin/policy/rollback"))
            .header("cookie", format!("palisade_console={cookie}"))
            .header("origin", "https://evil.example")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("x=1");
        if let Some(t) = &token {
            req = req.header("x-csrf-token", t);
        }
        let resp = req.send().await.expect("gateway answers");
        assert_eq!(resp.status().as_u16(), 403, "token {token:?}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["code"], "csrf_token_invalid");
    }
    // Approving a held tool call is state-changing too.
    let resp = c
        .http
        .post(c.url("/v1/tools/confirm"))
        .header("cookie", format!("palisade_console={cookie}"))
        .json(&json!({"confirmation_id": "x"}))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(resp.status().as_u16(), 403);
    // Logout without the token does not log out.
    let resp = c
        .http
        .post(c.url("/admin/ui/logout"))
        .header("cookie", format!("palisade_console={cookie}"))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(get_with_cookie(&c, "/admin/policy", &cookie).await, 200);
    // With its token the same session may act (no earlier version: 409-ish, not 403).
    let resp = c
        .http
        .post(c.url("/admin/policy/rollback"))
        .header("cookie", format!("palisade_console={cookie}"))
        .header("x-csrf-token", &s.csrf)
        .send()
        .await
        .expect("gateway answers");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "no_previous_policy", "{body}");
    // A form-encoded login (what a cross-site form can send) is refused.
    let (status, _) = c.post_raw("/admin/ui/login", &json!(ADMIN), &[]).await;
    assert_eq!(status, 400, "a JSON string is not a login object");
    let resp = c
        .http
        .post(c.url("/admin/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={ADMIN}"))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.headers().get("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_session_id_is_never_promoted() {
    let c = gateway("").await;
    let planted = "attacker-chosen-session-id";
    let s = login(&c, ADMIN, Some(planted)).await;
    assert_eq!(s.status, 200);
    let minted = s.cookie.expect("a session cookie");
    assert_ne!(minted, planted);
    assert_eq!(minted.len(), 64, "32 random bytes, hex");
    assert_eq!(get_with_cookie(&c, "/admin/policy", planted).await, 401);
    assert_eq!(get_with_cookie(&c, "/admin/policy", &minted).await, 200);
    // Logging in again over a live session ends the old one.
    let again = login(&c, ADMIN, Some(&minted)).await;
    let fresh = again.cookie.expect("a session cookie");
    assert_ne!(fresh, minted);
    assert_eq!(get_with_cookie(&c, "/admin/policy", &minted).await, 401);
    assert_eq!(get_with_cookie(&c, "/admin/policy", &fresh).await, 200);
    // Logout ends it for good.
    let resp = c
        .http
        .post(c.url("/admin/ui/logout"))
        .header("cookie", format!("palisade_console={fresh}"))
        .header("x-csrf-token", &again.csrf)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(get_with_cookie(&c, "/admin/policy", &fresh).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_key_or_a_wrong_key_cannot_log_in() {
    let c = gateway("").await;
    let tenant = login(&c, TENANT, None).await;
    assert_eq!(tenant.status, 403);
    assert!(tenant.cookie.is_none(), "{}", tenant.set_cookie);
    let wrong = login(&c, "sk-guess", None).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.cookie.is_none());
    // A tenant key's bearer cannot reach the session endpoint's data either.
    let resp = c
        .http
        .get(c.url("/admin/ui/session"))
        .bearer_auth(TENANT)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_expires_at_its_fixed_lifetime() {
    let c = gateway("session_ttl_secs = 1\n").await;
    let cookie = login(&c, ADMIN, None).await.cookie.expect("cookie");
    assert_eq!(get_with_cookie(&c, "/admin/policy", &cookie).await, 200);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(get_with_cookie(&c, "/admin/policy", &cookie).await, 401);
    let resp = c
        .http
        .get(c.url("/admin/ui/session"))
        .header("cookie", format!("palisade_console={cookie}"))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_keeps_the_session_table_bounded() {
    let c = gateway("max_sessions = 4\n").await;
    let mut cookies = Vec::new();
    for _ in 0..40 {
        cookies.push(login(&c, ADMIN, None).await.cookie.expect("cookie"));
    }
    // Wrong keys open nothing, so they push no one out.
    for i in 0..100 {
        assert_eq!(login(&c, &format!("sk-wrong-{i}"), None).await.status, 401);
    }
    let mut live = 0;
    for cookie in &cookies {
        if get_with_cookie(&c, "/admin/policy", cookie).await == 200 {
            live += 1;
        }
    }
    assert_eq!(live, 4, "only max_sessions sessions are held");
    for cookie in &cookies[36..] {
        assert_eq!(get_with_cookie(&c, "/admin/policy", cookie).await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_never_builds_html_from_strings() {
    let c = gateway("").await;
    let get = |path: &'static str| {
        let c = &c;
        async move {
            let resp = c.http.get(c.url(path)).send().await.expect("answers");
            let csp = resp
                .headers()
                .get("content-security-policy")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let nosniff = resp.headers().get("x-content-type-options").cloned();
            (csp, nosniff, resp.text().await.unwrap_or_default())
        }
    };
    let (csp, nosniff, js) = get("/admin/ui/app.js").await;
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(
        nosniff.as_ref().map(|v| v.as_bytes()),
        Some(&b"nosniff"[..])
    );
    assert!(js.contains("textContent"), "the real script was served");
    // Code only: the header comment names the sinks it forbids.
    let code: String = js
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "setTimeout(\"",
        "DOMParser",
        "createContextualFragment",
    ] {
        assert!(!code.contains(sink), "app.js uses {sink}");
    }
    let (_, _, html) = get("/admin/ui/").await;
    assert!(html.contains("<script src=\"app.js\" defer></script>"));
    // No inline script, style or event handler (the CSP would block them;
    // none should exist to begin with).
    assert_eq!(html.matches("<script").count(), 1);
    for inline in [
        "style=",
        "<style",
        " onclick",
        " onerror",
        " onload",
        "javascript:",
    ] {
        assert!(!html.contains(inline), "index.html has {inline}");
    }
}

/// The Keys, Routes and shadow-divergence views: a tenant key cannot read
/// them; a console session cannot create a key without its CSRF token; a
/// flood of requests the shadow disagrees on, under hostile model names,
/// keeps the examples bounded (50, names cut to 128 characters) and serves
/// them as JSON data, never as markup; no view carries key material.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_routes_and_shadow_views_resist_tenants_csrf_and_floods() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = |label: &str, action: &str| {
        format!("label = \"{label}\"\ndefault_tier = \"t\"\n[tiers.t.input]\npii = {{ action = \"{action}\" }}\n")
    };
    let active = dir.path().join("active.toml");
    let shadow = dir.path().join("shadow.toml");
    std::fs::write(&active, rules("active", "flag")).expect("write");
    std::fs::write(&shadow, rules("candidate", "block")).expect("write");
    let s = crate::harness::Scripted::new(&format!(
        "[[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{}\"\nadmin = true\n\
         [[auth.keys]]\nname = \"eve\"\ntenant = \"eve\"\nsha256 = \"{}\"\n\
         [console]\nsecure_cookie = false\n\
         [policy]\nfile = \"{}\"\nshadow_file = \"{}\"\n",
        hash(ADMIN),
        hash(TENANT),
        active.display(),
        shadow.display()
    ))
    .await;
    let c = &s.client;
    let get = |path: &'static str, key: &'static str| async move {
        let resp = c
            .http
            .get(c.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("gateway answers");
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, ctype, resp.text().await.unwrap_or_default())
    };
    for path in ["/admin/keys", "/admin/routes", "/admin/policy/shadow"] {
        let (status, _, body) = get(path, TENANT).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    // A session without its CSRF token creates nothing.
    let session = login(c, ADMIN, None).await;
    let cookie = session.cookie.expect("a session cookie");
    let resp = c
        .http
        .post(c.url("/admin/keys"))
        .header("cookie", format!("palisade_console={cookie}"))
        .json(&json!({"tenant": "eve", "name": "planted", "admin": true}))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(resp.status().as_u16(), 403);
    // The flood: every request carries PII, so the shadow blocks what the
    // active policy only flags; each under a long name full of markup.
    let hostile = format!("<script>alert(1)</script>{}", "<img src=x>".repeat(12));
    for i in 0..120 {
        let resp = c
            .http
            .post(c.url("/v1/chat/completions"))
            .bearer_auth(TENANT)
            .json(&json!({"model": format!("{i}{hostile}"),
                "messages": [{"role": "user", "content": "mail jane.doe@example.com"}]}))
            .send()
            .await
            .expect("gateway answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "the active policy only flags: {text}");
    }
    let (status, ctype, body) = get("/admin/policy/shadow", ADMIN).await;
    assert_eq!(status, 200, "{body}");
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let report: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(report["diverged"], 120, "{report}");
    assert_eq!(report["by_change"]["flag→block"], 120, "{report}");
    let recent = report["recent"].as_array().expect("examples");
    assert_eq!(recent.len(), 50, "the ring is bounded");
    assert_eq!(
        recent[0]["model"]
            .as_str()
            .map(|m| m.starts_with("119<script>")),
        Some(true)
    );
    assert!(recent.iter().all(|d| d["model"]
        .as_str()
        .is_some_and(|m| m.chars().count() <= 128)));
    assert!(!body.contains("jane.doe"), "no judged text in the report");
    // Routes and keys: JSON, no key material.
    for path in ["/admin/routes", "/admin/keys", "/admin/limits"] {
        let (status, ctype, body) = get(path, ADMIN).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(ctype.starts_with("application/json"), "{path}: {ctype}");
        assert!(!body.contains(&hash(TENANT)), "{path} leaks a key hash");
    }
}

/// The finding this closes: open mode (no keys, loopback) trusted whoever
/// reached the listener, and a web page in the operator's browser reaches
/// it too. A cross-site form POST (no preflight) rolled the policy back or
/// reloaded the config; DNS rebinding made a hostile page same-origin, so
/// it could read the audit and approve held tool calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_cannot_drive_an_open_mode_gateway() {
    let s = crate::harness::Scripted::new("").await;
    let c = &s.client;
    let send = |method: reqwest::Method, path: &str, headers: &[(&str, &str)]| {
        let mut req = c
            .http
            .request(method, c.url(path))
            .header("content-type", "text/plain")
            .body(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        async move {
            let resp = req.send().await.expect("gateway answers");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body["error"]["code"].as_str().map(str::to_owned))
        }
    };
    let denied = (403, Some("permission_denied".to_owned()));
    // A cross-site form POST: the browser names the page's origin.
    let form = [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ];
    assert_eq!(
        send(reqwest::Method::POST, "/admin/policy/rollback", &form).await,
        denied
    );
    assert_eq!(
        send(reqwest::Method::POST, "/admin/config/reload", &form).await,
        denied
    );
    // DNS rebinding: same-origin for the browser, but the Host is the attacker's name.
    // (A browser's request: fetch() sends `Sec-Fetch-*` even same-origin.)
    let rebound = [
        ("host", "evil.example:8080"),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "cors"),
    ];
    assert_eq!(
        send(reqwest::Method::GET, "/admin/audit", &rebound).await,
        denied
    );
    assert_eq!(
        send(reqwest::Method::GET, "/v1/tools/pending", &rebound).await,
        denied
    );
    assert_eq!(
        send(reqwest::Method::POST, "/v1/chat/completions", &rebound).await,
        denied
    );
    assert!(
        s.upstream.received().is_empty(),
        "nothing reached the model"
    );
    // A local client (an SDK, curl) still works without a key.
    let (status, _) = c
        .chat(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.upstream.received().len(), 1);
}
