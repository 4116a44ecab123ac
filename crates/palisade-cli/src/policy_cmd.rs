//! `palisade policy`: validate, show and compare policy files, and replay
//! recorded decisions under a candidate policy before rolling it out.
//!
//! Everything here is offline: it reads files (or standard input) and
//! prints. The judging is `palisade-policy`'s (`Snapshot::compile`, `diff`,
//! `simulate`); this module only reads the inputs, reports problems with
//! their file and line, and formats the results.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use palisade_policy::{signature, simulate, AuditRecord, SimulationReport, Snapshot};
use serde_json::json;

/// The name that stands for the built-in policy wherever a policy file is
/// expected (a file really called `builtin` can be given as `./builtin`).
const BUILTIN: &str = "builtin";

/// Changed request ids listed by `simulate`'s table (the JSON has them all).
const CHANGED_SHOWN: usize = 50;

/// Bad replay lines reported one by one; the rest are counted.
const BAD_LINES_SHOWN: usize = 50;

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate a policy file: print `ok: <version> "<label>", N tiers`, or
    /// the error naming the key path and exit 1.
    ///
    /// FILE may be `-` for standard input or `builtin` for the built-in
    /// policy.
    Validate {
        /// The policy file.
        file: PathBuf,
    },
    /// Print a policy's version and label, then its canonical document (a
    /// valid policy file with the same version). Without FILE, the built-in
    /// policy.
    Show {
        /// The policy file (`-` for standard input, `builtin`).
        file: Option<PathBuf>,
    },
    /// What changes from OLD to NEW, one line per change, after the two
    /// versions. `builtin` stands for the built-in policy.
    Diff {
        /// The policy in force.
        old: PathBuf,
        /// The candidate.
        new: PathBuf,
    },
    /// Re-decide recorded gate decisions under a candidate policy and count
    /// how the enforced actions would change.
    ///
    /// The replay file holds audit records, one JSON object per line (what
    /// `palisade audit export` writes; `-` reads standard input). Lines that
    /// are not records are reported on standard error with their line
    /// number, skipped and counted in the summary; blank lines are ignored.
    Simulate {
        /// The candidate policy (a file, `-`, or `builtin`).
        new: PathBuf,
        /// The audit records to replay (JSON lines).
        #[arg(long)]
        replay: PathBuf,
        /// One JSON object instead of a table, with every changed record.
        #[arg(long)]
        json: bool,
    },
    /// Generate a policy signing key: writes the seed (64 hex digits) to
    /// FILE with owner-only permissions and prints the public key to list
    /// in `policy.trusted_keys` on every replica.
    Keygen {
        /// Where to write the seed; refuses to overwrite.
        out: PathBuf,
    },
    /// Sign a policy file: checks that it compiles, then writes FILE.sig
    /// (a detached ed25519 signature of its exact bytes, its serial and its
    /// role). Replicas with `policy.trusted_keys` enforce only files signed
    /// for the role they load them as, and refuse a serial lower than the
    /// one they run.
    Sign {
        /// The policy file.
        file: PathBuf,
        /// The signing seed file (`palisade policy keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The serial number: higher for every newer policy. Default: the
        /// current Unix time in seconds, which grows by itself.
        #[arg(long)]
        serial: Option<u64>,
        /// `active` (for `policy.file`) or `shadow` (for `policy.shadow_file`).
        #[arg(long, default_value = "active", value_parser = parse_role)]
        role: signature::Role,
    },
    /// Check FILE.sig against FILE and the given public keys, as a replica
    /// would; exits 1 with the reason when it would be refused.
    Verify {
        /// The policy file.
        file: PathBuf,
        /// A trusted public key (64 hex digits); repeat for several.
        #[arg(long = "public-key", required = true)]
        public_keys: Vec<String>,
        /// The role the file is to be loaded as.
        #[arg(long, default_value = "active", value_parser = parse_role)]
        role: signature::Role,
        /// Refuse a serial lower than this (the serial the fleet runs).
        #[arg(long, default_value_t = 0)]
        min_serial: u64,
    },
}

pub(crate) fn run(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Validate { file } => validate(&file),
        PolicyCommand::Show { file } => show(file.as_deref()),
        PolicyCommand::Diff { old, new } => diff(&old, &new),
        PolicyCommand::Simulate { new, replay, json } => simulate_replay(&new, &replay, json),
        PolicyCommand::Keygen { out } => {
            let seed = crate::tools_cmd::write_new_seed(&out)?;
            println!("{}", signature::public_key_of(&hex::encode(seed))?);
            eprintln!(
                "wrote the policy signing seed to {}; list the line above in policy.trusted_keys",
                out.display()
            );
            Ok(())
        }
        PolicyCommand::Sign {
            file,
            key,
            serial,
            role,
        } => sign(&file, &key, serial, role),
        PolicyCommand::Verify {
            file,
            public_keys,
            role,
            min_serial,
        } => verify(&file, &public_keys, role, min_serial),
    }
}

fn parse_role(text: &str) -> Result<signature::Role, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a role: use `active` or `shadow`"))
}

fn signature_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

fn sign(file: &Path, key: &Path, serial: Option<u64>, role: signature::Role) -> Result<()> {
    // Never sign what a replica would refuse to compile.
    let p = load(file)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let seed =
        std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let serial = match serial {
        Some(s) => s,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("system clock before 1970: pass --serial")?
            .as_secs(),
    };
    let line = signature::sign_document(&seed, &bytes, serial, role)
        .with_context(|| format!("{} is not a signing seed", key.display()))?;
    let out = signature_path(file);
    std::fs::write(&out, &line).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "signed {} ({}) as the {role} policy, serial {serial} -> {}",
        file.display(),
        describe(&p),
        out.display()
    );
    Ok(())
}

fn verify(
    file: &Path,
    public_keys: &[String],
    role: signature::Role,
    min_serial: u64,
) -> Result<()> {
    let trusted = public_keys
        .iter()
        .map(|k| signature::TrustedKey::from_hex(k))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let sig_path = signature_path(file);
    let line = std::fs::read_to_string(&sig_path)
        .with_context(|| format!("reading {}", sig_path.display()))?;
    let signed = signature::verify_document(&trusted, &bytes, &line, role)
        .with_context(|| format!("{} would be refused", file.display()))?;
    if signed.serial < min_serial {
        bail!(
            "{} would be refused: serial {} is lower than {min_serial}",
            file.display(),
            signed.serial
        );
    }
    let p = load(file)?;
    println!(
        "ok: {} signed by key {} as the {role} policy, serial {}",
        describe(&p),
        signed.key_id,
        signed.serial
    );
    Ok(())
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &Path) -> Result<String> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
    } else {
        text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(text)
}

/// Loads and compiles the policy `name` names: `builtin`, `-` or a file.
/// Errors say which file and name the key path (the policy crate's errors
/// carry it).
fn load(name: &Path) -> Result<Snapshot> {
    if name.as_os_str() == BUILTIN {
        return Ok(Snapshot::builtin());
    }
    let text = read_input(name)?;
    // The message only, not the error chain: a policy error's message
    // already includes its cause (the TOML error would print twice).
    Snapshot::from_toml(&text).map_err(|e| anyhow!("invalid policy {}: {e}", name.display()))
}

/// `<version> "<label>"`, how a policy is named in every output.
fn describe(p: &Snapshot) -> String {
    format!("{} {:?}", p.version(), p.label())
}

fn validate(file: &Path) -> Result<()> {
    let p = load(file)?;
    let tiers = p.tiers().count();
    let noun = if tiers == 1 { "tier" } else { "tiers" };
    println!("ok: {}, {tiers} {noun}", describe(&p));
    Ok(())
}

fn show(file: Option<&Path>) -> Result<()> {
    let p = load(file.unwrap_or(Path::new(BUILTIN)))?;
    let toml = toml::to_string_pretty(p.document()).context("rendering the policy as TOML")?;
    // Comments, so that the output is itself a policy file (with the same
    // version: the version hashes the canonical document printed here).
    println!("# version: {}", p.version());
    println!("# label: {:?}", p.label());
    print!("{toml}");
    Ok(())
}

fn diff(old: &Path, new: &Path) -> Result<()> {
    let (a, b) = (load(old)?, load(new)?);
    println!("--- {} {}", old.display(), describe(&a));
    println!("+++ {} {}", new.display(), describe(&b));
    let changes = palisade_policy::diff(a.document(), b.document());
    for c in &changes {
        println!("{c}");
    }
    match changes.len() {
        0 => println!("no changes"),
        1 => println!("1 change"),
        n => println!("{n} changes"),
    }
    Ok(())
}

/// A line of the replay that is not an audit record.
#[derive(Debug)]
struct BadLine {
    line: u64,
    error: String,
}

/// The replay file as an iterator of records, noting what it skips. Reads
/// line by line, so memory does not grow with the file.
struct Replay<R> {
    input: R,
    line: u64,
    buf: Vec<u8>,
    /// The first [`BAD_LINES_SHOWN`] bad lines.
    bad: Vec<BadLine>,
    bad_count: u64,
    /// Records per policy version they were decided under.
    recorded_under: BTreeMap<String, u64>,
    /// A read error ends the replay; reported after `simulate` returns.
    failed: Option<std::io::Error>,
}

impl<R: BufRead> Replay<R> {
    fn new(input: R) -> Self {
        Self {
            input,
            line: 0,
            buf: Vec::new(),
            bad: Vec::new(),
            bad_count: 0,
            recorded_under: BTreeMap::new(),
            failed: None,
        }
    }

    fn skip(&mut self, error: String) {
        self.bad_count += 1;
        if self.bad.len() < BAD_LINES_SHOWN {
            eprintln!("line {}: {error}", self.line);
            self.bad.push(BadLine {
                line: self.line,
                error,
            });
        }
    }
}

impl<R: BufRead> Iterator for Replay<R> {
    type Item = AuditRecord;

    fn next(&mut self) -> Option<AuditRecord> {
        loop {
            self.buf.clear();
            match self.input.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => self.line += 1,
                Err(e) => {
                    self.failed = Some(e);
                    return None;
                }
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(text) => text,
                Err(e) => {
                    self.skip(format!("not UTF-8: {e}"));
                    continue;
                }
            };
            if text.trim().is_empty() {
                continue;
            }
            match AuditRecord::from_json_line(text) {
                Ok(record) => {
                    *self
                        .recorded_under
                        .entry(record.policy_version.to_string())
                        .or_insert(0) += 1;
                    return Some(record);
                }
                Err(e) => self.skip(e.to_string()),
            }
        }
    }
}

fn simulate_replay(new: &Path, replay: &Path, as_json: bool) -> Result<()> {
    let policy = load(new)?;
    let input: Box<dyn BufRead> = if replay.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file =
            std::fs::File::open(replay).with_context(|| format!("opening {}", replay.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut records = Replay::new(input);
    let report = simulate(&policy, &mut records);
    if let Some(e) = records.failed {
        return Err(e).with_context(|| format!("reading {}", replay.display()));
    }
    if records.bad_count > BAD_LINES_SHOWN as u64 {
        let more = records.bad_count - BAD_LINES_SHOWN as u64;
        eprintln!("… and {} more", lines(more));
    }
    if report.total == 0 && records.bad_count > 0 {
        bail!(
            "{} holds no audit records ({}): is it an audit export?",
            replay.display(),
            lines(records.bad_count)
        );
    }
    if as_json {
        print_json(&policy, &report, &records)
    } else {
        print_table(&policy, replay, &report, &records);
        Ok(())
    }
}

/// `1 bad line`, `2 bad lines`.
fn lines(n: u64) -> String {
    format!("{n} bad line{}", if n == 1 { "" } else { "s" })
}

fn print_table<R>(policy: &Snapshot, replay: &Path, report: &SimulationReport, r: &Replay<R>) {
    let under: Vec<String> = r
        .recorded_under
        .iter()
        .map(|(version, n)| format!("{version} ({n})"))
        .collect();
    println!("policy: {}", describe(policy));
    println!(
        "replayed: {} records from {}, decided under {}",
        report.total,
        replay.display(),
        if under.is_empty() {
            "-".to_owned()
        } else {
            under.join(", ")
        }
    );
    println!();
    println!("| old action | new action | records | changed |");
    println!("|---|---|---:|---|");
    for (&(old, new), count) in &report.by_transition {
        let changed = if old == new { "no" } else { "yes" };
        println!("| {old} | {new} | {count} | {changed} |");
    }
    println!();
    println!(
        "{} of {} records change; {} skipped",
        report.changed.len(),
        report.total,
        lines(r.bad_count)
    );
    if report.changed.is_empty() {
        return;
    }
    let shown = report.changed.len().min(CHANGED_SHOWN);
    println!(
        "changed request ids (first {shown} of {}):",
        report.changed.len()
    );
    for c in report.changed.iter().take(CHANGED_SHOWN) {
        let reasons: Vec<&str> = c.new_reasons.iter().map(|r| r.as_str()).collect();
        println!(
            "{} {} {} → {} ({})",
            c.request_id,
            c.gate,
            c.old_action,
            c.new_action,
            if reasons.is_empty() {
                "no reasons".to_owned()
            } else {
                reasons.join(", ")
            }
        );
    }
}

fn print_json<R>(policy: &Snapshot, report: &SimulationReport, r: &Replay<R>) -> Result<()> {
    let bad: Vec<_> = r
        .bad
        .iter()
        .map(|b| json!({"line": b.line, "error": b.error}))
        .collect();
    let mut out = serde_json::to_value(report).context("serializing the report")?;
    if let Some(map) = out.as_object_mut() {
        map.insert("policy_version".into(), json!(policy.version()));
        map.insert("label".into(), json!(policy.label()));
        map.insert("changed_count".into(), json!(report.changed.len()));
        map.insert("bad_lines".into(), json!(r.bad_count));
        map.insert("bad".into(), json!(bad));
        map.insert("recorded_under".into(), json!(r.recorded_under));
    }
    println!("{out}");
    Ok(())
}
