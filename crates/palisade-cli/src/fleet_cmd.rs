//! `palisade fleet status`: every live replica of the fleet, what it enforces and since
//! when, read straight from the registry in Redis (so it works while every gateway is
//! down), and the version skew. `--max-skew N` makes it a check for scripts: exit 1 when
//! the slowest enforcing replica is more than N serials behind, or no replica enforces.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use palisade_fleet::FleetView;
use palisade_redis::{RedisConnection, RedisFleet};

#[derive(Debug, Subcommand)]
pub(crate) enum FleetCommand {
    /// Show every live replica and the version skew.
    Status {
        /// The registry (`redis://...`); defaults to `fleet.redis_url` from the config.
        #[arg(long)]
        redis: Option<String>,
        /// Config file to read `[fleet]` from.
        #[arg(long, short, env = "PALISADE_CONFIG")]
        config: Option<PathBuf>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Exit 1 when the skew exceeds this many serials (or no replica enforces).
        #[arg(long)]
        max_skew: Option<u64>,
    },
}

pub(crate) fn run(cmd: FleetCommand) -> Result<()> {
    let FleetCommand::Status {
        redis,
        config,
        json,
        max_skew,
    } = cmd;
    let fleet = match &config {
        Some(_) => crate::load_config(config.as_deref(), None)?.fleet,
        None => palisade_config::FleetConfig::default(),
    };
    let url = redis
        .or(fleet.redis_url.clone())
        .context("no registry: pass --redis or a config with fleet.redis_url")?;
    let now = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listing = runtime.block_on(async {
        let conn = RedisConnection::connect(&url, Duration::from_secs(3), Duration::from_secs(3))
            .await
            .with_context(|| format!("connecting to {url}"))?;
        RedisFleet::new(conn, &fleet.key_prefix)
            .list(now)
            .await
            .context("listing the fleet")
    })?;
    let view = FleetView::at(listing.replicas, now, fleet.ttl_ms);
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", table(&view, now));
        if listing.malformed > 0 {
            println!("({} malformed records skipped)", listing.malformed);
        }
    }
    if let Some(max) = max_skew {
        if !view.replicas.iter().any(|r| r.enforcing()) {
            bail!("no replica enforces a policy");
        }
        if view.skew > max {
            bail!("version skew {} exceeds {max}", view.skew);
        }
    }
    Ok(())
}

fn table(view: &FleetView, now: u64) -> String {
    let mut out = format!(
        "{} replicas, fleet serial {}, skew {}\n{:<32} {:>7} {:<18} {:>9} {:>12} {:>10}\n",
        view.replicas.len(),
        view.fleet_serial,
        view.skew,
        "REPLICA",
        "SERIAL",
        "VERSION",
        "ENFORCING",
        "PROVISIONED",
        "HEARTBEAT"
    );
    for r in &view.replicas {
        let enforcing = match (r.enforcing(), view.behind(r)) {
            (false, _) => "no",
            (true, true) => "behind",
            (true, false) => "yes",
        };
        let provisioned = r
            .provisioning_ms()
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
        out.push_str(&format!(
            "{:<32} {:>7} {:<18} {:>9} {:>12} {:>7} ms\n",
            r.id,
            r.serial,
            r.version.chars().take(18).collect::<String>(),
            enforcing,
            provisioned,
            now.saturating_sub(r.heartbeat_unix_ms)
        ));
    }
    out
}
