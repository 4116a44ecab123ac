//! Phase 5, forward: one pooled HTTP client per backend, with deadlines.
//!
//! Each backend gets its own `reqwest::Client` so connect timeouts and pools
//! are per backend and a slow model server cannot exhaust another's pool.
//! The client's own credentials are never forwarded: the backend's key (from
//! the environment variable the config names) is sent instead.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use palisade_config::BackendConfig;
use palisade_openai::request::Endpoint;
use palisade_openai::{ApiError, ErrorCode};
use palisade_routing::FailureClass;

/// Errors building a backend at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// `api_key_env` names a variable that is unset or not valid in a header.
    #[error("backends.{backend}.api_key_env: environment variable {var} is {problem}")]
    ApiKey {
        /// Backend name.
        backend: String,
        /// The variable.
        var: String,
        /// "not set" or "not a valid header value".
        problem: &'static str,
    },
    /// `base_url` is not a valid URL.
    #[error("backends.{backend}.base_url: {message}")]
    Url {
        /// Backend name.
        backend: String,
        /// The parser's complaint.
        message: String,
    },
    /// The HTTP client could not be built (TLS roots, resolver).
    #[error("backends.{backend}: cannot build HTTP client: {source}")]
    Client {
        /// Backend name.
        backend: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
}

/// A configured upstream.
#[derive(Debug)]
pub struct Backend {
    /// Name from config; a metrics label.
    pub name: String,
    base_url: String,
    endpoint_urls: [reqwest::Url; 4],
    api_key: Option<HeaderValue>,
    /// `authorization` (Bearer) or Azure's `api-key`.
    auth_header: http::HeaderName,
    /// Tenants' own keys for this backend (`[tenants.<t>.upstream_api_key_env]`),
    /// sent instead of `api_key` for their requests.
    tenant_keys: std::collections::HashMap<String, HeaderValue>,
    client: reqwest::Client,
    /// Time allowed from request start to response head.
    pub first_byte_timeout: Duration,
    /// Longest silence between two body reads.
    pub idle_timeout: Duration,
    /// End-to-end deadline unless the route overrides it.
    pub request_timeout: Duration,
    /// Whether the wildcard listing may ask this backend for its models.
    pub list_models: bool,
    /// The circuit breaker, when configured.
    pub breaker: Option<crate::limits::breaker::Breaker>,
    /// Active probe: the path (under `base_url`) and interval.
    pub probe: Option<(String, Duration)>,
    /// The engine's own Prometheus endpoint (a full URL) and interval.
    pub engine_metrics: Option<(String, Duration)>,
    /// The downstream budget and fair queue, when `max_in_flight` is set.
    pub scheduler: Option<std::sync::Arc<crate::limits::scheduler::BackendScheduler>>,
}

impl Backend {
    /// Builds a backend, resolving its API key from `env`.
    pub fn new(
        name: &str,
        config: &BackendConfig,
        tenants: &std::collections::BTreeMap<String, palisade_config::TenantConfig>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, BackendError> {
        let api_key_header = config.auth == palisade_config::BackendAuth::ApiKey;
        let bearer = |var: &str| {
            let key_error = |problem| BackendError::ApiKey {
                backend: name.to_owned(),
                var: var.to_owned(),
                problem,
            };
            let value = env(var).ok_or_else(|| key_error("not set"))?;
            // Azure OpenAI takes the bare key in `api-key`.
            let text = if api_key_header {
                value
            } else {
                format!("Bearer {value}")
            };
            let mut header =
                HeaderValue::from_str(&text).map_err(|_| key_error("not a valid header value"))?;
            // Marked sensitive: hyper and our debug output never print it.
            header.set_sensitive(true);
            Ok::<_, BackendError>(header)
        };
        let api_key = config.api_key_env.as_deref().map(bearer).transpose()?;
        let mut tenant_keys = std::collections::HashMap::new();
        for (tenant, cfg) in tenants {
            if let Some(var) = cfg.upstream_api_key_env.get(name) {
                tenant_keys.insert(tenant.clone(), bearer(var)?);
            }
        }
        let client = crate::outbound::client_builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .tcp_nodelay(true)
            // Model servers are long-lived peers; keep plenty of warm
            // connections so bursts do not pay connect latency.
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(Duration::from_secs(90))
            // A proxy from the environment would silently reroute traffic
            // meant for a model server on the local network.
            .no_proxy()
            .build()
            .map_err(|source| BackendError::Client {
                backend: name.to_owned(),
                source,
            })?;
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let parse = |endpoint: Endpoint| {
            let mut url = reqwest::Url::parse(&format!("{base_url}{}", endpoint.upstream_path()))
                .map_err(|e| BackendError::Url {
                backend: name.to_owned(),
                message: e.to_string(),
            })?;
            if let Some(version) = &config.api_version {
                url.query_pairs_mut().append_pair("api-version", version);
            }
            Ok::<_, BackendError>(url)
        };
        let endpoint_urls = [
            parse(Endpoint::ChatCompletions)?,
            parse(Endpoint::Completions)?,
            parse(Endpoint::Embeddings)?,
            parse(Endpoint::Responses)?,
        ];
        Ok(Self {
            name: name.to_owned(),
            base_url,
            endpoint_urls,
            api_key,
            auth_header: if api_key_header {
                http::HeaderName::from_static("api-key")
            } else {
                http::header::AUTHORIZATION
            },
            tenant_keys,
            client,
            first_byte_timeout: Duration::from_millis(config.first_byte_timeout_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            list_models: config.list_models,
            probe: config
                .probe_path
                .clone()
                .map(|p| (p, Duration::from_millis(config.probe_interval_ms))),
            engine_metrics: config
                .engine_metrics_url
                .clone()
                .map(|u| (u, Duration::from_millis(config.engine_metrics_interval_ms))),
            breaker: config.circuit_breaker.map(|b| {
                crate::limits::breaker::Breaker::new(
                    name,
                    crate::limits::breaker::BreakerConfig {
                        error_rate: b.error_rate,
                        window: b.window as usize,
                        min_requests: b.min_requests as usize,
                        cooldown: Duration::from_millis(b.cooldown_ms),
                    },
                )
            }),
            scheduler: match config.max_in_flight {
                Some(max) => Some(std::sync::Arc::new(
                    crate::limits::scheduler::BackendScheduler::new(
                        name,
                        max,
                        config.max_queued_per_tenant,
                        Duration::from_millis(config.queue_timeout_ms),
                        config
                            .adaptive_concurrency
                            .then_some(crate::limits::scheduler::Adaptive {
                                min_in_flight: config.min_in_flight,
                                target_latency: Duration::from_millis(config.target_latency_ms),
                            }),
                    )
                    .map_err(|e| BackendError::Url {
                        backend: name.to_owned(),
                        message: e.to_string(),
                    })?
                    .with_max_queued_tokens(config.max_queued_tokens),
                )),
                None => None,
            },
        })
    }

    /// The URL of `path` (which starts with `/`) on this backend.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// The parsed URL of an endpoint, parsed once at start: URL parsing (with
    /// IDNA) is a measurable share of per-request CPU.
    fn endpoint_url(&self, endpoint: Endpoint) -> reqwest::Url {
        self.endpoint_urls[endpoint as usize].clone()
    }

    /// Sends a JSON POST and waits for the response head, bounded by the
    /// first-byte timeout and the request's deadline, with `trace`'s
    /// trace-context headers. A failure carries its class, which says
    /// whether the body may have reached the model.
    pub async fn post_json(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        request_id: &str,
        tenant: &str,
        deadline: Instant,
        trace: &[(http::HeaderName, HeaderValue)],
    ) -> Result<reqwest::Response, (ApiError, FailureClass)> {
        let mut req = self
            .client
            .post(self.endpoint_url(endpoint))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(crate::http::request_id::HEADER, request_id)
            .body(body);
        // The W3C trace context (`traceparent`, `tracestate`), built by the
        // gateway: a client's headers never reach the upstream verbatim.
        for (name, value) in trace {
            req = req.header(name.clone(), value.clone());
        }
        if let Some(key) = self.tenant_keys.get(tenant).or(self.api_key.as_ref()) {
            req = req.header(self.auth_header.clone(), key.clone());
        }
        self.send_classified(req, deadline).await
    }

    /// Sends a request without a body to `path` for `tenant` (its own
    /// upstream key when it has one), as the proxied requests are sent: the
    /// stored-response endpoints.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        tenant: &str,
        request_id: &str,
        deadline: Instant,
    ) -> Result<reqwest::Response, ApiError> {
        let mut req = self
            .client
            .request(method, self.url(path))
            .header(crate::http::request_id::HEADER, request_id);
        if let Some(key) = self.tenant_keys.get(tenant).or(self.api_key.as_ref()) {
            req = req.header(self.auth_header.clone(), key.clone());
        }
        self.send_classified(req, deadline)
            .await
            .map_err(|(e, _)| e)
    }

    /// Sends a GET (used for the model list).
    pub async fn get(&self, path: &str, deadline: Instant) -> Result<reqwest::Response, ApiError> {
        let mut req = self.client.get(self.url(path));
        if let Some(key) = &self.api_key {
            req = req.header(self.auth_header.clone(), key.clone());
        }
        self.send_classified(req, deadline)
            .await
            .map_err(|(e, _)| e)
    }

    /// GETs an absolute URL with this backend's client (pool, timeouts,
    /// proxy settings) and **without** its key: the engine's metrics
    /// endpoint, which may sit on another host than `base_url`.
    pub(crate) async fn get_unauthenticated(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<String, reqwest::Error> {
        let resp = self
            .client
            .get(url)
            .timeout(timeout)
            .send()
            .await?
            .error_for_status()?;
        resp.text().await
    }

    async fn send_classified(
        &self,
        req: reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<reqwest::Response, (ApiError, FailureClass)> {
        let limit = self
            .first_byte_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let started = Instant::now();
        let result = tokio::time::timeout(limit, req.send()).await;
        let outcome = match &result {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "error",
            Err(_) => "timeout",
        };
        crate::metrics::upstream_response_head(&self.name, outcome, started.elapsed());
        match result {
            Ok(Ok(resp)) => Ok(resp),
            // Only a failed connect proves nothing was sent; any other
            // failure may have delivered the body (see palisade_routing).
            Ok(Err(e)) if e.is_connect() => Err((self.map_error(&e), FailureClass::Connect)),
            Ok(Err(e)) if e.is_timeout() => Err((self.map_error(&e), FailureClass::Timeout)),
            Ok(Err(e)) => Err((self.map_error(&e), FailureClass::Broken)),
            Err(_) => Err((
                ApiError::new(
                    ErrorCode::UpstreamTimeout,
                    format!(
                        "upstream `{}` sent no response within {} ms",
                        self.name,
                        limit.as_millis()
                    ),
                ),
                FailureClass::Timeout,
            )),
        }
    }

    /// Classifies a client error. Messages name the backend but not its URL
    /// or credentials.
    pub fn map_error(&self, e: &reqwest::Error) -> ApiError {
        if e.is_timeout() {
            ApiError::new(
                ErrorCode::UpstreamTimeout,
                format!("upstream `{}` timed out", self.name),
            )
        } else if e.is_connect() {
            ApiError::new(
                ErrorCode::UpstreamUnavailable,
                format!("upstream `{}` is unreachable", self.name),
            )
        } else {
            ApiError::new(
                ErrorCode::UpstreamUnavailable,
                format!("upstream `{}` failed: connection broken", self.name),
            )
        }
    }
}

/// Upstream response headers worth passing to the client: content type,
/// `Retry-After` (on an upstream 429) and OpenAI's processing headers.
/// Hop-by-hop headers and cookies stay behind, and so do the upstream's
/// `x-ratelimit-*`: they describe the gateway's own upstream account, not
/// the caller's limits here (which the rate gate reports instead).
pub fn passthrough_headers(upstream: &HeaderMap, out: &mut HeaderMap) {
    for (name, value) in upstream {
        let n = name.as_str();
        if n == "content-type" || n == "retry-after" || n.starts_with("openai-") {
            out.append(name.clone(), value.clone());
        }
    }
}
