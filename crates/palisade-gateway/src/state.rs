//! The gateway's shared state: everything a request reads that outlives it
//! (keys, routes, backends, detector, policy, limits, ledger), built once
//! from config, and the errors building or running it.
//!
//! Per-request state lives in [`crate::context`]; this module must not hold
//! any, nor any request-path logic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use palisade_config::Config;

use crate::gates::Gates;
use crate::http::auth::Authenticator;
use crate::metrics::ModelLabels;
use crate::readiness::{Condition, Readiness};
use crate::upstream::BackendError;

/// Errors starting or running the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A backend could not be built (missing API key variable, TLS setup).
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause (in use, permission).
        #[source]
        source: std::io::Error,
    },
    /// The embedded detector model failed to load (a corrupt build).
    #[error("cannot load the detector model")]
    Detector(#[from] palisade_detect::DetectError),
    /// `PALISADE_MARKER_KEY` is set but is not a 32-byte hex key.
    #[error("{0}")]
    MarkerKey(String),
    /// `[detection] second_stage = "required"` and the encoder could not be loaded.
    #[error("cannot load the detector's second stage from {dir}: {message}")]
    SecondStage {
        /// The configured model directory.
        dir: String,
        /// Why.
        message: String,
    },
    /// The configured limits could not be compiled.
    #[error(transparent)]
    Admission(#[from] crate::limits::admission::AdmissionError),
    /// The ledger store could not be opened (bad path, database down,
    /// schema newer than this build).
    #[error("cannot open the ledger at {url}")]
    Ledger {
        /// The configured URL.
        url: String,
        /// The cause.
        #[source]
        source: palisade_ledger::LedgerError,
    },
    /// A route's `tokenizer.json` could not be loaded.
    #[error("cannot load tokenizer {path}: {message}")]
    Tokenizer {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A route's canary golden set could not be read or parsed.
    #[error("cannot load the canary golden set {path}: {message}")]
    Canary {
        /// The configured file.
        path: String,
        /// Why (I/O error, or the line that does not parse).
        message: String,
    },
    /// The policy file could not be loaded.
    #[error(transparent)]
    Policy(#[from] crate::gates::policy::PolicyLoadError),
    /// `[bundle]` is unusable (a malformed trusted key).
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleSetupError),
    /// The tool signing key or a tenant's tool credential is missing.
    #[error(transparent)]
    Tools(#[from] crate::gates::tools::ToolSetupError),
    /// The extraction telemetry store could not be opened.
    #[error(transparent)]
    Extraction(#[from] crate::extraction::StoreError),
    /// `[watermark]` is enabled but its key is missing or malformed.
    #[error(transparent)]
    Watermark(#[from] crate::watermark::WatermarkSetupError),
    /// The server loop failed.
    #[error("server error")]
    Serve(#[source] std::io::Error),
}

/// Shared, immutable per-process state the handlers read.
#[derive(Debug)]
pub struct GatewayState {
    pub(crate) auth: Authenticator,
    /// Routes, backends and their balancer state: one snapshot, swapped
    /// whole on reload; a request loads it once and keeps it.
    pub(crate) routing: crate::snapshot::Routing,
    pub(crate) model_labels: ModelLabels,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_sse_event_bytes: usize,
    pub(crate) admission: crate::limits::admission::Admission,
    pub(crate) default_max_tokens: u64,
    /// The ledger, once opened by `start` (when `ledger.url` is set).
    pub(crate) ledger: std::sync::OnceLock<Arc<palisade_ledger::Ledger>>,
    /// The owners of the Responses API ids this gateway relayed.
    pub(crate) response_owners: Arc<crate::api::responses::ResponseOwners>,
    pub(crate) prices: Arc<palisade_ledger::PriceTable>,
    pub(crate) inject_max_tokens: bool,
    /// `server.metrics_require_admin`.
    pub(crate) metrics_require_admin: bool,
    /// `server.trusted_proxies`, parsed.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// The safety gates: detector, policy, audit sink, tool service.
    pub(crate) gates: Arc<Gates>,
    pub(crate) sse_heartbeat: Option<Duration>,
    /// The bounded pool for CPU-heavy checks.
    pub(crate) cpu: crate::cpu::CpuPool,
    /// How long a request body may take to arrive.
    pub(crate) body_read_timeout: Duration,
    pub(crate) readiness: Readiness,
    pub(crate) metrics: Option<PrometheusHandle>,
    /// This replica's membership in the fleet registry.
    pub(crate) fleet: Arc<crate::fleet::FleetMember>,
    /// The signed-bundle runtime, with `[bundle]`: the policy comes from it.
    pub(crate) bundle: Option<Arc<crate::bundle::BundleRuntime>>,
    /// Model-extraction defence: tiers, telemetry queue, published standings.
    pub(crate) extraction: crate::extraction::Extraction,
    /// Scaling-aware anomaly detection over gate outcomes.
    pub(crate) anomaly: crate::anomaly::Anomaly,
    /// Idempotency keys and the response cache.
    pub(crate) replay: crate::replay::Replay,
    /// Output watermarking, with `[watermark] enabled`.
    pub(crate) watermark: Option<crate::watermark::Watermark>,
    /// The admin web console's sessions, with `[console] enabled`.
    pub(crate) console: Option<crate::console::Console>,
    /// OpenTelemetry tracing: the trace context and the span exporter.
    pub(crate) telemetry: crate::telemetry::Telemetry,
    /// Config hot reload: the config in force, its version, the last error.
    pub(crate) reload: crate::reload::Reloader,
}

/// Most model names a wildcard route turns into metric label values.
const MODEL_LABEL_CAP: usize = 64;

impl GatewayState {
    /// Builds the state from a validated config, looking environment
    /// variables (backend and tenant keys) up with `env`. Returns the
    /// listener's readiness condition, which the server sets once it serves.
    pub(crate) fn from_config(
        config: &Config,
        env: crate::snapshot::Env,
    ) -> Result<(Self, Condition), GatewayError> {
        // Installed before anything touches a metric (breaker and pool
        // gauges are set as their owners are built).
        let metrics_handle = crate::metrics::install();
        let routing = crate::snapshot::Routing::new(config, env.clone())?;
        let lookup = |var: &str| env(var);
        let readiness = Readiness::default();
        readiness.register("routes").set(true);
        let detector_ready = readiness.register("detector");
        let mut detector = palisade_detect::Detector::embedded()?;
        match crate::second_stage::load(&config.detection)? {
            crate::second_stage::Outcome::Attached(stage) => {
                tracing::info!(version = stage.version(), "detector second stage attached");
                readiness
                    .register_advisory("detector_second_stage")
                    .set(true);
                detector = detector.with_second_stage(stage);
            }
            crate::second_stage::Outcome::Missing(reason) => {
                // Detection keeps working on the first stage; say so where operators look.
                tracing::warn!(%reason, "detector second stage absent: first stage only");
                readiness.register_advisory("detector_second_stage");
            }
            crate::second_stage::Outcome::Off => {}
        }
        // The first scans build the detector's lazily compiled matchers
        // (~100 ms) and the regex engines' states for documents, code,
        // payloads and disguises; pay that before readiness, not on a
        // user's request.
        detector.warm();
        let detector = Arc::new(crate::gates::detectors::DetectorStore::new(detector));
        detector_ready.set(true);
        // The replica holds its policy before it takes traffic: loaded here,
        // or, with a bundle, once one verifies (the pipeline refuses until then).
        let started = crate::bundle::mark_process_start();
        let (policy, bundle) = match &config.bundle {
            None => {
                let policy_ready = readiness.register("policy");
                let policy = Arc::new(crate::gates::policy::PolicyStore::load(&config.policy)?);
                policy_ready.set(true);
                metrics::gauge!(crate::metrics::SECURITY_PROVISIONING)
                    .set(started.elapsed().as_secs_f64());
                (policy, None)
            }
            Some(bundle_config) => {
                let bundle_ready = readiness.register("bundle");
                let policy = Arc::new(crate::gates::policy::PolicyStore::awaiting_bundle(
                    &config.policy,
                )?);
                let runtime = crate::bundle::BundleRuntime::new(
                    bundle_config,
                    policy.clone(),
                    detector.clone(),
                    bundle_ready,
                )?;
                (policy, Some(Arc::new(runtime)))
            }
        };
        // Exported from the start, so "stays 0" is visible and alertable.
        metrics::counter!(crate::metrics::REQUESTS_WITHOUT_POLICY).increment(0);
        let serving = readiness.register("listener");
        let tools = Arc::new(crate::gates::tools::ToolService::from_config(
            config, &lookup,
        )?);
        let markers =
            crate::gates::markers::Markers::from_env(&lookup, crate::clock::GatewayClock::system())
                .map_err(|e| GatewayError::MarkerKey(e.to_string()))?;
        let prices = Arc::new(crate::limits::accounting::price_table(&config.ledger));
        let watermark = crate::watermark::Watermark::from_config(
            &config.watermark,
            &lookup,
            crate::clock::GatewayClock::system(),
        )?;
        let state = GatewayState {
            console: config
                .console
                .enabled
                .then(|| crate::console::Console::from_config(&config.console)),
            auth: Authenticator::from_config(&config.auth),
            routing,
            model_labels: ModelLabels::new(MODEL_LABEL_CAP),
            max_body_bytes: config.server.max_body_bytes,
            max_sse_event_bytes: config.server.max_sse_event_bytes,
            admission: crate::limits::admission::Admission::from_config(
                &config.limits,
                prices.clone(),
            )?,
            default_max_tokens: config.limits.default_max_tokens,
            ledger: std::sync::OnceLock::new(),
            response_owners: Arc::new(crate::api::responses::ResponseOwners::new(
                crate::api::responses::OWNER_RETENTION_DAYS,
            )),
            prices,
            inject_max_tokens: config.limits.inject_max_tokens,
            metrics_require_admin: config.server.metrics_require_admin,
            trusted_proxies: config
                .server
                .trusted_proxies
                .iter()
                .filter_map(|e| palisade_config::parse_proxy(e))
                .collect(),
            gates: Arc::new(Gates {
                detector,
                policy,
                audit: crate::gates::audit::AuditSink::default(),
                tools,
                stream_hold_bytes: config.policy.stream_hold_bytes,
                enabled: !config.policy.disabled,
                markers,
                scans: crate::gates::scan_cache::ScanCache::default(),
                pool: crate::gates::pool::DetectionPool::new(
                    config.detection.pool_workers,
                    config.detection.pool_queue,
                    Duration::from_millis(config.detection.pool_wait_ms),
                ),
            }),
            sse_heartbeat: (config.server.sse_heartbeat_ms > 0)
                .then(|| Duration::from_millis(config.server.sse_heartbeat_ms)),
            cpu: crate::cpu::CpuPool::new(
                config.server.cpu_workers,
                Duration::from_millis(config.server.cpu_queue_timeout_ms),
            ),
            body_read_timeout: Duration::from_millis(config.server.body_read_timeout_ms),
            readiness,
            metrics: metrics_handle,
            bundle,
            fleet: Arc::new(crate::fleet::FleetMember::new(
                &config.fleet,
                crate::clock::GatewayClock::system(),
            )),
            extraction: crate::extraction::Extraction::from_config(&config.extraction),
            anomaly: crate::anomaly::Anomaly::from_config(&config.detection.anomaly),
            replay: crate::replay::Replay::from_config(
                config,
                crate::clock::GatewayClock::system(),
            ),
            watermark,
            telemetry: crate::telemetry::Telemetry::from_config(&config.telemetry),
            reload: crate::reload::Reloader::new(config),
        };
        Ok((state, serving))
    }

    /// The replica's shared tool store (held calls, single-use tokens, loop
    /// counters), once the shared limits backend is connected.
    pub(crate) fn tool_store(&self) -> Option<palisade_redis::RedisToolStore> {
        self.admission
            .redis()
            .map(|conn| palisade_redis::RedisToolStore::new(conn, "palisade"))
    }
}
