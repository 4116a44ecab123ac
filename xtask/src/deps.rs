//! Rule `pure-crate-deps`: pure crates do not depend on I/O frameworks.
//!
//! A pure crate's normal dependencies (`[dependencies]` and
//! `[target.*.dependencies]`) must not name an I/O framework, nor a
//! workspace crate outside the pure set (which could bring one in).
//! `[dev-dependencies]` may: tests can drive a pure crate from async code.
//! Only direct dependencies are read; this is a manifest check, not a
//! resolution of the dependency graph.

use std::path::Path;

use crate::Violation;

/// The rule's name in messages.
pub const RULE: &str = "pure-crate-deps";

/// I/O frameworks a pure crate must not depend on. A crate named
/// `<framework>-…` (`tokio-util`, `tower-http`, `hyper-util`) counts too.
pub const IO_FRAMEWORKS: &[&str] = &["tokio", "reqwest", "axum", "hyper", "tower", "sqlx"];

/// A normal dependency as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The crate's real name (`package = "…"` when renamed, else the key).
    pub package: String,
    /// The table it was found in (`dependencies`, `target.'cfg(unix)'.dependencies`).
    pub table: String,
}

/// The normal (non-dev, non-build) dependencies in a parsed `Cargo.toml`.
pub fn normal_dependencies(manifest: &toml::Table) -> Vec<Dependency> {
    let mut out = Vec::new();
    if let Some(deps) = manifest.get("dependencies").and_then(|d| d.as_table()) {
        collect(deps, "dependencies", &mut out);
    }
    if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
        for (cfg, target) in targets {
            if let Some(deps) = target.get("dependencies").and_then(|d| d.as_table()) {
                collect(deps, &format!("target.'{cfg}'.dependencies"), &mut out);
            }
        }
    }
    out
}

fn collect(deps: &toml::Table, table: &str, out: &mut Vec<Dependency>) {
    for (key, spec) in deps {
        let package = spec
            .get("package")
            .and_then(|p| p.as_str())
            .unwrap_or(key)
            .to_string();
        out.push(Dependency {
            package,
            table: table.to_string(),
        });
    }
}

/// Whether `package` is one of [`IO_FRAMEWORKS`] or one of their `-` family.
pub fn is_io_framework(package: &str) -> bool {
    IO_FRAMEWORKS.iter().any(|f| {
        package == *f
            || package
                .strip_prefix(f)
                .is_some_and(|rest| rest.starts_with('-'))
    })
}

/// The violations in one pure crate's manifest (at `path`, for messages).
/// `pure_crates` is the set a workspace dependency must belong to.
pub fn check_pure_manifest(
    path: &Path,
    manifest: &toml::Table,
    pure_crates: &[&str],
) -> Vec<Violation> {
    let mut out = Vec::new();
    for dep in normal_dependencies(manifest) {
        if is_io_framework(&dep.package) {
            out.push(Violation::new(
                path,
                RULE,
                format!(
                    "pure crate depends on I/O framework `{}` in [{}] (only [dev-dependencies] may)",
                    dep.package, dep.table
                ),
            ));
        } else if dep.package.starts_with("palisade-")
            && !pure_crates.contains(&dep.package.as_str())
        {
            out.push(Violation::new(
                path,
                RULE,
                format!(
                    "pure crate depends on non-pure workspace crate `{}` in [{}]",
                    dep.package, dep.table
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Vec<String> {
        let manifest: toml::Table = text.parse().unwrap();
        check_pure_manifest(Path::new("c/Cargo.toml"), &manifest, &["palisade-detect"])
            .into_iter()
            .map(|v| v.detail)
            .collect()
    }

    #[test]
    fn io_frameworks_in_dependencies_are_violations() {
        let found = check(
            r#"
            [dependencies]
            serde = "1"
            tokio = { workspace = true }
            web = { package = "axum", version = "0.8" }
            tower-http = "0.6"
            [target.'cfg(unix)'.dependencies]
            hyper = "1"
            "#,
        );
        assert_eq!(found.len(), 4, "{found:?}");
        let has = |needle: &str| found.iter().any(|f| f.contains(needle));
        assert!(has("`tokio` in [dependencies]"), "{found:?}");
        assert!(has("`axum` in [dependencies]"), "renamed: {found:?}");
        assert!(has("`tower-http` in [dependencies]"), "{found:?}");
        assert!(
            has("`hyper` in [target.'cfg(unix)'.dependencies]"),
            "{found:?}"
        );
    }

    #[test]
    fn dev_and_build_dependencies_may_use_io() {
        let found = check(
            r#"
            [dependencies]
            serde = "1"
            [dev-dependencies]
            tokio = "1"
            [build-dependencies]
            reqwest = "0.12"
            "#,
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn workspace_dependencies_must_be_pure_too() {
        let found = check(
            r#"
            [dependencies]
            palisade-detect = { workspace = true }
            palisade-redis = { workspace = true }
            "#,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("non-pure workspace crate `palisade-redis`"));
    }

    #[test]
    fn framework_family_is_matched_by_prefix_and_dash_only() {
        assert!(is_io_framework("tokio"));
        assert!(is_io_framework("tokio-postgres"));
        assert!(!is_io_framework("tokenizers"));
        assert!(!is_io_framework("towers"));
    }
}
