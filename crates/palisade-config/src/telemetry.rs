//! `[telemetry]`: OpenTelemetry trace export over OTLP/HTTP (JSON encoding).
//! Off unless `otlp_endpoint` is set. The W3C `traceparent` a client sends is
//! honoured either way; this section only says whether (and where) the
//! gateway's own spans are exported.
//!
//! Validation checks shapes and ranges only; it must not open a connection
//! or resolve the collector's name.

use super::*;

/// Trace export settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP traces URL, e.g.
    /// `http://127.0.0.1:4318/v1/traces`. Absent: no spans are exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` on every exported span's resource.
    pub service_name: String,
    /// Share of new traces sampled, 0.0 to 1.0. A client's `traceparent`
    /// with the sampled flag set is always followed, so a trace the caller
    /// records is never cut in the middle.
    pub sample_ratio: f64,
    /// Extra headers on every export request (a collector's API key).
    pub headers: BTreeMap<String, String>,
    /// How long one export request may take before it is abandoned (and
    /// its spans counted as dropped).
    pub export_timeout_ms: u64,
    /// Spans waiting for export; when full, new spans are dropped and
    /// counted in `palisade_trace_spans_dropped_total`, never waited for.
    pub queue_size: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        // Rationale: 2048 spans is about 200 requests' worth at ten spans a
        // request, a few hundred KiB, enough to ride out a collector hiccup
        // of a second at moderate load without holding much memory; 5 s is
        // the OpenTelemetry SDKs' own export timeout default.
        Self {
            otlp_endpoint: None,
            service_name: "palisade".to_owned(),
            sample_ratio: 1.0,
            headers: BTreeMap::new(),
            export_timeout_ms: 5_000,
            queue_size: 2_048,
        }
    }
}

impl TelemetryConfig {
    /// Whether spans are exported.
    pub fn enabled(&self) -> bool {
        self.otlp_endpoint.is_some()
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.otlp_endpoint {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                return Err(invalid(
                    "telemetry.otlp_endpoint",
                    "must be an http:// or https:// URL, e.g. http://127.0.0.1:4318/v1/traces",
                ));
            }
        }
        if self.service_name.is_empty() || self.service_name.len() > 128 {
            return Err(invalid(
                "telemetry.service_name",
                "must be 1 to 128 characters",
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid(
                "telemetry.sample_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        for (name, value) in &self.headers {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !token {
                return Err(invalid(
                    format!("telemetry.headers.{name}"),
                    "header names are letters, digits, `-` and `_`",
                ));
            }
            if value.bytes().any(|b| b.is_ascii_control()) {
                return Err(invalid(
                    format!("telemetry.headers.{name}"),
                    "header values must not contain control characters",
                ));
            }
        }
        if !(100..=60_000).contains(&self.export_timeout_ms) {
            return Err(invalid(
                "telemetry.export_timeout_ms",
                "must be between 100 and 60000",
            ));
        }
        if !(16..=1_000_000).contains(&self.queue_size) {
            return Err(invalid(
                "telemetry.queue_size",
                "must be between 16 and 1000000",
            ));
        }
        Ok(())
    }
}
