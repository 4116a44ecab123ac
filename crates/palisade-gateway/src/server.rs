//! Building the gateway from config, serving it, and draining it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{header, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use palisade_config::Config;
use palisade_openai::request::Endpoint;
use palisade_openai::{ApiError, ErrorCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::error::error_response;
use crate::metrics::ModelLabels;
use crate::readiness::{Condition, Readiness};
use crate::request_id::RequestId;
use crate::routing::RouteTable;
use crate::upstream::{Backend, BackendError};

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
    /// The configured limits could not be compiled.
    #[error(transparent)]
    Admission(#[from] crate::admission::AdmissionError),
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
    /// The policy file could not be loaded.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyLoadError),
    /// The tool signing key or a tenant's tool credential is missing.
    #[error(transparent)]
    Tools(#[from] crate::tools::ToolSetupError),
    /// The server loop failed.
    #[error("server error")]
    Serve(#[source] std::io::Error),
}

/// Shared, immutable per-process state the handlers read.
#[derive(Debug)]
pub struct GatewayState {
    pub(crate) auth: Authenticator,
    pub(crate) routes: RouteTable,
    pub(crate) backends: Vec<Backend>,
    pub(crate) model_labels: ModelLabels,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_sse_event_bytes: usize,
    pub(crate) detector: Arc<palisade_detect::Detector>,
    pub(crate) admission: crate::admission::Admission,
    pub(crate) default_max_tokens: u64,
    /// The ledger, once opened by `start` (when `ledger.url` is set).
    pub(crate) ledger: std::sync::OnceLock<Arc<palisade_ledger::Ledger>>,
    pub(crate) prices: Arc<palisade_ledger::PriceTable>,
    pub(crate) inject_max_tokens: bool,
    /// The safety policy; `None` when the gates are disabled.
    pub(crate) policy: Arc<crate::policy::PolicyStore>,
    pub(crate) gates_enabled: bool,
    pub(crate) audit: crate::audit::AuditSink,
    pub(crate) stream_hold_bytes: usize,
    pub(crate) sse_heartbeat: Option<Duration>,
    /// Capability tokens, confirmations and tool-loop counters.
    pub(crate) tools: Arc<crate::tools::ToolService>,
    /// The bounded pool for CPU-heavy checks.
    pub(crate) cpu: crate::cpu::CpuPool,
    /// How long a request body may take to arrive.
    pub(crate) body_read_timeout: Duration,
    readiness: Readiness,
    metrics: Option<PrometheusHandle>,
}

/// A gateway built from config, not yet listening.
#[derive(Debug)]
pub struct Gateway {
    state: Arc<GatewayState>,
    config: Config,
    serving: Condition,
}

/// Most model names a wildcard route turns into metric label values.
const MODEL_LABEL_CAP: usize = 64;

impl Gateway {
    /// Builds from a validated config, reading backend keys from the process
    /// environment.
    pub fn new(config: Config) -> Result<Self, GatewayError> {
        Self::with_env(config, |var| std::env::var(var).ok())
    }

    /// Builds with an explicit environment lookup (for tests).
    pub fn with_env(
        config: Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, GatewayError> {
        let mut backends = Vec::with_capacity(config.backends.len());
        let mut index = HashMap::new();
        for (name, backend) in &config.backends {
            index.insert(name.clone(), backends.len());
            backends.push(Backend::new(name, backend, &config.tenants, &env)?);
        }
        let mut tokenizers = HashMap::new();
        for path in config.routes.iter().filter_map(|r| r.tokenizer.as_ref()) {
            let loaded = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    palisade_openai::usage::Tokenizer::from_json_bytes(&bytes)
                        .map_err(|e| e.to_string())
                })
                .map_err(|message| GatewayError::Tokenizer {
                    path: path.clone(),
                    message,
                })?;
            tokenizers.insert(path.clone(), loaded);
        }
        let routes = RouteTable::compile(&config, |name| index[name], &tokenizers);
        let readiness = Readiness::default();
        readiness.register("routes").set(true);
        let detector_ready = readiness.register("detector");
        let detector = Arc::new(palisade_detect::Detector::embedded()?);
        // The first scan builds the detector's lazily compiled matchers
        // (~100 ms); pay that before readiness, not on a user's request.
        let _ = detector.scan(&palisade_detect::ScanInput::user("warm up"));
        detector_ready.set(true);
        // The replica holds its policy before it takes traffic.
        let policy_ready = readiness.register("policy");
        let policy = Arc::new(crate::policy::PolicyStore::load(&config.policy)?);
        policy_ready.set(true);
        let serving = readiness.register("listener");
        let tools = Arc::new(crate::tools::ToolService::from_config(&config, &env)?);
        let prices = Arc::new(crate::accounting::price_table(&config.ledger));
        let state = Arc::new(GatewayState {
            auth: Authenticator::from_config(&config.auth),
            routes,
            backends,
            model_labels: ModelLabels::new(MODEL_LABEL_CAP),
            max_body_bytes: config.server.max_body_bytes,
            max_sse_event_bytes: config.server.max_sse_event_bytes,
            detector,
            admission: crate::admission::Admission::from_config(&config.limits, prices.clone())?,
            default_max_tokens: config.limits.default_max_tokens,
            ledger: std::sync::OnceLock::new(),
            prices,
            inject_max_tokens: config.limits.inject_max_tokens,
            policy,
            gates_enabled: !config.policy.disabled,
            audit: crate::audit::AuditSink::default(),
            stream_hold_bytes: config.policy.stream_hold_bytes,
            sse_heartbeat: (config.server.sse_heartbeat_ms > 0)
                .then(|| Duration::from_millis(config.server.sse_heartbeat_ms)),
            tools,
            cpu: crate::cpu::CpuPool::new(
                config.server.cpu_workers,
                Duration::from_millis(config.server.cpu_queue_timeout_ms),
            ),
            body_read_timeout: Duration::from_millis(config.server.body_read_timeout_ms),
            readiness,
            metrics: crate::metrics::install(),
        });
        Ok(Self {
            state,
            config,
            serving,
        })
    }

    /// The readiness registry, for components that must be ready before the
    /// replica takes traffic.
    pub fn readiness(&self) -> &Readiness {
        &self.state.readiness
    }

    /// The HTTP application.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Binds the listen address and starts serving in the background.
    pub async fn start(self, addr: Option<SocketAddr>) -> Result<RunningGateway, GatewayError> {
        if let Some(url) = &self.config.ledger.url {
            let ready = self.state.readiness.register("ledger");
            let ledger =
                palisade_ledger::Ledger::open(url, palisade_ledger::WriteOptions::default())
                    .await
                    .map_err(|source| GatewayError::Ledger {
                        url: url.clone(),
                        source,
                    })?;
            let _ = self.state.ledger.set(Arc::new(ledger));
            ready.set(true);
        }
        if let Some(url) = &self.config.policy.audit_url {
            // The same store as the ledger shares its writer.
            let store = match self.state.ledger.get() {
                Some(ledger) if self.config.ledger.url.as_ref() == Some(url) => ledger.clone(),
                _ => Arc::new(
                    palisade_ledger::Ledger::open(url, palisade_ledger::WriteOptions::default())
                        .await
                        .map_err(|source| GatewayError::Ledger {
                            url: url.clone(),
                            source,
                        })?,
                ),
            };
            self.state.audit.attach(store);
        }
        let limits = &self.config.limits;
        let needs_tokens = self.config.ledger.url.is_some()
            || limits.spend_rate.is_some()
            || std::iter::once(&limits.default)
                .chain(limits.tenants.values())
                .any(|t| t.tokens_per_minute.is_some() || t.has_monthly());
        if needs_tokens {
            // Token accounting estimates prompts with the model's tokenizer:
            // load the vocabularies before taking traffic.
            let _ = tokio::task::spawn_blocking(palisade_openai::usage::Tokenizer::warm).await;
        }
        let addr = addr.unwrap_or(self.config.server.listen);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(GatewayError::Serve)?;
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let grace = Duration::from_millis(self.config.server.shutdown_grace_ms);
        let limits = crate::listener::ConnLimits {
            header_read_timeout: Duration::from_millis(self.config.server.header_read_timeout_ms),
            max_connections: self.config.server.max_connections,
        };
        let app = self.router();
        let serving = self.serving.clone();
        if let Some(handle) = &self.state.metrics {
            crate::metrics::spawn_upkeep(handle.clone());
        }
        self.state.admission.spawn_backend(&self.state.readiness);
        self.state.admission.spawn_alerts();
        self.state.policy.spawn_reload();
        serving.set(true);
        let task = tokio::spawn(async move {
            let mut drain_rx = stop_rx.clone();
            let shutdown = async move {
                let _ = drain_rx.wait_for(|stop| *stop).await;
                // Fail readiness first so load balancers stop sending traffic.
                serving.set(false);
                tracing::info!(grace_ms = grace.as_millis() as u64, "draining");
            };
            // Slow clients are bounded there: connection cap, head timeout.
            let server = crate::listener::serve(listener, app, limits, shutdown);
            tokio::pin!(server);
            tokio::select! {
                () = &mut server => Ok(()),
                () = async {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                    tokio::time::sleep(grace).await;
                } => {
                    tracing::warn!("grace period over; cutting remaining connections");
                    Ok(())
                }
            }
        });
        tracing::info!(%local_addr, "palisade listening");
        Ok(RunningGateway {
            local_addr,
            stop: stop_tx,
            task,
        })
    }
}

/// A gateway that is serving.
#[derive(Debug)]
pub struct RunningGateway {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), GatewayError>>,
}

impl RunningGateway {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts draining: readiness fails, the listener closes, in-flight
    /// requests and streams run until done or the grace period ends.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) -> Result<(), GatewayError> {
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(GatewayError::Serve(std::io::Error::other(join))),
        }
    }
}

fn router(state: Arc<GatewayState>) -> Router {
    // One handler serves every proxied endpoint; the route binds which.
    let proxied = |endpoint: Endpoint| {
        move |state: State<Arc<GatewayState>>,
              id: Extension<RequestId>,
              headers: http::HeaderMap,
              body: axum::body::Body| {
            crate::proxy::handle(state, id, headers, body, endpoint)
        }
    };
    Router::new()
        .route(
            "/v1/chat/completions",
            post(proxied(Endpoint::ChatCompletions)),
        )
        .route("/v1/completions", post(proxied(Endpoint::Completions)))
        .route("/v1/embeddings", post(proxied(Endpoint::Embeddings)))
        .route("/v1/models", get(crate::models::list))
        .route("/v1/guard/scan", post(crate::guard::scan))
        .route("/v1/guard/tool_calls", post(crate::tools::guard))
        .route("/v1/tools/confirm", post(crate::tools::confirm))
        .route("/v1/tools/pending", get(crate::tools::pending))
        .route("/v1/tools/verify", post(crate::tools::verify))
        .route("/v1/tools/public-key", get(crate::tools::public_key))
        .route("/admin/usage", get(crate::admin::usage))
        .route("/admin/quotas", get(crate::admin::quotas))
        .route("/admin/policy", get(crate::admin::policy))
        .route(
            "/admin/policy/rollback",
            post(crate::admin::policy_rollback),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::body_deadline::layer,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .layer(middleware::from_fn(crate::request_id::layer))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<GatewayState>>) -> Response {
    let report = state.readiness.report();
    let ready = !report.is_empty() && report.iter().all(|(_, r)| *r);
    let to_map = |items: Vec<(String, bool)>| -> serde_json::Map<String, serde_json::Value> {
        items
            .into_iter()
            .map(|(name, ok)| (name, serde_json::Value::Bool(ok)))
            .collect()
    };
    let conditions = to_map(report);
    let advisories = to_map(state.readiness.advisories());
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({ "ready": ready, "conditions": conditions, "advisories": advisories })),
    )
        .into_response()
}

async fn metrics(State(state): State<Arc<GatewayState>>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
    }
}

async fn not_found(Extension(RequestId(id)): Extension<RequestId>) -> Response {
    error_response(
        &ApiError::new(ErrorCode::NotFound, "no such endpoint"),
        Some(&id),
    )
}

async fn method_not_allowed(Extension(RequestId(id)): Extension<RequestId>) -> Response {
    error_response(
        &ApiError::new(
            ErrorCode::MethodNotAllowed,
            "method not allowed on this endpoint",
        ),
        Some(&id),
    )
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // Never leak panic text to the client; it is in the logs.
    tracing::error!("handler panicked");
    error_response(
        &ApiError::new(ErrorCode::InternalError, "internal error"),
        None,
    )
}
