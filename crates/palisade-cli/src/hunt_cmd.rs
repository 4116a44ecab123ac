//! `palisade hunt`: the cross-account threat hunt over the extraction store
//! (the same code and store the gateway's job uses, so it works with every
//! gateway down): `palisade hunt run` hunts now and prints the campaigns,
//! `palisade hunt list` prints the stored ones, `palisade hunt mark ID
//! confirmed|benign` records an operator's judgement (a running gateway
//! picks a confirmation up at its next hunt).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use palisade_config::ExtractionConfig;
use palisade_gateway::hunt::{run_once, Campaign, HuntStore, Mark};

#[derive(Debug, Subcommand)]
pub(crate) enum HuntCommand {
    /// Hunt now over the store's window and print the campaigns (saved, so
    /// they can be marked; alerts are the gateway's job).
    Run {
        #[command(flatten)]
        store: StoreArgs,
        /// Hours of rows to read, overriding extraction.hunt.window_hours.
        #[arg(long)]
        window_hours: Option<u64>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the stored campaigns, most recently seen first.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Mark a campaign: `confirmed` holds its keys at the configured rung,
    /// `benign` silences it and makes its traffic the baseline.
    Mark {
        #[command(flatten)]
        store: StoreArgs,
        /// The campaign id (from `run`, `list` or `GET /admin/hunt`).
        id: String,
        /// `confirmed` or `benign`.
        #[arg(value_parser = ["confirmed", "benign"])]
        mark: String,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// The store (`sqlite:PATH`); defaults to `extraction.store` from the config.
    #[arg(long)]
    store: Option<String>,
    /// Config file to read `[extraction]` from.
    #[arg(long, short, env = "PALISADE_CONFIG")]
    config: Option<PathBuf>,
}

impl StoreArgs {
    fn open(&self) -> Result<(HuntStore, ExtractionConfig)> {
        let extraction = match &self.config {
            Some(_) => crate::load_config(self.config.as_deref(), None)?.extraction,
            None => ExtractionConfig::default(),
        };
        let url = self
            .store
            .clone()
            .or(extraction.store.clone())
            .context("no store: pass --store sqlite:PATH or a config with extraction.store")?;
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !url.starts_with("sqlite:") && !postgres {
            bail!("the store must be sqlite:PATH or a postgres:// URL");
        }
        let store = HuntStore::open(&url).with_context(|| format!("opening {url}"))?;
        Ok((store, extraction))
    }
}

pub(crate) fn run(cmd: HuntCommand) -> Result<()> {
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    match cmd {
        HuntCommand::Run {
            store,
            window_hours,
            json,
        } => {
            let (mut store, extraction) = store.open()?;
            let mut job = extraction.hunt;
            if let Some(h) = window_hours {
                job.window_hours = h.max(1);
            }
            let (report, _) = run_once(&mut store, &job, now).context("hunting")?;
            let listed: Vec<Campaign> = report
                .campaigns
                .iter()
                .map(|c| c.listed(job.clustering.max_listed_keys))
                .collect();
            if json {
                let mut out = serde_json::to_value(&report)?;
                out["campaigns"] = serde_json::to_value(&listed)?;
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{} keys hunted ({} benign-marked left out), {} pairs scored{}; {} campaigns",
                    report.keys,
                    report.benign_keys,
                    report.pairs_scored,
                    if report.truncated { " (truncated)" } else { "" },
                    report.campaigns.len() + report.campaigns_left_off,
                );
                print!("{}", table(listed.iter()));
            }
        }
        HuntCommand::List { store, limit, json } => {
            let (mut store, _) = store.open()?;
            let stored = store.campaigns(limit).context("listing campaigns")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stored)?);
            } else {
                print!("{}", table(stored.iter().map(|s| &s.campaign)));
            }
        }
        HuntCommand::Mark { store, id, mark } => {
            let (mut store, _) = store.open()?;
            let mark = Mark::parse(&mark).context("mark must be confirmed or benign")?;
            if !store.mark(&id, mark, now).context("marking")? {
                bail!("no campaign `{id}`");
            }
            println!("{id}: {}", mark.as_str());
        }
    }
    Ok(())
}

fn table<'a>(campaigns: impl Iterator<Item = &'a Campaign>) -> String {
    let mut out =
        String::from("id                 score  keys tenants requests mark       evidence\n");
    for c in campaigns {
        let evidence: Vec<String> = c
            .evidence
            .iter()
            .map(|e| {
                format!(
                    "{}({} edges, {:.2})",
                    e.kind.as_str(),
                    e.edges,
                    e.mean_score
                )
            })
            .collect();
        out.push_str(&format!(
            "{:<18} {:>5.2} {:>5} {:>7} {:>8} {:<10} {}\n",
            c.id,
            c.score,
            c.key_count,
            c.tenants.len(),
            c.requests,
            c.mark.map_or("-", Mark::as_str),
            evidence.join(" "),
        ));
    }
    out
}
