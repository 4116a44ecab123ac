//! Serving the gateway: binding the listener, opening the stores, starting
//! the background tasks, and draining on shutdown.
//!
//! What a request does is in [`crate::pipeline`]; which handler serves which
//! path is in [`crate::router`]. This module must not handle requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use palisade_config::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::readiness::{Condition, Readiness};
pub use crate::state::GatewayError;
use crate::state::GatewayState;

/// A gateway built from config, not yet listening.
#[derive(Debug)]
pub struct Gateway {
    state: Arc<GatewayState>,
    config: Config,
    serving: Condition,
}

impl Gateway {
    /// Builds from a validated config, reading backend keys from the process
    /// environment.
    pub fn new(config: Config) -> Result<Self, GatewayError> {
        Self::with_env(config, |var| std::env::var(var).ok())
    }

    /// Builds with an explicit environment lookup (for tests).
    pub fn with_env(
        config: Config,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Result<Self, GatewayError> {
        let (state, serving) = GatewayState::from_config(&config, Arc::new(env))?;
        let state = Arc::new(state);
        Ok(Self {
            state,
            config,
            serving,
        })
    }

    /// Watches `path` (the file this config was read from) for edits, and
    /// reads it again with `loader` (the same overrides `serve` applied).
    /// Polled every `reload.config_poll_ms` once started; also on
    /// [`RunningGateway::reload_config`] and `POST /admin/config/reload`.
    #[must_use]
    pub fn reload_from(
        self,
        path: impl Into<std::path::PathBuf>,
        loader: impl Fn(&str) -> Result<Config, String> + Send + Sync + 'static,
    ) -> Self {
        self.state.reload.watch(path.into(), Arc::new(loader));
        self
    }

    /// The readiness registry, for components that must be ready before the
    /// replica takes traffic.
    pub fn readiness(&self) -> &Readiness {
        &self.state.readiness
    }

    /// The signed-bundle runtime (with `[bundle]`), for other bundle sources
    /// to offer bundles to or wake the poller.
    pub fn bundle(&self) -> Option<Arc<crate::bundle::BundleRuntime>> {
        self.state.bundle.clone()
    }

    /// The HTTP application.
    pub fn router(&self) -> Router {
        crate::router::router(self.state.clone())
    }

    /// Binds the listen address and starts serving in the background.
    pub async fn start(self, addr: Option<SocketAddr>) -> Result<RunningGateway, GatewayError> {
        self.state.telemetry.spawn();
        if let Some(url) = &self.config.ledger.url {
            let ready = self.state.readiness.register("ledger");
            let ledger =
                palisade_ledger::Ledger::open(url, palisade_ledger::WriteOptions::default())
                    .await
                    .map_err(|source| GatewayError::Ledger {
                        url: url.clone(),
                        source,
                    })?;
            let ledger = Arc::new(ledger);
            let _ = self.state.ledger.set(ledger.clone());
            if let Some(keys) = &self.state.auth.runtime {
                // The replica knows every runtime key before it takes traffic.
                keys.refresh(&ledger)
                    .await
                    .map_err(|source| GatewayError::Ledger {
                        url: url.clone(),
                        source,
                    })?;
                keys.spawn(ledger);
            }
            ready.set(true);
        }
        if let Some(url) = &self.config.policy.audit_url {
            // Opened (migrated, so writable) before the replica is ready.
            let audit_ready = self.state.readiness.register("audit_store");
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
            self.state.gates.audit.attach(store);
            audit_ready.set(true);
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
        let limits = crate::http::listener::ConnLimits {
            header_read_timeout: Duration::from_millis(self.config.server.header_read_timeout_ms),
            write_stall_timeout: Duration::from_millis(self.config.server.write_stall_timeout_ms),
            max_connections: self.config.server.max_connections,
            idle_timeout: Duration::from_millis(self.config.server.idle_timeout_ms),
        };
        let app = self.router();
        let serving = self.serving.clone();
        if let Some(handle) = &self.state.metrics {
            crate::metrics::spawn_upkeep(handle.clone());
        }
        self.state.admission.spawn_backend(&self.state.readiness);
        self.state.admission.spawn_alerts();
        self.state.gates.policy.spawn_reload();
        if let Some(bundle) = &self.state.bundle {
            bundle.spawn();
        }
        self.state.extraction.spawn(
            &self.config.extraction,
            self.state.gates.audit.clone(),
            self.state.gates.policy.clone(),
            self.config.limits.alert_webhook_url.clone(),
        )?;
        self.state.anomaly.spawn(
            self.config.limits.alert_webhook_url.clone(),
            Some(self.state.fleet.clone()),
        );
        serving.set(true);
        let replicas_to = self.state.clone();
        self.state.routing.start_probes(stop_rx.clone());
        self.state.routing.start_canaries(
            stop_rx.clone(),
            crate::canary::Env {
                gates: self.state.gates.clone(),
                webhook: self.config.limits.alert_webhook_url.clone(),
                http: crate::outbound::client_builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .ok(),
                default_max_tokens: self
                    .state
                    .inject_max_tokens
                    .then_some(self.state.default_max_tokens),
            },
        );
        crate::reload::Reloader::spawn_poll(self.state.clone(), stop_rx.clone());
        self.state.fleet.spawn(
            self.state.gates.policy.clone(),
            self.state.bundle.clone(),
            self.state.readiness.clone(),
            move |n| replicas_to.anomaly.set_replicas(n),
            stop_rx.clone(),
        );
        let task = tokio::spawn(async move {
            let mut drain_rx = stop_rx.clone();
            let shutdown = async move {
                let _ = drain_rx.wait_for(|stop| *stop).await;
                // Fail readiness first so load balancers stop sending traffic.
                serving.set(false);
                tracing::info!(grace_ms = grace.as_millis() as u64, "draining");
            };
            // Slow clients are bounded there: connection cap, head timeout.
            let server = crate::http::listener::serve(listener, app, limits, shutdown);
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
            state: self.state.clone(),
            local_addr,
            stop: stop_tx,
            task,
        })
    }
}

/// A gateway that is serving.
#[derive(Debug)]
pub struct RunningGateway {
    state: Arc<GatewayState>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), GatewayError>>,
}

impl RunningGateway {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Reads the config file again and applies its hot sections (what
    /// `SIGHUP` does); the outcome is also counted, logged and shown by
    /// `GET /admin/config`.
    pub async fn reload_config(&self) -> crate::reload::Outcome {
        self.state.reload.reload_now(&self.state).await
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
