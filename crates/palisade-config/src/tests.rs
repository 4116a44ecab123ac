//! Loading, defaults and validation, one rule per test.

use super::*;

fn load(toml: &str) -> Result<Config, ConfigError> {
    Config::load(&Sources {
        toml: Some(toml),
        ..Sources::default()
    })
}

fn assert_invalid(toml: &str, key_part: &str) {
    let err = load(toml).unwrap_err().to_string();
    assert!(
        err.contains(key_part),
        "error `{err}` should name `{key_part}`"
    );
}

#[test]
fn empty_config_is_open_loopback_with_default_upstream() {
    let c = load("").unwrap();
    assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.auth.effective_mode(), AuthMode::Open);
    assert_eq!(c.backends[DEFAULT_BACKEND].base_url, DEFAULT_UPSTREAM);
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].model, WILDCARD_MODEL);
}

#[test]
fn unknown_keys_are_named() {
    assert_invalid("[server]\nlisten_addr = \"127.0.0.1:1\"", "listen_addr");
    assert_invalid(
        "[backends.a]\nbase_url = \"http://x/v1\"\ntimeout = 3",
        "timeout",
    );
}

#[test]
fn slow_client_bounds_have_defaults_and_refuse_zero() {
    let c = load("").unwrap();
    assert_eq!(
        (
            c.server.header_read_timeout_ms,
            c.server.body_read_timeout_ms,
            c.server.write_stall_timeout_ms,
            c.server.max_connections
        ),
        (10_000, 30_000, 30_000, 1024)
    );
    for key in [
        "header_read_timeout_ms",
        "body_read_timeout_ms",
        "write_stall_timeout_ms",
        "max_connections",
    ] {
        assert_invalid(&format!("[server]\n{key} = 0"), key);
    }
}

#[test]
fn open_mode_is_refused_off_loopback() {
    assert_invalid("[server]\nlisten = \"0.0.0.0:8080\"", "auth.mode");
    let with_key = format!(
        "[server]\nlisten = \"0.0.0.0:8080\"\n[[auth.keys]]\nname = \"k\"\ntenant = \"t\"\nsha256 = \"{}\"",
        "a".repeat(64)
    );
    assert_eq!(
        load(&with_key).unwrap().auth.effective_mode(),
        AuthMode::Keys
    );
}

#[test]
fn limits_fall_back_to_defaults_and_reject_zero() {
    let c = load(
        "[limits]\nrequests_per_minute = 120\nmax_in_flight_per_key = 4\n[limits.tenants.big]\nrequests_per_minute = 6000\nburst = 10",
    )
    .unwrap();
    let big = c.limits.tenants["big"].or(c.limits.default);
    assert_eq!(big.requests_per_minute, Some(6000));
    assert_eq!(big.effective_burst(), Some(10));
    assert_eq!(big.max_in_flight_per_key, Some(4));
    // 120 rpm is two per second, below the floor of five.
    assert_eq!(c.limits.default.effective_burst(), Some(5));
    assert_invalid(
        "[limits]\nrequests_per_minute = 0",
        "limits.requests_per_minute",
    );
    assert_invalid("[limits.tenants.x]\nburst = 0", "limits.tenants.x.burst");
}

#[test]
fn cross_references_are_checked() {
    assert_invalid(
        "[backends.a]\nbase_url = \"http://x/v1\"\n[[routes]]\nmodel = \"m\"\nbackend = \"b\"",
        "routes[0].backend",
    );
    assert_invalid(
        "[backends.a]\nbase_url = \"http://x/v1\"\n[[routes]]\nmodel = \"m\"\nbackend = \"a\"\n[[routes]]\nmodel = \"n\"\nbackend = \"a\"\naliases = [\"m\"]",
        "routed twice",
    );
    assert_invalid(
        "[backends.a]\nbase_url = \"ftp://x\"",
        "backends.a.base_url",
    );
    assert_invalid(
        "[[auth.keys]]\nname = \"k\"\ntenant = \"t\"\nsha256 = \"nothex\"",
        "auth.keys[0].sha256",
    );
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
fn env_overrides_nested_keys_only() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("PALISADE_SERVER__MAX_BODY_BYTES", "1234");
        jail.set_env("PALISADE_UPSTREAM", "http://ignored-here/v1");
        let c = Config::load(&Sources {
            toml: Some(""),
            env: true,
            ..Sources::default()
        })
        .map_err(|e| e.to_string())?;
        assert_eq!(c.server.max_body_bytes, 1234);
        assert_eq!(c.backends[DEFAULT_BACKEND].base_url, DEFAULT_UPSTREAM);
        Ok(())
    });
}

#[test]
fn default_upstream_applies_only_without_backends() {
    let c = Config::load(&Sources {
        toml: Some(""),
        default_upstream: Some("http://127.0.0.1:9/v1"),
        ..Sources::default()
    })
    .unwrap();
    assert_eq!(
        c.backends[DEFAULT_BACKEND].base_url,
        "http://127.0.0.1:9/v1"
    );
}

#[test]
fn detection_pool_and_anomaly_keys_have_defaults_and_are_checked() {
    let c = load("").unwrap();
    assert_eq!(
        (
            c.detection.pool_workers,
            c.detection.pool_queue,
            c.detection.pool_wait_ms
        ),
        (0, 256, 1_000)
    );
    assert!(c.detection.anomaly.enabled);
    assert_eq!(c.detection.anomaly.replicas, 1);
    let c = load(
        "[detection]\npool_workers = 2\npool_queue = 0\n[detection.anomaly]\nreplicas = 3\nwindow_secs = 5",
    )
    .unwrap();
    assert_eq!((c.detection.pool_workers, c.detection.pool_queue), (2, 0));
    assert_eq!(
        (
            c.detection.anomaly.replicas,
            c.detection.anomaly.window_secs
        ),
        (3, 5)
    );
    for (key, value) in [
        ("replicas", "0"),
        ("queue", "0"),
        ("window_secs", "0"),
        ("z_threshold", "0.0"),
        ("surge_ratio", "1.0"),
    ] {
        assert_invalid(
            &format!("[detection.anomaly]\n{key} = {value}"),
            &format!("detection.anomaly.{key}"),
        );
    }
    assert_invalid("[detection]\npool_threads = 2", "pool_threads");
}

#[test]
fn default_burst_table() {
    use crate::limits::default_burst;
    // (requests per minute, burst when none is configured)
    let table = [
        (0, 1), // never configured (validation refuses 0), still at least 1
        (1, 1), // the floor is capped by the rate itself
        (3, 3),
        (5, 5),
        (60, 5),  // one per second, lifted to the floor
        (100, 5), // the case: 200, 429, 429 before the floor
        (300, 5),
        (600, 10), // one second's worth takes over above the floor
        (6000, 100),
    ];
    for (rpm, burst) in table {
        assert_eq!(default_burst(rpm), burst, "rpm {rpm}");
    }
}
