//! `palisade watermark`: offline detection and forensics.
//!
//! - `detect`: score a text (for instance, outputs of a suspected stolen
//!   model) against one tenant's key, or against every (tenant, period) key
//!   in a key history, ranked by z-score: which tenant's outputs, from which
//!   period, the suspect model learnt from.
//! - `history`: write the key history of some tenants over past periods
//!   (JSON lines `{"tenant": ..., "period": ...}`), for `detect
//!   --keys-history`.
//!
//! Keys are derived from the master key in the environment variable
//! `[watermark] key_env` names, exactly as the gateway derives them; the
//! history file holds no key. Must not: talk to a gateway.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use palisade_config::WatermarkConfig;
use palisade_openai::usage::Tokenizer;
use palisade_watermark::{derive_key, period_of, rank, GreenList, DEFAULT_FPR};
use serde::{Deserialize, Serialize};

#[derive(Debug, Subcommand)]
pub(crate) enum WatermarkCommand {
    /// Score text against a tenant's watermark keys, or rank every key of a
    /// key history (forensics).
    Detect {
        /// The model's `tokenizer.json`.
        #[arg(long)]
        tokenizer: PathBuf,
        /// The text: a file, or `-` for standard input.
        #[arg(long, short, default_value = "-")]
        input: PathBuf,
        /// Config file to read `[watermark]` (gamma, key_env, rotation) from.
        #[arg(long, short, env = "PALISADE_CONFIG")]
        config: Option<PathBuf>,
        /// JSON lines `{"tenant": "...", "period": N}`: every key to try.
        #[arg(long, conflicts_with = "tenant")]
        keys_history: Option<PathBuf>,
        /// One tenant (its current and `--periods` previous keys).
        #[arg(long)]
        tenant: Option<String>,
        /// With --tenant: previous periods to try besides the current one.
        #[arg(long, default_value_t = 8)]
        periods: u64,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the key history of tenants over their last periods.
    History {
        /// Tenants (repeat the flag).
        #[arg(long, required = true)]
        tenant: Vec<String>,
        /// Previous periods besides the current one.
        #[arg(long, default_value_t = 52)]
        periods: u64,
        /// Config file to read `[watermark] rotation_hours` from.
        #[arg(long, short, env = "PALISADE_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// One line of a key history.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRef {
    tenant: String,
    period: u64,
}

#[derive(Debug, Serialize)]
struct Row<'a> {
    tenant: &'a str,
    period: u64,
    #[serde(flatten)]
    score: palisade_watermark::Score,
    detected: bool,
}

pub(crate) fn run(cmd: WatermarkCommand) -> Result<()> {
    match cmd {
        WatermarkCommand::Detect {
            tokenizer,
            input,
            config,
            keys_history,
            tenant,
            periods,
            json,
        } => {
            let wm = watermark_config(config.as_deref())?;
            let now = current_period(&wm)?;
            let keys = match (keys_history, tenant) {
                (Some(file), None) => read_history(&file)?,
                (None, Some(tenant)) => (0..=periods)
                    .filter_map(|back| now.checked_sub(back))
                    .map(|period| KeyRef {
                        tenant: tenant.clone(),
                        period,
                    })
                    .collect(),
                _ => bail!("pass --tenant or --keys-history"),
            };
            detect(&wm, &tokenizer, &input, &keys, json)
        }
        WatermarkCommand::History {
            tenant,
            periods,
            config,
        } => {
            let wm = watermark_config(config.as_deref())?;
            let now = current_period(&wm)?;
            for t in &tenant {
                for back in 0..=periods {
                    if let Some(period) = now.checked_sub(back) {
                        let line = serde_json::to_string(&KeyRef {
                            tenant: t.clone(),
                            period,
                        })?;
                        println!("{line}");
                    }
                }
            }
            Ok(())
        }
    }
}

fn watermark_config(config: Option<&Path>) -> Result<WatermarkConfig> {
    Ok(match config {
        Some(_) => crate::load_config(config, None)?.watermark,
        None => WatermarkConfig::default(),
    })
}

fn current_period(wm: &WatermarkConfig) -> Result<u64> {
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    Ok(period_of(now, wm.rotation_ms())?)
}

/// At most this many keys per run: each is one green list to build.
const MAX_KEYS: usize = 100_000;

fn read_history(file: &Path) -> Result<Vec<KeyRef>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the key history {}", file.display()))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let key: KeyRef = serde_json::from_str(line).with_context(|| {
            format!(
                "{}:{}: expected {{\"tenant\", \"period\"}}",
                file.display(),
                i + 1
            )
        })?;
        keys.push(key);
        if keys.len() > MAX_KEYS {
            bail!("{}: more than {MAX_KEYS} keys", file.display());
        }
    }
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        bail!("{}: no keys", file.display());
    }
    Ok(keys)
}

fn master_key(wm: &WatermarkConfig) -> Result<[u8; 32]> {
    let hex_key = std::env::var(&wm.key_env)
        .with_context(|| format!("{} is not set (the watermark master key)", wm.key_env))?;
    let bytes =
        hex::decode(hex_key.trim()).with_context(|| format!("{} is not hex", wm.key_env))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("{} must be 64 hex digits", wm.key_env))
}

fn detect(
    wm: &WatermarkConfig,
    tokenizer: &Path,
    input: &Path,
    keys: &[KeyRef],
    json: bool,
) -> Result<()> {
    let master = master_key(wm)?;
    let bytes =
        std::fs::read(tokenizer).with_context(|| format!("reading {}", tokenizer.display()))?;
    let tokenizer = Tokenizer::from_json_bytes(&bytes)
        .with_context(|| format!("loading {}", tokenizer.display()))?;
    let vocab = tokenizer
        .vocab_size()
        .context("the tokenizer has no vocabulary size")?;
    let mut text = String::new();
    if input == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(input)
            .with_context(|| format!("reading {}", input.display()))?;
    }
    let tokens = tokenizer
        .encode_ids(&text)
        .context("the tokenizer cannot encode")?;
    let candidates = keys
        .iter()
        .map(|k| {
            let list = GreenList::new(&derive_key(&master, &k.tenant, k.period), vocab, wm.gamma)?;
            Ok((k.clone(), list))
        })
        .collect::<Result<Vec<_>>>()?;
    // Bonferroni over the keys tried: the family's false-positive rate
    // stays at DEFAULT_FPR however long the history is.
    let fpr = DEFAULT_FPR / candidates.len() as f64;
    let ranked = rank(&candidates, &tokens);
    if json {
        for (k, score) in &ranked {
            let row = Row {
                tenant: &k.tenant,
                period: k.period,
                score: *score,
                detected: score.detected(fpr),
            };
            println!("{}", serde_json::to_string(&row)?);
        }
        return Ok(());
    }
    println!(
        "{} tokens, {} keys, detected at p <= {fpr:.2e} (1e-5 over all keys)",
        tokens.len(),
        candidates.len()
    );
    println!(
        "{:<24} {:>8} {:>7} {:>7} {:>8} {:>10}  verdict",
        "tenant", "period", "tokens", "green", "z", "p"
    );
    for (k, s) in ranked.iter().take(20) {
        println!(
            "{:<24} {:>8} {:>7} {:>7} {:>8.2} {:>10.2e}  {}",
            k.tenant,
            k.period,
            s.tokens,
            s.green,
            s.z,
            s.p_value,
            if s.detected(fpr) { "DETECTED" } else { "-" }
        );
    }
    Ok(())
}
