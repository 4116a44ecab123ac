//! The `palisade` binary: parses the command line, loads config, wires the
//! gateway together and runs it; plus the offline subcommands.
//!
//! This is the only place that knows about process concerns (signals, exit
//! codes, log setup). It holds no request logic: that is in the library
//! crates, so everything here stays thin.

#![forbid(unsafe_code)]

// glibc malloc spends a measurable share of per-request CPU in arena
// contention and consolidation under a multi-threaded proxy workload;
// mimalloc's thread-local free lists avoid it (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod audit_cmd;
mod bundle_cmd;
mod canaries_cmd;
mod check_cmd;
mod datasets;
mod fleet_cmd;
mod hunt_cmd;
mod keys_api;
mod keys_cmd;
mod log_writer;
mod policy_cmd;
mod tools_cmd;
mod watermark_cmd;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use palisade_config::{Config, LogFormat, Sources};

/// Palisade: a security-aware gateway for LLM inference.
///
/// Put it in front of any OpenAI-compatible server (vLLM, llama.cpp, Ollama,
/// OpenAI) and point clients at it instead.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    ///
    /// With no config it listens on 127.0.0.1:8080 in open mode (no API keys,
    /// loopback only) and forwards every model to the upstream in
    /// PALISADE_UPSTREAM (default http://127.0.0.1:8000/v1, vLLM's default).
    Serve(ServeArgs),
    /// Inspect configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Create and hash API keys.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Scan text for prompt injection, jailbreaks, secrets and PII (no
    /// upstream needed).
    ///
    /// With TEXT, scans it; with --input, reads JSONL rows with `text` (and
    /// optionally `channel`, `system_prompt`, `label`) and prints one JSON
    /// line per row, in input order. Rows labelled `indirect_injection` or
    /// `benign_context` are scanned as `retrieved` unless --channel says
    /// otherwise. A bad row gets an error line and the scan goes on.
    Scan(ScanArgs),
    /// Measure the detector on a labelled dataset directory and print a
    /// markdown table per file (AUC, TPR at 1% and 0.1% FPR, flag rates,
    /// latency), or with `--json` one JSON object.
    Eval {
        /// Directory of `*.jsonl` files (default: the shared `eval` set
        /// beside the repository, `<repo>/../shared/datasets/eval`).
        dir: Option<PathBuf>,
        /// No progress line on stderr (it is shown only on a terminal).
        #[arg(long, short)]
        quiet: bool,
        /// The report as one JSON object on stdout (progress stays on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Report token usage and cost from the ledger, grouped by tenant,
    /// model or day.
    Usage {
        /// The ledger (`sqlite:PATH` or `postgres://...`); defaults to
        /// `ledger.url` from the config.
        #[arg(long)]
        ledger: Option<String>,
        /// Config file to read `ledger.url` from.
        #[arg(long, short, env = "PALISADE_CONFIG")]
        config: Option<PathBuf>,
        /// Grouping.
        #[arg(long, value_parser = ["tenant", "model", "day"], default_value = "tenant")]
        by: String,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Look back this many days.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate, show, compare and simulate safety policies (offline).
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Build, sign, verify and inspect signed security bundles (offline).
    #[command(subcommand)]
    Bundle(bundle_cmd::BundleCommand),
    /// Read the audit log of gate decisions: the newest records, or a JSONL
    /// export.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Capability-token keys for tool calls, and offline token verification.
    #[command(subcommand)]
    Tools(tools_cmd::ToolsCommand),
    /// The fleet registry: every live replica, what it enforces, the version skew.
    #[command(subcommand)]
    Fleet(fleet_cmd::FleetCommand),
    /// Model canaries of a running gateway: scores, drift and rollout state
    /// per route and deployment (`GET /admin/canaries`).
    Canaries(canaries_cmd::CanariesArgs),
    /// Threat hunting across keys and accounts over the extraction store:
    /// find campaigns, list them, mark them confirmed or benign.
    #[command(subcommand)]
    Hunt(hunt_cmd::HuntCommand),
    /// Output watermarks: detect a tenant's watermark in text, rank a key
    /// history for forensics (offline).
    #[command(subcommand)]
    Watermark(watermark_cmd::WatermarkCommand),
    /// Train the detector's model from a training directory (reproducible:
    /// fixed seed), writing the artifact and its TRAINING.md report.
    Train {
        /// Directory of training `*.jsonl` files (never the eval set;
        /// default: `<repo>/../shared/datasets/train`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Where to write the artifact (default:
        /// `<repo>/crates/palisade-detect/model/palisade-detect.model`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// No progress line on stderr (it is shown only on a terminal).
        #[arg(long, short)]
        quiet: bool,
        /// The report as one JSON object on stdout (the markdown is still
        /// written to TRAINING.md beside the artifact).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ScanArgs {
    /// Text to scan (omit to use --input).
    text: Option<String>,
    /// JSONL file to scan, or `-` for standard input.
    #[arg(long, short, conflicts_with = "text")]
    input: Option<PathBuf>,
    /// Channel to scan on, overriding rows' own.
    #[arg(long, value_parser = ["system", "user", "retrieved", "tool_output"])]
    channel: Option<String>,
    /// Flag threshold on the score, overriding the calibrated one.
    #[arg(long)]
    threshold: Option<f32>,
    /// The system prompt the text is sent with (for TEXT).
    #[arg(long, requires = "text")]
    system_prompt: Option<String>,
    /// Exit with code 1 when any scanned text reaches this verdict or a
    /// stricter one (`flag`: flagged or blocked; `block`: blocked). The
    /// verdict lines are printed in full either way. For CI gates.
    #[arg(long, value_parser = ["flag", "block"])]
    fail_on: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML config file (see examples/palisade.toml).
    #[arg(long, short, env = "PALISADE_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, overriding server.listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Upstream base URL used when the config defines no backends.
    #[arg(long, env = "PALISADE_UPSTREAM")]
    upstream: Option<String>,
    /// Log format, overriding log.format.
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file (`-` reads standard input) and exit non-zero
    /// with a message naming the bad key if it is invalid; then report what
    /// `serve` would still fail on (unset environment variables the config
    /// names, unreadable files, unwritable directories, unparsable URLs),
    /// without starting anything.
    Check {
        /// The file.
        file: PathBuf,
        /// Print the effective config, defaults filled in.
        #[arg(long)]
        print: bool,
        /// One JSON object: `ok`, `problems`, the environment variables the
        /// config names and whether each is set (never their values).
        #[arg(long, conflicts_with = "print")]
        json: bool,
        /// Only parse and validate: skip the checks of this machine's
        /// environment, files and directories (for a config written for
        /// another machine, e.g. a pod's, checked in CI).
        #[arg(long)]
        validate_only: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Config(ConfigCommand::Check {
            file,
            print,
            json,
            validate_only,
        }) => config_check(&file, print, json, validate_only),
        Command::Keys(cmd) => keys_cmd::run(cmd),
        Command::Scan(args) => match scan(args) {
            Ok(true) => return std::process::ExitCode::FAILURE,
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        },
        Command::Eval { dir, quiet, json } => eval(dir, quiet, json),
        Command::Train {
            data,
            out,
            seed,
            quiet,
            json,
        } => train(data, out, seed, quiet, json),
        Command::Usage {
            ledger,
            config,
            by,
            tenant,
            days,
            json,
        } => usage(ledger, config.as_deref(), &by, tenant, days, json),
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Audit(cmd) => audit_cmd::run(cmd),
        Command::Fleet(cmd) => fleet_cmd::run(cmd),
        Command::Canaries(args) => canaries_cmd::run(args),
        Command::Hunt(cmd) => hunt_cmd::run(cmd),
        Command::Bundle(cmd) => bundle_cmd::run(cmd),
        Command::Watermark(cmd) => watermark_cmd::run(cmd),
        Command::Tools(cmd) => {
            return tools_cmd::run(cmd).unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            })
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_config(file: Option<&std::path::Path>, upstream: Option<&str>) -> Result<Config> {
    Config::load(&Sources {
        file,
        toml: None,
        env: true,
        default_upstream: upstream,
    })
    .with_context(|| match file {
        Some(f) => format!("loading config {}", f.display()),
        None => "loading config from defaults and environment".to_owned(),
    })
}

/// Applies `serve`'s flags over a loaded config and checks the safety rules
/// again (flags can change the listen address). Used at start and on every
/// reload, so a reload compares like with like.
fn apply_flags(config: &mut Config, args: &ServeArgs) -> Result<()> {
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(format) = &args.log_format {
        config.log.format = if format == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
    }
    config.validate().context("invalid flags")?;
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
    // The origin of palisade_security_provisioning_seconds.
    palisade_gateway::mark_process_start();
    let mut config = load_config(args.config.as_deref(), args.upstream.as_deref())?;
    apply_flags(&mut config, &args)?;
    let _log_guard = init_logging(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        for (name, backend) in &config.backends {
            tracing::info!(backend = %name, url = %backend.base_url, "backend");
        }
        let mut gateway = palisade_gateway::Gateway::new(config).context("building the gateway")?;
        if let Some(path) = args.config.clone() {
            // A reload reads the file the way this start did: the same
            // environment overrides, default upstream and flags.
            let upstream = args.upstream.clone();
            let flags = ServeArgs {
                config: None,
                listen: args.listen,
                upstream: None,
                log_format: args.log_format.clone(),
            };
            gateway = gateway.reload_from(path, move |text| {
                let mut config = Config::load(&Sources {
                    file: None,
                    toml: Some(text),
                    env: true,
                    default_upstream: upstream.as_deref(),
                })
                .map_err(|e| e.to_string())?;
                apply_flags(&mut config, &flags).map_err(|e| format!("{e:#}"))?;
                Ok(config)
            });
        }
        let running = gateway.start(None).await.context("starting the listener")?;
        tokio::select! {
            () = shutdown_signal() => {}
            () = reload_on_sighup(&running) => {}
        }
        tracing::info!("shutdown signal received");
        running.shutdown();
        running.wait().await.context("serving")?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Reloads the config file on every `SIGHUP`; never returns (on other
/// platforms, or if the handler cannot be installed, it just waits).
async fn reload_on_sighup(running: &palisade_gateway::RunningGateway) {
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        while hup.recv().await.is_some() {
            let outcome = running.reload_config().await;
            tracing::info!(result = outcome.label(), "SIGHUP: config reload");
        }
    }
    #[cfg(not(unix))]
    let _ = running;
    std::future::pending::<()>().await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn init_logging(config: &Config) -> Result<log_writer::WriterGuard> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PALISADE_LOG")
        .or_else(|_| EnvFilter::try_new(&config.log.filter))
        .context("log.filter is not a valid tracing filter")?;
    // Writing logs must never cost a request a system call: lines go through a bounded
    // queue to one writer thread that writes them in batches (see `log_writer`; it never
    // drops a line, a full queue makes the logging thread wait).
    let (writer, guard) = log_writer::spawn(
        std::io::stdout(),
        log_writer::DEFAULT_CAPACITY,
        log_writer::DEFAULT_LINGER,
    )
    .context("starting the log writer thread")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_allowed())
        .with_writer(writer);
    match config.log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
    Ok(guard)
}

/// Whether output may carry ANSI colours: only on a terminal, and never
/// with `NO_COLOR` set to anything non-empty (<https://no-color.org>).
/// clap's help and error colours follow the same rules on their own
/// (its `anstream` checks `NO_COLOR` and the terminal).
fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
}

fn config_check(
    file: &std::path::Path,
    print: bool,
    json: bool,
    validate_only: bool,
) -> Result<()> {
    let config = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        Config::load(&Sources {
            toml: Some(&text),
            env: true,
            ..Sources::default()
        })?
    } else {
        load_config(Some(file), None)?
    };
    let found = if validate_only {
        check_cmd::Preflight::default()
    } else {
        check_cmd::preflight(&config, &|var| std::env::var(var).ok())
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": found.problems.is_empty(),
                "backends": config.backends.len(),
                "routes": config.routes.len(),
                "auth_mode": format!("{:?}", config.auth.effective_mode()).to_lowercase(),
                "env": found.env,
                "problems": found.problems,
            })
        );
    } else if print {
        print!("{}", config.to_toml());
    } else {
        for e in &found.env {
            let state = if e.set { "set" } else { "NOT SET" };
            println!("env {}: {state} (used by {})", e.var, e.used_by);
        }
        for problem in &found.problems {
            println!("problem: {problem}");
        }
        if found.problems.is_empty() {
            println!(
                "ok: {} backend(s), {} route(s), auth mode {:?}",
                config.backends.len(),
                config.routes.len(),
                config.auth.effective_mode()
            );
        }
    }
    if !found.problems.is_empty() {
        bail!(
            "{} problem(s) `palisade serve` would fail on",
            found.problems.len()
        );
    }
    Ok(())
}

/// Scans; `Ok(true)` when `--fail-on` was reached.
fn scan(args: ScanArgs) -> Result<bool> {
    use std::io::Write;
    // `block` trips on blocked rows only; `flag` on flagged or blocked ones.
    let trips = |flag: usize, block: usize| match args.fail_on.as_deref() {
        Some("flag") => flag + block > 0,
        Some("block") => block > 0,
        _ => false,
    };
    let detector = palisade_detect::Detector::embedded().context("loading the detector model")?;
    let channel = args
        .channel
        .as_deref()
        .map(str::parse::<palisade_detect::Channel>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let opts = palisade_eval::ScanOptions {
        channel,
        threshold: args.threshold,
        progress: None,
    };
    let stdout = std::io::stdout();
    if let Some(text) = args.text {
        let row = palisade_eval::Row {
            text,
            system_prompt: args.system_prompt,
            ..palisade_eval::Row::default()
        };
        let (scan, latency_us) = palisade_eval::scan::scan_row(&detector, &row, &opts)?;
        let line = palisade_eval::ScanLine::new(0, &scan, latency_us);
        let mut out = stdout.lock();
        serde_json::to_writer(&mut out, &line).context("writing the verdict")?;
        writeln!(out).context("writing the verdict")?;
        let (flag, block) = match line.verdict {
            palisade_detect::Verdict::Flag => (1, 0),
            palisade_detect::Verdict::Block => (0, 1),
            palisade_detect::Verdict::Allow => (0, 0),
        };
        return Ok(trips(flag, block));
    }
    let summary = match args.input.as_deref() {
        None => bail!("give TEXT or --input FILE (use `--input -` for standard input)"),
        Some(p) if p.as_os_str() == "-" => palisade_eval::run_scan_with(
            &detector,
            &opts,
            std::io::stdin().lock(),
            std::io::BufWriter::new(stdout.lock()),
        )?,
        Some(p) => {
            let file =
                std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            palisade_eval::run_scan_with(
                &detector,
                &opts,
                std::io::BufReader::new(file),
                std::io::BufWriter::new(stdout.lock()),
            )?
        }
    };
    if summary.errors > 0 {
        eprintln!(
            "{} of {} rows could not be scanned (see their error lines)",
            summary.errors, summary.rows
        );
    }
    Ok(trips(summary.flag, summary.block))
}

fn eval(dir: Option<PathBuf>, quiet: bool, json: bool) -> Result<()> {
    let dir = datasets::dataset_dir(dir, "eval", "DIR")?;
    let detector = palisade_detect::Detector::embedded().context("loading the detector model")?;
    let mut progress = datasets::Progress::new(quiet);
    let started = std::time::Instant::now();
    let files = palisade_eval::score_dir_with(&dir, &detector, &mut |i, n, name| {
        progress.tick(&format!("eval: file {}/{n} {name}", i + 1));
    })
    .with_context(|| format!("evaluating on {}", dir.display()))?;
    progress.done(&format!(
        "eval: {} files scored in {:.1} s",
        files.len(),
        started.elapsed().as_secs_f64()
    ));
    if json {
        println!("{}", palisade_eval::report_json(&files, &detector));
    } else {
        print!("{}", palisade_eval::report(&files, &detector));
    }
    Ok(())
}

fn train(
    data: Option<PathBuf>,
    out: Option<PathBuf>,
    seed: u64,
    quiet: bool,
    json: bool,
) -> Result<()> {
    let data = datasets::dataset_dir(data, "train", "--data")?;
    if data.components().any(|c| c.as_os_str() == "eval") {
        bail!(
            "refusing to train on {}: the eval set is for measuring only",
            data.display()
        );
    }
    let out = out.unwrap_or_else(|| {
        datasets::repo_root().join("crates/palisade-detect/model/palisade-detect.model")
    });
    let mut progress = datasets::Progress::new(quiet);
    let started = std::time::Instant::now();
    progress.tick(&format!(
        "train: fitting on {} (seed {seed})…",
        data.display()
    ));
    let report = palisade_eval::run_train(&data, &out, seed)
        .with_context(|| format!("training from {}", data.display()))?;
    progress.done(&format!(
        "train: wrote {} in {:.1} s",
        out.display(),
        started.elapsed().as_secs_f64()
    ));
    if json {
        let mut value = serde_json::to_value(&report).context("encoding the report")?;
        if let Some(obj) = value.as_object_mut() {
            obj.remove("markdown");
            obj.insert(
                "artifact".into(),
                serde_json::json!(out.display().to_string()),
            );
            obj.insert("seed".into(), serde_json::json!(seed));
        }
        println!("{value}");
    } else {
        print!("{}", report.markdown);
    }
    Ok(())
}

/// A report must not create the database it reads: opening a mistyped SQLite
/// path would make an empty ledger and report "no usage". Other URLs
/// (PostgreSQL) fail to connect on their own.
fn refuse_missing_sqlite(url: &str) -> Result<()> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(());
    };
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" || std::path::Path::new(path).is_file() {
        return Ok(());
    }
    bail!("no ledger database at {path}: check --ledger (a report never creates one)")
}

fn usage(
    ledger: Option<String>,
    config: Option<&std::path::Path>,
    by: &str,
    tenant: Option<String>,
    days: u32,
    json: bool,
) -> Result<()> {
    use palisade_ledger::{GroupBy, Ledger, UsageQuery, WriteOptions};
    let url = match ledger {
        Some(url) => url,
        None => load_config(config, None)?
            .ledger
            .url
            .context("no ledger: pass --ledger URL or set ledger.url in the config")?,
    };
    refuse_missing_sqlite(&url)?;
    let group_by = match by {
        "model" => GroupBy::Model,
        "day" => GroupBy::Day,
        _ => GroupBy::Tenant,
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let query = UsageQuery {
        tenant,
        since_ms: now_ms - i64::from(days) * 86_400_000,
        until_ms: now_ms + 1,
        group_by,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let rows = runtime.block_on(async {
        let ledger = Ledger::open(&url, WriteOptions::default())
            .await
            .with_context(|| format!("opening the ledger {url}"))?;
        ledger.usage(&query).await.context("querying usage")
    })?;
    if json {
        for r in &rows {
            println!(
                "{}",
                serde_json::json!({"group": r.group, "requests": r.requests, "prompt_tokens": r.prompt_tokens,
                    "completion_tokens": r.completion_tokens, "total_tokens": r.total_tokens,
                    "cost_usd": r.cost_micros as f64 / 1e6})
            );
        }
        return Ok(());
    }
    println!("| {by} | requests | prompt tokens | completion tokens | total tokens | cost (USD) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.6} |",
            r.group,
            r.requests,
            r.prompt_tokens,
            r.completion_tokens,
            r.total_tokens,
            r.cost_micros as f64 / 1e6
        );
    }
    Ok(())
}
