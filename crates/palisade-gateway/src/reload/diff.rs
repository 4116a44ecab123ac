//! Which part of a config edit a running gateway cannot take without a
//! restart: everything outside the hot fields of `[limits]`, the routing
//! sections (`[[routes]]`, `[backends]`) and the tenants' `residency` rules.
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

/// Top-level sections that are hot as a whole: they make up the routing
/// snapshot, which a reload rebuilds and swaps (see [`crate::snapshot`]).
pub(crate) const HOT_ROUTING_SECTIONS: [&str; 2] = ["routes", "backends"];

/// The per-tenant field that is hot (`[tenants.<t>.residency]`: compiled
/// into the routing snapshot's tenant rules).
pub(crate) const HOT_TENANT_ROUTING_FIELD: &str = "residency";

/// Whether the edit changes anything the routing snapshot is built from
/// (routes, backends, tenants' residency or upstream keys): when not, a
/// reload keeps the snapshot in force as it is.
pub(crate) fn routing_changed(running: &Config, next: &Config) -> bool {
    let json = |c: &Config| {
        serde_json::to_value((&c.routes, &c.backends, &c.tenants)).unwrap_or(Value::Null)
    };
    let (a, b) = (json(running), json(next));
    // Unreachable for loaded configs; rebuilding is the safe answer.
    a.is_null() || a != b
}

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
    for section in HOT_ROUTING_SECTIONS {
        config.remove(section);
    }
    if let Some(Value::Object(tenants)) = config.get_mut("tenants") {
        for entry in tenants.values_mut() {
            if let Value::Object(fields) = entry {
                fields.remove(HOT_TENANT_ROUTING_FIELD);
            }
        }
        // A tenant that only had a residency rule is a hot edit too.
        tenants.retain(|_, entry| match entry {
            Value::Object(fields) => fields.values().any(|v| match v {
                Value::Null => false,
                Value::Object(m) => !m.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            }),
            _ => true,
        });
    }
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
        check("[reload]\nconfig_poll_ms = 0", &["reload"]);
    }

    #[test]
    fn routes_backends_and_tenant_residency_are_hot() {
        check("model = \"m\" => model = \"n\"", &[]);
        check("http://127.0.0.1:1/v1 => http://127.0.0.1:2/v1", &[]);
        check(
            "[backends.b]\nbase_url = \"http://127.0.0.1:3/v1\"\n[[routes]]\nmodel = \"x\"\nbackend = \"b\"",
            &[],
        );
        check("[tenants.acme.residency]\nregions = [\"eu-west\"]", &[]);
        check("[tenants.beta.residency]\nregions = [\"eu-west\"]", &[]);
        // A tenant's other fields still need a restart.
        check(
            "[tenants.acme]\ntool_credentials_env = { t = \"V\" }",
            &["tenants"],
        );
    }

    #[test]
    fn routing_changed_sees_only_the_routing_sections() {
        let running = load("");
        assert!(!routing_changed(&running, &load("")));
        assert!(!routing_changed(
            &running,
            &load("[limits.keys.k1]\nrequests_per_minute = 5")
        ));
        assert!(routing_changed(
            &running,
            &load("[tenants.acme.residency]\nregions = [\"eu-west\"]")
        ));
        let text = BASE.replace("model = \"m\"", "model = \"n\"");
        let next = Config::load(&Sources {
            toml: Some(&text),
            ..Sources::default()
        })
        .unwrap();
        assert!(routing_changed(&running, &next));
    }
}
