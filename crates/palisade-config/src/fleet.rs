//! `[fleet]`: the fleet registry. Each replica announces itself in Redis (id, the policy
//! serial and version it enforces, since when, heartbeat); every replica sees the whole
//! fleet, the version skew and the events (joined, enforcing, behind, caught up, left).
//!
//! Validation checks the form only; it must not connect to Redis.

use super::*;

/// The fleet registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// `redis://` URL of the registry; unset: no registry (`/admin/fleet` shows this
    /// replica only).
    pub redis_url: Option<String>,
    /// This replica's id; unset: `$POD_NAME` (or the host name) and the process id.
    pub replica_id: Option<String>,
    /// How often a replica refreshes its record and looks at the fleet.
    pub heartbeat_ms: u64,
    /// How long a record outlives its last heartbeat: a replica silent this long has left.
    pub ttl_ms: u64,
    /// Where fleet events are POSTed as JSON (besides the log and metrics).
    pub events_webhook_url: Option<String>,
    /// Key prefix in Redis (one fleet per prefix).
    pub key_prefix: String,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            replica_id: None,
            heartbeat_ms: 1_000,
            ttl_ms: 3_000,
            events_webhook_url: None,
            key_prefix: "palisade:fleet".to_owned(),
        }
    }
}

impl FleetConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.redis_url {
            if !url.starts_with("redis://") {
                return Err(invalid(
                    "fleet.redis_url",
                    "must be a redis:// URL (TLS to Redis is not supported by this build)",
                ));
            }
        }
        if !(100..=60_000).contains(&self.heartbeat_ms) {
            return Err(invalid(
                "fleet.heartbeat_ms",
                "must be between 100 and 60000",
            ));
        }
        if self.ttl_ms < 2 * self.heartbeat_ms {
            return Err(invalid(
                "fleet.ttl_ms",
                "must be at least twice fleet.heartbeat_ms, or one late heartbeat reads as a departure",
            ));
        }
        if let Some(url) = &self.events_webhook_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "fleet.events_webhook_url",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        Ok(())
    }
}
