//! `palisade audit`: read the audit log of gate decisions from its store
//! (the `audit` table beside the token ledger), newest records or a JSONL
//! export for `palisade policy simulate --replay` and for archiving.
//!
//! The store is `--url`, or else `policy.audit_url` from the config (the
//! file given with `--config` / `PALISADE_CONFIG`, and the environment), as
//! `palisade usage` finds the ledger.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::builder::PossibleValuesParser;
use clap::Subcommand;
use palisade_ledger::{AuditFilter, Ledger, Month, WriteOptions};
use palisade_policy::{Action, Gate};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Print the newest audit records as JSON lines, newest last.
    Tail(TailArgs),
    /// Write audit records as JSON lines in the order they were stored, to
    /// standard output (redirect it to a file); the count goes to standard
    /// error.
    Export(ExportArgs),
}

/// Where the audit log is.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// The audit store (`sqlite:PATH` or `postgres://...`); defaults to
    /// `policy.audit_url` from the config.
    #[arg(long)]
    url: Option<String>,
    /// Config file to read `policy.audit_url` from.
    #[arg(long, short, env = "PALISADE_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TailArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// How many records.
    #[arg(short = 'n', long = "lines", default_value_t = 20)]
    lines: usize,
    /// Only this tenant's decisions.
    #[arg(long)]
    tenant: Option<String>,
    /// Only decisions at this gate.
    #[arg(long, value_parser = PossibleValuesParser::new(Gate::ALL.map(Gate::as_str)))]
    gate: Option<String>,
    /// Only decisions that enforced this action.
    #[arg(long, value_parser = PossibleValuesParser::new(Action::ALL.map(Action::as_str)))]
    action: Option<String>,
    /// Only this request's decisions.
    #[arg(long)]
    request_id: Option<String>,
    /// Only decisions under this policy version (`sha256:…`).
    #[arg(long)]
    policy_version: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only records from this time on: an RFC 3339 time
    /// (`2026-03-01T12:00:00Z`, `2026-03-01T12:00:00+02:00`), a UTC date
    /// (`2026-03-01`), or a number of days back from now (`7` or `7d`).
    #[arg(long)]
    since: Option<String>,
    /// Only records before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
}

pub(crate) fn run(cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Tail(args) => tail(args),
        AuditCommand::Export(args) => export(args),
    }
}

/// The store's location, from the flag or the config.
fn location(store: &StoreArgs) -> Result<String> {
    let url = match &store.url {
        Some(url) => url.clone(),
        None => crate::load_config(store.config.as_deref(), None)?
            .policy
            .audit_url
            .context("no audit store: pass --url URL or set policy.audit_url in the config")?,
    };
    // Opening a SQLite path creates the file: for a command that only
    // reads, a typo would then show an empty log instead of an error.
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if !path.is_empty() && !std::path::Path::new(path).exists() {
            bail!("no audit store at {path}");
        }
    }
    Ok(url)
}

/// Runs `f` on the opened store in a small runtime, then closes it.
fn with_store<T>(store: &StoreArgs, f: impl AsyncFnOnce(&Ledger) -> Result<T>) -> Result<T> {
    let url = location(store)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let ledger = Ledger::open(&url, WriteOptions::default())
            .await
            .with_context(|| format!("opening the audit store {url}"))?;
        let out = f(&ledger).await;
        ledger.close().await.context("closing the audit store")?;
        out
    })
}

fn tail(args: TailArgs) -> Result<()> {
    let filter = AuditFilter {
        tenant: args.tenant,
        gate: args.gate,
        action: args.action,
        request_id: args.request_id,
        policy_version: args.policy_version,
    };
    let lines = with_store(&args.store, async |ledger| {
        ledger
            .audit_tail(args.lines, &filter)
            .await
            .context("reading the audit log")
    })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in &lines {
        writeln!(out, "{line}").context("writing to standard output")?;
    }
    out.flush().context("writing to standard output")
}

fn export(args: ExportArgs) -> Result<()> {
    let now = now_ms();
    let bound = |flag: &str, value: &Option<String>, default: i64| match value {
        Some(v) => parse_time(v, now).with_context(|| format!("--{flag} {v:?}")),
        None => Ok(default),
    };
    let since = bound("since", &args.since, 0)?;
    let until = bound("until", &args.until, i64::MAX)?;
    let count = with_store(&args.store, async |ledger| {
        // `Stdout` (not its lock) because the export wants a `Send` writer.
        let mut out = std::io::BufWriter::new(std::io::stdout());
        let n = ledger
            .audit_export(&mut out, since, until)
            .await
            .context("exporting the audit log")?;
        out.flush().context("writing to standard output")?;
        Ok(n)
    })?;
    eprintln!("exported {count} audit records");
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A point in time, as Unix milliseconds: days back from `now_ms` (`7`,
/// `7d`), a UTC date (`2026-03-01`) or an RFC 3339 date-time (`T` or a space
/// between date and time, fractional seconds, `Z` or a `±HH:MM` offset).
fn parse_time(s: &str, now_ms: i64) -> Result<i64> {
    let s = s.trim();
    let days = s.strip_suffix('d').unwrap_or(s);
    if !days.is_empty() && days.bytes().all(|b| b.is_ascii_digit()) {
        let days: i64 = days.parse().context("too many days")?;
        return Ok(now_ms.saturating_sub(days.saturating_mul(DAY_MS)));
    }
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let day_ms = parse_date(date)?;
    let Some(time) = time else {
        return Ok(day_ms);
    };
    // The offset starts at the first `Z`, `+` or `-` after the seconds.
    let split = time
        .find(['Z', 'z', '+', '-'])
        .context("the time needs an offset: Z or ±HH:MM")?;
    let (clock, offset) = time.split_at(split);
    let offset_ms = match offset {
        "Z" | "z" => 0,
        _ => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (h, m) = offset[1..]
                .split_once(':')
                .context("the offset must be ±HH:MM")?;
            sign * (number(h, 0, 23, "offset hours")? * 60 + number(m, 0, 59, "offset minutes")?)
                * 60_000
        }
    };
    let mut parts = clock.splitn(3, ':');
    let mut next = || parts.next().context("the time must be HH:MM:SS");
    let hours = number(next()?, 0, 23, "hours")?;
    let minutes = number(next()?, 0, 59, "minutes")?;
    let seconds_field = next()?;
    let (secs, frac) = seconds_field.split_once('.').unwrap_or((seconds_field, ""));
    // Leap seconds (60) are allowed by RFC 3339; they count as the next second.
    let seconds = number(secs, 0, 60, "seconds")?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        bail!("bad fraction of a second {frac:?}");
    }
    let millis = format!("{frac:0<3}")[..3].parse::<i64>().unwrap_or(0);
    Ok(day_ms + ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis - offset_ms)
}

/// `YYYY-MM-DD` as Unix milliseconds at 00:00 UTC.
fn parse_date(date: &str) -> Result<i64> {
    let mut parts = date.splitn(3, '-');
    let mut next = || parts.next().context("the date must be YYYY-MM-DD");
    let (y, m, d) = (next()?, next()?, next()?);
    if y.len() != 4 {
        bail!("the date must be YYYY-MM-DD");
    }
    let month = Month {
        year: number(y, 0, 9999, "year")?,
        month: number(m, 1, 12, "month")?,
    };
    let following = if month.month == 12 {
        Month {
            year: month.year + 1,
            month: 1,
        }
    } else {
        Month {
            year: month.year,
            month: month.month + 1,
        }
    };
    let days_in_month = (following.start_ms() - month.start_ms()) / DAY_MS;
    let day = number(d, 1, days_in_month, "day")?;
    Ok(month.start_ms() + (day - 1) * DAY_MS)
}

/// A field of a date or time: ASCII digits, within `min..=max`.
fn number(s: &str, min: i64, max: i64, what: &str) -> Result<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        bail!("bad {what} {s:?}");
    }
    let n: i64 = s.parse().with_context(|| format!("bad {what} {s:?}"))?;
    if !(min..=max).contains(&n) {
        bail!("{what} {n} is out of range {min}..={max}");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-01T00:00:00Z.
    const DAY0: i64 = 1_772_323_200_000;

    #[test]
    fn times_in_every_accepted_form() {
        let now = DAY0 + 12 * 3_600_000;
        let check = |s: &str, want: i64| {
            assert_eq!(parse_time(s, now).unwrap(), want, "{s}");
        };
        check("7", now - 7 * DAY_MS);
        check("7d", now - 7 * DAY_MS);
        check("0", now);
        check("2026-03-01", DAY0);
        check("2026-03-01T00:00:00Z", DAY0);
        check("2026-03-01 00:00:00z", DAY0);
        check(
            "2026-03-01T12:30:15Z",
            DAY0 + (12 * 3600 + 30 * 60 + 15) * 1000,
        );
        check("2026-03-01T00:00:00.25Z", DAY0 + 250);
        check("2026-03-01T00:00:00.123456Z", DAY0 + 123);
        check("2026-03-01T02:00:00+02:00", DAY0);
        check("2026-02-28T22:30:00-01:30", DAY0);
        check("2024-02-29", 1_709_164_800_000);
        check("1970-01-01T00:00:00Z", 0);
    }

    #[test]
    fn bad_times_are_refused_with_a_reason() {
        for (s, reason) in [
            ("", "YYYY-MM-DD"),
            ("yesterday", "YYYY-MM-DD"),
            ("2026-13-01", "month 13"),
            ("2026-02-29", "day 29"),
            ("2026-03-01T25:00:00Z", "hours 25"),
            ("2026-03-01T12:00:00", "offset"),
            ("2026-03-01T12:00Z", "HH:MM:SS"),
            ("2026-03-01T12:00:00.x1Z", "fraction"),
            ("26-03-01", "YYYY-MM-DD"),
        ] {
            let err = format!("{:#}", parse_time(s, DAY0).unwrap_err());
            assert!(err.contains(reason), "{s:?}: {err}");
        }
    }
}
