//! Which part of a config edit a running gateway cannot take without a
//! restart: everything outside the hot fields of `[limits]`.
//!
//! Pure: compares two validated configs, reads no file and no clock. The
//! hot fields are listed here and nowhere else, so the README's "what is
//! hot" table and the code cannot drift apart (the tests below pin it).

use palisade_config::Config;
use serde_json::{Map, Value};

/// The per-tenant `[limits]` fields a reload swaps in (in `[limits]` itself
/// for the default, and in each `[limits.tenants.<t>]`).
pub(crate) const HOT_TENANT_FIELDS: [&str; 5] = [
    "requests_per_minute",
    "burst",
    "max_in_flight_per_key",
    "max_streams_per_key",
    "tokens_per_minute",
];

/// `[limits]` tables that are hot as a whole.
pub(crate) const HOT_LIMITS_TABLES: [&str; 2] = ["keys", "models"];

/// The sections (`server`, `routes`, `limits.backend` …) that differ
/// between `running` and `next` outside the hot fields, sorted; empty when
/// the edit is hot only.
pub(crate) fn restart_only_changes(running: &Config, next: &Config) -> Vec<String> {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(running), serde_json::to_value(next))
    else {
        // Unreachable for a config that was loaded from TOML; refusing is
        // the safe answer if it ever happens.
        return vec!["(config could not be compared)".to_owned()];
    };
    let (a, b) = (strip(a), strip(b));
    let mut changed = Vec::new();
    for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        let (x, y) = (a.get(key), b.get(key));
        if x == y {
            continue;
        }
        match (key.as_str(), x, y) {
            ("limits", Some(Value::Object(x)), Some(Value::Object(y))) => {
                for sub in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                    if x.get(sub) != y.get(sub) {
                        changed.push(format!("limits.{sub}"));
                    }
                }
            }
            _ => changed.push(key.clone()),
        }
    }
    changed.sort();
    changed
}

/// The config without its hot fields; a tenant entry left with nothing but
/// unset fields is dropped (adding a tenant's rate is a hot edit).
fn strip(mut config: Map<String, Value>) -> Map<String, Value> {
    if let Some(Value::Object(limits)) = config.get_mut("limits") {
        for field in HOT_TENANT_FIELDS.iter().chain(&HOT_LIMITS_TABLES) {
            limits.remove(*field);
        }
        if let Some(Value::Object(tenants)) = limits.get_mut("tenants") {
            for entry in tenants.values_mut() {
                if let Value::Object(fields) = entry {
                    for field in HOT_TENANT_FIELDS {
                        fields.remove(field);
                    }
                }
            }
            tenants.retain(|_, entry| match entry {
                Value::Object(fields) => fields.values().any(|v| !v.is_null()),
                _ => true,
            });
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_config::Sources;

    const BASE: &str = r#"
        [backends.a]
        base_url = "http://127.0.0.1:1/v1"
        [[routes]]
        model = "m"
        backend = "a"
        [limits]
        requests_per_minute = 600
        [limits.tenants.acme]
        requests_per_minute = 60
        monthly_token_quota = 1000
    "#;

    fn load(extra: &str) -> Config {
        let text = format!("{BASE}\n{extra}");
        Config::load(&Sources {
            toml: Some(&text),
            ..Sources::default()
        })
        .unwrap()
    }

    /// `(edit appended or substituted, expected restart-only sections)`.
    fn check(edit: &str, expected: &[&str]) {
        let running = load("");
        let next = if let Some((from, to)) = edit.split_once(" => ") {
            let text = BASE.replace(from, to);
            Config::load(&Sources {
                toml: Some(&text),
                ..Sources::default()
            })
            .unwrap()
        } else {
            load(edit)
        };
        assert_eq!(restart_only_changes(&running, &next), expected, "{edit}");
    }

    #[test]
    fn only_limit_rates_are_hot() {
        check("", &[]);
        check("requests_per_minute = 600 => requests_per_minute = 6", &[]);
        check(
            "requests_per_minute = 60 => requests_per_minute = 1\nburst = 1",
            &[],
        );
        check(
            "[limits.tenants.beta]\nrequests_per_minute = 5\nmax_in_flight_per_key = 2",
            &[],
        );
        check("[limits.keys.k1]\nrequests_per_minute = 5", &[]);
        check("[limits.models.m]\nrequests_per_minute = 5", &[]);
        check(
            "monthly_token_quota = 1000 => monthly_token_quota = 9",
            &["limits.tenants"],
        );
        check(
            "[limits.tenants.beta]\nmonthly_token_quota = 5",
            &["limits.tenants"],
        );
        check(
            "[limits]\n => [limits]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\n",
            &["limits.backend", "limits.redis_url"],
        );
        check("[server]\nlisten = \"127.0.0.1:1\"", &["server"]);
        check("model = \"m\" => model = \"n\"", &["routes"]);
        check(
            "http://127.0.0.1:1/v1 => http://127.0.0.1:2/v1",
            &["backends"],
        );
        check("[reload]\nconfig_poll_ms = 0", &["reload"]);
    }
}
