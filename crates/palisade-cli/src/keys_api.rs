//! `palisade keys create|list|update|rotate|revoke`: runtime keys, through a
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

/// A key's budget flags (create and update): the `/admin/keys` budget
/// fields. The gateway validates them (400 `invalid_key_budget`).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct BudgetArgs {
    /// Hard spend cap per budget period, in dollars (priced with `[ledger.prices]`).
    #[arg(long, allow_negative_numbers = true)]
    max_budget_usd: Option<f64>,
    /// Hard cap per budget period on prompt + completion tokens.
    #[arg(long)]
    max_tokens: Option<u64>,
    /// The period the caps count over (UTC calendar): `monthly` or `daily`.
    #[arg(long)]
    budget_period: Option<String>,
    /// This key's requests per minute.
    #[arg(long)]
    rpm: Option<u64>,
    /// This key's tokens per minute.
    #[arg(long)]
    tpm: Option<u64>,
    /// Unset a budget field (`max_budget_usd`, `max_tokens`, `budget_period`,
    /// `rpm`, `tpm`); repeat for several.
    #[arg(long = "clear", value_name = "FIELD")]
    clear: Vec<String>,
}

impl BudgetArgs {
    /// Adds the given fields to `body`; an unknown `--clear` field is refused.
    pub(crate) fn add_to(&self, body: &mut Value) -> Result<()> {
        let set = |body: &mut Value, field: &str, value: Value| body[field] = value;
        for field in &self.clear {
            let name = match field.as_str() {
                "rpm" => "requests_per_minute",
                "tpm" => "tokens_per_minute",
                f @ ("max_budget_usd" | "max_tokens" | "budget_period") => f,
                other => bail!(
                    "--clear {other}: not a budget field (max_budget_usd, max_tokens, budget_period, rpm, tpm)"
                ),
            };
            set(body, name, Value::Null);
        }
        if let Some(usd) = self.max_budget_usd {
            // JSON has no NaN or infinity: serialized, they would become
            // `null`, which clears the budget. Refuse them here.
            if !usd.is_finite() {
                bail!("--max-budget-usd must be a finite number of dollars");
            }
            set(body, "max_budget_usd", json!(usd));
        }
        if let Some(t) = self.max_tokens {
            set(body, "max_tokens", json!(t));
        }
        if let Some(p) = &self.budget_period {
            set(body, "budget_period", json!(p));
        }
        if let Some(r) = self.rpm {
            set(body, "requests_per_minute", json!(r));
        }
        if let Some(t) = self.tpm {
            set(body, "tokens_per_minute", json!(t));
        }
        Ok(())
    }
}

/// A key's budget column in `keys list`: spend against each cap this
/// period, then its rates; `-` when it has none.
fn budget_cell(k: &Value) -> String {
    let b = &k["budget"];
    let s = &k["spend"];
    let mut parts = Vec::new();
    if let Some(cap) = b["max_budget_usd"].as_f64() {
        let spent = s["spent_usd"].as_f64().unwrap_or(0.0);
        parts.push(format!("${spent:.2}/${cap:.2}"));
    }
    if let Some(cap) = b["max_tokens"].as_u64() {
        let spent = s["spent_tokens"].as_u64().unwrap_or(0);
        parts.push(format!("{spent}/{cap}tok"));
    }
    if !parts.is_empty() {
        let period = b["budget_period"].as_str().unwrap_or("monthly");
        parts.push(period.to_owned());
    }
    if let Some(r) = b["requests_per_minute"].as_u64() {
        parts.push(format!("{r}rpm"));
    }
    if let Some(t) = b["tokens_per_minute"].as_u64() {
        parts.push(format!("{t}tpm"));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
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
        "{:<22} {:<16} {:<16} {:<8} {:<6} {:<28} MODELS",
        "ID", "TENANT", "NAME", "STATUS", "ROLES", "BUDGET"
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
            "{:<22} {:<16} {:<16} {:<8} {:<6} {:<28} {models}",
            k["id"].as_str().unwrap_or("(config)"),
            k["tenant"].as_str().unwrap_or(""),
            k["name"].as_str().unwrap_or(""),
            k["status"].as_str().unwrap_or("active"),
            roles,
            budget_cell(k),
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
