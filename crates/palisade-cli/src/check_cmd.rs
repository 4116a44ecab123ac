//! `palisade config check`'s preflight: after the config parses and
//! validates, what `palisade serve` would still fail on, found without
//! starting anything (no listener, no connection, no write).
//!
//! - every environment variable the config names (`api_key_env`,
//!   `upstream_api_key_env`, `tool_credentials_env`, `watermark.key_env`,
//!   and `PALISADE_MARKER_KEY` when it is set), resolved: unset or malformed
//!   is a problem;
//! - every file it names (`policy.file`, `policy.shadow_file`,
//!   `tools.signing_key_file`, routes' `tokenizer`) readable, and the
//!   directories it writes (`bundle.cache_dir`, a SQLite ledger's or audit
//!   store's directory) present and writable;
//! - every URL (ledger, audit, Redis, webhooks, OTLP endpoint) parsable with
//!   a scheme the gateway speaks.
//!
//! Must not: change anything on disk or on the network (writability is
//! read from the directory's permissions, not by writing a probe file), or
//! print a secret (only whether a variable is set, never its value).

use std::path::Path;

use palisade_config::Config;
use serde::Serialize;

/// One environment variable the config refers to.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct EnvRef {
    pub(crate) var: String,
    pub(crate) used_by: String,
    pub(crate) set: bool,
}

/// What the preflight found.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Preflight {
    pub(crate) env: Vec<EnvRef>,
    /// What `serve` would fail on, one sentence each.
    pub(crate) problems: Vec<String>,
}

/// Runs the checks with `env` as the environment.
pub(crate) fn preflight(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Preflight {
    let mut p = Preflight::default();
    let need = |var: &str, used_by: String, p: &mut Preflight| {
        let set = env(var).is_some_and(|v| !v.is_empty());
        if !set {
            p.problems
                .push(format!("{used_by}: environment variable {var} is not set"));
        }
        p.env.push(EnvRef {
            var: var.to_owned(),
            used_by,
            set,
        });
    };
    for (name, b) in &config.backends {
        if let Some(var) = &b.api_key_env {
            need(var, format!("backends.{name}.api_key_env"), &mut p);
        }
    }
    for (tenant, t) in &config.tenants {
        for (backend, var) in &t.upstream_api_key_env {
            need(
                var,
                format!("tenants.{tenant}.upstream_api_key_env.{backend}"),
                &mut p,
            );
        }
        for (tool, var) in &t.tool_credentials_env {
            need(
                var,
                format!("tenants.{tenant}.tool_credentials_env.{tool}"),
                &mut p,
            );
        }
    }
    if config.watermark.enabled {
        let var = config.watermark.key_env.clone();
        need(&var, "watermark.key_env".to_owned(), &mut p);
        if let Some(v) = env(&var).filter(|v| !v.is_empty()) {
            if hex::decode(v.trim()).map_or(true, |b| b.len() != 32) {
                p.problems
                    .push(format!("watermark.key_env: {var} must be 64 hex digits"));
            }
        }
    }
    // Optional (a random key per process when unset), but a malformed one
    // stops the gateway at start.
    if let Some(v) = env("PALISADE_MARKER_KEY") {
        let ok = hex::decode(v.trim()).is_ok_and(|b| b.len() == 32);
        p.env.push(EnvRef {
            var: "PALISADE_MARKER_KEY".to_owned(),
            used_by: "canary and boundary markers".to_owned(),
            set: true,
        });
        if !ok {
            p.problems
                .push("PALISADE_MARKER_KEY must be 64 hex digits".to_owned());
        }
    }
    let mut files: Vec<(String, &str)> = Vec::new();
    if let Some(f) = &config.policy.file {
        files.push(("policy.file".to_owned(), f));
    }
    if let Some(f) = &config.policy.shadow_file {
        files.push(("policy.shadow_file".to_owned(), f));
    }
    if let Some(f) = &config.tools.signing_key_file {
        files.push(("tools.signing_key_file".to_owned(), f));
    }
    for (i, r) in config.routes.iter().enumerate() {
        if let Some(f) = &r.tokenizer {
            files.push((format!("routes[{i}].tokenizer ({})", r.model), f));
        }
    }
    for (what, path) in files {
        if let Err(e) = std::fs::File::open(path) {
            p.problems.push(format!("{what}: cannot read {path}: {e}"));
        }
    }
    if let Some(dir) = config.bundle.as_ref().and_then(|b| b.cache_dir.as_deref()) {
        if let Some(why) = not_writable(dir) {
            p.problems
                .push(format!("bundle.cache_dir: {} {why}", dir.display()));
        }
    }
    let urls: [(&str, Option<&str>, &[&str]); 7] = [
        (
            "ledger.url",
            config.ledger.url.as_deref(),
            &["sqlite", "postgres", "postgresql"],
        ),
        (
            "policy.audit_url",
            config.policy.audit_url.as_deref(),
            &["sqlite", "postgres", "postgresql"],
        ),
        (
            "limits.redis_url",
            config.limits.redis_url.as_deref(),
            &["redis", "rediss"],
        ),
        (
            "fleet.redis_url",
            config.fleet.redis_url.as_deref(),
            &["redis", "rediss"],
        ),
        (
            "limits.alert_webhook_url",
            config.limits.alert_webhook_url.as_deref(),
            &["http", "https"],
        ),
        (
            "fleet.events_webhook_url",
            config.fleet.events_webhook_url.as_deref(),
            &["http", "https"],
        ),
        (
            "telemetry.otlp_endpoint",
            config.telemetry.otlp_endpoint.as_deref(),
            &["http", "https"],
        ),
    ];
    for (what, url, schemes) in urls {
        if let Some(url) = url {
            if let Some(problem) = check_url(what, url, schemes) {
                p.problems.push(problem);
            }
        }
    }
    p
}

/// Why `url` would fail, if it would.
fn check_url(what: &str, url: &str, schemes: &[&str]) -> Option<String> {
    let scheme = url.split(':').next().unwrap_or_default();
    if !schemes.contains(&scheme) {
        return Some(format!(
            "{what}: `{}` is not a {} URL",
            redact(url),
            schemes.join(" or ")
        ));
    }
    if scheme == "sqlite" {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or_default();
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return None;
        }
        let file = Path::new(path);
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        return not_writable(dir).map(|why| {
            format!(
                "{what}: the SQLite database's directory {} {why}",
                dir.display()
            )
        });
    }
    match reqwest::Url::parse(url) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => None,
        Ok(_) => Some(format!("{what}: `{}` has no host", redact(url))),
        Err(e) => Some(format!("{what}: `{}` does not parse: {e}", redact(url))),
    }
}

/// A URL without its password (`postgres://user:secret@host` → `user:***`).
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Why the process could not create files in `dir`, if it could not.
fn not_writable(dir: &Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Err(_) => Some("does not exist".to_owned()),
        Ok(m) if !m.is_dir() => Some("is not a directory".to_owned()),
        Ok(m) if m.permissions().readonly() => Some("is not writable".to_owned()),
        Ok(m) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                // The owner/group/other write bit that applies to us. Root
                // may write anyway; a preflight that errs towards "fine"
                // there is acceptable (serve's own error still names it).
                let uid = current_uid();
                let mode = m.mode();
                let writable = uid == Some(0)
                    || (uid == Some(m.uid()) && mode & 0o200 != 0)
                    || (uid != Some(m.uid()) && mode & 0o022 != 0);
                (!writable).then(|| "is not writable".to_owned())
            }
            #[cfg(not(unix))]
            {
                let _ = m;
                None
            }
        }
    }
}

/// This process's uid, read from `/proc` (no `libc`, no unsafe).
#[cfg(unix)]
fn current_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_by_scheme_and_never_echo_a_password() {
        let check = |url: &str, schemes: &[&str]| check_url("x", url, schemes);
        assert_eq!(check("redis://127.0.0.1:6379", &["redis"]), None);
        assert!(check("127.0.0.1:6379", &["redis"]).is_some());
        assert!(check("http://", &["http"]).is_some());
        let p = check("mysql://u:hunter2@db/x", &["postgres"]).unwrap();
        assert!(!p.contains("hunter2"), "{p}");
        assert_eq!(check("sqlite::memory:", &["sqlite"]), None);
        assert!(check("sqlite:/no/such/dir/l.db", &["sqlite"])
            .unwrap()
            .contains("does not exist"));
    }
}
