//! `[detection]`: whether the detector's second stage (the fine-tuned encoder) runs, and
//! where its base weights are; the bounded pool scans run on; and
//! `[detection.anomaly]`, the scaling-aware anomaly detector over gate outcomes.
//!
//! Validation checks the form only; it must not read the weights (the gateway does, at
//! start, and reports what it found).

use super::*;

/// The detection cascade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// `off` (the default): first stage only; `auto`: use the second stage when its weights
    /// are present, otherwise run the first stage alone and say so at start and in `/readyz`;
    /// `required`: refuse to start without it. Off by default because the shipped encoder
    /// does not yet earn its place: on `eval/` it raised the benign flag rate from 1.8% to 4.9%
    /// (see `crates/palisade-encoder/model/TRAINING.md`).
    pub second_stage: SecondStageMode,
    /// Directory holding the base encoder's `model.safetensors` and `tokenizer.json`
    /// (`scripts/fetch-encoder` puts them in `models/minilm-l6`). Relative paths are read
    /// from the working directory.
    pub model_dir: PathBuf,
    /// Threads of the detection pool that runs the input gates' scans of long texts (and
    /// every scan when the second stage is on). 0 (the default): one per core. Short texts
    /// without a second stage are scanned inline: a hop to another thread costs more.
    pub pool_workers: usize,
    /// Requests that may wait for a pool thread; one more is saturation at once. 256: a
    /// few seconds of work at the pool's rate, no more.
    pub pool_queue: usize,
    /// How long a request may wait for a pool thread before it is saturation (then the
    /// tier's `on_detector_saturated` decides: refuse with 503, or first stage only,
    /// audited as degraded). 1000 ms.
    pub pool_wait_ms: u64,
    /// The anomaly detector over gate outcomes.
    pub anomaly: AnomalyConfig,
}

/// `[detection.anomaly]`: per-tenant and per-key rates of flags, blocks and refusals per
/// request, with baselines that survive scale events. Alerts go to the log, the metrics and
/// `limits.alert_webhook_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// On by default: it costs one channel send per request.
    pub enabled: bool,
    /// Replicas in the fleet, until the fleet registry or a scale event says otherwise
    /// (`PALISADE_DETECTION__ANOMALY__REPLICAS` in a Deployment).
    pub replicas: u32,
    /// Outcomes that may wait for the detector task; more are dropped and counted (the
    /// request path never waits for anomaly detection).
    pub queue: usize,
    /// Window length in seconds (default 10).
    pub window_secs: u64,
    /// How long a scale event holds capacity signals down, in seconds (default 120).
    pub hold_down_secs: u64,
    /// An alert for the same kind and tenant is not repeated within this, in seconds
    /// (default 300).
    pub dedup_secs: u64,
    /// Binomial z-score at or above which a tenant's window is a burst (default 4).
    pub z_threshold: f64,
    /// Requests a tenant needs in a window to be tested (default 20).
    pub min_requests: u64,
    /// This replica's fleet-normalized load at this multiple of its baseline, with no scale
    /// event under way, is a load surge (default 4).
    pub surge_ratio: f64,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            replicas: 1,
            queue: 4096,
            window_secs: 10,
            hold_down_secs: 120,
            dedup_secs: 300,
            z_threshold: 4.0,
            min_requests: 20,
            surge_ratio: 4.0,
        }
    }
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            second_stage: SecondStageMode::Off,
            model_dir: PathBuf::from("models/minilm-l6"),
            pool_workers: 0,
            pool_queue: 256,
            pool_wait_ms: 1_000,
            anomaly: AnomalyConfig::default(),
        }
    }
}

/// When the second stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondStageMode {
    /// When its weights are present.
    Auto,
    /// Always; start fails without it.
    Required,
    /// Never.
    Off,
}

impl DetectionConfig {
    /// A model directory must be named when the second stage can run.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.second_stage != SecondStageMode::Off && self.model_dir.as_os_str().is_empty() {
            return Err(invalid(
                "detection.model_dir",
                "must name the directory of the encoder's weights (or set detection.second_stage = \"off\")",
            ));
        }
        let a = &self.anomaly;
        if a.replicas == 0 {
            return Err(invalid("detection.anomaly.replicas", "must be at least 1"));
        }
        if a.queue == 0 {
            return Err(invalid("detection.anomaly.queue", "must be at least 1"));
        }
        if a.window_secs == 0 {
            return Err(invalid(
                "detection.anomaly.window_secs",
                "must be at least 1",
            ));
        }
        if !(a.z_threshold.is_finite() && a.z_threshold > 0.0) {
            return Err(invalid(
                "detection.anomaly.z_threshold",
                "must be a positive number",
            ));
        }
        if !(a.surge_ratio.is_finite() && a.surge_ratio > 1.0) {
            return Err(invalid(
                "detection.anomaly.surge_ratio",
                "must be a number above 1",
            ));
        }
        Ok(())
    }
}
