//! `palisade keys`: new API keys and their hashes.
//!
//! `keys generate` is meant to be appended to the config
//! (`palisade keys generate --tenant acme >> palisade.toml`), so standard output carries
//! only the config entry, with the key's SHA-256. The key itself goes where it cannot land
//! in the config: standard error, or a new file readable by its owner only
//! (`--key-file`). It used to be printed on standard output as a comment, which put the
//! plaintext credential in the config file, its backups and its history.
//!
//! `create`, `list`, `update`, `rotate` and `revoke` manage runtime keys
//! through a running gateway's admin API (see [`crate::keys_api`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sha2::{Digest, Sha256};

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Generate a new random API key. Prints its `[[auth.keys]]` config entry
    /// (the key's hash, never the key) on standard output, so it can be
    /// appended to the config; the key itself goes to standard error, or to
    /// --key-file.
    Generate {
        /// Tenant the key acts for.
        #[arg(long)]
        tenant: String,
        /// A label for logs and metrics.
        #[arg(long, default_value = "default")]
        name: String,
        /// Write the key to this new file (mode 0600; refuses to overwrite)
        /// instead of standard error.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Mark the key `approver = true` (may confirm held tool calls).
        #[arg(long)]
        approver: bool,
        /// Mark the key `executor = true` (receives tool credentials).
        #[arg(long)]
        executor: bool,
    },
    /// Create a runtime key through a running gateway (`/admin/keys`). The
    /// key is printed alone on standard output (or to --key-file), once.
    Create {
        #[command(flatten)]
        api: crate::keys_api::ApiArgs,
        /// Tenant the key acts for.
        #[arg(long)]
        tenant: String,
        /// A label for logs and metrics (unique among the tenant's live keys).
        #[arg(long)]
        name: String,
        /// Allow only this model (repeat for several); every model when absent.
        #[arg(long = "model")]
        models: Vec<String>,
        /// Expire the key after this many seconds.
        #[arg(long)]
        expires_in_s: Option<u64>,
        /// May call /admin/* (admin keys are global, across tenants).
        #[arg(long)]
        admin: bool,
        /// May confirm held tool calls.
        #[arg(long)]
        approver: bool,
        /// Receives tool credentials.
        #[arg(long)]
        executor: bool,
        /// Why (kept in the audit record).
        #[arg(long)]
        reason: Option<String>,
        /// Write the key to this new file (mode 0600) instead of standard output.
        #[arg(long)]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        budget: crate::keys_api::BudgetArgs,
    },
    /// Change a runtime key's budget, allowlist or expiry (every replica
    /// within the refresh interval; spend so far is kept).
    Update {
        #[command(flatten)]
        api: crate::keys_api::ApiArgs,
        /// The key's id (from `keys list`).
        id: String,
        #[command(flatten)]
        budget: crate::keys_api::BudgetArgs,
        /// Allow only this model (repeat for several); replaces the allowlist.
        #[arg(long = "model")]
        models: Vec<String>,
        /// Allow every model (clears the allowlist).
        #[arg(long, conflicts_with = "models")]
        all_models: bool,
        /// Expire the key this many seconds from now.
        #[arg(long)]
        expires_in_s: Option<u64>,
        /// Why (kept in the audit record).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List runtime keys (no secrets).
    List {
        #[command(flatten)]
        api: crate::keys_api::ApiArgs,
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Give a runtime key a new secret; with --overlap-s the old one keeps
    /// working that long (at most 7 days).
    Rotate {
        #[command(flatten)]
        api: crate::keys_api::ApiArgs,
        /// The key's id (from `keys list`).
        id: String,
        /// Seconds the previous secret stays valid.
        #[arg(long, default_value_t = 0)]
        overlap_s: u64,
        /// Why (kept in the audit record).
        #[arg(long)]
        reason: Option<String>,
        /// Write the new key to this new file (mode 0600).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Revoke a runtime key for good (every replica within the refresh interval).
    Revoke {
        #[command(flatten)]
        api: crate::keys_api::ApiArgs,
        /// The key's id.
        id: String,
        /// Why (kept in the audit record).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Print the SHA-256 of a key (read from standard input when omitted, so
    /// it stays out of shell history).
    Hash {
        /// The key.
        key: Option<String>,
    },
}

/// A TOML basic string (quotes and escapes), so a tenant or name cannot break out of the
/// entry it is written into.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Writes `key` to `path`, which must not exist, readable by its owner only.
pub(crate) fn write_key_file(path: &Path, key: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
    writeln!(file, "{key}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub(crate) fn run(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Generate {
            tenant,
            name,
            key_file,
            approver,
            executor,
        } => {
            let mut raw = [0u8; 24];
            getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let key = format!("pk-{}", hex::encode(raw));
            let hash = hex::encode(Sha256::digest(key.as_bytes()));
            // The key first: if it cannot be stored, print no entry for it.
            match &key_file {
                Some(path) => {
                    write_key_file(path, &key)?;
                    eprintln!(
                        "wrote the API key for tenant {tenant} to {} (give it to the client; \
                         it is not stored anywhere else)",
                        path.display()
                    );
                }
                None => eprintln!(
                    "API key for tenant {tenant} (shown once; give it to the client):\n{key}"
                ),
            }
            let mut entry = format!(
                "\n[[auth.keys]]\nname = {}\ntenant = {}\nsha256 = \"{hash}\"\n",
                toml_string(&name),
                toml_string(&tenant)
            );
            if approver {
                entry.push_str("approver = true\n");
            }
            if executor {
                entry.push_str("executor = true\n");
            }
            print!("{entry}");
            Ok(())
        }
        KeysCommand::Create {
            api,
            tenant,
            name,
            models,
            expires_in_s,
            admin,
            approver,
            executor,
            reason,
            key_file,
            budget,
        } => {
            let mut body = crate::keys_api::create_body(
                &tenant,
                &name,
                &models,
                expires_in_s,
                admin,
                approver,
                executor,
                reason.as_deref(),
            );
            budget.add_to(&mut body)?;
            let created = api.call(reqwest::Method::POST, "/admin/keys", Some(body))?;
            crate::keys_api::deliver_secret(&created, key_file.as_deref())
        }
        KeysCommand::List { api, tenant, json } => {
            let path = match &tenant {
                Some(t) => format!("/admin/keys?tenant={}", urlencode(t)),
                None => "/admin/keys".to_owned(),
            };
            let body = api.call(reqwest::Method::GET, &path, None)?;
            crate::keys_api::print_list(&body, json)
        }
        KeysCommand::Update {
            api,
            id,
            budget,
            models,
            all_models,
            expires_in_s,
            reason,
        } => {
            let mut body = serde_json::json!({"reason": reason.unwrap_or_default()});
            budget.add_to(&mut body)?;
            if all_models {
                body["models"] = serde_json::Value::Null;
            } else if !models.is_empty() {
                body["models"] = serde_json::json!(models);
            }
            if let Some(s) = expires_in_s {
                body["expires_in_s"] = serde_json::json!(s);
            }
            let updated = api.call(
                reqwest::Method::PATCH,
                &format!("/admin/keys/{}", urlencode(&id)),
                Some(body),
            )?;
            println!("{updated}");
            Ok(())
        }
        KeysCommand::Rotate {
            api,
            id,
            overlap_s,
            reason,
            key_file,
        } => {
            let body =
                serde_json::json!({"overlap_s": overlap_s, "reason": reason.unwrap_or_default()});
            let rotated = api.call(
                reqwest::Method::POST,
                &format!("/admin/keys/{}/rotate", urlencode(&id)),
                Some(body),
            )?;
            crate::keys_api::deliver_secret(&rotated, key_file.as_deref())
        }
        KeysCommand::Revoke { api, id, reason } => {
            let body = serde_json::json!({"reason": reason.unwrap_or_default()});
            let revoked = api.call(
                reqwest::Method::POST,
                &format!("/admin/keys/{}/revoke", urlencode(&id)),
                Some(body),
            )?;
            eprintln!("revoked {revoked}");
            Ok(())
        }
        KeysCommand::Hash { key } => {
            let key = match key {
                Some(k) => k,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading the key from standard input")?;
                    s.trim().to_owned()
                }
            };
            if key.is_empty() {
                bail!("empty key");
            }
            println!("{}", hex::encode(Sha256::digest(key.as_bytes())));
            Ok(())
        }
    }
}

/// Percent-encodes a path or query component (ids and tenants are plain,
/// but a hostile value must not change the request's path).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
