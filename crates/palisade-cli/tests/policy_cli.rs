//! `palisade policy` and `palisade audit` as users run them: the real binary
//! on real policy files, replays made of real `AuditRecord`s, and a real
//! SQLite audit store written through `palisade-ledger`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use palisade_ledger::{AuditEntry, Ledger, WriteOptions};
use palisade_policy::{AuditContext, AuditRecord, Evidence, Gate, Snapshot, Subject};
use serde_json::Value;

/// A small policy: injections blocked at 0.90 (0.5 for tenant `acme`), PII
/// in output flagged.
const BASE: &str = r#"
label = "base"
default_tier = "standard"

[tiers.standard.input]
injection = { threshold = 0.90, action = "block" }

[tiers.standard.output]
pii = { action = "flag" }

[tiers.high.input]
injection = { threshold = 0.5, action = "block" }

[[assign]]
tenant = "acme"
tier = "high"
"#;

/// `BASE` made stricter: a lower threshold, PII redacted.
fn strict() -> String {
    BASE.replace("label = \"base\"", "label = \"strict\"")
        .replace("threshold = 0.90", "threshold = 0.80")
        .replace(
            "pii = { action = \"flag\" }",
            "pii = { action = \"redact\" }",
        )
}

/// 2026-03-01T00:00:00Z in Unix milliseconds.
const DAY0: u64 = 1_772_323_200_000;

fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .env_remove("PALISADE_CONFIG")
        .env_remove("PALISADE_POLICY__AUDIT_URL")
        .output()
        .expect("palisade runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns standard output.
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{:?}\n{}", o.status, stderr(o));
    stdout(o)
}

/// Asserts exit code 1 and returns standard error.
fn fails(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "stdout: {}", stdout(o));
    stderr(o)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn validate_prints_version_label_and_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "base.toml", BASE);
    let version = Snapshot::from_toml(BASE).unwrap().version();
    assert_eq!(
        ok(&palisade(&["policy", "validate", s(&file)])),
        format!("ok: {version} \"base\", 2 tiers\n")
    );
    let builtin = Snapshot::builtin();
    assert_eq!(
        ok(&palisade(&["policy", "validate", "builtin"])),
        format!(
            "ok: {} \"builtin default\", {} tiers\n",
            builtin.version(),
            builtin.tiers().count()
        )
    );
}

#[test]
fn validate_errors_name_the_key_path_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let out_of_range = write(
        dir.path(),
        "range.toml",
        &BASE.replace("threshold = 0.5", "threshold = 1.5"),
    );
    let out = palisade(&["policy", "validate", s(&out_of_range)]);
    let err = fails(&out);
    assert!(stdout(&out).is_empty());
    assert!(err.contains("range.toml"), "{err}");
    assert!(
        err.contains("tiers.high.input.injection.threshold: must be within [0, 1], got 1.5"),
        "{err}"
    );

    let typo = write(dir.path(), "typo.toml", &BASE.replace("pii = {", "pij = {"));
    let err = fails(&palisade(&["policy", "validate", s(&typo)]));
    assert!(err.contains("typo.toml") && err.contains("pij"), "{err}");

    let unknown_tier = write(
        dir.path(),
        "tier.toml",
        &BASE.replace("tier = \"high\"", "tier = \"hihg\""),
    );
    let err = fails(&palisade(&["policy", "validate", s(&unknown_tier)]));
    assert!(err.contains("assign[0].tier"), "{err}");

    let err = fails(&palisade(&[
        "policy",
        "validate",
        s(&dir.path().join("absent.toml")),
    ]));
    assert!(err.contains("absent.toml"), "{err}");
}

#[test]
fn show_prints_a_policy_file_with_the_same_version() {
    let dir = tempfile::tempdir().unwrap();
    let builtin = Snapshot::builtin();
    let shown = ok(&palisade(&["policy", "show"]));
    let mut lines = shown.lines();
    assert_eq!(
        lines.next(),
        Some(format!("# version: {}", builtin.version()).as_str())
    );
    assert_eq!(lines.next(), Some("# label: \"builtin default\""));
    // The canonical document printed is itself a policy with that version.
    let again = write(dir.path(), "shown.toml", &shown);
    assert_eq!(
        Snapshot::from_toml(&shown).unwrap().version(),
        builtin.version()
    );
    assert!(ok(&palisade(&["policy", "validate", s(&again)]))
        .starts_with(&format!("ok: {} ", builtin.version())));

    let base = write(dir.path(), "base.toml", BASE);
    let shown = ok(&palisade(&["policy", "show", s(&base)]));
    let version = Snapshot::from_toml(BASE).unwrap().version();
    assert!(shown.starts_with(&format!("# version: {version}\n# label: \"base\"\n")));
    assert_eq!(Snapshot::from_toml(&shown).unwrap().version(), version);
}

#[test]
fn diff_prints_both_versions_and_one_line_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.toml", BASE);
    let new = write(dir.path(), "new.toml", &strict());
    let v_old = Snapshot::from_toml(BASE).unwrap().version();
    let v_new = Snapshot::from_toml(&strict()).unwrap().version();
    let out = ok(&palisade(&["policy", "diff", s(&old), s(&new)]));
    let expected = [
        format!("--- {} {v_old} \"base\"", s(&old)),
        format!("+++ {} {v_new} \"strict\"", s(&new)),
        "label: base → strict".to_owned(),
        "tiers.standard.input.injection.threshold: 0.90 → 0.80".to_owned(),
        "tiers.standard.output.pii.action: flag → redact".to_owned(),
        "3 changes".to_owned(),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);

    // `builtin` names the built-in policy on either side.
    let out = ok(&palisade(&["policy", "diff", "builtin", "builtin"]));
    assert!(out.ends_with("\nno changes\n"), "{out}");
    let out = ok(&palisade(&["policy", "diff", "builtin", s(&old)]));
    assert!(out.starts_with(&format!(
        "--- builtin {} \"builtin default\"\n",
        Snapshot::builtin().version()
    )));
    assert!(out.contains("\nlabel: builtin default → base\n"), "{out}");

    let bad = write(dir.path(), "bad.toml", "default_tier = \"nope\"");
    let err = fails(&palisade(&["policy", "diff", s(&old), s(&bad)]));
    assert!(
        err.contains("bad.toml") && err.contains("default_tier"),
        "{err}"
    );
}

/// A decision of `policy` on `evidence`, recorded as the gateway records it.
fn record(
    policy: &Snapshot,
    id: &str,
    gate: Gate,
    tenant: &str,
    evidence: Evidence,
) -> AuditRecord {
    let subject = Subject {
        tenant,
        route: "chat",
        model: "m",
    };
    let decision = policy.decide(gate, &subject, &evidence);
    let ctx = AuditContext {
        ts_ms: DAY0,
        request_id: id,
        subject,
        latency_us: 100,
    };
    AuditRecord::new(&ctx, evidence, &decision)
}

fn score(s: f32) -> Evidence {
    Evidence {
        injection_score: s,
        ..Evidence::default()
    }
}

fn pii() -> Evidence {
    Evidence {
        pii: [("email".to_owned(), 1)].into_iter().collect(),
        ..Evidence::default()
    }
}

/// `policy simulate NEW --replay REPLAY --json`, parsed.
fn simulate_json(new: &Path, replay: &Path) -> Value {
    let out = ok(&palisade(&[
        "policy",
        "simulate",
        s(new),
        "--replay",
        s(replay),
        "--json",
    ]));
    serde_json::from_str(&out).expect("one JSON object")
}

/// The request ids of `simulate --json`'s changed records.
fn changed_ids(report: &Value) -> Vec<&str> {
    report["changed"]
        .as_array()
        .expect("a list of changed records")
        .iter()
        .map(|c| c["request_id"].as_str().expect("a request id"))
        .collect()
}

fn jsonl(records: &[AuditRecord]) -> String {
    records
        .iter()
        .map(|r| r.to_json_line().unwrap() + "\n")
        .collect()
}

#[test]
fn simulate_counts_transitions_and_lists_changed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let old = Snapshot::from_toml(BASE).unwrap();
    let records = [
        record(&old, "r1", Gate::Input, "t", score(0.85)), // allow -> block
        record(&old, "r2", Gate::Input, "t", score(0.95)), // block -> block
        record(&old, "r3", Gate::Input, "t", score(0.10)), // allow -> allow
        record(&old, "r4", Gate::Output, "t", pii()),      // flag -> redact
        record(&old, "r5", Gate::Input, "acme", score(0.6)), // high tier: block -> block
    ];
    // Line 3 is not a record, line 5 is blank (ignored, not counted).
    let lines: Vec<String> = records.iter().map(|r| r.to_json_line().unwrap()).collect();
    let replay = format!(
        "{}\n{}\n{{\"ts_ms\": 1, truncated\n{}\n\n{}\n{}\n",
        lines[0], lines[1], lines[2], lines[3], lines[4]
    );
    let replay = write(dir.path(), "audit.jsonl", &replay);
    let new = write(dir.path(), "strict.toml", &strict());
    let v_new = Snapshot::from_toml(&strict()).unwrap().version();

    let out = palisade(&["policy", "simulate", s(&new), "--replay", s(&replay)]);
    let table = ok(&out);
    assert!(
        stderr(&out).contains("line 3: audit record:"),
        "{}",
        stderr(&out)
    );
    assert!(
        table.starts_with(&format!("policy: {v_new} \"strict\"\n")),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "replayed: 5 records from {}, decided under {} (5)\n",
            s(&replay),
            old.version()
        )),
        "{table}"
    );
    let expected_table = "\
| old action | new action | records | changed |
|---|---|---:|---|
| allow | allow | 1 | no |
| allow | block | 1 | yes |
| flag | redact | 1 | yes |
| block | block | 2 | no |
";
    assert!(table.contains(expected_table), "{table}");
    assert!(
        table.contains("2 of 5 records change; 1 bad line skipped\n"),
        "{table}"
    );
    assert!(
        table.ends_with(
            "changed request ids (first 2 of 2):\n\
             r1 input allow → block (prompt_injection)\n\
             r4 output flag → redact (pii_in_output)\n"
        ),
        "{table}"
    );

    let v = simulate_json(&new, &replay);
    assert_eq!(v["total"], 5);
    assert_eq!(v["policy_version"], v_new.to_string());
    assert_eq!(v["bad_lines"], 1);
    assert_eq!(v["bad"][0]["line"], 3);
    assert_eq!(
        v["by_transition"],
        serde_json::json!([
            {"old": "allow", "new": "allow", "count": 1},
            {"old": "allow", "new": "block", "count": 1},
            {"old": "flag", "new": "redact", "count": 1},
            {"old": "block", "new": "block", "count": 2},
        ])
    );
    assert_eq!(changed_ids(&v), ["r1", "r4"]);
    assert_eq!(v["changed_count"], 2);
}

#[test]
fn simulate_lists_the_first_50_changes_and_refuses_a_file_of_no_records() {
    let dir = tempfile::tempdir().unwrap();
    let old = Snapshot::from_toml(BASE).unwrap();
    let records: Vec<AuditRecord> = (0..60)
        .map(|i| record(&old, &format!("c{i:02}"), Gate::Input, "t", score(0.85)))
        .collect();
    let replay = write(dir.path(), "many.jsonl", &jsonl(&records));
    let new = write(dir.path(), "strict.toml", &strict());
    let table = ok(&palisade(&[
        "policy",
        "simulate",
        s(&new),
        "--replay",
        s(&replay),
    ]));
    let listed: Vec<&str> = table
        .split_once("changed request ids (first 50 of 60):\n")
        .expect("the list's heading")
        .1
        .lines()
        .collect();
    assert_eq!(listed.len(), 50);
    assert_eq!(listed[0], "c00 input allow → block (prompt_injection)");
    assert!(listed[49].starts_with("c49 "));
    // The machine output has them all.
    let v = simulate_json(&new, &replay);
    assert_eq!(v["changed"].as_array().unwrap().len(), 60);

    // A file with no record at all is the wrong file, not "no changes".
    let ledger_like = write(
        dir.path(),
        "wrong.jsonl",
        "{\"request_id\": \"x\"}\nnot json\n",
    );
    let out = palisade(&["policy", "simulate", s(&new), "--replay", s(&ledger_like)]);
    let err = fails(&out);
    assert!(err.contains("line 1:") && err.contains("line 2:"), "{err}");
    assert!(
        err.contains("holds no audit records (2 bad lines)"),
        "{err}"
    );
}

/// The store's entry for a record, as the gateway writes it.
fn entry(r: &AuditRecord) -> AuditEntry {
    AuditEntry {
        ts_ms: r.ts_ms,
        request_id: r.request_id.clone(),
        tenant: r.tenant.clone(),
        route: r.route.clone(),
        model: r.model.clone(),
        gate: r.gate.as_str().to_owned(),
        action: r.action.as_str().to_owned(),
        policy_version: r.policy_version.to_string(),
        json: r.to_json_line().unwrap(),
    }
}

/// Writes `records` (each a millisecond after the previous, from `DAY0`)
/// into a new SQLite audit store through the ledger's API; returns the
/// stored JSON lines.
fn seed_store(path: &Path, records: &mut [AuditRecord]) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ledger = Ledger::open(
            &format!("sqlite:{}", path.display()),
            WriteOptions::default(),
        )
        .await
        .unwrap();
        let mut lines = Vec::new();
        for (i, r) in records.iter_mut().enumerate() {
            r.ts_ms = DAY0 + i as u64;
            ledger.audit(entry(r)).await.unwrap();
            lines.push(r.to_json_line().unwrap());
        }
        ledger.close().await.unwrap();
        lines
    })
}

#[test]
fn audit_tail_and_export_read_the_store_the_ledger_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("palisade.db");
    let url = format!("sqlite:{}", db.display());
    let old = Snapshot::from_toml(BASE).unwrap();
    let mut records = [
        record(&old, "a1", Gate::Input, "t", score(0.85)), // allow
        record(&old, "a2", Gate::Input, "acme", score(0.6)), // block
        record(&old, "a3", Gate::Output, "t", pii()),      // flag
        record(&old, "a4", Gate::Input, "t", score(0.95)), // block
        record(&old, "a5", Gate::Input, "acme", score(0.1)), // allow
    ];
    let lines = seed_store(&db, &mut records);
    let joined =
        |idx: &[usize]| -> String { idx.iter().map(|&i| format!("{}\n", lines[i])).collect() };

    let tail = |extra: &[&str]| {
        let mut args = vec!["audit", "tail", "--url", &url];
        args.extend_from_slice(extra);
        ok(&palisade(&args))
    };
    assert_eq!(tail(&["-n", "2"]), joined(&[3, 4]));
    assert_eq!(tail(&[]), joined(&[0, 1, 2, 3, 4]));
    assert_eq!(tail(&["--tenant", "acme"]), joined(&[1, 4]));
    assert_eq!(tail(&["--action", "block"]), joined(&[1, 3]));
    assert_eq!(tail(&["--gate", "output"]), joined(&[2]));
    assert_eq!(
        tail(&["--tenant", "t", "--gate", "input", "-n", "1"]),
        joined(&[3])
    );
    assert_eq!(tail(&["--request-id", "a2"]), joined(&[1]));
    assert_eq!(tail(&["--tenant", "nobody"]), "");
    // Gate and action names are checked before anything is opened.
    let out = palisade(&["audit", "tail", "--url", &url, "--gate", "inptu"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = palisade(&["audit", "export", "--url", &url]);
    assert_eq!(ok(&out), joined(&[0, 1, 2, 3, 4]));
    assert_eq!(stderr(&out), "exported 5 audit records\n");
    // `since` inclusive, `until` exclusive, RFC 3339 with milliseconds.
    let out = ok(&palisade(&[
        "audit",
        "export",
        "--url",
        &url,
        "--since",
        "2026-03-01T00:00:00.001Z",
        "--until",
        "2026-03-01T01:00:00.003+01:00",
    ]));
    assert_eq!(out, joined(&[1, 2]));
    // Days back from now: the records are from 2026-03-01.
    let recent = ok(&palisade(&[
        "audit", "export", "--url", &url, "--since", "1d",
    ]));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let expected = if now_ms - 86_400_000 <= DAY0 {
        joined(&[0, 1, 2, 3, 4])
    } else {
        String::new()
    };
    assert_eq!(recent, expected);
    let err = fails(&palisade(&[
        "audit",
        "export",
        "--url",
        &url,
        "--since",
        "2026-02-30",
    ]));
    assert!(err.contains("--since") && err.contains("day 30"), "{err}");

    // The export replays straight into `policy simulate`.
    let export = write(dir.path(), "export.jsonl", &joined(&[0, 1, 2, 3, 4]));
    let new = write(dir.path(), "strict.toml", &strict());
    let v = simulate_json(&new, &export);
    assert_eq!(
        (v["total"].as_u64(), v["bad_lines"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(changed_ids(&v), ["a1", "a3"]);
}

#[test]
fn the_audit_store_comes_from_the_flag_or_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("palisade.db");
    let old = Snapshot::from_toml(BASE).unwrap();
    let mut records = [
        record(&old, "c1", Gate::Input, "t", score(0.1)),
        record(&old, "c2", Gate::Input, "t", score(0.99)),
    ];
    let lines = seed_store(&db, &mut records);
    let config = write(
        dir.path(),
        "palisade.toml",
        &format!("[policy]\naudit_url = \"sqlite:{}\"\n", db.display()),
    );
    let out = ok(&palisade(&[
        "audit",
        "tail",
        "--config",
        s(&config),
        "-n",
        "1",
    ]));
    assert_eq!(out, format!("{}\n", lines[1]));

    let err = fails(&palisade(&["audit", "tail"]));
    assert!(err.contains("no audit store: pass --url"), "{err}");

    // A missing file is an error, and is not created by looking.
    let absent = dir.path().join("absent.db");
    let err = fails(&palisade(&[
        "audit",
        "tail",
        "--url",
        &format!("sqlite:{}", absent.display()),
    ]));
    assert!(err.contains("no audit store at"), "{err}");
    assert!(!absent.exists());
}

#[test]
fn policies_are_signed_and_verified_offline() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("policy.key");
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, BASE).unwrap();
    let (key_s, file_s) = (key.to_str().unwrap(), file.to_str().unwrap());

    let out = palisade(&["policy", "keygen", key_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    let public = stdout(&out).trim().to_owned();
    assert_eq!(public.len(), 64, "{public}");
    assert!(
        !palisade(&["policy", "keygen", key_s]).status.success(),
        "never overwrites a key"
    );

    // A file that does not compile is never signed.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "label = 3").unwrap();
    let out = palisade(&["policy", "sign", broken.to_str().unwrap(), "--key", key_s]);
    assert!(!out.status.success());
    assert!(!dir.path().join("broken.toml.sig").exists());

    let out = palisade(&["policy", "sign", file_s, "--key", key_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("policy.toml.sig").exists());
    let out = palisade(&["policy", "verify", file_s, "--public-key", &public]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ok: sha256:"), "{}", stdout(&out));

    // Edited after signing, or checked against another key: refused, exit 1.
    std::fs::write(&file, strict()).unwrap();
    let out = palisade(&["policy", "verify", file_s, "--public-key", &public]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
    let other = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
    let out = palisade(&["policy", "sign", file_s, "--key", key_s]);
    assert!(out.status.success());
    let out = palisade(&["policy", "verify", file_s, "--public-key", other]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not trust"), "{}", stderr(&out));
}
