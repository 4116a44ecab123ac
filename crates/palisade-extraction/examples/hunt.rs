//! The cross-account hunt's evaluation: extraction campaigns spread over
//! 20, 100 and 1,000 keys (each key under a 60 requests/minute limit, the
//! keys spread over accounts of five keys) mixed into a simulated day of
//! benign traffic, and the pure hunt (`palisade_extraction::hunt`, the
//! code the gateway's job and `palisade hunt` run) asked to find them.
//!
//! ```text
//! cargo run --release -p palisade-extraction --example hunt -- \
//!     [--benign /work/shared/datasets/train/benign.jsonl] [--users 400] [--seed 1] \
//!     [--baseline tenants|seeded]
//! ```
//!
//! The baseline is by default the hunt's own (the request-weighted median
//! of the tenants' means, what the gateway uses); `seeded` compares with
//! the file's first 256 prompts instead.
//!
//! Per attack it prints: detected (a campaign at least half made of the
//! attack's keys), the attack's keys clustered, the precision of the
//! campaigns holding them, and the benign keys put in any campaign. Two
//! attacker styles: *plain* (one client: same user agent behind four proxy
//! prefixes, requests every ~3 s) and *evasive* (a new user agent on every
//! request, keys starting over ten minutes, exponential gaps of mean 10 s).

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use palisade_extraction::hunt::Baseline;
use palisade_extraction::sketch::hash_bytes;
use palisade_extraction::stats::SplitMix;
use palisade_extraction::{hunt, sketch, HuntConfig, HuntRow, Marks, ProfileSet};

#[path = "support/traffic.rs"]
mod traffic;
use traffic::*;

fn parse_args() -> Result<(Vec<String>, usize, u64, bool), String> {
    let mut files = Vec::new();
    let mut users = 400;
    let mut seed = 1;
    let mut seeded = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--benign" => files.push(args.next().ok_or("--benign needs a path")?),
            "--users" => {
                users = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--users needs a number")?
            }
            "--seed" => {
                seed = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--seed needs a number")?
            }
            "--baseline" => {
                seeded = match args.next().as_deref() {
                    Some("seeded") => true,
                    Some("tenants") => false,
                    _ => return Err("--baseline needs seeded or tenants".into()),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if files.is_empty() {
        files.push("/work/shared/datasets/train/benign.jsonl".to_owned());
    }
    let mut benign = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
                benign.push(t.to_owned());
            }
        }
    }
    if benign.len() < BASELINE_ROWS * 2 {
        return Err("need at least 512 benign prompts".into());
    }
    Ok((benign, users, seed, seeded))
}

fn to_row(e: &Event, fingerprint: u64) -> HuntRow {
    let s = sketch(&e.text);
    HuntRow {
        at_ms: e.at_ms,
        tenant: e.tenant.clone(),
        key: format!("{}/{}", e.tenant, e.key),
        chars: s.chars,
        entropy_bits: s.entropy_bits,
        simhash: s.simhash,
        minhash: s.minhash,
        fingerprint,
    }
}

/// Benign fingerprints: each user one of six common clients, behind the
/// tenant's office prefix.
fn benign_rows(events: &[Event], rng: &mut SplitMix) -> Vec<HuntRow> {
    let mut ua: HashMap<String, u64> = HashMap::new();
    events
        .iter()
        .map(|e| {
            let u = *ua
                .entry(e.key.clone())
                .or_insert_with(|| rng.below(6) as u64);
            to_row(e, hash_bytes(format!("ua{u}|{}", e.tenant).as_bytes()))
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Plain,
    Evasive,
}

fn attack_rows(
    attack: Attack,
    keys: usize,
    queries: usize,
    style: Style,
    prompts: &[String],
    vocab: &[String],
    rng: &mut SplitMix,
) -> Vec<HuntRow> {
    let mut events = attack_traffic(attack, keys, queries, prompts, vocab, rng);
    let start = DAY_MS * 10 / 24;
    if style == Style::Evasive {
        // Re-time every key: a start anywhere in ten minutes, then gaps of
        // 1 s plus an exponential of mean 10 s (still under 60/min).
        let mut clocks: Vec<i64> = (0..keys).map(|_| rng.below(600_000) as i64).collect();
        for e in &mut events {
            let k: usize = e
                .key
                .rsplit('-')
                .next()
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
            e.at_ms = clocks[k];
            clocks[k] += 1_000 + think(rng, 10_000.0);
        }
    }
    events
        .iter()
        .map(|e| {
            let k: usize = e
                .key
                .rsplit('-')
                .next()
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
            let mut e = e.clone();
            e.at_ms += start;
            e.tenant = format!("acct-{}", k / 5);
            let fp = match style {
                Style::Plain => hash_bytes(format!("extractor/1.0|proxy{}", k % 4).as_bytes()),
                Style::Evasive => rng.next_u64() | 1,
            };
            to_row(&e, fp)
        })
        .collect()
}

struct Outcome {
    detected: bool,
    /// Campaigns holding attack keys, and the keys of the largest.
    fragments: usize,
    largest: usize,
    clustered: usize,
    precision: f64,
    benign_flagged: usize,
    campaigns: usize,
    evidence: String,
    ms: u128,
}

fn evaluate(
    benign: &[HuntRow],
    attack: &[HuntRow],
    attack_keys: &BTreeSet<String>,
    baseline: Option<&Baseline>,
) -> Outcome {
    let config = HuntConfig {
        max_listed_keys: usize::MAX,
        top_k: usize::MAX,
        ..HuntConfig::default()
    };
    let started = Instant::now();
    let mut set = ProfileSet::new();
    for r in benign.iter().chain(attack) {
        set.add(r, &config);
    }
    let report = hunt(&set, &Marks::default(), baseline, &config, 0);
    let ms = started.elapsed().as_millis();
    if std::env::var_os("HUNT_VERBOSE").is_some() {
        for c in &report.campaigns {
            let ev: Vec<String> = c
                .evidence
                .iter()
                .map(|e| format!("{}:{}@{:.2}", e.kind.as_str(), e.edges, e.mean_score))
                .collect();
            eprintln!(
                "  campaign {} keys, {} tenants, off {:.2}, span {} min, {}: {:?}",
                c.key_count,
                c.tenants.len(),
                c.off_baseline,
                (c.last_ms - c.first_ms) / 60_000,
                ev.join(" "),
                &c.keys[..c.keys.len().min(4)]
            );
        }
    }
    let mut detected = false;
    let mut clustered = 0;
    let mut holding = 0;
    let mut benign_flagged = 0;
    let mut kinds = BTreeSet::new();
    let mut fragments = 0;
    let mut largest = 0;
    for c in &report.campaigns {
        let bad = c.keys.iter().filter(|k| attack_keys.contains(*k)).count();
        benign_flagged += c.key_count - bad;
        if bad > 0 {
            fragments += 1;
            largest = largest.max(bad);
            clustered += bad;
            holding += c.key_count;
            for e in &c.evidence {
                kinds.insert(e.kind.as_str());
            }
        }
        if bad * 2 >= c.key_count && bad > 0 {
            detected = true;
        }
    }
    Outcome {
        detected,
        fragments,
        largest,
        clustered,
        precision: if holding == 0 {
            0.0
        } else {
            clustered as f64 / holding as f64
        },
        benign_flagged,
        campaigns: report.campaigns.len(),
        evidence: kinds.into_iter().collect::<Vec<_>>().join("+"),
        ms,
    }
}

fn main() {
    let (prompts, users, seed, seeded) = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hunt: {e}");
            std::process::exit(2);
        }
    };
    let mut rng = SplitMix::new(seed);
    let replay = &prompts[BASELINE_ROWS..];
    let vocab = vocabulary(replay);
    let benign_events = benign_traffic(replay, users, &mut rng);
    let benign = benign_rows(&benign_events, &mut rng);
    let benign_keys: BTreeSet<&str> = benign.iter().map(|r| r.key.as_str()).collect();
    // The seeded baseline: the file's first rows, disjoint from the replay
    // (as the per-key harness' MMD baseline); `--baseline tenants` uses the
    // hunt's own fallback, the tenant-median of the hunted profiles.
    let seed_rows: Vec<HuntRow> = prompts[..BASELINE_ROWS]
        .iter()
        .map(|t| {
            let e = Event {
                at_ms: 0,
                key: "seed".into(),
                tenant: "seed".into(),
                text: t.clone(),
                sampling: sampling(false, 0),
                outcome: Default::default(),
            };
            to_row(&e, 0)
        })
        .collect();
    let seeded_baseline = Baseline::from_rows(&seed_rows);
    let baseline = if seeded {
        seeded_baseline.as_ref()
    } else {
        None
    };
    println!(
        "baseline: {}",
        if seeded {
            "seeded (first 256 rows)"
        } else {
            "tenant-median of the hunted keys"
        }
    );

    let alone = evaluate(&benign, &[], &BTreeSet::new(), baseline);
    if std::env::var_os("HUNT_BENIGN_ONLY").is_some() {
        println!(
            "benign alone: {} campaigns, {} keys",
            alone.campaigns, alone.benign_flagged
        );
        return;
    }
    println!(
        "benign day alone: {} keys, {} requests; campaigns {}, benign keys in a campaign {} ({:.2}%), hunt {} ms",
        benign_keys.len(),
        benign.len(),
        alone.campaigns,
        alone.benign_flagged,
        100.0 * alone.benign_flagged as f64 / benign_keys.len().max(1) as f64,
        alone.ms
    );
    println!("\n| attack | style | keys | queries | detected | attack keys clustered | campaigns (largest) | precision | benign keys flagged | evidence | hunt ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for attack in [Attack::RandomQuery, Attack::Perturbation] {
        for style in [Style::Plain, Style::Evasive] {
            for (keys, queries) in [(20, 4000), (100, 4000), (1000, 20000)] {
                let rows = attack_rows(attack, keys, queries, style, replay, &vocab, &mut rng);
                let attack_keys: BTreeSet<String> = rows.iter().map(|r| r.key.clone()).collect();
                let o = evaluate(&benign, &rows, &attack_keys, baseline);
                println!(
                    "| {} | {} | {keys} | {queries} | {} | {}/{keys} | {} ({}) | {:.3} | {}/{} ({:.2}%) | {} | {} |",
                    attack.name(),
                    if style == Style::Plain { "plain" } else { "evasive" },
                    if o.detected { "yes" } else { "no" },
                    o.clustered,
                    o.fragments,
                    o.largest,
                    o.precision,
                    o.benign_flagged,
                    benign_keys.len(),
                    100.0 * o.benign_flagged as f64 / benign_keys.len().max(1) as f64,
                    if o.evidence.is_empty() { "-" } else { &o.evidence },
                    o.ms,
                );
            }
        }
    }
}
