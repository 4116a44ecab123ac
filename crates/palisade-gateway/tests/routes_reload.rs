//! Routes and backends hot-reloaded from the config file, through a running
//! gateway in front of real scripted upstreams on loopback: a backend and a
//! route added by editing the file serve without a restart, a route's
//! target moves, a removed backend finishes the stream it carries while new
//! requests go elsewhere (and its health probe stops), a bad edit is
//! refused with its reason while the old routes keep serving, and an
//! unchanged backend keeps its open breaker across a reload (and a removed
//! one stops reporting it).
//!
//! The gateway runs in open mode on loopback (every caller is an admin
//! there), and reloads are explicit (`POST /admin/config/reload`) so each
//! step is deterministic; polling is the same code path (`config_reload.rs`).

mod support;

use std::time::{Duration, Instant};

use palisade_gateway::RunningGateway;
use palisade_testkit::ScriptedUpstream;
use serde_json::{json, Value};
use support::reloadable as start;

const HEAD: &str = "[reload]\nconfig_poll_ms = 0\n";

fn backend(name: &str, upstream: &ScriptedUpstream, extra: &str) -> String {
    format!(
        "[backends.{name}]\nbase_url = \"{}\"\n{extra}\n",
        upstream.base_url()
    )
}

fn route(model: &str, backend: &str, extra: &str) -> String {
    format!("[[routes]]\nmodel = \"{model}\"\nbackend = \"{backend}\"\n{extra}\n")
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(gw: &RunningGateway) -> Self {
        Self {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            base: format!("http://{}", gw.local_addr()),
        }
    }

    /// `(status, error code or "", x-palisade-backend)`.
    async fn chat(&self, model: &str) -> (u16, String, String) {
        let resp = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&json!({"model": model, "max_tokens": 5,
                          "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let served = resp
            .headers()
            .get("x-palisade-backend")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
        (status, code, served)
    }

    async fn reload(&self) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/admin/config/reload", self.base))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    /// The value of the `/metrics` line starting with `prefix`.
    async fn metric(&self, prefix: &str) -> Option<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The models an upstream received, in order.
fn models(upstream: &ScriptedUpstream) -> Vec<String> {
    upstream
        .received()
        .iter()
        .filter_map(|r| r.body["model"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_and_route_added_to_the_file_serve_and_a_route_moves_without_restart() {
    let (one, two) = (
        ScriptedUpstream::start().await,
        ScriptedUpstream::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.toml");
    std::fs::write(
        &path,
        format!(
            "{HEAD}{}{}",
            backend("one", &one, ""),
            route("m", "one", "")
        ),
    )
    .unwrap();
    let gw = start(&path).await;
    let c = Client::new(&gw);
    assert_eq!(c.chat("m").await.0, 200);
    assert_eq!(c.chat("n").await.1, "model_not_found");
    let before = c.get("/admin/routes").await;
    assert_eq!(before["generation"], 1, "{before}");

    // Add a backend and a route to it.
    std::fs::write(
        &path,
        format!(
            "{HEAD}{}{}{}{}",
            backend("one", &one, ""),
            backend("two", &two, ""),
            route("m", "one", ""),
            route("n", "two", "upstream_model = \"n-upstream\""),
        ),
    )
    .unwrap();
    let (status, body) = c.reload().await;
    assert_eq!(status, 200, "{body}");
    let (status, _, served) = c.chat("n").await;
    assert_eq!((status, served.as_str()), (200, "two"));
    assert_eq!(models(&two), ["n-upstream"]);
    assert_eq!(c.chat("m").await.2, "one");
    // The Routes view (and the console page built on it) shows the new table.
    let after = c.get("/admin/routes").await;
    assert_eq!(after["generation"], 2, "{after}");
    let names: Vec<&str> = after["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["model"].as_str())
        .collect();
    assert_eq!(names, ["m", "n"]);
    assert_eq!(after["backends"].as_array().unwrap().len(), 2);
    let config = c.get("/admin/config").await;
    assert_eq!(config["routing_generation"], 2, "{config}");

    // Move route m to the other backend.
    std::fs::write(
        &path,
        format!(
            "{HEAD}{}{}{}{}",
            backend("one", &one, ""),
            backend("two", &two, ""),
            route("m", "two", ""),
            route("n", "two", "upstream_model = \"n-upstream\""),
        ),
    )
    .unwrap();
    assert_eq!(c.reload().await.0, 200);
    let seen_by_one = models(&one).len();
    for _ in 0..5 {
        assert_eq!(c.chat("m").await.2, "two");
    }
    assert_eq!(models(&one).len(), seen_by_one, "one got nothing more");
    assert_eq!(models(&two), ["n-upstream", "m", "m", "m", "m", "m"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_backend_finishes_its_stream_new_requests_go_elsewhere_and_its_probe_stops() {
    let (stay, leave) = (
        ScriptedUpstream::start().await,
        ScriptedUpstream::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.toml");
    let probe = "probe_path = \"/models\"\nprobe_interval_ms = 30";
    std::fs::write(
        &path,
        format!(
            "{HEAD}{}{}{}",
            backend("stay", &stay, ""),
            backend("leave", &leave, probe),
            route("m", "leave", "upstream_model = \"slow-stream-150\""),
        ),
    )
    .unwrap();
    let gw = start(&path).await;
    let c = Client::new(&gw);
    // The probe of `leave` runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while leave.models_listed() < 2 {
        assert!(Instant::now() < deadline, "the probe never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.get("/admin/routes").await["probes_running"], 1);

    // A long stream through `leave` (8 words, 150 ms each).
    let http = c.http.clone();
    let url = format!("{}/v1/chat/completions", c.base);
    let stream = tokio::spawn(async move {
        let resp = http
            .post(url)
            .json(
                &json!({"model": "m", "stream": true, "messages": [{"role": "user",
                   "content": "one two three four five six seven eight"}]}),
            )
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let served = resp.headers()["x-palisade-backend"]
            .to_str()
            .unwrap()
            .to_owned();
        (status, served, resp.text().await.unwrap())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while models(&leave).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the stream never reached `leave`"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Remove `leave` while the stream is in flight; m now goes to `stay`.
    std::fs::write(
        &path,
        format!(
            "{HEAD}{}{}",
            backend("stay", &stay, ""),
            route("m", "stay", "")
        ),
    )
    .unwrap();
    let (status, body) = c.reload().await;
    assert_eq!(status, 200, "{body}");
    let (status, _, served) = c.chat("m").await;
    assert_eq!((status, served.as_str()), (200, "stay"));
    let (status, served, text) = stream.await.unwrap();
    assert!(!stream_finished_early(&text), "{text}");
    assert_eq!((status, served.as_str()), (200, "leave"));
    assert!(text.contains("eight") && text.contains("[DONE]"), "{text}");
    assert_eq!(leave.streams_cancelled(), 0);
    assert_eq!(
        models(&leave),
        ["slow-stream-150"],
        "nothing new reached it"
    );

    // Its probe stopped: no loop left, and no more probe requests.
    let routes = c.get("/admin/routes").await;
    assert_eq!(routes["probes_running"], 0, "{routes}");
    assert_eq!(routes["backends"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probes = leave.models_listed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        leave.models_listed(),
        probes,
        "the removed backend is still probed"
    );
}

/// A relayed stream that ended before the upstream's `[DONE]`.
fn stream_finished_early(text: &str) -> bool {
    !text.trim_end().ends_with("data: [DONE]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_to_an_unknown_backend_is_refused_and_the_old_routes_keep_serving() {
    let one = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.toml");
    let good = format!(
        "{HEAD}{}{}",
        backend("one", &one, ""),
        route("m", "one", "")
    );
    std::fs::write(&path, &good).unwrap();
    let gw = start(&path).await;
    let c = Client::new(&gw);
    std::fs::write(
        &path,
        format!(
            "{HEAD}{}{}{}",
            backend("one", &one, ""),
            route("m", "ghost", ""),
            route("n", "one", "")
        ),
    )
    .unwrap();
    let (status, body) = c.reload().await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "config_reload_refused", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("unknown backend `ghost`"), "{message}");
    let config = c.get("/admin/config").await;
    let last = config["config"]["last_error"].as_str().unwrap();
    assert!(last.contains("routes[0].backend"), "{last}");
    assert_eq!(config["routing_generation"], 1);
    // Nothing of the edit applies: m still serves, n is still unknown.
    assert_eq!(c.chat("m").await.0, 200);
    assert_eq!(c.chat("n").await.1, "model_not_found");
    // A new backend whose key variable is unset is refused the same way.
    std::fs::write(
        &path,
        format!(
            "{HEAD}{}{}{}",
            backend("one", &one, ""),
            backend("two", &one, "api_key_env = \"PALISADE_TEST_UNSET_KEY\""),
            route("m", "two", "")
        ),
    )
    .unwrap();
    let (status, body) = c.reload().await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PALISADE_TEST_UNSET_KEY"),
        "{body}"
    );
    assert_eq!(c.chat("m").await.2, "one");
    assert_eq!(c.get("/admin/routes").await["generation"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_stays_open_across_a_reload_that_keeps_its_backend() {
    let (bad, other) = (
        ScriptedUpstream::start().await,
        ScriptedUpstream::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.toml");
    let breaker = |cooldown: u64| {
        format!(
            "[backends.bad.circuit_breaker]\nerror_rate = 0.5\nwindow = 4\nmin_requests = 2\ncooldown_ms = {cooldown}\n"
        )
    };
    let failing = route("m", "bad", "upstream_model = \"error-500\"");
    std::fs::write(
        &path,
        format!(
            "{HEAD}{}{}{failing}",
            backend("bad", &bad, ""),
            breaker(600_000)
        ),
    )
    .unwrap();
    let gw = start(&path).await;
    let c = Client::new(&gw);
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(c.chat("m").await.1);
        if codes.last().is_some_and(|c| c == "circuit_open") {
            break;
        }
    }
    assert_eq!(codes.last().unwrap(), "circuit_open", "{codes:?}");
    let sent = bad.received().len();

    // An edit elsewhere (a backend and a route added): `bad` is unchanged.
    std::fs::write(
        &path,
        format!(
            "{HEAD}{}{}{}{failing}{}",
            backend("bad", &bad, ""),
            backend("other", &other, ""),
            breaker(600_000),
            route("n", "other", "")
        ),
    )
    .unwrap();
    assert_eq!(c.reload().await.0, 200);
    assert_eq!(c.chat("n").await.2, "other");
    assert_eq!(c.chat("m").await.1, "circuit_open", "the breaker was reset");
    assert_eq!(
        bad.received().len(),
        sent,
        "a request reached the open backend"
    );
    let routes = c.get("/admin/routes").await;
    let state = routes["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "bad")
        .cloned()
        .unwrap();
    assert_eq!(state["breaker"], "open", "{routes}");
    let gauge = "palisade_backend_circuit_open{backend=\"bad\"} ";
    assert_eq!(c.metric(gauge).await, Some(1.0));

    // `bad` removed: no alert keeps firing for a backend that is gone.
    std::fs::write(
        &path,
        format!(
            "{HEAD}{}{}{}",
            backend("other", &other, ""),
            route("m", "other", ""),
            route("n", "other", "")
        ),
    )
    .unwrap();
    assert_eq!(c.reload().await.0, 200);
    assert_eq!(c.metric(gauge).await, Some(0.0));
    assert_eq!(c.chat("m").await.2, "other");

    // Brought back with an edited table, `bad` is another backend: fresh
    // state (nothing of the old breaker), so the next request reaches the
    // upstream again (and fails there).
    std::fs::write(
        &path,
        format!(
            "{HEAD}{}{}{}{failing}{}",
            backend("bad", &bad, ""),
            backend("other", &other, ""),
            breaker(500_000),
            route("n", "other", "")
        ),
    )
    .unwrap();
    assert_eq!(c.reload().await.0, 200);
    assert_eq!(c.chat("m").await.1, "upstream_error");
    assert_eq!(bad.received().len(), sent + 1);
}
