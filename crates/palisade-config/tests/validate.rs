//! Every validation rule, one table row each: a minimal valid config with one
//! mutation must fail naming exactly the mutated key. Plus the shipped example
//! configs, which must validate.
//!
//! The table is the contract for `palisade config check`'s messages; this file
//! must not test defaults or loading (`src/tests.rs` does).

use std::path::Path;

use palisade_config::{Config, ConfigError, Sources};

/// The smallest config that names its own backend and route, so mutations
/// can break either.
const MINIMAL: &str = r#"
[backends.local]
base_url = "http://127.0.0.1:8000/v1"

[[routes]]
model = "m"
backend = "local"
"#;

/// A well-formed, unique key hash.
const HASH_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// `Err(invalid(` sites in the crate's sources (each a rule; the TLS check in
/// stores.rs serves two keys). When this changes, a rule was added or
/// removed: give it a row in `invalid_configs_name_the_key` and update this.
const RULE_SITES: usize = 144;

/// Merges `patch` into `base`: tables key by key, arrays of tables element
/// by element (so `[[routes]]` patches `routes[0]`, and a second
/// `[[routes]]` adds or patches `routes[1]`), anything else replaced.
fn merge(base: &mut toml::Value, patch: toml::Value) {
    match (base, patch) {
        (toml::Value::Table(base), toml::Value::Table(patch)) => {
            for (key, value) in patch {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (toml::Value::Array(base), toml::Value::Array(patch))
            if base.iter().chain(&patch).all(toml::Value::is_table) =>
        {
            for (i, value) in patch.into_iter().enumerate() {
                match base.get_mut(i) {
                    Some(existing) => merge(existing, value),
                    None => base.push(value),
                }
            }
        }
        (base, patch) => *base = patch,
    }
}

fn load(toml: &str) -> Result<Config, ConfigError> {
    Config::load(&Sources {
        toml: Some(toml),
        ..Sources::default()
    })
}

/// `MINIMAL` with `mutation` merged in.
fn mutated(mutation: &str) -> String {
    let mut config: toml::Value = toml::from_str(MINIMAL).expect("MINIMAL parses");
    let patch: toml::Value = toml::from_str(mutation)
        .unwrap_or_else(|e| panic!("mutation does not parse: {e}\n{mutation}"));
    merge(&mut config, patch);
    toml::to_string(&config).expect("a merged config serializes")
}

/// Validation of `MINIMAL` plus `mutation` fails naming exactly `key`.
fn check_invalid(mutation: &str, key: &str) {
    let toml = mutated(mutation);
    match load(&toml) {
        Err(ConfigError::Invalid {
            key: named,
            message,
        }) => {
            assert_eq!(named, key, "wrong key ({message}) for:\n{toml}");
            assert!(!message.is_empty(), "no message for `{key}`");
            let shown = load(&toml).unwrap_err().to_string();
            assert!(shown.contains(key), "`{shown}` does not show `{key}`");
        }
        Err(other) => panic!("`{key}`: not a validation error: {other}\n{toml}"),
        Ok(_) => panic!("`{key}`: validated:\n{toml}"),
    }
}

#[test]
fn minimal_config_validates() {
    let config = load(MINIMAL).expect("MINIMAL is valid");
    assert_eq!(config.routes.len(), 1);
    // The merge itself keeps a valid config valid.
    load(&mutated("[server]\nmax_body_bytes = 1")).expect("a harmless mutation is valid");
}

#[test]
fn shipped_example_configs_validate() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).expect("examples/ exists") {
        let path = entry.expect("examples/ is readable").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let loaded = Config::load(&Sources {
                file: Some(&path),
                ..Sources::default()
            });
            if let Err(e) = loaded {
                panic!("{} does not validate: {e}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 1, "no example config found in {examples:?}");
}

#[test]
fn a_missing_config_file_is_named() {
    let err = Config::load(&Sources {
        file: Some(Path::new("/nonexistent/palisade.toml")),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "--config"),
        "{err}"
    );
}

#[test]
fn every_rule_site_is_counted() {
    let sources = [
        include_str!("../src/auth.rs"),
        include_str!("../src/backends.rs"),
        include_str!("../src/bundle.rs"),
        include_str!("../src/cascade.rs"),
        include_str!("../src/canary.rs"),
        include_str!("../src/console.rs"),
        include_str!("../src/detection.rs"),
        include_str!("../src/fleet.rs"),
        include_str!("../src/hedge.rs"),
        include_str!("../src/extraction.rs"),
        include_str!("../src/ledger.rs"),
        include_str!("../src/lib.rs"),
        include_str!("../src/limits.rs"),
        include_str!("../src/log.rs"),
        include_str!("../src/policy.rs"),
        include_str!("../src/reload.rs"),
        include_str!("../src/replay.rs"),
        include_str!("../src/routes.rs"),
        include_str!("../src/routing.rs"),
        include_str!("../src/server.rs"),
        include_str!("../src/stores.rs"),
        include_str!("../src/telemetry.rs"),
        include_str!("../src/tenants.rs"),
        include_str!("../src/tools.rs"),
        include_str!("../src/watermark.rs"),
    ];
    // A new section file must join the list above (tests.rs holds no rules).
    let files = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .expect("src/ is readable")
        .filter(|e| {
            let name = e.as_ref().expect("entry").file_name();
            name != "tests.rs" && name.to_string_lossy().ends_with(".rs")
        })
        .count();
    assert_eq!(
        files,
        sources.len(),
        "a source file is missing from the list"
    );
    let sites: usize = sources
        .iter()
        .map(|s| s.matches("Err(invalid(").count())
        .sum();
    assert_eq!(
        sites, RULE_SITES,
        "a rule was added or removed: add its row"
    );
}

#[test]
fn invalid_configs_name_the_key() {
    let dup_keys = format!(
        "[[auth.keys]]\nname = \"a\"\ntenant = \"t\"\nsha256 = \"{HASH_A}\"\n\
         [[auth.keys]]\nname = \"b\"\ntenant = \"t\"\nsha256 = \"{HASH_A}\""
    );
    let upper_hash = format!(
        "[[auth.keys]]\nname = \"a\"\ntenant = \"t\"\nsha256 = \"{}\"",
        HASH_A.to_uppercase()
    );
    let no_tenant = format!("[[auth.keys]]\nname = \"a\"\ntenant = \"\"\nsha256 = \"{HASH_A}\"");
    let runtime_ok = format!(
        "[ledger]\nurl = \"sqlite:/tmp/l.db\"\n[[auth.keys]]\nname = \"a\"\ntenant = \"t\"\nsha256 = \"{HASH_A}\"\n[auth.runtime]\nenabled = true\n"
    );
    let runtime_no_ledger = format!(
        "[[auth.keys]]\nname = \"a\"\ntenant = \"t\"\nsha256 = \"{HASH_A}\"\n[auth.runtime]\nenabled = true"
    );
    let rows: &[(&str, &str)] = &[
        (
            "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]",
            "server.trusted_proxies",
        ),
        (
            "[bundle]\nsource = \"file:/b.json\"\ntrusted_keys = [\"k\"]\nmax_age_s = 0",
            "bundle.max_age_s",
        ),
        // [bundle]
        (
            "[bundle]\nsource = \"ftp://x\"\ntrusted_keys = [\"k\"]",
            "bundle.source",
        ),
        (
            "[bundle]\nsource = \"file:/b.json\"",
            "bundle.trusted_keys",
        ),
        (
            "[bundle]\nsource = \"file:/b.json\"\ntrusted_keys = [\"k\"]\npoll_interval_ms = 0",
            "bundle.poll_interval_ms",
        ),
        (
            "[bundle]\nsource = \"https://b/x\"\ntrusted_keys = [\"k\"]\n[policy]\nfile = \"p.toml\"",
            "policy.file",
        ),
        // [server]
        ("[server]\nmax_body_bytes = 0", "server.max_body_bytes"),
        (
            "[server]\nheader_read_timeout_ms = 0",
            "server.header_read_timeout_ms",
        ),
        (
            "[server]\nbody_read_timeout_ms = 0",
            "server.body_read_timeout_ms",
        ),
        (
            "[server]\nwrite_stall_timeout_ms = 0",
            "server.write_stall_timeout_ms",
        ),
        ("[server]\nmax_connections = 0", "server.max_connections"),
        (
            "[server]\nmax_sse_event_bytes = 1023",
            "server.max_sse_event_bytes",
        ),
        // [auth], and open mode off loopback (spans [server])
        ("[server]\nlisten = \"0.0.0.0:8080\"", "auth.mode"),
        ("[auth]\nmode = \"keys\"", "auth.keys"),
        (&upper_hash, "auth.keys[0].sha256"),
        (&dup_keys, "auth.keys[1].sha256"),
        (&no_tenant, "auth.keys[0].tenant"),
        ("[auth.runtime]\nenabled = true", "auth.runtime.enabled"),
        (&runtime_no_ledger, "auth.runtime.enabled"),
        (&format!("{runtime_ok}refresh_ms = 10"), "auth.runtime.refresh_ms"),
        (&format!("{runtime_ok}max_keys_per_tenant = 0"), "auth.runtime.max_keys_per_tenant"),
        // [backends.*]
        (
            "[backends.local]\nbase_url = \"ftp://x/v1\"",
            "backends.local.base_url",
        ),
        (
            "[backends.local]\nbase_url = \"http:///v1\"",
            "backends.local.base_url",
        ),
        (
            "[backends.local]\nmax_in_flight = 0",
            "backends.local.max_in_flight",
        ),
        (
            "[backends.local]\nadaptive_concurrency = true",
            "backends.local.adaptive_concurrency",
        ),
        (
            "[backends.local.circuit_breaker]\nerror_rate = 1.5",
            "backends.local.circuit_breaker",
        ),
        (
            "[backends.local.circuit_breaker]\nmin_requests = 30\nwindow = 20",
            "backends.local.circuit_breaker",
        ),
        (
            "[backends.local]\nmax_queued_tokens = 0",
            "backends.local.max_queued_tokens",
        ),
        (
            "[backends.local]\nmax_queued_per_tenant = 0",
            "backends.local.max_queued_per_tenant",
        ),
        (
            "[backends.local]\nqueue_timeout_ms = 0",
            "backends.local.queue_timeout_ms",
        ),
        (
            "[backends.local]\nconnect_timeout_ms = 0",
            "backends.local.connect_timeout_ms",
        ),
        (
            "[backends.local]\nfirst_byte_timeout_ms = 0",
            "backends.local.first_byte_timeout_ms",
        ),
        (
            "[backends.local]\nidle_timeout_ms = 0",
            "backends.local.idle_timeout_ms",
        ),
        (
            "[backends.local]\nrequest_timeout_ms = 0",
            "backends.local.request_timeout_ms",
        ),
        // [limits]
        (
            "[limits]\nbackend = \"redis\"\nredis_url = \"rediss://cache:6380\"",
            "limits.redis_url",
        ),
        ("[limits]\nbackend = \"redis\"", "limits.redis_url"),
        ("[limits]\nredis_timeout_ms = 0", "limits.redis_timeout_ms"),
        (
            "[limits.keys.ci]\nrequests_per_minute = 0",
            "limits.keys.ci.requests_per_minute",
        ),
        ("[limits.keys.ci]\nburst = 5", "limits.keys.ci.burst"),
        (
            "[limits.keys.ci]\nmax_budget_usd = -1.0",
            "limits.keys.ci.max_budget_usd",
        ),
        (
            "[limits.keys.ci]\nmax_budget_usd = nan",
            "limits.keys.ci.max_budget_usd",
        ),
        (
            "[limits.keys.ci]\ntokens_per_minute = 0",
            "limits.keys.ci.tokens_per_minute",
        ),
        (
            "[limits.models.m]\nrequests_per_minute = 60\nburst = 0",
            "limits.models.m.burst",
        ),
        ("[limits.escalation]\nwarn_at = 30.0", "limits.escalation"),
        ("[limits.escalation]\nblock_at = inf", "limits.escalation"),
        (
            "[limits.escalation]\nhalf_life_secs = 0",
            "limits.escalation.half_life_secs",
        ),
        (
            "[limits]\nbudget_alert_percents = [80, 50]",
            "limits.budget_alert_percents",
        ),
        (
            "[limits]\nbudget_alert_percents = [0, 50]",
            "limits.budget_alert_percents",
        ),
        (
            "[limits]\nalert_webhook_url = \"ftp://x\"",
            "limits.alert_webhook_url",
        ),
        (
            "[limits.spend_rate]\nfactor = 1",
            "limits.spend_rate.factor",
        ),
        (
            "[limits.spend_rate]\nfloor_tokens_per_minute = 0",
            "limits.spend_rate.floor_tokens_per_minute",
        ),
        (
            "[limits.spend_rate]\nbaseline_minutes = 0",
            "limits.spend_rate.baseline_minutes",
        ),
        (
            "[limits.spend_rate]\ncooldown_secs = 0",
            "limits.spend_rate.cooldown_secs",
        ),
        (
            "[limits]\nrequests_per_minute = 0",
            "limits.requests_per_minute",
        ),
        (
            "[limits.tenants.acme]\nrequests_per_minute = 0",
            "limits.tenants.acme.requests_per_minute",
        ),
        (
            "[limits.tenants.acme]\nmax_streams_per_key = 0",
            "limits.tenants.acme.max_streams_per_key",
        ),
        (
            "[limits.tenants.acme]\ntokens_per_minute = 0",
            "limits.tenants.acme.tokens_per_minute",
        ),
        (
            "[limits]\nmax_in_flight_per_key = 0",
            "limits.max_in_flight_per_key",
        ),
        (
            "[limits.tenants.acme]\nmonthly_token_quota = 0",
            "limits.tenants.acme.monthly_token_quota",
        ),
        (
            "[limits]\nmonthly_token_budget = 0",
            "limits.monthly_token_budget",
        ),
        (
            "[limits.tenants.acme]\nburst = 0",
            "limits.tenants.acme.burst",
        ),
        (
            "[limits.tenants.acme]\nmonthly_cost_quota_usd = -1.0",
            "limits.tenants.acme.monthly_cost_quota_usd",
        ),
        (
            "[limits]\nmonthly_cost_budget_usd = nan",
            "limits.monthly_cost_budget_usd",
        ),
        // A dollar limit needs prices (spans [ledger]).
        (
            "[limits.tenants.acme]\nmonthly_cost_quota_usd = 5.0",
            "limits.tenants.acme.monthly_cost_quota_usd",
        ),
        (
            "[limits]\nmonthly_cost_budget_usd = 5.0",
            "limits.monthly_cost_budget_usd",
        ),
        // [ledger]
        (
            "[ledger]\nurl = \"postgres://p@db/ledger?sslmode=require\"",
            "ledger.url",
        ),
        ("[ledger]\nurl = \"mysql://db/ledger\"", "ledger.url"),
        (
            "[ledger.prices.m]\ninput_usd_per_mtok = -1.0\noutput_usd_per_mtok = 1.0",
            "ledger.prices.m.input_usd_per_mtok",
        ),
        (
            "[ledger.prices.m]\ninput_usd_per_mtok = 1.0\noutput_usd_per_mtok = inf",
            "ledger.prices.m.output_usd_per_mtok",
        ),
        // [policy]
        (
            "[policy]\naudit_url = \"postgresql://p@db/audit?sslmode=verify-full\"",
            "policy.audit_url",
        ),
        ("[policy]\nmin_serial = 3", "policy.min_serial"),
        (
            "[policy]\nstream_hold_bytes = 255",
            "policy.stream_hold_bytes",
        ),
        (
            "[policy]\nreload_interval_ms = 0",
            "policy.reload_interval_ms",
        ),
        // [tools]
        ("[tools]\ntoken_ttl_secs = 0", "tools.token_ttl_secs"),
        (
            "[tools]\nconfirmation_ttl_secs = 0",
            "tools.confirmation_ttl_secs",
        ),
        (
            "[tools]\nconversation_ttl_secs = 0",
            "tools.conversation_ttl_secs",
        ),
        ("[tools]\nmax_pending = 0", "tools.max_pending"),
        (
            "[tools]\nmax_pending_per_tenant = 0",
            "tools.max_pending_per_tenant",
        ),
        (
            "[tools]\nmax_conversations_per_tenant = 0",
            "tools.max_conversations_per_tenant",
        ),
        ("[tools]\nmax_call_bytes = 1023", "tools.max_call_bytes"),
        // [tenants.*] name backends (spans [backends])
        (
            "[tenants.acme.upstream_api_key_env]\nnope = \"ACME_KEY\"",
            "tenants.acme.upstream_api_key_env.nope",
        ),
        // [[routes]]: the backend exists (spans [backends]), each route's
        // fields, then the rules between routes.
        ("[[routes]]\nbackend = \"nope\"", "routes[0].backend"),
        // A route's residency rule must allow its own backend.
        (
            "[backends.local]\nregion = \"us-east\"\n[[routes]]\nresidency = { regions = [\"eu-west\"] }",
            "routes[0].backend",
        ),
        (
            "[backends.us]\nbase_url = \"http://127.0.0.1:1/v1\"\nregion = \"us-east\"\n\
             [backends.local]\nregion = \"eu-west\"\n[[routes]]\nbackend = \"\"\n\
             deployments = [{ backend = \"local\" }, { backend = \"us\" }]\n\
             residency = { regions = [\"eu-west\"] }",
            "routes[0].deployments[1]",
        ),
        ("[[routes]]\ndeadline_ms = 0", "routes[0].deadline_ms"),
        (
            "[[routes]]\noverload_max_tokens = 0",
            "routes[0].overload_max_tokens",
        ),
        (
            "[[routes]]\n[[routes]]\nmodel = \"*\"\nbackend = \"local\"\naliases = [\"x\"]",
            "routes[1].aliases",
        ),
        ("[[routes]]\nmodel = \"\"", "routes[0].model"),
        (
            "[[routes]]\naliases = [\"n\", \"\"]",
            "routes[0].aliases[1]",
        ),
        (
            "[[routes]]\n[[routes]]\nmodel = \"n\"\nbackend = \"local\"\naliases = [\"m\"]",
            "routes[1].aliases[0]",
        ),
        (
            "[[routes]]\n[[routes]]\nmodel = \"m\"\nbackend = \"local\"",
            "routes[1].model",
        ),
        (
            "[[routes]]\noverload_model = \"nope\"",
            "routes[0].overload_model",
        ),
        (
            "[[routes]]\noverload_model = \"m\"",
            "routes[0].overload_model",
        ),
        // Deployments, retries, fallbacks (routing.rs, routes.rs, lib.rs)
        ("[[routes]]\nbackend = \"\"", "routes[0].backend"),
        (
            "[[routes]]\ndeployments = [{ backend = \"local\" }]",
            "routes[0].deployments",
        ),
        (
            "[[routes]]\nbackend = \"\"\ndeployments = [{ backend = \"nope\" }]",
            "routes[0].deployments[0].backend",
        ),
        (
            "[[routes]]\nbackend = \"\"\ndeployments = [{ backend = \"local\", weight = 0 }]",
            "routes[0].deployments[0].weight",
        ),
        (
            "[[routes]]\nbackend = \"\"\ndeployments = [{ backend = \"local\", labels = { zone = \"a\" } }]",
            "routes[0].deployments[0].labels.zone",
        ),
        (
            "[[routes]]\nretry = { max_attempts = 0 }",
            "routes[0].retry.max_attempts",
        ),
        (
            "[[routes]]\nretry = { base_backoff_ms = 0 }",
            "routes[0].retry.base_backoff_ms",
        ),
        // Hedging (hedge.rs, routes.rs)
        (
            "[[routes]]\nhedge = { after_ms = 50, after = \"p95\" }",
            "routes[0].hedge.after",
        ),
        ("[[routes]]\nhedge = { max_extra = 1 }", "routes[0].hedge.after"),
        (
            "[[routes]]\nhedge = { after_ms = 0 }",
            "routes[0].hedge.after_ms",
        ),
        (
            "[[routes]]\nhedge = { after = \"p100\" }",
            "routes[0].hedge.after",
        ),
        (
            "[[routes]]\nhedge = { after = \"95\" }",
            "routes[0].hedge.after",
        ),
        (
            "[[routes]]\nhedge = { after = \"p95\", min_ms = 500, max_ms = 100 }",
            "routes[0].hedge.max_ms",
        ),
        (
            "[[routes]]\nhedge = { after_ms = 50, max_extra = 4 }",
            "routes[0].hedge.max_extra",
        ),
        (
            "[[routes]]\nhedge = { after = \"p95\", window_ms = 10 }",
            "routes[0].hedge.window_ms",
        ),
        ("[[routes]]\nhedge = { after_ms = 50 }", "routes[0].hedge"),
        // Cascades (cascade.rs, routes.rs)
        (
            "[[routes]]\ncascade = { first = \"cheap\", escalate_on = [] }\n[[routes]]\nmodel = \"cheap\"\nbackend = \"local\"",
            "routes[0].cascade.escalate_on",
        ),
        (
            "[[routes]]\ncascade = { first = \"cheap\", escalate_on = [\"refusal\", \"vibes\"] }\n[[routes]]\nmodel = \"cheap\"\nbackend = \"local\"",
            "routes[0].cascade.escalate_on[1]",
        ),
        (
            "[[routes]]\ncascade = { first = \"cheap\", min_mean_logprob = 0.5 }\n[[routes]]\nmodel = \"cheap\"\nbackend = \"local\"",
            "routes[0].cascade.min_mean_logprob",
        ),
        (
            "[[routes]]\ncascade = { first = \"nope\" }",
            "routes[0].cascade.first",
        ),
        (
            "[[routes]]\ncascade = { first = \"cheap\", escalate_on = [\"judge\"] }\n[[routes]]\nmodel = \"cheap\"\nbackend = \"local\"",
            "routes[0].cascade.judge",
        ),
        (
            "[[routes]]\ncascade = { first = \"cheap\", judge = { model = \"cheap\", prompt = \"wrong?\" } }\n[[routes]]\nmodel = \"cheap\"\nbackend = \"local\"",
            "routes[0].cascade.judge",
        ),
        (
            "[[routes]]\ncascade = { first = \"cheap\", escalate_on = [\"judge\"], judge = { model = \"nope\", prompt = \"wrong?\" } }\n[[routes]]\nmodel = \"cheap\"\nbackend = \"local\"",
            "routes[0].cascade.judge.model",
        ),
        (
            "[[routes]]\ncascade = { first = \"m\" }",
            "routes[0].cascade.first",
        ),
        (
            "[[routes]]\nfallbacks = { default = [\"nope\"] }",
            "routes[0].fallbacks.default[0]",
        ),
        (
            "[[routes]]\nfallbacks = { context_length = [\"m\"] }",
            "routes[0].fallbacks.context_length[0]",
        ),
        (
            "[backends.local]\nretry_budget = { ratio = 2.0 }",
            "backends.local.retry_budget",
        ),
        (
            "[backends.local]\nprobe_path = \"models\"",
            "backends.local.probe_path",
        ),
        (
            "[backends.local]\nengine_metrics_url = \"/metrics\"",
            "backends.local.engine_metrics_url",
        ),
        (
            "[backends.local]\napi_version = \"a b\"",
            "backends.local.api_version",
        ),
        (
            "[backends.local]\nprobe_interval_ms = 0",
            "backends.local.probe_interval_ms",
        ),
        // [detection]
        (
            "[detection]\nsecond_stage = \"auto\"\nmodel_dir = \"\"",
            "detection.model_dir",
        ),
        // [console]
        ("[console]\nsession_ttl_secs = 0", "console.session_ttl_secs"),
        ("[console]\nmax_sessions = 0", "console.max_sessions"),
        // [reload]
        ("[reload]\nconfig_poll_ms = 5", "reload.config_poll_ms"),
        // [idempotency], [cache]
        ("[idempotency]\nttl_secs = 0", "idempotency.ttl_secs"),
        ("[idempotency]\nmax_entries_per_tenant = 0", "idempotency.max_entries_per_tenant"),
        ("[idempotency]\nmax_bytes_per_tenant = 10", "idempotency.max_bytes_per_tenant"),
        (
            "[idempotency]\nmax_bytes_per_tenant = 4096\nmax_entry_bytes = 8192",
            "idempotency.max_entry_bytes",
        ),
        ("[cache]\nttl_secs = 604801", "cache.ttl_secs"),
        ("[cache]\nmax_entries_per_tenant = 0", "cache.max_entries_per_tenant"),
        ("[cache]\nmax_bytes_per_tenant = 0", "cache.max_bytes_per_tenant"),
        ("[cache]\nmax_entry_bytes = 10", "cache.max_entry_bytes"),
        // [fleet]
        (
            "[fleet]\nredis_url = \"rediss://r:6380\"",
            "fleet.redis_url",
        ),
        ("[fleet]\nheartbeat_ms = 10", "fleet.heartbeat_ms"),
        (
            "[fleet]\nheartbeat_ms = 1000\nttl_ms = 1500",
            "fleet.ttl_ms",
        ),
        (
            "[fleet]\nevents_webhook_url = \"ftp://x\"",
            "fleet.events_webhook_url",
        ),
        // [extraction]
        (
            "[extraction]\ndefault_tier = \"nope\"",
            "extraction.default_tier",
        ),
        (
            "[extraction.tenant_tiers]\nacme = \"nope\"",
            "extraction.tenant_tiers.acme",
        ),
        ("[extraction]\nstore = \"/tmp/x.db\"", "extraction.store"),
        (
            "[extraction]\nqueue_capacity = 0",
            "extraction.queue_capacity",
        ),
        (
            "[extraction.detectors]\nmin_queries = 200",
            "extraction.detectors.window",
        ),
        ("[extraction.ladder]\nflag_at = 9.0", "extraction.ladder"),
        (
            "[extraction.hunt]\nwindow_hours = 1000",
            "extraction.hunt.window_hours",
        ),
        (
            "[extraction.hunt]\nconfirmed_action = \"observe\"",
            "extraction.hunt.confirmed_action",
        ),
        (
            "[extraction.hunt.clustering]\nmin_signals = 0",
            "extraction.hunt.clustering",
        ),
        // [detection.anomaly]
        (
            "[detection.anomaly]\nreplicas = 0",
            "detection.anomaly.replicas",
        ),
        ("[detection.anomaly]\nqueue = 0", "detection.anomaly.queue"),
        (
            "[detection.anomaly]\nwindow_secs = 0",
            "detection.anomaly.window_secs",
        ),
        (
            "[detection.anomaly]\nz_threshold = -1.0",
            "detection.anomaly.z_threshold",
        ),
        (
            "[detection.anomaly]\nsurge_ratio = 0.5",
            "detection.anomaly.surge_ratio",
        ),
    ];
    let tokenized = "[[routes]]\nmodel = \"m\"\ntokenizer = \"/t.json\"\n";
    let watermark_rows = [
        ("[watermark]\ngamma = 1.0".to_owned(), "watermark.gamma"),
        ("[watermark]\ndelta = 0.0".to_owned(), "watermark.delta"),
        (
            "[watermark]\nrotation_hours = 0".to_owned(),
            "watermark.rotation_hours",
        ),
        (
            "[watermark]\ndetect_periods = 5000".to_owned(),
            "watermark.detect_periods",
        ),
        (
            format!("{tokenized}[watermark]\nenabled = true\nkey_env = \"\"\nmodels = [\"m\"]"),
            "watermark.key_env",
        ),
        ("[watermark]\nenabled = true".to_owned(), "watermark.models"),
        (
            "[watermark]\nenabled = true\nmodels = [\"m\"]".to_owned(),
            "watermark.models[0]",
        ),
        (
            format!("{tokenized}[watermark]\nenabled = true\nmodels = [\"m\", \"other\"]"),
            "watermark.models[1]",
        ),
    ];
    for (mutation, key) in &watermark_rows {
        check_invalid(mutation, key);
    }
    // [telemetry]
    let telemetry_rows: &[(&str, &str)] = &[
        (
            "[telemetry]\notlp_endpoint = \"grpc://collector:4317\"",
            "telemetry.otlp_endpoint",
        ),
        ("[telemetry]\nservice_name = \"\"", "telemetry.service_name"),
        ("[telemetry]\nsample_ratio = 1.5", "telemetry.sample_ratio"),
        (
            "[telemetry.headers]\n\"x y\" = \"v\"",
            "telemetry.headers.x y",
        ),
        (
            "[telemetry.headers]\nx-api-key = \"a\\nb\"",
            "telemetry.headers.x-api-key",
        ),
        (
            "[telemetry]\nexport_timeout_ms = 0",
            "telemetry.export_timeout_ms",
        ),
        ("[telemetry]\nqueue_size = 1", "telemetry.queue_size"),
    ];
    for (mutation, key) in telemetry_rows {
        check_invalid(mutation, key);
    }
    for (mutation, key) in rows {
        check_invalid(mutation, key);
    }
}

/// `[[routes]] canary` and `rollout`: one row per rule.
#[test]
fn canary_and_rollout_rows_name_the_key() {
    let canary =
        |fields: &str| format!("[[routes]]\ncanary = {{ golden_set = \"g.jsonl\"{fields} }}");
    let two = "[backends.us]\nbase_url = \"http://127.0.0.1:8001/v1\"\n\
               [[routes]]\nbackend = \"\"\n\
               deployments = [{ backend = \"local\" }, { backend = \"us\" }]\n";
    let rollout = |fields: &str| {
        format!(
            "{two}canary = {{ golden_set = \"g.jsonl\" }}\n\
             rollout = {{ deployment = \"us\"{fields} }}"
        )
    };
    let rows = [
        (
            "[[routes]]\ncanary = { golden_set = \" \" }".to_owned(),
            "routes[0].canary.golden_set",
        ),
        (canary(", interval_s = 0"), "routes[0].canary.interval_s"),
        (canary(", timeout_ms = 0"), "routes[0].canary.timeout_ms"),
        (
            canary(", max_body_bytes = 10"),
            "routes[0].canary.max_body_bytes",
        ),
        (canary(", min_samples = 0"), "routes[0].canary.min_samples"),
        (
            canary(", min_samples = 20, window = 10"),
            "routes[0].canary.window",
        ),
        (canary(", alpha = 0.5"), "routes[0].canary.alpha"),
        (canary(", tolerance = 1.0"), "routes[0].canary.tolerance"),
        (canary(", min_pass_rate = 1.5"), "routes[0].canary.min_pass_rate"),
        (canary(", latency_ratio = 0.5"), "routes[0].canary.latency_ratio"),
        (
            format!("{two}rollout = {{ deployment = \"us\" }}"),
            "routes[0].rollout",
        ),
        (
            format!(
                "{two}canary = {{ golden_set = \"g.jsonl\" }}\nrollout = {{ deployment = \"eu\" }}"
            ),
            "routes[0].rollout.deployment",
        ),
        (
            "[[routes]]\ncanary = { golden_set = \"g.jsonl\" }\nrollout = { deployment = \"local\" }"
                .to_owned(),
            "routes[0].rollout.deployment",
        ),
        (
            rollout(", start_weight_pct = 0"),
            "routes[0].rollout.start_weight_pct",
        ),
        (rollout(", step_pct = 101"), "routes[0].rollout.step_pct"),
        (rollout(", step_every_s = 0"), "routes[0].rollout.step_every_s"),
    ];
    for (mutation, key) in &rows {
        check_invalid(mutation, key);
    }
    // And the valid shapes load.
    load(&mutated(&rollout(", start_weight_pct = 10"))).expect("a rollout validates");
    load(&mutated(&canary(""))).expect("a canary alone validates");
}
