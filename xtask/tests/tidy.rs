//! The tidy checks, applied to the real workspace.
//!
//! Each test is one house rule; a failure lists every offending file with the
//! rule it breaks. Fix the code (or the README), not the check: these tests
//! exist so that stated invariants stay true.

use std::path::{Path, PathBuf};

use xtask::tree::{crate_dir, is_test_file, member_dirs, read, read_toml, rust_files};
use xtask::{
    clock, deps, error_codes, file_size, module_docs, report, tree, Violation, PURE_CRATES,
};

fn root() -> PathBuf {
    tree::workspace_root()
}

/// Fails the test with `summary` and the violations, if there are any.
fn assert_clean(summary: &str, violations: &[Violation]) {
    if let Err(msg) = report(summary, violations) {
        panic!("{msg}");
    }
}

#[test]
fn pure_crates_do_not_depend_on_io_frameworks() {
    let root = root();
    let mut found = Vec::new();
    for name in PURE_CRATES {
        let manifest = crate_dir(name).join("Cargo.toml");
        let table = read_toml(&root.join(&manifest)).unwrap();
        found.extend(deps::check_pure_manifest(&manifest, &table, PURE_CRATES));
    }
    assert_clean(
        "Pure crates must not depend on tokio, reqwest, axum, hyper, tower or sqlx \
         (or a non-pure workspace crate) outside [dev-dependencies].",
        &found,
    );
}

/// The testkit plays the gateway's upstreams and stores; the gateway's tests
/// depend on it, so it depending on the gateway (or any workspace crate it
/// would pull in) would be a cycle and would let test fakes grow gateway
/// logic. The gateway's own test harness lives in its `tests/support/`.
#[test]
fn testkit_depends_on_no_workspace_crate() {
    let root = root();
    let manifest = crate_dir("palisade-testkit").join("Cargo.toml");
    let table = read_toml(&root.join(&manifest)).unwrap();
    let found: Vec<Violation> = deps::normal_dependencies(&table)
        .into_iter()
        .filter(|d| d.package.starts_with("palisade"))
        .map(|d| {
            Violation::new(
                &manifest,
                "testkit-deps",
                format!("{} in [{}]", d.package, d.table),
            )
        })
        .collect();
    assert_clean(
        "palisade-testkit must not depend on a workspace crate (it is the gateway's upstream, \
         not a second gateway).",
        &found,
    );
}

#[test]
fn only_palisade_bpe_loads_the_openai_vocabularies() {
    // tiktoken-rs's own loaders embed the vocabularies as base64 text (5.3 MB); one call
    // from any crate links that copy back into the gateway beside the packed one.
    let root = root();
    let mut found = Vec::new();
    for dir in member_dirs(&root).unwrap() {
        if dir.ends_with("palisade-bpe") {
            continue;
        }
        let manifest = dir.join("Cargo.toml");
        let table = read_toml(&root.join(&manifest)).unwrap();
        for d in deps::normal_dependencies(&table) {
            if d.package == "tiktoken-rs" {
                found.push(Violation::new(
                    &manifest,
                    "bpe-loader",
                    format!("tiktoken-rs in [{}]", d.table),
                ));
            }
        }
    }
    assert_clean(
        "Take cl100k/o200k from palisade-bpe (packed), not from tiktoken-rs directly.",
        &found,
    );
}

#[test]
fn pure_crates_do_not_read_the_clock() {
    let root = root();
    let mut found = Vec::new();
    for name in PURE_CRATES {
        for file in rust_files(&root, &crate_dir(name).join("src")).unwrap() {
            if !is_test_file(&file) {
                found.extend(clock::clock_reads(&file, &read(&root.join(&file)).unwrap()));
            }
        }
    }
    assert_clean(
        "Pure crates must not read the clock outside #[cfg(test)]; the caller passes time in.",
        &found,
    );
}

/// The gateway's limit wiring takes time from its `GatewayClock`
/// (`crates/palisade-gateway/src/clock.rs`), so every limit decision is
/// made on one injected clock.
#[test]
fn gateway_limit_wiring_does_not_read_the_clock() {
    let root = root();
    let dir = crate_dir("palisade-gateway").join("src").join("limits");
    let mut found = Vec::new();
    for file in rust_files(&root, &dir).unwrap() {
        if !is_test_file(&file) {
            found.extend(clock::clock_reads(&file, &read(&root.join(&file)).unwrap()));
        }
    }
    assert_clean(
        "The gateway's limits/ must not read the clock; it asks its GatewayClock.",
        &found,
    );
}

#[test]
fn every_error_code_is_documented_in_the_readme() {
    let root = root();
    let (source, text) =
        error_codes::locate(&root, &crate_dir("palisade-openai").join("src")).unwrap();
    let specs = error_codes::parse(&source, &text).unwrap();
    let mut found = error_codes::check_source(&source, &specs);
    let readme = Path::new("README.md");
    found.extend(error_codes::check_readme(
        readme,
        &read(&root.join(readme)).unwrap(),
        &specs,
    ));
    assert_clean(
        "Every ErrorCode must be in README's Errors table, backticked, with its HTTP status.",
        &found,
    );
}

#[test]
fn no_source_file_is_over_the_line_limit() {
    let root = root();
    let mut found = Vec::new();
    for member in member_dirs(&root).unwrap() {
        for file in rust_files(&root, &member.join("src")).unwrap() {
            if !is_test_file(&file) {
                found.extend(file_size::oversized(
                    &file,
                    &read(&root.join(&file)).unwrap(),
                ));
            }
        }
    }
    assert_clean(
        &format!(
            "No non-test source file may exceed {} lines.",
            file_size::MAX_LINES
        ),
        &found,
    );
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let root = root();
    let mut found = Vec::new();
    // Every crate in the tree, members or not (fuzz targets, examples,
    // integration tests and benches are crates too).
    for dir in ["crates", "xtask"] {
        for file in rust_files(&root, Path::new(dir)).unwrap() {
            found.extend(module_docs::missing_module_doc(
                &file,
                &read(&root.join(&file)).unwrap(),
            ));
        }
    }
    assert_clean(
        "Every crate root and module file must start with a `//!` doc saying what it is for.",
        &found,
    );
}
