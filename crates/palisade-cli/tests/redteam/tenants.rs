//! One tenant against another through what they share a gateway with: a
//! key named like another tenant's key spending that key's requests (and
//! its refusals counted as the other key's offences), and `/metrics`
//! showing every tenant's use and spend.

use palisade_testkit::ScriptedUpstream;
use serde_json::json;

use crate::harness::start;

fn sha(key: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()))
}

/// `[limits.keys.ci]` gives a key named `ci` one request at a time. Tenant
/// eve names her key `ci` too and spends her bucket: acme's `ci` still has
/// its own. Before the fix the bucket was keyed by the name alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_named_like_another_tenants_key_has_its_own_rate() {
    let upstream = ScriptedUpstream::start().await;
    let gw = start(&format!(
        "[[auth.keys]]\nname = \"ci\"\ntenant = \"acme\"\nsha256 = \"{}\"\n\
         [[auth.keys]]\nname = \"ci\"\ntenant = \"eve\"\nsha256 = \"{}\"\n\
         [limits.keys.ci]\nrequests_per_minute = 60\nburst = 1\n\
         [backends.main]\nbase_url = \"{}\"\n",
        sha("sk-acme-ci"),
        sha("sk-eve-ci"),
        upstream.base_url()
    ))
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{}/v1/chat/completions", gw.local_addr());
    let send = |key: &'static str| {
        http.post(&url)
            .bearer_auth(key)
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(send("sk-eve-ci").await.unwrap().status(), 200);
    assert_eq!(
        send("sk-eve-ci").await.unwrap().status(),
        429,
        "eve's own bucket is empty"
    );
    assert_eq!(
        send("sk-acme-ci").await.unwrap().status(),
        200,
        "acme's key of the same name was refused: eve spent its bucket"
    );
    assert_eq!(
        send("sk-acme-ci").await.unwrap().status(),
        429,
        "acme's rate still applies"
    );
}

/// `/metrics` carries every tenant's token counts and spend by name. With
/// `server.metrics_require_admin`, a tenant's key (or no key) is refused and
/// an admin key reads it: the scraper holds an admin key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_kept_from_tenants() {
    let upstream = ScriptedUpstream::start().await;
    let gw = start(&format!(
        "[server]\nmetrics_require_admin = true\n\
         [[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{}\"\nadmin = true\n\
         [[auth.keys]]\nname = \"ci\"\ntenant = \"eve\"\nsha256 = \"{}\"\n\
         [backends.main]\nbase_url = \"{}\"\n",
        sha("sk-ops"),
        sha("sk-eve-ci"),
        upstream.base_url()
    ))
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{}", gw.local_addr());
    let chat = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-eve-ci")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 200);
    let metrics = |key: Option<&'static str>| {
        let mut req = http.get(format!("{base}/metrics"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
    };
    let anonymous = metrics(None).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let tenant = metrics(Some("sk-eve-ci")).await.unwrap();
    assert_eq!(tenant.status(), 403);
    let text = tenant.text().await.unwrap();
    assert!(!text.contains("palisade_"), "{text}");
    let admin = metrics(Some("sk-ops")).await.unwrap();
    assert_eq!(admin.status(), 200);
    assert!(admin.text().await.unwrap().contains("palisade_"));
}
