//! Routes and backends reloaded under attack: whoever can trigger reloads
//! (touch the file, send `SIGHUP`, call the admin endpoint) must not make a
//! request see half of two routing tables, lose requests in flight, leak a
//! health-probe loop per reload, or use an edit to send data out of a
//! residency region.

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_gateway::{ReloadOutcome, RunningGateway};
use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};

use crate::harness::{load, start_reloadable as start};

/// `(status, x-palisade-backend, error code)`; status 0 when the
/// connection failed.
async fn chat(
    http: &reqwest::Client,
    gw: &RunningGateway,
    model: &str,
    stream: bool,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut req = http
        .post(format!("http://{}/v1/chat/completions", gw.local_addr()))
        .json(&json!({"model": model, "stream": stream, "max_tokens": 5,
                      "messages": [{"role": "user", "content": "one two three"}]}));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let Ok(resp) = req.send().await else {
        return (0, String::new(), String::new());
    };
    let status = resp.status().as_u16();
    let served = resp
        .headers()
        .get("x-palisade-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.unwrap_or_default();
    if stream && status == 200 && !text.trim_end().ends_with("data: [DONE]") {
        return (0, served, "stream cut".to_owned());
    }
    let code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, served, code)
}

async fn admin_routes(http: &reqwest::Client, gw: &RunningGateway) -> Value {
    http.get(format!("http://{}/admin/routes", gw.local_addr()))
        .send()
        .await
        .expect("admin routes")
        .json()
        .await
        .expect("json")
}

fn received_models(upstream: &ScriptedUpstream) -> Vec<String> {
    upstream
        .received()
        .iter()
        .filter_map(|r| r.body["model"].as_str().map(str::to_owned))
        .collect()
}

/// Two routing tables alternate as fast as the file can be rewritten and
/// reloaded (explicit reloads racing the poller), while clients send plain
/// and streamed requests. In table A the route goes to backend `a` under
/// the upstream name `via-a`, and a probed backend `p` exists; in table B
/// it goes to `b` as `via-b`, `p` is gone and a spare backend on `p`'s
/// upstream sorts first. A request that took its route from one table and
/// its backends from the other would reach `p`'s upstream or deliver the
/// other table's name; none does, none is lost, and the probe
/// loops never outnumber the probed backends in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_storm_loses_no_request_mixes_no_tables_and_leaks_no_probe() {
    let (a, b, p) = (
        ScriptedUpstream::start().await,
        ScriptedUpstream::start().await,
        ScriptedUpstream::start().await,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("palisade.toml");
    let probed = "probe_path = \"/models\"\nprobe_interval_ms = 20\n";
    let table = |n: usize| {
        // Table B also has a spare backend that sorts first, so backend
        // indices differ between the tables: a route of one table read
        // against the other's backend list lands on the wrong upstream.
        let (target, p_backend) = if n.is_multiple_of(2) {
            (
                "a",
                format!("[backends.p]\nbase_url = \"{}\"\n{probed}", p.base_url()),
            )
        } else {
            (
                "b",
                format!("[backends.0-spare]\nbase_url = \"{}\"\n", p.base_url()),
            )
        };
        format!(
            "[reload]\nconfig_poll_ms = 100\n\
             [backends.a]\nbase_url = \"{}\"\n\
             [backends.b]\nbase_url = \"{}\"\n{probed}\n{p_backend}\n\
             [[routes]]\nmodel = \"m\"\nbackend = \"{target}\"\nupstream_model = \"via-{target}\"\n\
             # edit {n}\n",
            a.base_url(),
            b.base_url(),
        )
    };
    std::fs::write(&path, table(0)).expect("write");
    let gw = Arc::new(start(&path).await);
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let (http, gw, stop) = (http.clone(), gw.clone(), stop.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && outcomes.len() < 2_000 {
                    outcomes.push(chat(&http, &gw, "m", i % 2 == 0, &[]).await);
                }
                outcomes
            })
        })
        .collect();
    let started = Instant::now();
    let mut applied = 0;
    for n in 1..=40 {
        std::fs::write(&path, table(n)).expect("write");
        if gw.reload_config().await == ReloadOutcome::Applied {
            applied += 1;
        }
        // A removed loop ends as soon as it is woken; a leak never does.
        let settle = Instant::now() + Duration::from_secs(2);
        loop {
            let running = admin_routes(&http, &gw).await["probes_running"]
                .as_u64()
                .expect("probes_running");
            if running <= 2 {
                break;
            }
            assert!(
                Instant::now() < settle,
                "probe loops pile up: {running} after edit {n}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "storm too slow"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        for (status, served, code) in client.await.expect("client task") {
            total += 1;
            assert_eq!(
                status, 200,
                "a request failed in the storm: {code} via {served}"
            );
        }
    }
    assert!(applied >= 20, "only {applied} reloads applied");
    assert!(total >= 20, "only {total} requests during the storm");
    // No mix: each upstream only ever heard its own table's name.
    let (to_a, to_b) = (received_models(&a), received_models(&b));
    assert!(to_a.iter().all(|m| m == "via-a"), "{to_a:?}");
    assert!(to_b.iter().all(|m| m == "via-b"), "{to_b:?}");
    assert!(!to_a.is_empty() && !to_b.is_empty());
    // `p`'s upstream serves no route in either table: only probes reach it.
    assert!(p.received().is_empty(), "{:?}", received_models(&p));
    // Table 40 is A's: b and p probed, two loops; after one more edit (to
    // B) p's loop ends and p hears no more probes.
    assert_eq!(admin_routes(&http, &gw).await["probes_running"], 2);
    std::fs::write(&path, table(41)).expect("write");
    assert_eq!(gw.reload_config().await, ReloadOutcome::Applied);
    let settle = Instant::now() + Duration::from_secs(2);
    while admin_routes(&http, &gw).await["probes_running"] != 1 {
        assert!(
            Instant::now() < settle,
            "the removed backend's probe loop lives on"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probes = p.models_listed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        p.models_listed(),
        probes,
        "a removed backend is still probed"
    );
}

/// An edit that would route an EU-only route to a US backend is refused by
/// validation, on reload as at start; and an edit that moves a route (no
/// rule of its own) to a US backend cannot carry an EU-only tenant there:
/// its requests fail closed, the US upstream hears none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_cannot_open_a_residency_hole() {
    let (eu, us) = (
        ScriptedUpstream::start().await,
        ScriptedUpstream::start().await,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("palisade.toml");
    let hash = |k: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(k.as_bytes()))
    };
    let head = format!(
        "[reload]\nconfig_poll_ms = 0\n\
         [[auth.keys]]\nname = \"eu\"\ntenant = \"eu-only\"\nsha256 = \"{}\"\n\
         [[auth.keys]]\nname = \"ops\"\ntenant = \"ops\"\nsha256 = \"{}\"\nadmin = true\n\
         [tenants.eu-only.residency]\nregions = [\"eu-west\"]\n\
         [backends.eu]\nbase_url = \"{}\"\nregion = \"eu-west\"\n\
         [backends.us]\nbase_url = \"{}\"\nregion = \"us-east\"\n",
        hash("sk-eu-tenant-0123456789"),
        hash("sk-ops-0123456789abcdef"),
        eu.base_url(),
        us.base_url()
    );
    let good = format!(
        "{head}[[routes]]\nmodel = \"m\"\nbackend = \"eu\"\nresidency = {{ regions = [\"eu-west\"] }}\n\
         [[routes]]\nmodel = \"open\"\nbackend = \"eu\"\n"
    );
    std::fs::write(&path, &good).expect("write");
    let gw = start(&path).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let eu_key = [("authorization", "Bearer sk-eu-tenant-0123456789")];
    assert_eq!(chat(&http, &gw, "m", false, &eu_key).await.0, 200);

    // The EU-only route gains a US deployment: refused like at start.
    let hole = format!(
        "{head}[[routes]]\nmodel = \"m\"\n\
         deployments = [{{ backend = \"eu\" }}, {{ backend = \"us\" }}]\n\
         residency = {{ regions = [\"eu-west\"] }}\n\
         [[routes]]\nmodel = \"open\"\nbackend = \"eu\"\n"
    );
    let at_start = load(&hole).expect_err("refused at start");
    assert!(at_start.contains("routes[0].deployments[1]"), "{at_start}");
    std::fs::write(&path, &hole).expect("write");
    match gw.reload_config().await {
        ReloadOutcome::Invalid(why) => {
            assert!(why.contains("outside this route's residency rule"), "{why}")
        }
        other => panic!("applied a residency hole: {other:?}"),
    }
    for _ in 0..5 {
        let (status, served, _) = chat(&http, &gw, "m", false, &eu_key).await;
        assert_eq!((status, served.as_str()), (200, "eu"));
    }

    // A route without its own rule moves to the US backend: valid (other
    // tenants may use it), applied, but the EU-only tenant fails closed.
    let moved = format!(
        "{head}[[routes]]\nmodel = \"m\"\nbackend = \"eu\"\nresidency = {{ regions = [\"eu-west\"] }}\n\
         [[routes]]\nmodel = \"open\"\nbackend = \"us\"\n"
    );
    std::fs::write(&path, &moved).expect("write");
    assert_eq!(gw.reload_config().await, ReloadOutcome::Applied);
    for _ in 0..5 {
        let (status, _, code) = chat(&http, &gw, "open", false, &eu_key).await;
        assert_eq!((status, code.as_str()), (503, "residency_unavailable"));
    }
    let ops = [("authorization", "Bearer sk-ops-0123456789abcdef")];
    assert_eq!(chat(&http, &gw, "open", false, &ops).await.1, "us");
    assert_eq!(
        us.received().len(),
        1,
        "only the ops request reached the US"
    );
}
