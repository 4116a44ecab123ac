//! `palisade keys create|list|rotate|revoke`: runtime keys, through a
//! running gateway's `/admin/keys` API (the gateway writes the store; every
//! replica picks the change up within `auth.runtime.refresh_ms`).
//!
//! The admin key comes from `PALISADE_ADMIN_KEY` or `--admin-key-file`,
//! never from a flag, so it stays out of shell history and `ps`. A new
//! secret (create, rotate) is printed alone on standard output (or written
//! to `--key-file`); everything else goes to standard error, so
//! `KEY=$(palisade keys create …)` captures only the key.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// Where the gateway is and how to authenticate to it.
#[derive(Debug, clap::Args)]
pub(crate) struct ApiArgs {
    /// The gateway's base URL.
    #[arg(long, env = "PALISADE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A file holding an admin key (instead of `PALISADE_ADMIN_KEY`).
    #[arg(long)]
    admin_key_file: Option<PathBuf>,
}

impl ApiArgs {
    fn admin_key(&self) -> Result<String> {
        let key = match &self.admin_key_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
            None => std::env::var("PALISADE_ADMIN_KEY")
                .context("no admin key: set PALISADE_ADMIN_KEY or pass --admin-key-file")?,
        };
        let key = key.trim().to_owned();
        if key.is_empty() {
            bail!("the admin key is empty");
        }
        Ok(key)
    }

    /// Sends one admin request and returns the JSON body, or the gateway's
    /// error as an `Err`.
    pub(crate) fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let key = self.admin_key()?;
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .context("building the HTTP client")?;
            let mut req = client.request(method, &url).bearer_auth(key);
            if let Some(body) = body {
                req = req.json(&body);
            }
            let resp = req.send().await.with_context(|| format!("calling {url}"))?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                let code = body["error"]["code"].as_str().unwrap_or("unknown");
                let message = body["error"]["message"].as_str().unwrap_or("");
                bail!("the gateway answered {status} {code}: {message}");
            }
            Ok(body)
        })
    }
}

/// Prints a new secret where it belongs: `--key-file` (new, owner-only) or
/// standard output alone.
pub(crate) fn deliver_secret(body: &Value, key_file: Option<&std::path::Path>) -> Result<()> {
    let secret = body["key"]
        .as_str()
        .context("the gateway returned no key")?;
    match key_file {
        Some(path) => {
            crate::keys_cmd::write_key_file(path, secret)?;
            eprintln!(
                "wrote the key to {} (shown once; not stored anywhere else)",
                path.display()
            );
        }
        None => println!("{secret}"),
    }
    let mut shown = body.clone();
    if let Some(obj) = shown.as_object_mut() {
        obj.remove("key");
    }
    eprintln!("{shown}");
    Ok(())
}

/// `keys list`: a table, or JSON with `--json`.
pub(crate) fn print_list(body: &Value, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(body).context("json")?);
        return Ok(());
    }
    println!(
        "{:<22} {:<16} {:<16} {:<8} {:<6} MODELS",
        "ID", "TENANT", "NAME", "STATUS", "ROLES"
    );
    // Config keys first (`[[auth.keys]]`: no id, always active, every
    // model), then the runtime keys.
    let config_keys = body["config_keys"].as_array().map(Vec::as_slice);
    let runtime_keys = body["keys"].as_array().map(Vec::as_slice);
    for k in config_keys
        .unwrap_or_default()
        .iter()
        .chain(runtime_keys.unwrap_or_default())
    {
        let roles: String = [("admin", 'A'), ("approver", 'P'), ("executor", 'E')]
            .iter()
            .map(|(f, c)| if k[*f] == true { *c } else { '-' })
            .collect();
        let models = match k["models"].as_array() {
            Some(m) => m
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            None => "*".to_owned(),
        };
        println!(
            "{:<22} {:<16} {:<16} {:<8} {:<6} {models}",
            k["id"].as_str().unwrap_or("(config)"),
            k["tenant"].as_str().unwrap_or(""),
            k["name"].as_str().unwrap_or(""),
            k["status"].as_str().unwrap_or("active"),
            roles,
        );
    }
    Ok(())
}

/// The body of `keys create`.
#[allow(clippy::too_many_arguments)] // One flag each; a struct would only rename them.
pub(crate) fn create_body(
    tenant: &str,
    name: &str,
    models: &[String],
    expires_in_s: Option<u64>,
    admin: bool,
    approver: bool,
    executor: bool,
    reason: Option<&str>,
) -> Value {
    let mut body = json!({
        "tenant": tenant, "name": name,
        "admin": admin, "approver": approver, "executor": executor,
    });
    if !models.is_empty() {
        body["models"] = json!(models);
    }
    if let Some(s) = expires_in_s {
        body["expires_in_s"] = json!(s);
    }
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    body
}
