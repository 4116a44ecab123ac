//! `palisade bundle`: build, sign, verify and inspect signed security
//! bundles (the policy, detector artifact, thresholds and link allowlist a
//! fleet enforces, under one signature and serial).
//!
//! Offline only: reads and writes files. The format and every rule are
//! `palisade-bundle`'s; this module reads inputs, compiles the policy so a
//! bundle a replica would refuse is never signed, and prints.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use palisade_bundle::{
    verify, ArtifactRef, BuildInput, Bundle, ThresholdOverrides, TrustStore, DEFAULT_MAX_BYTES,
};

#[derive(Debug, Subcommand)]
pub(crate) enum BundleCommand {
    /// Build an unsigned bundle from a policy file and optional parts.
    Build {
        /// The policy file (TOML); it must compile.
        #[arg(long)]
        policy: PathBuf,
        /// The serial: higher for every newer bundle of the fleet.
        #[arg(long)]
        serial: u64,
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
        /// A label for operators.
        #[arg(long)]
        label: Option<String>,
        /// Ship this detector artifact (model file) inside the bundle.
        #[arg(long, conflicts_with = "detector_sha256")]
        detector: Option<PathBuf>,
        /// Or name the detector artifact by its SHA-256 (64 hex digits) only.
        #[arg(long, requires = "detector_size")]
        detector_sha256: Option<String>,
        /// The size of the artifact named by `--detector-sha256`.
        #[arg(long)]
        detector_size: Option<u64>,
        /// Detector threshold overrides, `FLAG,BLOCK` (scores in [0, 1]).
        #[arg(long, value_parser = parse_thresholds)]
        thresholds: Option<ThresholdOverrides>,
        /// A host the output gate's link check leaves alone; repeatable.
        #[arg(long = "link-allow")]
        link_allow: Vec<String>,
    },
    /// Sign a bundle in place (or to `--out`) with a seed from `palisade
    /// policy keygen`; the signing time is recorded in the manifest.
    Sign {
        /// The bundle.
        bundle: PathBuf,
        /// The signing seed file.
        #[arg(long)]
        key: PathBuf,
        /// The signing time, unix seconds. Default: now.
        #[arg(long)]
        created_at: Option<u64>,
        /// Write here instead of replacing the bundle.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a bundle as a replica would; exits 1 with the reason when it
    /// would be refused.
    Verify {
        /// The bundle.
        bundle: PathBuf,
        /// A trusted key, `HEX` or `HEX not_after=UNIX`; repeatable.
        #[arg(long = "trusted-key", required = true)]
        trusted_keys: Vec<String>,
        /// Refuse a serial lower than this (the serial the fleet runs).
        #[arg(long, default_value_t = 0)]
        min_serial: u64,
        /// Judge key windows at this time, unix seconds. Default: now.
        #[arg(long)]
        now: Option<u64>,
        /// The size bound, bytes.
        #[arg(long, default_value_t = DEFAULT_MAX_BYTES)]
        max_bytes: usize,
        /// One JSON object on stdout, `{"ok": true, …}` or
        /// `{"ok": false, "reason": …}` (the exit code is the same).
        #[arg(long)]
        json: bool,
    },
    /// Publish a signed bundle to a fleet's Redis slot and announce it: every
    /// replica with `bundle.source = "redis://…"` fetches it at once (and verifies
    /// it before activating).
    Publish {
        /// The bundle (signed).
        bundle: PathBuf,
        /// The fleet's Redis (`redis://…`).
        #[arg(long)]
        redis: String,
        /// The key prefix (`bundle.redis_prefix`).
        #[arg(long, default_value = "palisade:bundle")]
        prefix: String,
    },
    /// Print a bundle's manifest (the policy by digest and size), signed or not.
    Inspect {
        /// The bundle.
        bundle: PathBuf,
        /// The whole manifest as JSON, policy text included.
        #[arg(long)]
        json: bool,
    },
}

fn parse_thresholds(text: &str) -> Result<ThresholdOverrides, String> {
    let (flag, block) = text
        .split_once(',')
        .ok_or_else(|| format!("`{text}`: expected FLAG,BLOCK"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<f64>()
            .map_err(|_| format!("`{s}` is not a number"))
    };
    let t = ThresholdOverrides {
        flag: parse(flag)?,
        block: parse(block)?,
    };
    if !t.is_valid() {
        return Err("thresholds must be in [0, 1] with FLAG <= BLOCK".to_owned());
    }
    Ok(t)
}

fn unix_now() -> Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock before 1970")?
        .as_secs())
}

fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > max as u64 {
        bail!("{} is {len} bytes, over the limit of {max}", path.display());
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes through a temporary file and a rename, so a reader never sees half a bundle.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn run(cmd: BundleCommand) -> Result<()> {
    match cmd {
        BundleCommand::Build {
            policy,
            serial,
            out,
            label,
            detector,
            detector_sha256,
            detector_size,
            thresholds,
            link_allow,
        } => {
            let policy_toml = std::fs::read_to_string(&policy)
                .with_context(|| format!("reading {}", policy.display()))?;
            let detector_artifact = detector
                .as_deref()
                .map(|p| read_bounded(p, DEFAULT_MAX_BYTES))
                .transpose()?;
            let detector_ref = detector_sha256.map(|sha256| ArtifactRef {
                sha256: sha256.to_ascii_lowercase(),
                size: detector_size.unwrap_or_default(),
            });
            let bundle = Bundle::build(BuildInput {
                serial,
                label,
                policy_toml,
                detector_artifact,
                detector_ref,
                thresholds,
                link_allowlist: link_allow,
            })?;
            // Never build what a replica would refuse to compile.
            let effective = bundle.manifest().effective_policy_toml()?;
            let snapshot = palisade_policy::Snapshot::from_toml(&effective)
                .with_context(|| format!("{} does not compile", policy.display()))?;
            write_atomic(&out, &bundle.encode())?;
            println!(
                "built {} (serial {serial}, policy {}), unsigned: run `palisade bundle sign`",
                out.display(),
                snapshot.version()
            );
            Ok(())
        }
        BundleCommand::Sign {
            bundle,
            key,
            created_at,
            out,
        } => {
            let bytes = read_bounded(&bundle, DEFAULT_MAX_BYTES)?;
            let decoded = Bundle::decode(&bytes, DEFAULT_MAX_BYTES)
                .with_context(|| format!("{} is not a bundle", bundle.display()))?;
            let seed = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let created_at = match created_at {
                Some(t) => t,
                None => unix_now()?,
            };
            let signed = decoded
                .sign(&seed, created_at)
                .with_context(|| format!("{} is not a signing seed", key.display()))?;
            let out = out.unwrap_or(bundle);
            write_atomic(&out, &signed.encode())?;
            let m = signed.manifest();
            println!(
                "signed {} serial {} with key {} at {}",
                out.display(),
                m.serial,
                m.key_id,
                m.created_at
            );
            Ok(())
        }
        BundleCommand::Verify {
            bundle,
            trusted_keys,
            min_serial,
            now,
            max_bytes,
            json,
        } => {
            let checked = (|| -> Result<serde_json::Value> {
                let trust = TrustStore::parse(&trusted_keys)?;
                // Read one byte past the bound so an oversized file is named as such.
                let bytes = read_bounded(&bundle, max_bytes.saturating_add(1))?;
                let now = match now {
                    Some(t) => t,
                    None => unix_now()?,
                };
                let verified = verify(&bytes, &trust, now, max_bytes)
                    .map_err(|e| anyhow::anyhow!("refused: {e}"))?;
                let m = verified.manifest();
                if m.serial < min_serial {
                    bail!(
                        "refused: bundle serial {} is lower than {min_serial}",
                        m.serial
                    );
                }
                palisade_policy::Snapshot::from_toml(&verified.effective_policy_toml()?)
                    .map_err(|e| anyhow::anyhow!("refused: the policy does not compile: {e}"))?;
                Ok(serde_json::json!({
                    "ok": true,
                    "serial": m.serial,
                    "key_id": m.key_id.clone(),
                    "created_at": m.created_at,
                    "digest": verified.digest().to_string(),
                }))
            })();
            match (checked, json) {
                (Ok(v), true) => println!("{v}"),
                (Ok(v), false) => println!(
                    "ok: serial {} signed by {} at {}, digest {}",
                    v["serial"],
                    v["key_id"].as_str().unwrap_or_default(),
                    v["created_at"],
                    v["digest"].as_str().unwrap_or_default()
                ),
                (Err(e), true) => {
                    println!(
                        "{}",
                        serde_json::json!({"ok": false, "reason": format!("{e:#}")})
                    );
                    return Err(e);
                }
                (Err(e), false) => return Err(e),
            }
            Ok(())
        }
        BundleCommand::Publish {
            bundle,
            redis,
            prefix,
        } => publish(&bundle, &redis, &prefix),
        BundleCommand::Inspect { bundle, json } => {
            let bytes = read_bounded(&bundle, DEFAULT_MAX_BYTES)?;
            let decoded = Bundle::decode(&bytes, DEFAULT_MAX_BYTES)
                .with_context(|| format!("{} is not a bundle", bundle.display()))?;
            let m = decoded.manifest();
            if json {
                println!("{}", serde_json::to_string_pretty(m)?);
                return Ok(());
            }
            println!("format:      {}", m.format);
            println!("serial:      {}", m.serial);
            println!("label:       {}", m.label.as_deref().unwrap_or("-"));
            if decoded.is_signed() {
                println!("signed by:   {}", m.key_id);
                println!("created at:  {} (unix seconds)", m.created_at);
            } else {
                println!("signed by:   (unsigned)");
            }
            println!(
                "policy:      sha256 {} ({} bytes)",
                m.policy.sha256,
                m.policy.toml.len()
            );
            match &m.detector {
                Some(d) => println!("detector:    sha256 {} ({} bytes)", d.sha256, d.size),
                None => println!("detector:    -"),
            }
            match &m.thresholds {
                Some(t) => println!("thresholds:  flag {} block {}", t.flag, t.block),
                None => println!("thresholds:  -"),
            }
            println!("links:       {}", m.link_allowlist.join(", "));
            Ok(())
        }
    }
}

/// Stores `bundle` in the Redis slot and announces it. Refuses an unsigned bundle or
/// one that is not a bundle at all (replicas would refuse it anyway; a publisher should
/// learn it here).
fn publish(bundle: &Path, redis: &str, prefix: &str) -> Result<()> {
    use sha2::Digest as _;
    let bytes = read_bounded(bundle, DEFAULT_MAX_BYTES)?;
    let decoded = Bundle::decode(&bytes, DEFAULT_MAX_BYTES)
        .with_context(|| format!("{} is not a bundle", bundle.display()))?;
    if !decoded.is_signed() {
        bail!(
            "{} is not signed: run `palisade bundle sign` first",
            bundle.display()
        );
    }
    let serial = decoded.manifest().serial;
    let digest = hex::encode(sha2::Sha256::digest(&bytes));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let timeout = std::time::Duration::from_secs(5);
        let conn = palisade_redis::RedisConnection::connect(redis, timeout, timeout)
            .await
            .with_context(|| format!("connecting to {redis}"))?;
        palisade_redis::RedisBundleStore::new(conn, prefix)
            .publish(&bytes, &digest, serial)
            .await
            .context("publishing the bundle")
    })?;
    println!("published serial {serial} ({digest}) under {prefix} on {redis}");
    Ok(())
}
