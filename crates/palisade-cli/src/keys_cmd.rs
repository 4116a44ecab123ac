//! `palisade keys`: new API keys and their hashes.
//!
//! `keys generate` is meant to be appended to the config
//! (`palisade keys generate --tenant acme >> palisade.toml`), so standard output carries
//! only the config entry, with the key's SHA-256. The key itself goes where it cannot land
//! in the config: standard error, or a new file readable by its owner only
//! (`--key-file`). It used to be printed on standard output as a comment, which put the
//! plaintext credential in the config file, its backups and its history.

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
fn write_key_file(path: &Path, key: &str) -> Result<()> {
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
