//! The extraction evaluation harness: simulated extraction campaigns mixed
//! into a simulated day of benign traffic, replayed through the pure
//! detectors (the same `Tracker` the gateway runs), offline and fast.
//!
//! ```text
//! cargo run --release -p palisade-extraction --example campaigns -- \
//!     --benign /work/shared/datasets/train/benign.jsonl [--users 400] [--seed 1] [--calibrate]
//! ```
//!
//! Benign traffic: `--users` keys replaying the benign prompts with think
//! times over 24 simulated hours: light users (a topical slice of the data,
//! a few dozen requests), heavy users (batch jobs and evaluations replaying
//! 1,000–3,000 varied prompts, some with log-probabilities at a fixed
//! configuration, some at a handful of temperatures). Attacks: a
//! random-query extractor, a PRADA-like perturbation extractor and a
//! logprob-sweep extractor (under the hardened tier, where its probes are
//! refused, and under an open tier), each from one key and distributed over
//! 20 and 100 keys that each stay under a 60 requests/minute limit.
//!
//! Thresholds are set with `--calibrate` on the train split only (it prints
//! the detectors' statistics over benign windows); the eval split is for
//! reporting, never tuning. The MMD baseline is drawn from the first rows
//! of the file, disjoint from the prompts users replay.

use std::collections::HashMap;

use palisade_extraction::detect::{DetectorKind, Point};
use palisade_extraction::stats::SplitMix;
use palisade_extraction::{sketch, Action, RequestFeatures, Tracker, TrackerConfig};

#[path = "support/traffic.rs"]
mod traffic;
use traffic::*;

struct Options {
    benign: Vec<String>,
    users: usize,
    seed: u64,
    calibrate: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut files = Vec::new();
    let mut users = 400;
    let mut seed = 1;
    let mut calibrate = false;
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
            "--calibrate" => calibrate = true,
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
    Ok(Options {
        benign,
        users,
        seed,
        calibrate,
    })
}

/// Per key: first time flagged and blocked (in the key's request count and
/// in the campaign's), and the worst rung.
#[derive(Default, Clone, Copy)]
struct KeyResult {
    worst: Action,
    flagged_at: Option<u64>,
    blocked_at: Option<u64>,
    /// Firings per detector, for the evidence of flagged keys.
    fired: [u32; 6],
}

fn run(events: &mut [Event], tracker: &mut Tracker) -> (HashMap<String, KeyResult>, Vec<Stat>) {
    events.sort_by_key(|e| e.at_ms);
    let mut results: HashMap<String, KeyResult> = HashMap::new();
    let mut benign_stats = Vec::new();
    let mut campaign_counts: HashMap<String, u64> = HashMap::new();
    for e in events.iter() {
        let campaign = e
            .key
            .rsplit_once('-')
            .map_or(e.key.clone(), |(c, _)| c.to_owned());
        let n = campaign_counts.entry(campaign).or_default();
        *n += 1;
        let features = RequestFeatures {
            at_ms: e.at_ms,
            sketch: sketch(&e.text),
            sampling: e.sampling,
            outcome: e.outcome,
        };
        if let Some(a) = tracker.observe(&e.key, &e.tenant, &features, e.at_ms) {
            {
                for s in &a.signals {
                    benign_stats.push((s.kind, s.value, s.p_value, s.fired));
                }
            }
            let r = results.entry(e.key.clone()).or_default();
            for s in a.fired() {
                r.fired[s.kind as usize] += 1;
            }
            if a.action > r.worst {
                r.worst = a.action;
            }
            if a.action >= Action::Flag && r.flagged_at.is_none() {
                r.flagged_at = Some(*n);
            }
            if a.action >= Action::Block && r.blocked_at.is_none() {
                r.blocked_at = Some(*n);
            }
        } else {
            results.entry(e.key.clone()).or_default();
        }
    }
    (results, benign_stats)
}

fn quantiles(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
    format!(
        "n={} min={:.4} p0.1%={:.4} p1%={:.4} p50%={:.4} p99%={:.4} p99.9%={:.4} max={:.4}",
        v.len(),
        q(0.0),
        q(0.001),
        q(0.01),
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0)
    )
}

/// One detector result: kind, statistic, p-value, fired.
type Stat = (DetectorKind, f64, Option<f64>, bool);

fn print_stats(stats: &[Stat]) {
    for kind in [
        DetectorKind::Prada,
        DetectorKind::Mmd,
        DetectorKind::Coverage,
        DetectorKind::Probing,
        DetectorKind::Sweep,
        DetectorKind::Perturbation,
    ] {
        let values: Vec<f64> = stats.iter().filter(|s| s.0 == kind).map(|s| s.1).collect();
        let ps: Vec<f64> = stats
            .iter()
            .filter(|s| s.0 == kind)
            .filter_map(|s| s.2)
            .collect();
        let fired = stats.iter().filter(|s| s.0 == kind && s.3).count();
        println!(
            "  {:<9} fired {fired:>5}  value {}",
            kind.as_str(),
            quantiles(values)
        );
        if !ps.is_empty() {
            println!("  {:<9}             p     {}", "", quantiles(ps));
        }
    }
}

fn main() {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("campaigns: {e}");
            std::process::exit(2);
        }
    };
    let mut rng = SplitMix::new(options.seed);
    let (baseline_rows, replay) = options.benign.split_at(BASELINE_ROWS);
    let baseline: Vec<Point> = baseline_rows
        .iter()
        .map(|t| {
            let s = sketch(t);
            Point {
                simhash: s.simhash,
                chars: s.chars,
                entropy_bits: s.entropy_bits,
            }
        })
        .collect();
    let vocab = vocabulary(replay);
    let benign = benign_traffic(replay, options.users, &mut rng);
    let benign_requests = benign.len();

    // Benign day alone: the false-positive side and the calibration view.
    let mut tracker = Tracker::new(TrackerConfig::default());
    tracker.set_global_baseline(baseline.clone());
    let mut events = benign.clone();
    let (results, stats) = run(&mut events, &mut tracker);
    let benign_keys = results.len();
    let flagged = results.values().filter(|r| r.worst >= Action::Flag).count();
    let blocked = results
        .values()
        .filter(|r| r.worst >= Action::Block)
        .count();
    println!(
        "benign day: {benign_keys} keys, {benign_requests} requests; flagged {flagged} ({:.2}%), slowed {}, blocked {blocked} ({:.2}%)",
        100.0 * flagged as f64 / benign_keys.max(1) as f64,
        results.values().filter(|r| r.worst >= Action::Slow).count(),
        100.0 * blocked as f64 / benign_keys.max(1) as f64,
    );
    for (key, r) in &results {
        if r.worst >= Action::Flag {
            println!("  flagged benign key {key}: worst {}, detector firings [prada, mmd, coverage, probing, sweep, perturbation] = {:?}", r.worst.as_str(), r.fired);
        }
    }
    if options.calibrate {
        print_stats(&stats);
    }

    println!("\n| attack | keys | queries | detected | flagged keys | blocked keys | campaign queries until first flag | queries until first block |");
    println!("|---|---|---|---|---|---|---|---|");
    for attack in [
        Attack::RandomQuery,
        Attack::Perturbation,
        Attack::LogprobSweepHardened,
        Attack::LogprobSweepOpen,
    ] {
        for (keys, queries) in [(1, 2000), (20, 4000), (100, 4000)] {
            // Attack keys share no tenant with benign ones, so a campaign is
            // replayed on its own tracker: the benign day above is the
            // false-positive side of every row.
            let mut tracker = Tracker::new(TrackerConfig::default());
            tracker.set_global_baseline(baseline.clone());
            let mut events = attack_traffic(attack, keys, queries, replay, &vocab, &mut rng);
            let (results, stats) = run(&mut events, &mut tracker);
            let attackers: Vec<&KeyResult> = results.values().collect();
            let a_flagged = attackers.iter().filter(|r| r.worst >= Action::Flag).count();
            let a_blocked = attackers
                .iter()
                .filter(|r| r.worst >= Action::Block)
                .count();
            let first = attackers.iter().filter_map(|r| r.flagged_at).min();
            let first_block = attackers.iter().filter_map(|r| r.blocked_at).min();
            println!(
                "| {} | {keys} | {queries} | {} | {a_flagged}/{keys} | {a_blocked}/{keys} | {} | {} |",
                attack.name(),
                if a_flagged > 0 { "yes" } else { "no" },
                first.map_or("-".to_owned(), |n| n.to_string()),
                first_block.map_or("-".to_owned(), |n| n.to_string()),
            );
            if options.calibrate && keys == 1 {
                print_stats(&stats);
            }
        }
    }
}
