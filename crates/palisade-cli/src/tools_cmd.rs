//! `palisade tools`: the capability-token key and offline verification, for
//! operators and for tool executors that want to check a token without
//! calling the gateway.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use palisade_tools::{CapabilitySigner, CapabilityVerifier, Expected};

#[derive(Debug, Subcommand)]
pub(crate) enum ToolsCommand {
    /// Generate a signing key for capability tokens: writes the seed (64 hex
    /// digits) to FILE with owner-only permissions and prints the public key
    /// executors verify with. Point `tools.signing_key_file` at FILE on
    /// every replica.
    Keygen {
        /// Where to write the seed; refuses to overwrite.
        out: PathBuf,
    },
    /// Print the public key of a signing key file.
    PublicKey {
        /// The seed file.
        key: PathBuf,
    },
    /// Verify a capability token offline for the call an executor is about
    /// to run. Prints the claims as JSON and exits 0 when the token covers
    /// exactly this call and has not expired; prints the reason and exits 1
    /// otherwise.
    Verify {
        /// The token (`pcap1....`).
        token: String,
        /// The gateway's public key (64 hex digits, from
        /// `GET /v1/tools/public-key` or `palisade tools public-key`).
        #[arg(long)]
        public_key: String,
        /// The tool about to run.
        #[arg(long)]
        tool: String,
        /// Its arguments, as JSON.
        #[arg(long)]
        arguments: String,
        /// The tenant the executor acts for, if it knows.
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// Draws a new ed25519 seed and writes it (64 hex digits) to `out`, which
/// must not exist, readable by its owner only.
pub(crate) fn write_new_seed(out: &std::path::Path) -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("cannot draw a key: {e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(out)
        .with_context(|| format!("cannot create {} (it must not exist)", out.display()))?;
    writeln!(file, "{}", hex::encode(seed))
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(seed)
}

pub(crate) fn run(cmd: ToolsCommand) -> Result<std::process::ExitCode> {
    match cmd {
        ToolsCommand::Keygen { out } => {
            let seed = write_new_seed(&out)?;
            let signer = CapabilitySigner::from_seed(seed);
            println!("{}", signer.public_key_hex());
            eprintln!(
                "wrote the signing seed to {}; the line above is the public key (kid {})",
                out.display(),
                signer.key_id()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        ToolsCommand::PublicKey { key } => {
            let text = std::fs::read_to_string(&key)
                .with_context(|| format!("cannot read {}", key.display()))?;
            let signer = CapabilitySigner::from_seed_hex(&text)
                .with_context(|| format!("{} is not a signing seed", key.display()))?;
            println!("{}", signer.public_key_hex());
            Ok(std::process::ExitCode::SUCCESS)
        }
        ToolsCommand::Verify {
            token,
            public_key,
            tool,
            arguments,
            tenant,
        } => {
            let verifier = CapabilityVerifier::from_public_hex(&public_key)
                .context("--public-key must be 64 hex digits")?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("system clock before 1970")?
                .as_secs();
            let call = Expected {
                tool: &tool,
                arguments: &arguments,
                tenant: tenant.as_deref(),
            };
            match verifier.verify_call(&token, call, now) {
                Ok(claims) => {
                    println!("{}", serde_json::to_string(&claims)?);
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(e) => {
                    if matches!(e, palisade_tools::CapabilityError::BadKey(_)) {
                        bail!("{e}");
                    }
                    println!(
                        "{}",
                        serde_json::json!({"valid": false, "code": e.code(), "message": e.to_string()})
                    );
                    Ok(std::process::ExitCode::FAILURE)
                }
            }
        }
    }
}
