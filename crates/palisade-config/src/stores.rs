//! The URLs of the stores a replica connects to (Redis for shared limits, PostgreSQL for
//! the ledger and the audit log), checked for what this build can actually do.
//!
//! Why here: a `rediss://` URL (or a PostgreSQL URL with `sslmode=require`) used to pass
//! `palisade config check` and then fail at every connection attempt, so the mistake
//! showed up only once the replica was serving (limits falling back or refusing, audit
//! rows lost). The gateway connects to both stores without TLS, so a URL that demands TLS
//! is refused when the config loads, with a message naming the key and the way out.

use crate::{invalid, ConfigError};

/// `limits.redis_url` for `backend = "redis"`: a `redis://` URL.
pub(crate) fn validate_redis_url(url: Option<&str>) -> Result<(), ConfigError> {
    match url {
        Some(url) if url.starts_with("redis://") => Ok(()),
        Some(url) if url.starts_with("rediss://") => Err(invalid(
            "limits.redis_url",
            "rediss:// (TLS to Redis) is not supported: this build connects to Redis without \
             TLS. Use redis:// to a Redis on a private network or loopback, or run a local TLS \
             tunnel (stunnel, spiped) and point redis:// at its local end",
        )),
        _ => Err(invalid(
            "limits.redis_url",
            "backend = \"redis\" needs a redis:// URL",
        )),
    }
}

/// A PostgreSQL URL must not ask for TLS (`sslmode=require`, `verify-ca`, `verify-full`).
/// `disable` and `prefer` (the default, which here means no TLS) connect.
pub(crate) fn validate_postgres_tls(key: &str, url: Option<&str>) -> Result<(), ConfigError> {
    let Some(url) = url else {
        return Ok(());
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok(());
    }
    let query = url.split_once('?').map_or("", |(_, q)| q);
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !name.eq_ignore_ascii_case("sslmode") {
            continue;
        }
        let value = value.to_ascii_lowercase();
        if !matches!(value.as_str(), "disable" | "prefer" | "allow") {
            return Err(invalid(
                key,
                format!(
                    "sslmode={value} asks for TLS to PostgreSQL, which this build does not \
                     support (it connects without TLS). Use sslmode=disable to a PostgreSQL on \
                     a private network or loopback, or a local TLS tunnel"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_urls_are_refused_naming_the_key() {
        assert!(validate_redis_url(Some("redis://10.0.0.7:6379/0")).is_ok());
        let err = validate_redis_url(Some("rediss://cache:6380")).unwrap_err();
        assert!(err.to_string().contains("limits.redis_url"), "{err}");
        assert!(err.to_string().contains("rediss://"), "{err}");
        assert!(validate_redis_url(Some("http://x")).is_err());
        assert!(validate_redis_url(None).is_err());

        for ok in [
            None,
            Some("sqlite:/tmp/x.db"),
            Some("postgres://u@db/palisade"),
            Some("postgresql://u@db/p?sslmode=disable"),
            Some("postgres://u@db/p?application_name=x&sslmode=prefer"),
        ] {
            assert!(validate_postgres_tls("ledger.url", ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "postgres://u@db/p?sslmode=require",
            "postgresql://u@db/p?connect_timeout=5&SSLMODE=Verify-Full",
            "postgres://u@db/p?sslmode=verify-ca",
        ] {
            let err = validate_postgres_tls("policy.audit_url", Some(bad)).unwrap_err();
            assert!(err.to_string().contains("policy.audit_url"), "{err}");
        }
    }
}
