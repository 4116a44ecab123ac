//! The gateway test harness shared by this crate's integration tests (and,
//! through `#[path]`, its benches and examples): start a real gateway on a
//! loopback port from a config string or a reloadable config file, talk to
//! it over real HTTP, and read back what it recorded (metrics, ledger rows,
//! audit records) with bounded polling.
//!
//! What it must not do: script upstreams (that is `palisade-testkit`, which
//! knows nothing of the gateway), assert anything on a test's behalf beyond
//! "the gateway started / answered", or wait without a bound. Each test
//! binary uses a different subset, hence `dead_code` is allowed.
//!
//! Split by concern: start-up and HTTP here, stored records in `records`,
//! the extraction tests' traffic shapes in `extraction`.

#![allow(dead_code)]

pub mod extraction;
pub mod records;

use std::path::Path;
use std::time::{Duration, Instant};

use palisade_config::{Config, Sources};
use palisade_gateway::{Gateway, RunningGateway};
use serde_json::Value;

/// The chat completions path, the one most tests post to.
pub const CHAT: &str = "/v1/chat/completions";

/// Parses a config the way the CLI does, with the error as text (the shape
/// `Gateway::reload_from` wants for its loader).
pub fn load(text: &str) -> Result<Config, String> {
    Config::load(&Sources {
        toml: Some(text),
        ..Sources::default()
    })
    .map_err(|e| e.to_string())
}

/// Starts a gateway from `toml` on an ephemeral loopback port, with no
/// environment variables.
pub async fn gateway(toml: &str) -> RunningGateway {
    gateway_with_env(toml, |_| None).await
}

/// Starts a gateway from `toml` on an ephemeral loopback port, reading
/// environment variables (backend keys) from `env`.
pub async fn gateway_with_env(
    toml: &str,
    env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
) -> RunningGateway {
    let config = load(toml).unwrap_or_else(|e| panic!("test config is valid: {e}"));
    Gateway::with_env(config, env)
        .expect("gateway builds")
        .start(Some(loopback()))
        .await
        .expect("gateway starts")
}

/// Starts a gateway from the config file at `path`, reloadable from it
/// (`POST /admin/config/reload`, or polling when the file says so).
pub async fn reloadable(path: &Path) -> RunningGateway {
    let text = std::fs::read_to_string(path).expect("config file readable");
    let config = load(&text).unwrap_or_else(|e| panic!("test config is valid: {e}"));
    Gateway::with_env(config, |_| None)
        .expect("gateway builds")
        .reload_from(path, load)
        .start(Some(loopback()))
        .await
        .expect("gateway starts")
}

fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// An HTTP client that never goes through a proxy (the machine may set
/// one; the gateway is on loopback).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client builds")
}

/// `http://<gateway>{path}`.
pub fn url(gw: &RunningGateway, path: &str) -> String {
    format!("http://{}{path}", gw.local_addr())
}

/// One answer of the gateway, with the routing headers it sets.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// `x-palisade-backend`: the deployment that answered.
    pub backend: Option<String>,
    /// `x-palisade-attempts`: attempts made, hedges and retries included.
    pub attempts: Option<String>,
    /// `x-palisade-hedged: 1`.
    pub hedged: bool,
    /// `x-palisade-cascade`: `first` or `escalated`.
    pub cascade: Option<String>,
    /// `x-palisade-ledger-id`.
    pub ledger_id: Option<String>,
    /// The JSON body, `Null` when it is not JSON.
    pub body: Value,
    /// Client-side time from send to the whole body.
    pub took: Duration,
}

impl Reply {
    /// The assistant text of the first choice (`""` when absent).
    pub fn content(&self) -> &str {
        self.body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
    }
}

/// POSTs `body` to `path`, with `key` as bearer token when given.
pub async fn post(gw: &RunningGateway, path: &str, body: Value, key: Option<&str>) -> Reply {
    let started = Instant::now();
    let mut req = http().post(url(gw, path)).json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("gateway answers");
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let backend = header("x-palisade-backend");
    let attempts = header("x-palisade-attempts");
    let hedged = header("x-palisade-hedged").as_deref() == Some("1");
    let cascade = header("x-palisade-cascade");
    let ledger_id = header("x-palisade-ledger-id");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        backend,
        attempts,
        hedged,
        cascade,
        ledger_id,
        body,
        took: started.elapsed(),
    }
}

/// GETs `path` (no key) and returns the status and the body text.
pub async fn get_text(gw: &RunningGateway, path: &str) -> (u16, String) {
    let resp = http()
        .get(url(gw, path))
        .send()
        .await
        .expect("gateway answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body readable"))
}

/// GETs `path` (no key) and parses the body as JSON.
pub async fn get_json(gw: &RunningGateway, path: &str) -> Value {
    let (_, text) = get_text(gw, path).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {text}"))
}

/// The Prometheus text at `/metrics`.
pub async fn metrics(gw: &RunningGateway) -> String {
    get_text(gw, "/metrics").await.1
}

/// `POST /admin/config/reload`: the status and the body text (200 applied,
/// 422 refused with the reason).
pub async fn reload(gw: &RunningGateway) -> (u16, String) {
    let resp = http()
        .post(url(gw, "/admin/config/reload"))
        .send()
        .await
        .expect("gateway answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// The hex SHA-256 of an API key, as `[[auth.keys]] sha256` wants it.
pub fn key_hash(k: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(k.as_bytes()))
}

/// Polls `f` every 20 ms until it holds; fails the test after 5 s.
pub async fn eventually(what: &str, f: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < until, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
