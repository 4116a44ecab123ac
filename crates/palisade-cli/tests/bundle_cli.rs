//! `palisade bundle build|sign|verify|inspect` as operators run them: the
//! real binary on real files, with keys from `palisade policy keygen`.

use std::path::Path;
use std::process::{Command, Output};

const POLICY: &str = include_str!("../../palisade-policy/policies/default.toml");

fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .env_remove("PALISADE_CONFIG")
        .output()
        .expect("palisade runs")
}

fn ok(args: &[&str]) -> String {
    let out = palisade(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Fails, naming `reason` on standard error.
fn refused(args: &[&str], reason: &str) {
    let out = palisade(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr.contains(reason), "{args:?}: {stderr}");
}

fn keygen(dir: &Path, name: &str) -> String {
    let seed = dir.join(name);
    ok(&["policy", "keygen", seed.to_str().unwrap()])
        .trim()
        .to_owned()
}

#[test]
fn build_sign_verify_inspect_round_trip_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(p("policy.toml"), POLICY).unwrap();
    std::fs::write(p("model.bin"), b"detector artifact bytes").unwrap();
    let new_key = keygen(dir.path(), "new.seed");
    let old_key = keygen(dir.path(), "old.seed");

    let built = ok(&[
        "bundle",
        "build",
        "--policy",
        &p("policy.toml"),
        "--serial",
        "7",
        "--out",
        &p("b.json"),
        "--label",
        "prod",
        "--detector",
        &p("model.bin"),
        "--thresholds",
        "0.6,0.9",
        "--link-allow",
        "docs.example.com",
    ]);
    assert!(built.contains("serial 7"), "{built}");
    let inspect = ok(&["bundle", "inspect", &p("b.json")]);
    assert!(
        inspect.contains("(unsigned)") && inspect.contains("docs.example.com"),
        "{inspect}"
    );
    refused(
        &["bundle", "verify", &p("b.json"), "--trusted-key", &new_key],
        "not signed",
    );

    let signed = ok(&[
        "bundle",
        "sign",
        &p("b.json"),
        "--key",
        &p("new.seed"),
        "--created-at",
        "1765000000",
    ]);
    assert!(signed.contains("serial 7"), "{signed}");
    let verified = ok(&[
        "bundle",
        "verify",
        &p("b.json"),
        "--trusted-key",
        &new_key,
        "--now",
        "1765000100",
    ]);
    assert!(verified.starts_with("ok: serial 7"), "{verified}");
    let verified: serde_json::Value = serde_json::from_str(&ok(&[
        "bundle",
        "verify",
        &p("b.json"),
        "--trusted-key",
        &new_key,
        "--now",
        "1765000100",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        (
            &verified["ok"],
            &verified["serial"],
            &verified["created_at"]
        ),
        (
            &serde_json::json!(true),
            &serde_json::json!(7),
            &serde_json::json!(1765000000)
        )
    );
    let inspect = ok(&["bundle", "inspect", &p("b.json")]);
    assert!(
        inspect.contains(&new_key[..16]) && inspect.contains("1765000000"),
        "{inspect}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["bundle", "inspect", &p("b.json"), "--json"])).unwrap();
    assert_eq!(json["serial"], 7);
    assert_eq!(json["detector"]["size"], 23);

    // Each refusal names its reason.
    refused(
        &["bundle", "verify", &p("b.json"), "--trusted-key", &old_key],
        "does not trust",
    );
    refused(
        &[
            "bundle",
            "verify",
            &p("b.json"),
            "--trusted-key",
            &new_key,
            "--min-serial",
            "8",
        ],
        "lower than 8",
    );
    refused(
        &[
            "bundle",
            "verify",
            &p("b.json"),
            "--trusted-key",
            &format!("{new_key} not_after=1764999999"),
        ],
        "retired",
    );
    refused(
        &[
            "bundle",
            "verify",
            &p("b.json"),
            "--trusted-key",
            &new_key,
            "--max-bytes",
            "100",
        ],
        "over the limit",
    );
    let text = std::fs::read_to_string(p("b.json")).unwrap();
    std::fs::write(
        p("edited.json"),
        text.replace("\"serial\":7", "\"serial\":70"),
    )
    .unwrap();
    refused(
        &[
            "bundle",
            "verify",
            &p("edited.json"),
            "--trusted-key",
            &new_key,
        ],
        "does not match",
    );
    std::fs::write(p("cut.json"), &text[..text.len() / 2]).unwrap();
    refused(
        &[
            "bundle",
            "verify",
            &p("cut.json"),
            "--trusted-key",
            &new_key,
        ],
        "not a bundle",
    );

    // Rotation: trust both keys, re-sign with the old one inside its window.
    ok(&[
        "bundle",
        "sign",
        &p("b.json"),
        "--key",
        &p("old.seed"),
        "--created-at",
        "1765000000",
        "--out",
        &p("old.json"),
    ]);
    let both = [
        "bundle",
        "verify",
        &p("old.json"),
        "--trusted-key",
        &new_key,
        "--trusted-key",
        &format!("{old_key} not_after=1765000500"),
    ];
    let mut inside = both.to_vec();
    inside.extend(["--now", "1765000100"]);
    ok(&inside);
    let mut after = both.to_vec();
    after.extend(["--now", "1765000600"]);
    refused(&after, "window has closed");

    // A policy that does not compile is never built.
    std::fs::write(p("bad.toml"), "label = 1\n").unwrap();
    refused(
        &[
            "bundle",
            "build",
            "--policy",
            &p("bad.toml"),
            "--serial",
            "1",
            "--out",
            &p("x.json"),
        ],
        "does not compile",
    );
    assert!(!dir.path().join("x.json").exists());
}
